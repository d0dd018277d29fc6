"""The TUI's memory stays bounded while the supervisor switches screens (real hub and broker, the app under Pilot)."""

from __future__ import annotations

import gc
from collections.abc import Callable

from textual.dom import DOMNode
from textual.widgets import Footer

from hub.service import HubService
from tests.helpers.hub import Clock
from tests.tui.conftest import run, seed_people, until
from tui.app import RollcallApp

KEYS = "atudsep"
"""Every screen's key, Presence last."""

MakeApp = Callable[..., RollcallApp]


def _retained() -> tuple[int, int]:
    """(live objects, live widgets no longer in the app) after a full collection."""
    gc.collect()
    objects = gc.get_objects()
    detached = sum(1 for o in objects if isinstance(o, DOMNode) and not o.is_attached)
    return len(objects), detached


def test_switching_screens_many_times_keeps_no_more_objects(hub: HubService, clock: Clock, make_app: MakeApp) -> None:
    seed_people(hub, clock)

    async def scenario() -> tuple[tuple[int, int], tuple[int, int], int, int]:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.settled and app.requests_done > 0, what="the first answers")

            async def switch_round() -> None:
                for key in KEYS:
                    await pilot.press(key)
                    await until(pilot, lambda: app.settled, what=f"the {app.current} screen to settle")

            for _ in range(5):  # caches of every screen fill up first (bounded, so they stop growing)
                await switch_round()
            before = _retained()
            for _ in range(15):  # 105 switches more
                await switch_round()
            after = _retained()
            footer = app.query_one(Footer)
            keys_shown = len(footer.children)
            watchers: dict[str, list[object]] = getattr(footer, "__watchers", {})
            return before, after, keys_shown, len(watchers.get("compact", []))

    (objects_before, detached_before), (objects_after, detached_after), keys_shown, bindings = run(scenario)
    # Before the fix every switch left ~11 footer keys behind (with their rendering caches): 2,700 objects a switch.
    assert detached_after <= detached_before, f"{detached_after - detached_before} removed widgets are still in memory"
    assert bindings <= keys_shown, f"the footer keeps {bindings} key bindings for {keys_shown} keys shown"
    # Some growth is bounded caches still filling (Textual's LRU caches, the in-process hub's 10,000 latencies).
    assert objects_after - objects_before < 40_000, f"{objects_after - objects_before} more objects after 105 switches"
