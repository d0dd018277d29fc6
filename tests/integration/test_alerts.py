"""Alerts in the running hub through a real Mosquitto: folding, offline devices, acks, failing notifiers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ulid import ULID

from edge.protocol import wire
from edge.protocol.config import load_config
from edge.protocol.hub_client import HubClient
from edge.protocol.mqtt import Received
from hub.config import HubConfig
from hub.service import HubService
from hub.store import HubStore
from tests.helpers.brokers import TestBroker
from tests.helpers.factories import make_event
from tests.helpers.hub import Clock, HubStarter, feed, hub_config
from tests.helpers.mqtt import probe, settings_for
from tests.integration.test_edge_service import wait_until
from tests.unit.test_notify import SECRET, TOKEN, FakeTelegram, FakeWebhook

pytestmark = pytest.mark.integration

SITE = wire.Topics("hq")


@pytest.fixture
def servers() -> Iterator[tuple[FakeTelegram, FakeWebhook]]:
    with FakeTelegram() as telegram, FakeWebhook() as webhook:
        yield telegram, webhook


@pytest.fixture
def alert_hub(
    tmp_path: Path, servers: tuple[FakeTelegram, FakeWebhook], start_hub: HubStarter
) -> tuple[HubService, Clock]:
    telegram, webhook = servers
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "secret").write_text(SECRET.decode() + "\n")
    clock = Clock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    hub = start_hub(
        f"""
[schedule]
mode = "on"

[alerts.device_offline]
after_s = 5

[notify.telegram]
enabled = true
token_file = "{tmp_path / "token"}"
chat_ids = [111, 222]
base_url = "{telegram.url}"
min_severity = "warning"

[notify.webhook]
enabled = true
url = "{webhook.url}/hook"
secret_file = "{tmp_path / "secret"}"

[[cameras]]
device = "door-1"
role = "entrance"
""",
        clock=clock,
    )
    return hub, clock


def test_unknown_faces_fold_into_one_alert_that_is_published_and_notified(
    broker: TestBroker, alert_hub: tuple[HubService, Clock], servers: tuple[FakeTelegram, FakeWebhook]
) -> None:
    hub, clock = alert_hub
    telegram, webhook = servers
    with probe(broker, SITE.hub_alert()) as alerts:
        for seq in range(1, 11):
            clock.now += timedelta(seconds=20)
            feed(hub, make_event(seq=seq, at=clock.now))
        assert alerts.wait_for(lambda ms: len(ms) >= 10, 10)
    published = [wire.decode(m.topic, m.payload)[1] for m in alerts.messages]
    assert {a.alert_id for a in published if isinstance(a, wire.Alert)} == {hub.alerting.list()[0].alert_id}
    assert hub.alerting.list()[0].count == 10 and hub.alerting.list()[0].rule == "unknown_face"
    assert wait_until(lambda: len(telegram.messages) == 2, 10), "one notification per chat, not one per face"
    assert {chat for chat, _ in telegram.messages} == {111, 222}
    assert wait_until(lambda: len(webhook.bodies()) == 1, 10)
    assert webhook.bodies()[0]["alert"]["rule"] == "unknown_face"
    assert all(valid for _, _, valid in webhook.received), "the webhook is signed"


def test_device_offline_alert_opens_and_resolves_itself(alert_hub: tuple[HubService, Clock]) -> None:
    hub, clock = alert_hub
    offline = wire.Status(client="door-1", state="offline", at=None)
    hub.handle_batch([(Received(SITE.device_status("door-1"), wire.encode(offline), 1, True), 0.0)])
    hub.alerting.tick(clock.now, force=True)
    assert not [a for a in hub.alerting.list("open") if a.rule == "device_offline"], "not before after_s"
    clock.now += timedelta(seconds=6)
    hub.alerting.tick(clock.now, force=True)
    (alert,) = [a for a in hub.alerting.list("open") if a.rule == "device_offline"]
    assert alert.severity == "critical" and alert.device == "door-1"
    online = wire.Status(client="door-1", state="online", at=clock.now)
    hub.handle_batch([(Received(SITE.device_status("door-1"), wire.encode(online), 1, True), 0.0)])
    clock.now += timedelta(seconds=1)
    hub.alerting.tick(clock.now, force=True)
    assert hub.alerting.book.get(alert.alert_id).state == "resolved"


def test_alerts_are_listed_and_acknowledged_through_the_api(
    broker: TestBroker, alert_hub: tuple[HubService, Clock]
) -> None:
    hub, clock = alert_hub
    feed(hub, make_event(seq=1, at=clock.now))
    with HubClient(settings_for(broker), SITE, "tui-alerts") as client:
        (listed,) = client.call("alerts.list", {"state": "open"})
        acknowledged = client.call("alerts.acknowledge", {"alert_id": listed["alert_id"]})
        assert acknowledged["state"] == "acknowledged" and acknowledged["acknowledged_by"] == "tui-alerts"
        assert client.call("alerts.list", {"state": "open"}) == []
        with pytest.raises(Exception, match="not_found"):
            client.call("alerts.acknowledge", {"alert_id": str(ULID())})
    assert [row["action"] for row in hub.store.audit_log(listed["alert_id"])] == ["alert.acknowledge"]


def test_a_failing_notifier_raises_its_own_alert_and_clears_it(
    alert_hub: tuple[HubService, Clock], servers: tuple[FakeTelegram, FakeWebhook]
) -> None:
    hub, clock = alert_hub
    _, webhook = servers
    with webhook.lock:
        webhook.fail_times = 1000
    feed(hub, make_event(seq=1, at=clock.now))

    def failing_alerts() -> list[str]:
        hub.alerting.tick(clock.now)
        return [a.state for a in hub.alerting.list() if a.rule == "notifier_failing"]

    assert wait_until(lambda: failing_alerts() == ["open"], 30), "three failed deliveries make the notifier failing"
    with webhook.lock:
        webhook.fail_times = 0
    assert wait_until(lambda: failing_alerts() == ["resolved"], 60), "a later successful delivery clears it"


def test_home_assistant_discovery_follows_people_devices_and_births(
    broker: TestBroker, tmp_path: Path, model_dir: Path
) -> None:
    path = hub_config(tmp_path, broker, model_dir)
    path.write_text(path.read_text() + '\n[homeassistant]\nenabled = true\n\n[[cameras]]\ndevice = "door-1"\n')
    config = load_config(HubConfig, path, "hub", {})
    store = HubStore.from_settings(config.hub)
    person_id = store.add_person("Ana Costa", wire.now_utc())
    hub = HubService(config, store, model_id="m:x", embedding_size=128)
    with probe(broker, "homeassistant/#", f"{SITE.base}/ha/#") as ha:
        hub.start()
        try:
            assert ha.wait_for(
                lambda ms: any(m.topic.endswith("/config") and b"Ana Costa" in m.payload for m in ms), 15
            )
            assert ha.wait_for(
                lambda ms: any(b'"connectivity"' in m.payload for m in ms if "binary_sensor" in m.topic), 15
            ), "each door device is a connectivity entity"
            configs = [m for m in ha.messages if m.topic.endswith("/config")]
            assert any(m.topic.startswith("homeassistant/device_tracker/") for m in configs)
            count = len(configs)
            hub.link.publish("homeassistant/status", b"online", qos=1)  # Home Assistant restarted
            assert ha.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("/config")]) >= 2 * count, 15)
            with HubClient(settings_for(broker), SITE, "tui-ha") as client:
                client.call("people.remove", {"person_id": person_id}, timeout=30)
            tracker = next(m.topic for m in configs if m.topic.startswith("homeassistant/device_tracker/"))
            assert ha.wait_for(lambda ms: any(m.topic == tracker and m.payload == b"" for m in ms), 15)
        finally:
            hub.stop()
            store.close()


def test_home_assistant_gets_only_the_states_that_changed_on_each_board(
    broker: TestBroker, start_hub: HubStarter
) -> None:
    from hub.homeassistant import ha_person_topics

    hub = start_hub('[homeassistant]\nenabled = true\n\n[[cameras]]\ndevice = "door-1"\nrole = "entrance"\n')
    people = {name: hub.store.add_person(name, wire.now_utc()) for name in ("Ana Costa", "Ben Ode", "Cleo Park")}
    hub.mark_people_changed()
    states = {name: ha_person_topics(SITE, pid)[1] for name, pid in people.items()}
    with probe(broker, f"{SITE.base}/ha/#") as ha:
        # The discovery pass sends every state once (retained), Ana's not_home among them.
        assert ha.wait_for(lambda ms: {m.topic for m in ms} >= set(states.values()), 15)
        time.sleep(0.5)
        before = len(ha.messages)
        for seq, name in enumerate(("Ana Costa", "Ana Costa", "Ben Ode"), start=1):
            feed(hub, make_event(device="door-1", seq=seq, at=wire.now_utc(), person_id=people[name]))
            time.sleep(0.4)  # one board each (they are coalesced to one each 0.2 s)
        assert ha.wait_for(lambda ms: any(m.topic == states["Ben Ode"] and m.payload == b"home" for m in ms), 15)
        time.sleep(0.5)
        later = [m.topic for m in ha.messages[before:] if m.topic in states.values()]
    # Before the fix every board re-sent every person's state: Cleo's three times, Ana's three times.
    assert later.count(states["Ana Costa"]) == 1, later  # not_home -> home once; her second sighting changes nothing
    assert later.count(states["Ben Ode"]) == 1, later
    assert states["Cleo Park"] not in later, later


def test_a_pause_set_through_the_api_gates_alerts_and_survives_a_restart(
    broker: TestBroker, alert_hub: tuple[HubService, Clock]
) -> None:
    hub, clock = alert_hub
    until = clock.now + timedelta(hours=2)
    with HubClient(settings_for(broker), SITE, "tui-pause") as client:
        state = client.call("schedule.set_mode", {"mode": "on", "paused_until": until.isoformat()})
        assert state["paused_until"] is not None and state["work_time_now"] is False
        with pytest.raises(Exception, match="bad_params"):
            client.call("schedule.set_mode", {"mode": "sometimes"})
    offline = wire.Status(client="door-1", state="offline", at=None)
    hub.handle_batch([(Received(SITE.device_status("door-1"), wire.encode(offline), 1, True), 0.0)])
    clock.now += timedelta(minutes=10)
    hub.alerting.tick(clock.now, force=True)
    assert hub.alerting.list("open") == [], "nothing fires during a pause"
    restarted = HubService(hub.config, hub.store, model_id="m:x", embedding_size=128, clock=clock)
    assert restarted.alerting.history.latest.schedule.paused_until == until, "the pause survives a restart"
    clock.now = until + timedelta(minutes=1)
    hub.alerting.tick(clock.now, force=True)
    assert [a.rule for a in hub.alerting.list("open")] == ["device_offline"], "after the pause the rule fires again"


def test_telegram_attendance_command_answers_with_first_in_photos(
    alert_hub: tuple[HubService, Clock], servers: tuple[FakeTelegram, FakeWebhook], faces_dir: Path
) -> None:
    hub, clock = alert_hub
    telegram, _ = servers
    person_id = hub.store.add_person("Ana Costa", clock.now)
    event = make_event(
        device="door-1", seq=1, at=clock.now, person_id=person_id, score=0.8, margin=0.3, quality=0.9, has_snapshot=True
    )
    photo = (faces_dir / "Barack_Obama" / "obama.jpg").read_bytes()
    snapshot = wire.Snapshot(
        event_id=event.event_id, device="door-1", at=clock.now, content_type="image/jpeg", width=1, height=1, data=photo
    )
    feed(hub, event, snapshot)
    telegram.push(111, f"/attendance {clock.now.date().isoformat()}")
    assert wait_until(lambda: any(p[2] == photo for p in telegram.photos), 40), "the first-in photo is sent"
    assert any("Ana Costa: in 10:00" in text for _, text in telegram.messages), "09:00 UTC is 10:00 in Berlin"
    assert any(p[1] == "Ana Costa, first in 10:00" for p in telegram.photos)


def test_telegram_attendance_defaults_to_the_current_attendance_day_in_local_time(
    alert_hub: tuple[HubService, Clock], servers: tuple[FakeTelegram, FakeWebhook]
) -> None:
    """At 00:30 Berlin on Tuesday, before the 04:00 day start, /attendance answers Monday with local times."""
    hub, clock = alert_hub
    telegram, _ = servers
    person_id = hub.store.add_person("Ana Costa", clock.now)
    late = datetime(2026, 11, 23, 21, 45, tzinfo=UTC)  # Monday 22:45 in Berlin
    clock.now = late
    feed(hub, make_event(device="door-1", seq=1, at=late, person_id=person_id, score=0.8, margin=0.3))
    clock.now = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)  # Tuesday 00:30 in Berlin, the UTC date still Monday
    telegram.push(111, "/attendance")
    assert wait_until(lambda: any("Attendance" in text for _, text in telegram.messages), 20)
    text = next(text for _, text in telegram.messages if "Attendance" in text)
    assert text.startswith("Attendance 2026-11-23 (Europe/Berlin time):"), text
    assert "Ana Costa: in 22:45" in text


def test_alert_texts_show_site_local_time_and_the_webhook_keeps_iso_utc(
    alert_hub: tuple[HubService, Clock], servers: tuple[FakeTelegram, FakeWebhook]
) -> None:
    """A device_offline alert at 10:00 Berlin: Telegram and the webhook's text say 10:00 CET, its JSON says 09:00Z."""
    hub, clock = alert_hub
    telegram, webhook = servers
    offline = wire.Status(client="door-1", state="offline", at=None)
    hub.handle_batch([(Received(SITE.device_status("door-1"), wire.encode(offline), 1, True), 0.0)])
    clock.now += timedelta(seconds=6)
    hub.alerting.tick(clock.now, force=True)
    assert wait_until(lambda: any("CRITICAL" in text for _, text in telegram.messages), 20)
    text = next(text for _, text in telegram.messages if "CRITICAL" in text)
    assert "since 2026-11-23 10:00 CET" in text, text
    assert wait_until(lambda: any(b.get("type") == "alert" for b in webhook.bodies()), 20)
    body = next(b for b in webhook.bodies() if b.get("type") == "alert")
    assert "since 2026-11-23 10:00 CET" in body["text"]
    assert body["alert"]["first_at"] == "2026-11-23T09:00:06Z"  # ISO 8601 UTC in JSON


def test_device_silent_fires_for_a_quiet_device_but_not_a_retired_or_offline_one(
    alert_hub: tuple[HubService, Clock],
) -> None:
    """After ``after_min`` (30) without a word: door-7 alerts; retired door-8 and offline door-9 do not."""
    hub, clock = alert_hub
    with hub.store_lock:
        for device in ("door-7", "door-8", "door-9"):
            hub.store.upsert_device(device, role="both", status="online", status_at=clock.now, last_seen=clock.now)
        hub.store.upsert_device("door-8", retired_at=clock.now)
        hub.store.upsert_device("door-9", status="offline", status_at=clock.now)

    def silent() -> set[str]:
        return {a.subject for a in hub.alerting.list("open") if a.rule == "device_silent"}

    clock.now += timedelta(minutes=30)
    hub.alerting.tick(clock.now, force=True)
    assert silent() == set(), "not at exactly 30 min"
    clock.now += timedelta(minutes=1)
    hub.alerting.tick(clock.now, force=True)
    assert silent() == {"door-7"}
    (alert,) = [a for a in hub.alerting.list("open") if a.rule == "device_silent"]
    assert alert.severity == "warning" and "door-7 silent since" in alert.message
    assert {a.subject for a in hub.alerting.list("open") if a.rule == "device_offline"} == {"door-9"}
    with hub.store_lock:
        hub.store.upsert_device("door-7", last_seen=clock.now)  # it speaks again
    clock.now += timedelta(seconds=1)
    hub.alerting.tick(clock.now, force=True)
    assert silent() == set()
    assert hub.alerting.book.get(alert.alert_id).state == "resolved"
