"""The TUI's screens, one module each, in the order of their keys (p a t u d s e)."""

from tui.views.alerts import AlertsView
from tui.views.attendance import AttendanceView
from tui.views.base import View
from tui.views.devices import DevicesView
from tui.views.events import EventsView
from tui.views.people import PeopleView
from tui.views.presence import PresenceView
from tui.views.screens import ScreensView

VIEWS: tuple[type[View], ...] = (
    PresenceView,
    AlertsView,
    AttendanceView,
    PeopleView,
    DevicesView,
    ScreensView,
    EventsView,
)
"""Every screen, in the order the app shows them and lists their keys."""

__all__ = [
    "VIEWS",
    "AlertsView",
    "AttendanceView",
    "DevicesView",
    "EventsView",
    "PeopleView",
    "PresenceView",
    "ScreensView",
    "View",
]
