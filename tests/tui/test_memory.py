"""The TUI's memory stays bounded while the supervisor switches screens (real hub and broker, the app under Pilot)."""

from __future__ import annotations

import gc
import io
from collections.abc import Callable
from datetime import timedelta

from PIL import Image as PILImage
from textual._styles_cache import StylesCache
from textual.dom import DOMNode
from textual.widgets import Footer
from ulid import ULID

from edge.protocol import wire
from edge.protocol.mqtt import MqttLink
from hub.service import HubService
from tests.helpers.factories import make_event
from tests.helpers.hub import Clock
from tests.tui.conftest import SITE, START, run, seed_people, until
from tui.app import RollcallApp
from tui.live import RESOLVED_ALERTS_KEPT, LiveState

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


def _png(shade: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 36), (shade % 256, 40, 80)).save(buffer, "PNG")
    return buffer.getvalue()


def _styles_caches() -> tuple[int, int]:
    """(all objects, Textual styles caches) after a full collection."""
    gc.collect()
    objects = gc.get_objects()
    return len(objects), sum(1 for o in objects if type(o) is StylesCache)


def test_live_traffic_with_screen_switches_keeps_no_more_objects_per_message(
    hub: HubService, clock: Clock, make_app: MakeApp, publisher: MqttLink
) -> None:
    ids = seed_people(hub, clock)
    people: list[str | None] = [None, ids["Ana"], ids["Ben"], ids["Cleo"]]  # None: an unknown face, so alerts
    seq = iter(range(10, 100_000))

    async def scenario() -> tuple[tuple[int, int], tuple[int, int], int]:
        app = make_app()
        messages = 0
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.settled and app.requests_done > 0, what="the first answers")

            async def traffic_round(i: int) -> int:
                clock.now += timedelta(seconds=7)
                sent = 0
                for door in ("door-1", "door-2"):
                    event = make_event(
                        device=door, seq=next(seq), at=clock(), person_id=people[i % len(people)], has_snapshot=False
                    )
                    publisher.publish(SITE.device_event(door), event)
                    health = wire.Health(
                        device=door,
                        at=clock(),
                        uptime_s=float(i),
                        fps=14.0 + i % 10 / 10,
                        cpu_percent=30.0,
                        outbox_depth=i % 5,
                        gallery_version=3,
                    )
                    publisher.publish(SITE.device_health(door), health, qos=0)
                    sent += 2
                thumbnail = wire.Screen(
                    agent="pc-1",
                    at=clock(),
                    content_type="image/png",
                    width=64,
                    height=36,
                    changed_fraction=0.2,
                    data=_png(i),
                )
                publisher.publish(SITE.agent_thumbnail("pc-1"), thumbnail, qos=0)
                await pilot.press(KEYS[i % len(KEYS)])
                await pilot.pause(0.3)
                await until(pilot, lambda: app.settled, what=f"the {app.current} screen to settle")
                return sent + 1

            for i in range(14):  # every screen shown twice: its bounded caches fill first
                await traffic_round(i)
            before = _styles_caches()
            for i in range(14, 42):
                messages += await traffic_round(i)
            after = _styles_caches()
        return before, after, messages

    (objects_before, caches_before), (objects_after, caches_after), messages = run(scenario)
    # Before the fix Textual's get_inner_outer lru_cache kept the styles cache (with every line it drew) of each
    # widget ever removed: ~22 more a round, ~190 objects per message; after it ~25 per message (caches filling).
    assert caches_after - caches_before <= 10, f"{caches_after - caches_before} more styles caches kept"
    per_message = (objects_after - objects_before) / messages
    assert per_message < 80, f"{per_message:.0f} more objects kept per message ({messages} messages)"


def test_the_live_state_keeps_every_open_alert_and_only_the_newest_resolved_ones() -> None:
    live = LiveState(None, SITE, "tui-memory-live", clock=lambda: START)
    hub_alert = wire.TopicRef("rollcall", SITE.site, "hub", None, "alert")

    def _alert_id(n: int) -> str:
        """The same id for the same n (the open alert and its resolution are one alert)."""
        return str(ULID.from_bytes(ULID.from_datetime(START + timedelta(minutes=n)).bytes[:6] + bytes(10)))

    def alert(n: int, state: str) -> wire.Alert:
        return wire.Alert(
            alert_id=_alert_id(n),
            rule="unknown_face",
            severity="warning",
            state=state,  # type: ignore[arg-type]
            subject="door-1",
            message="unknown face at door-1",
            first_at=START + timedelta(minutes=n),
            last_at=START + timedelta(minutes=n),
            count=1,
        )

    for n in range(RESOLVED_ALERTS_KEPT + 300):  # a console open for weeks: one alert after another, each resolved
        live.apply(hub_alert, alert(n, "open"))
        live.apply(hub_alert, alert(n, "resolved"))
    live.merge_alerts([alert(-n, "open").model_dump(mode="json") for n in range(1, 101)])  # old, never handled
    alerts = live.alerts()
    assert [a.state for a in alerts].count("open") == 100
    resolved = [a for a in alerts if a.state == "resolved"]
    assert len(resolved) == RESOLVED_ALERTS_KEPT
    assert min(a.last_at for a in resolved) == START + timedelta(minutes=300)  # the oldest 300 were forgotten


def test_the_console_keeps_only_as_many_live_events_as_its_events_view_shows() -> None:
    from edge.protocol.hub_client import new_session
    from tui.cli import session_links
    from tui.config import TuiConfig

    config = TuiConfig.model_validate({"site": {"id": "hq"}, "tui": {"events_shown": 50}})
    live, _ = session_links(config, new_session())
    door = wire.TopicRef("rollcall", "hq", "device", "door-1", "event")
    for seq in range(120):
        live.apply(door, make_event(device="door-1", seq=seq, at=START + timedelta(seconds=seq)))
    kept = live.events()
    assert len(kept) == 50 and live.events_seen == 120
    assert {e.seq for e in kept} == set(range(70, 120))  # the newest


def test_a_live_table_keeps_only_the_renders_of_what_it_shows() -> None:
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable

    from tui.widgets.tables import TableSync

    class OneTable(App[None]):
        def compose(self) -> ComposeResult:
            yield DataTable()

    rows, columns = 30, 6

    async def scenario() -> tuple[int, int, int]:
        app = OneTable()
        async with app.run_test(size=(160, 48)) as pilot:
            table: DataTable[str] = app.query_one(DataTable)
            sync = TableSync(table, [(f"c{c}", f"C{c}") for c in range(columns)])
            for step in range(80):  # a live screen: an age or a count changes in every row, then it is drawn
                sync.sync({f"r{r}": tuple(f"{r}-{c}-{(step + r) % 97}" for c in range(columns)) for r in range(rows)})
                await pilot.pause()
            gc.collect()
            return len(table._cell_render_cache), len(table._row_render_cache), len(table._line_cache)

    cells, row_renders, lines = run(scenario)
    # Before the fix each change left the last screenful of renders behind: 10,000 cells (~14 MB) after 80 changes.
    assert cells <= (rows + 1) * columns, f"{cells} rendered cells kept for a table of {rows} x {columns}"
    assert row_renders <= rows + 1 and lines <= rows + 1, f"{row_renders} rows and {lines} lines kept"


def test_ansi_codes_are_cached_per_colour_not_per_cell() -> None:
    from rich.color import ColorSystem
    from rich.style import Style as RichStyle
    from textual.strip import Strip

    from tui.widgets.textual_fixes import TEXTUAL_RENDER_ANSI, share_ansi_codes

    share_ansi_codes()  # what importing tui.app does
    marker = "ansi-cache-test"

    def kept() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is RichStyle and o.meta.get("test") == marker)

    colours = [("red", "black"), ("#102030", "#fafafa"), ("bright_green", None), (None, "blue")]
    for row in range(3000):  # a screen of table cells: one style per cell, alike but for the cell's place in meta
        color, bgcolor = colours[row % len(colours)]
        style = RichStyle(color=color, bgcolor=bgcolor, bold=row % 3 == 0, meta={"test": marker, "row": row})
        for system in (ColorSystem.TRUECOLOR, ColorSystem.EIGHT_BIT, ColorSystem.STANDARD):
            expected = TEXTUAL_RENDER_ANSI.__func__.__wrapped__(Strip, style.copy(), system)
            assert Strip.render_ansi(style.copy(), system) == expected
        Strip.render_style(style, "x", ColorSystem.TRUECOLOR)
    del style
    # Before the fix Textual's lru_cache(16384) kept each of these styles (and its meta) alive: 3,000 here, and
    # towards 16,384 (about 10 MB) in a console switching screens for hours.
    assert kept() == 0, f"{kept()} cell styles kept alive by the ANSI-code cache"
