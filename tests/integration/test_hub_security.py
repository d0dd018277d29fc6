"""Who may ask the hub what, against a real broker, hub and SQLite.

Supervisor topics and roles, replies only to the asker, enrolment confined to the import folder, galleries only for
registered doors, one client id per TUI session.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import JsonValue
from ulid import ULID

from edge.protocol import wire
from edge.protocol.config import load_config
from edge.protocol.hub_client import HubClient, HubRequestFailed, new_session
from edge.protocol.mqtt import MqttLink
from hub.api import METHOD_ROLES
from hub.config import HubConfig
from hub.enrol import PhotoAssessment
from hub.service import HubService
from tests.helpers.brokers import TestBroker
from tests.helpers.hub import HubStarter
from tests.helpers.mqtt import Collector, probe, settings_for

pytestmark = pytest.mark.integration

SITE = wire.Topics("hq")
ROLES = """
[supervisors.vera]
role = "viewer"

[supervisors.otto]
role = "operator"

[supervisors.ada]
role = "admin"
"""


def _audit(hub: HubService, action: str) -> list[dict[str, Any]]:
    with hub.store_lock:
        return [row for row in hub.store.audit_log() if row["action"] == action]


def test_every_api_method_has_a_role(start_hub: HubStarter) -> None:
    hub = start_hub()
    assert set(hub.api.methods) == set(METHOD_ROLES)


def test_roles_decide_and_refusals_are_replied_logged_and_audited(
    broker: TestBroker, start_hub: HubStarter, caplog: pytest.LogCaptureFixture
) -> None:
    hub = start_hub(ROLES)
    with hub.store_lock:
        person = hub.store.add_person("Canary Zyx", wire.now_utc())
    settings = settings_for(broker)
    with HubClient(settings, SITE, "vera") as vera, HubClient(settings, SITE, "otto") as otto:
        assert [p["person_id"] for p in vera.call("people.list")] == [person]  # a viewer reads
        with pytest.raises(HubRequestFailed) as refused:
            vera.call("people.remove", {"person_id": person})
        assert refused.value.code == "forbidden"
        assert refused.value.message == "people.remove needs the admin role; supervisor 'vera' is a viewer"
        with pytest.raises(HubRequestFailed, match=r"people\.add needs the operator role"):
            vera.call("people.add", {"name": "Nobody"})
        added = otto.call("people.add", {"name": "Olga Op"})  # an operator enrols
        needs_admin = r"schedule\.set_mode needs the admin role; supervisor 'otto' is an operator"
        with pytest.raises(HubRequestFailed, match=needs_admin):
            otto.call("schedule.set_mode", {"mode": "off"})
    with HubClient(settings, SITE, "mallory") as mallory, pytest.raises(HubRequestFailed) as unknown:
        mallory.call("people.list")
    assert unknown.value.code == "forbidden" and "'mallory' is not listed" in unknown.value.message
    with HubClient(settings, SITE, "ada") as ada:
        assert ada.call("people.remove", {"person_id": person})["person_id"] == person
    refusals = _audit(hub, "request.refused")
    assert {(row["actor"], row["details"]["method"]) for row in refusals} == {
        ("vera", "people.remove"),
        ("vera", "people.add"),
        ("otto", "schedule.set_mode"),
        ("mallory", "people.list"),
    }
    assert [row["actor"] for row in _audit(hub, "person.add")] == ["otto"]
    assert any("refused people.remove from supervisor 'vera'" in r.getMessage() for r in caplog.records)
    assert added["person_id"]


def test_the_audit_names_the_topic_not_the_payload(broker: TestBroker, start_hub: HubStarter) -> None:
    hub = start_hub()  # no [supervisors]: everyone is admin
    session = new_session()
    request = wire.Request(
        request_id=str(ULID()),
        client="ada",  # a claim the hub must not believe
        sent_at=wire.now_utc(),
        method="people.add",
        params={"name": "Claimed By Ada"},
        reply_to=SITE.supervisor_reply("eve", session),
    )
    with probe(broker, SITE.supervisor_reply("eve", session), client_id="eve-listens") as replies:
        link = MqttLink(settings_for(broker), client_id=f"eve:{session}", clean_session=True)
        link.start()
        assert link.wait_connected(10)
        try:
            link.publish(SITE.supervisor_request("eve"), request, qos=1)
            assert replies.wait_for(lambda m: len(m) == 1, 10)
        finally:
            link.stop()
    assert [row["actor"] for row in _audit(hub, "person.add")] == ["eve"]


def test_a_reply_to_elsewhere_gets_no_reply_anywhere(
    broker: TestBroker, start_hub: HubStarter, caplog: pytest.LogCaptureFixture
) -> None:
    hub = start_hub(ROLES)
    victims = [
        SITE.supervisor_reply("ada", "s1"),  # another supervisor's session
        SITE.device_command("door-1"),  # a door's command topic, with the hub's rights
        "rollcall/other-site/supervisor/vera/reply/s1",  # the right name on another site
        "anything/at/all",
    ]
    session = new_session()
    with probe(broker, "#", client_id="watch-everything") as everything:
        link = MqttLink(settings_for(broker), client_id=f"vera:{session}", clean_session=True)
        link.start()
        assert link.wait_connected(10)
        sent = []
        try:
            for reply_to in victims:
                request = wire.Request(
                    request_id=str(ULID()),
                    client="vera",
                    sent_at=wire.now_utc(),
                    method="people.list",
                    reply_to=reply_to,
                )
                sent.append(request.request_id)
                link.publish(SITE.supervisor_request("vera"), request, qos=1)
            # A good request afterwards: once its reply is here, the hub has handled the bad ones before it.
            good = wire.Request(
                request_id=str(ULID()),
                client="vera",
                sent_at=wire.now_utc(),
                method="people.list",
                reply_to=SITE.supervisor_reply("vera", session),
            )
            link.publish(SITE.supervisor_request("vera"), good, qos=1)
            assert everything.wait_for(lambda m: any(x.topic == good.reply_to for x in m), 10)
        finally:
            link.stop()
        replies = []
        for message in everything.messages:
            if message.topic.startswith(("rollcall/hq/supervisor/", "rollcall/other-site/")) and "/reply/" in (
                message.topic
            ):
                _, payload = wire.decode(message.topic, message.payload)
                replies.append((message.topic, getattr(payload, "request_id", None)))
            assert message.topic not in victims[1:], f"the hub published on {message.topic}"
    assert replies == [(good.reply_to, good.request_id)]
    refusals = _audit(hub, "request.refused")
    assert sorted(row["details"]["reply_to"] for row in refusals) == sorted(victims)
    assert all(row["actor"] == "vera" for row in refusals)
    logged = [r.getMessage() for r in caplog.records if "no reply sent" in r.getMessage()]
    assert len(logged) == 4 and "supervisor 'vera'" in logged[0] and victims[0] in logged[0]


class RecordingAssessor:
    """Stands in for the face model: records which files the hub hands it and makes a template of each."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def assess_photos(self, paths: list[str]) -> list[PhotoAssessment]:
        with self.lock:
            self.seen.extend(paths)
        return [PhotoAssessment(p, np.ones(128, dtype=np.float32) / np.sqrt(128), 0.9, None) for p in paths]

    def embed_capture(self, jpeg: bytes) -> tuple[Any, float, str | None]:
        return None, 0.0, "not used"


def test_enrolment_reads_only_from_the_import_folder(broker: TestBroker, start_hub: HubStarter, tmp_path: Path) -> None:
    imports = tmp_path / "import"
    (imports / "alice").mkdir(parents=True)
    (imports / "alice" / "1.jpg").write_bytes(b"jpeg")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "hidden.jpg").write_bytes(b"jpeg")
    (imports / "alice" / "escape.jpg").symlink_to(outside / "hidden.jpg")  # inside a folder, pointing out
    (imports / "elsewhere").symlink_to(outside)  # a folder link pointing out
    assessor = RecordingAssessor()
    hub = start_hub(ROLES, enrolment=assessor, import_dir=imports)
    with HubClient(settings_for(broker), SITE, "otto") as otto:
        person = otto.call("people.add", {"name": "Alice"})["person_id"]

        def refused(paths: list[JsonValue]) -> str:
            with pytest.raises(HubRequestFailed) as caught:
                otto.call("people.enrol_photos", {"person_id": person, "paths": paths}, timeout=20)
            assert caught.value.code == "forbidden"
            return caught.value.message

        existing = refused([str(outside / "hidden.jpg")])
        missing = refused([str(outside / "no-such.jpg")])
        assert "outside the hub's import folder" in existing and "hub.import_dir" in existing
        assert existing.replace("hidden", "X") == missing.replace("no-such", "X"), "existence must not show"
        refused([str(imports / ".." / "secret" / "hidden.jpg")])
        refused(["../secret/hidden.jpg"])
        refused([str(imports / "elsewhere" / "hidden.jpg")])
        refused(["/etc"])
        result = otto.call("people.enrol_photos", {"person_id": person, "paths": ["alice"]}, timeout=20)
    assert result["enrolled"] == 1
    assert assessor.seen == [str((imports / "alice" / "1.jpg").resolve())], "the symlink leading out was left out"
    assert [row["actor"] for row in _audit(hub, "person.enrol_photos")] == ["otto"]


def test_enrolment_from_photos_is_off_without_an_import_folder(broker: TestBroker, start_hub: HubStarter) -> None:
    start_hub(enrolment=RecordingAssessor())
    with HubClient(settings_for(broker), SITE, "cli") as client:
        person = client.call("people.add", {"name": "Alice"})["person_id"]
        with pytest.raises(HubRequestFailed) as caught:
            client.call("people.enrol_photos", {"person_id": person, "paths": ["/tmp"]}, timeout=20)
    assert caught.value.code == "unavailable" and "[hub] import_dir" in caught.value.message


def test_an_unknown_device_is_refused_and_gets_no_gallery(
    broker: TestBroker, start_hub: HubStarter, tmp_path: Path
) -> None:
    assert HubConfig().hub.accept_unknown_devices is False, "a provisioned site refuses unknown devices by default"
    galleries = Collector()
    watch = MqttLink(settings_for(broker), client_id="gallery-watch", on_message=galleries)
    for device in ("door-1", "door-x"):
        watch.subscribe(SITE.device_gallery(device))
    watch.start()
    assert watch.wait_subscribed(10)
    try:
        hub = start_hub('[[cameras]]\ndevice = "door-1"\n', accept_unknown_devices=False)
        with hub.store_lock:
            hub.store.add_person("Someone", wire.now_utc())
        stranger = MqttLink(
            settings_for(broker),
            client_id="door-x",
            status_topic=SITE.device_status("door-x"),
            status_entity="door-x",
        )
        stranger.start()
        assert stranger.wait_connected(10)
        try:
            assert galleries.wait_for(lambda m: any(x.topic == SITE.device_gallery("door-1") for x in m), 15)
            hub.mark_galleries_dirty()  # one more round after the stranger spoke
            assert galleries.wait_for(
                lambda m: len([x for x in m if x.topic == SITE.device_gallery("door-1")]) >= 2, 15
            )
        finally:
            stranger.stop()
    finally:
        watch.stop()
    assert galleries.on(SITE.device_gallery("door-x")) == []
    with hub.store_lock:
        assert hub.store.get_device("door-x") is None
        assert hub.store.dead_letter_count() >= 1


def test_two_sessions_of_one_supervisor_have_their_own_client_ids_and_stay_connected(
    broker: TestBroker, start_hub: HubStarter, tmp_path: Path
) -> None:
    from tui.cli import session_links
    from tui.config import TuiConfig

    start_hub(ROLES)
    path = tmp_path / "tui.toml"
    path.write_text(
        f'[site]\nid = "hq"\n\n[mqtt]\nport = {broker.port}\nusername = "vera"\nkeepalive_s = 5\n'
        "reconnect_min_s = 1\nreconnect_max_s = 2\n"
    )
    config = load_config(TuiConfig, path, "tui", {})
    assert config.supervisor_name == "vera"
    sessions = [session_links(config, new_session()) for _ in range(2)]
    ids = {link.link.client_id for pair in sessions for link in pair if link.link is not None}
    assert len(ids) == 4 and all(i.startswith("vera:") for i in ids)
    drops: list[bool] = []
    for live, hub_client in sessions:
        live.on_connection_change(lambda up: drops.append(up) if not up else None)
        live.start()
        hub_client.start()
    try:
        for _ in range(3):
            for _, hub_client in sessions:
                assert hub_client.call("people.list") == []
            threading.Event().wait(1.0)
        assert all(live.connected and client.link.connected for live, client in sessions)
        assert drops == [], "a session was knocked off the broker"
    finally:
        for live, hub_client in sessions:
            hub_client.close()
            live.stop()
