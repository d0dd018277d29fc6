"""What the hub tells people: a notification (an alert or a text), its filters, and the channel protocol."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Literal, Protocol, TypeAlias

from edge.protocol import wire

Severity: TypeAlias = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


class NotifyError(Exception):
    """A notification could not be delivered; the message says why (HTTP status, API description, network)."""


# --- notifications and filters -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notification:
    """Something to tell people: an alert as it stands now, or a text, each optionally with a photo (JPEG bytes).

    ``rule`` and ``severity`` drive the notifiers' filters; for an alert they default to the alert's own.
    ``id`` stays the same across retries (the webhook sends it as ``X-Rollcall-Delivery``, so receivers can drop
    repeats; Telegram uses it not to send a message twice to a chat that already has it).
    """

    kind: Literal["alert", "text"]
    alert: wire.Alert | None = None
    text: str = ""
    photo: bytes | None = None
    rule: str | None = None
    severity: Severity | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        if self.kind == "alert":
            if self.alert is None:
                raise ValueError("an alert notification needs its alert")
            if self.rule is None:
                object.__setattr__(self, "rule", self.alert.rule)
            if self.severity is None:
                object.__setattr__(self, "severity", self.alert.severity)
        elif self.kind == "text":
            if self.alert is not None:
                raise ValueError("a text notification carries no alert")
            if not self.text and self.photo is None:
                raise ValueError("a text notification needs a text or a photo")
        else:
            raise ValueError(f"unknown notification kind {self.kind!r}; use 'alert' or 'text'")
        if self.severity is not None and self.severity not in _SEVERITY_RANK:
            raise ValueError(f"unknown severity {self.severity!r}; use one of {', '.join(SEVERITIES)}")

    @classmethod
    def for_alert(cls, alert: wire.Alert, photo: bytes | None = None) -> Notification:
        """A notification for an alert (its rule and severity are the alert's)."""
        return cls(kind="alert", alert=alert, photo=photo)

    @classmethod
    def for_text(
        cls, text: str, *, photo: bytes | None = None, rule: str | None = None, severity: Severity | None = None
    ) -> Notification:
        """A plain text notification, optionally with a photo and a rule/severity for the filters."""
        return cls(kind="text", text=text, photo=photo, rule=rule, severity=severity)

    def names(self, person_id: str, name: str | None) -> bool:
        """Whether it is about the person (their id on the alert) or names them (id or name in its text)."""
        if self.alert is not None and self.alert.person_id == person_id:
            return True
        text = self.render()
        return person_id in text or bool(name and name in text)

    def render(self, zone: tzinfo = UTC) -> str:
        """The text people read (Telegram message, photo caption, a webhook's ``text``); plain text, no markup.

        Times are wall-clock in ``zone`` (the site's time zone) with its abbreviation; JSON keeps ISO 8601.
        """
        if self.alert is None:
            return self.text
        alert = self.alert
        icon = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}[alert.severity]
        head = f"{icon} {alert.severity.upper()}: {alert.subject}"
        if alert.state != "open":
            head += f" ({alert.state}{' by ' + alert.acknowledged_by if alert.acknowledged_by else ''})"
        lines = [head, alert.message]
        details = [f"rule {alert.rule}"]
        if alert.count > 1:
            details.append(f"{alert.count} times")
        if alert.device:
            details.append(f"door {alert.device}")
        details.append(f"since {alert.first_at.astimezone(zone).strftime('%Y-%m-%d %H:%M %Z')}")
        lines.append(" · ".join(details))
        if self.text:
            lines.append(self.text)
        return "\n".join(line for line in lines if line)


@dataclass(frozen=True, slots=True)
class NotifyFilter:
    """Which notifications a notifier wants: ``rules`` (None = every rule) and a minimum severity.

    A notification without a rule (a plain text) passes the rule filter, one without a severity passes the
    severity filter: the filters narrow alerts, they do not silence messages sent on purpose.
    """

    rules: tuple[str, ...] | None = None
    min_severity: Severity = "info"

    def __post_init__(self) -> None:
        if self.min_severity not in _SEVERITY_RANK:
            raise ValueError(f"min_severity {self.min_severity!r} is not one of {', '.join(SEVERITIES)}")
        if self.rules is not None:
            object.__setattr__(self, "rules", tuple(self.rules))

    def wants(self, notification: Notification) -> bool:
        """Whether a notification passes the rule and severity filters."""
        if self.rules is not None and notification.rule is not None and notification.rule not in self.rules:
            return False
        return notification.severity is None or (
            _SEVERITY_RANK[notification.severity] >= _SEVERITY_RANK[self.min_severity]
        )


class NotificationChannel(Protocol):
    """A way to tell people. ``send`` raises :class:`NotifyError` when delivery failed (the queue retries)."""

    name: str

    def wants(self, notification: Notification) -> bool:
        """Whether this notifier's rule/severity filters let the notification through."""
        ...

    def send(self, notification: Notification) -> None:
        """Deliver one notification, or raise :class:`NotifyError`."""
        ...


def notify_filter(rules: Iterable[str] | None, min_severity: Severity) -> NotifyFilter:
    """The filter of a channel configured with ``rules`` (None = every rule) and ``min_severity``."""
    return NotifyFilter(rules=None if rules is None else tuple(rules), min_severity=min_severity)
