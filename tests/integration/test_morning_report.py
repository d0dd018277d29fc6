"""The morning report of forgotten check-outs and the first-in photo policy, through real Mosquitto and a hub file."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from edge.protocol import wire
from hub import retention
from hub.service import HubService
from tests.helpers.brokers import TestBroker
from tests.helpers.factories import make_event
from tests.helpers.hub import Clock, feed, hub_config, running_hub
from tests.helpers.mqtt import probe

pytestmark = pytest.mark.integration

SITE = wire.Topics("hq")
MON = date(2026, 11, 23)
TUE = MON + timedelta(days=1)
WED = TUE + timedelta(days=1)
CONFIG = """
[alerts.forgotten_checkout]
enabled = true
at = "09:00"

[[cameras]]
device = "door-1"
role = "entrance"

[[cameras]]
device = "door-2"
role = "exit"
"""


def utc(day: date, hour: int, minute: int = 0) -> datetime:
    """A Berlin wall time on ``day`` as a UTC instant (UTC+1 in November)."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - timedelta(hours=1)


def health(device: str, at: datetime) -> wire.Health:
    """A health report with an empty outbox: the device delivered everything before ``at``."""
    return wire.Health(device=device, at=at, uptime_s=60, fps=5, cpu_percent=10, outbox_depth=0)


def reports(hub: HubService) -> list[tuple[str, str, int, str]]:
    """(subject, state, count, message) of every forgotten-check-out alert in the hub's book, oldest first."""
    with hub.store_lock:
        found = [a for a in hub.alerting.book.alerts() if a.rule == "forgotten_checkout"]
    return [(a.subject, a.state, a.count, a.message) for a in found]


def test_the_morning_report_names_who_forgot_once_and_a_restart_does_not_repeat_it(
    broker: TestBroker, tmp_path: Path, model_dir: Path
) -> None:
    clock = Clock(utc(MON, 7))
    path = hub_config(tmp_path, broker, model_dir, extra=CONFIG)
    with running_hub(path, clock=clock) as hub:
        with hub.store_lock:
            for name in ("Ana", "Ben", "Cleo"):
                hub.store.add_person(name, clock.now, person_id=f"p-{name.lower()}")
        # Monday: Ana checks out; Ben and Cleo come in through the entrance-only door and never check out.
        clock.now = utc(MON, 18)
        feed(
            hub,
            make_event(device="door-1", seq=1, at=utc(MON, 8), person_id="p-ana"),
            make_event(device="door-2", seq=1, at=utc(MON, 17), person_id="p-ana"),
            make_event(device="door-1", seq=2, at=utc(MON, 9, 5), person_id="p-ben"),
            make_event(device="door-1", seq=3, at=utc(MON, 7, 50), person_id="p-cleo"),
        )
        # Tuesday: both doors deliver past Monday's end (04:00); at 08:59 nothing about Monday is said yet.
        clock.now = utc(TUE, 8, 59)
        feed(hub, health("door-1", clock.now), health("door-2", clock.now))
        hub.alerting.tick(clock.now, force=True)
        assert reports(hub) == []

        with probe(broker, SITE.hub_alert()) as published:
            clock.now = utc(TUE, 9)
            hub.alerting.tick(clock.now, force=True)
            assert published.wait_for(lambda ms: any(b"forgotten_checkout" in m.payload for m in ms), 10), (
                "the report is published on the alert topic"
            )
        (alert,) = [
            decoded
            for m in published.messages
            if isinstance(decoded := wire.decode(m.topic, m.payload)[1], wire.Alert)
            and decoded.rule == "forgotten_checkout"
        ]
        assert alert.state == "open" and alert.person_id is None
        # Ana checked out; arrival times are Berlin's
        expected = "2 people did not check out on Mon 2026-11-23 (signed off): Ben (in 09:05), Cleo (in 07:50)"
        assert alert.message == expected
        assert reports(hub) == [("forgotten check-outs on 2026-11-23", "open", 1, expected)]

        clock.now = utc(TUE, 11)
        hub.alerting.tick(clock.now, force=True)
        assert [r[2] for r in reports(hub)] == [1], "once per day"

    clock.now = utc(TUE, 11, 30)
    with running_hub(path, clock=clock) as hub:  # the same file: the hub restarted
        hub.alerting.tick(clock.now, force=True)
        assert [r[2] for r in reports(hub)] == [1], "a restart does not report Monday again"

        # Tuesday nobody came: Wednesday's report says nothing, and Monday's resolves itself a day after it was made.
        clock.now = utc(WED, 9)
        feed(hub, health("door-1", clock.now), health("door-2", clock.now))
        hub.alerting.tick(clock.now, force=True)
        assert [(r[0], r[1]) for r in reports(hub)] == [("forgotten check-outs on 2026-11-23", "resolved")]
        with hub.store_lock:
            assert hub.store.get_meta("forgotten_checkout_reported") == TUE.isoformat()


def test_the_morning_report_is_off_by_default(broker: TestBroker, tmp_path: Path, model_dir: Path) -> None:
    clock = Clock(utc(MON, 7))
    path = hub_config(tmp_path, broker, model_dir, extra=CONFIG.replace("enabled = true", ""))
    with running_hub(path, clock=clock) as hub:
        with hub.store_lock:
            hub.store.add_person("Ben", clock.now, person_id="p-ben")
        clock.now = utc(MON, 18)
        feed(hub, make_event(device="door-1", seq=1, at=utc(MON, 9), person_id="p-ben"))
        clock.now = utc(TUE, 9, 30)
        feed(hub, health("door-1", clock.now), health("door-2", clock.now))
        hub.sign_off(clock.now)
        hub.alerting.tick(clock.now, force=True)
        with hub.store_lock:
            assert [r.status for r in hub.store.attendance(MON)] == ["forgot_checkout"]
        assert reports(hub) == []


def test_best_within_keeps_the_earliest_time_with_the_better_photo_and_retention_keeps_that_photo(
    broker: TestBroker, tmp_path: Path, model_dir: Path, faces_dir: Path
) -> None:
    clock = Clock(utc(MON, 8, 10))
    # hub_config's text ends inside [attendance]: these two lines belong to it
    extra = 'first_in_photo = "best_within"\nfirst_in_photo_window_min = 5\n' + CONFIG
    path = hub_config(tmp_path, broker, model_dir, extra=extra)
    photo = (faces_dir / "Barack_Obama" / "obama.jpg").read_bytes()

    def seen(seq: int, at: datetime, quality: float) -> tuple[wire.Event, wire.Snapshot]:
        event = make_event(device="door-1", seq=seq, at=at, person_id="p-ana", quality=quality, has_snapshot=True)
        crop = wire.Snapshot(
            event_id=event.event_id, device="door-1", at=at, content_type="image/jpeg", width=1, height=1, data=photo
        )
        return event, crop

    with running_hub(path, clock=clock) as hub:
        with hub.store_lock:
            hub.store.add_person("Ana", clock.now, person_id="p-ana")
        blurred, sharp, late = seen(1, utc(MON, 8), 0.41), seen(2, utc(MON, 8, 3), 0.93), seen(3, utc(MON, 8, 6), 0.99)
        feed(hub, *blurred, *sharp, *late)
        with hub.store_lock:
            (row,) = hub.store.attendance(MON)
        assert row.first_in == utc(MON, 8), "the first-in time stays the earliest arrival"
        assert row.first_in_event == sharp[0].event_id, "the best photo within 5 minutes (08:06 is too late)"

        # Retention recognises the chosen photo as the attendance photo: plain snapshots go, it stays.
        with hub.store_lock:
            cut = retention.Cutoffs.at(clock.now, hub.config.retention)
            cut.by_kind["snapshots"] = clock.now + timedelta(seconds=1)
            counts = retention.purge(hub.store, cut)
            assert counts["snapshots"] == 2 and counts["attendance_photos"] == 0
            assert hub.store.load_snapshot(sharp[0].event_id) == photo
            assert hub.store.load_snapshot(blurred[0].event_id) is None
