"""The real ansible/site.yml on three booted targets: attendance, idempotence, an ACL matrix, two TUI sessions.

A face at the door becomes attendance, a second run changes nothing, an ACL matrix against the deployed broker (with
revoke.yml), two TUI sessions of one supervisor side by side, the units' exposure as they run.

The tests of this module share one deployed site and run in file order (the revocation comes after the second run,
which would otherwise issue the revoked identity a new certificate).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import JsonValue
from ulid import ULID

from edge.protocol import wire
from edge.protocol.config import MqttSettings, TlsSettings
from edge.protocol.hub_client import HubClient, HubRequestFailed
from tests.conftest import REPO_ROOT
from tests.deploy import site as S
from tests.deploy import targets as deploy
from tests.deploy.conftest import record_timing, run_ansible
from tests.deploy.test_broker_identity import Authority

#: The first test also waits for the shared site (site.yml on bare targets: minutes on a busy 2-core machine), the
#: upgrade tests for two pip installs and, when a door does not come online, its deadline twice.
pytestmark = pytest.mark.timeout(900)

TOPICS = wire.Topics(S.SITE_ID, S.PREFIX)
IMPORT_DIR = "/var/lib/rollcall/import"
HUB_DB = "/var/lib/rollcall/hub/rollcall.db"


# --- the deployed site ------------------------------------------------------------------------------------------


@dataclass
class Deployed:
    """The site after a first run of site.yml, and what the tests learn about it along the way."""

    site: S.Site
    targets: deploy.TargetSet
    ansible_bin: Path
    first_run_s: float
    matrix: list[tuple[str, str, str]] = field(default_factory=list)

    def playbook(
        self, playbook: str, *extra: str, timeout: float = 900, may_fail: bool = False
    ) -> tuple[float, dict[str, Any]]:
        """Run a playbook of ansible/ against the test inventory; its seconds and the `json` callback's document.

        A failed run raises, naming the failed tasks, unless `may_fail` (the document's `stats` then tell).
        """
        started = time.monotonic()
        done = run_ansible(
            self.ansible_bin,
            "ansible-playbook",
            "-i",
            str(self.site.inventory),
            playbook,
            *extra,
            cwd=S.ANSIBLE_DIR,
            timeout=timeout,
            json_output=True,
        )
        seconds = time.monotonic() - started
        # Kept beside the inventory (under pytest's temporary folders) for a look at a slow or failed run.
        runs = len(list(self.site.inventory.parent.glob("run-*.json")))
        (self.site.inventory.parent / f"run-{runs + 1:02d}-{playbook.removesuffix('.yml')}.json").write_text(
            done.stdout
        )
        try:
            document: dict[str, Any] = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise AssertionError(
                f"{playbook}: no JSON output (exit {done.returncode}):\n{S.tail(done.stdout)}\n{S.tail(done.stderr)}"
            ) from None
        if done.returncode != 0 and not may_fail:
            raise AssertionError(
                f"{playbook} failed (exit {done.returncode}): {failures(document)}\n{S.tail(done.stderr, 3000)}"
            )
        return seconds, document

    def ssh(self, host: str, command: str, timeout: float = 120) -> str:
        """Run a command as root on a target; its stdout."""
        return self.targets[host].ssh(command, timeout=timeout).stdout

    def settings(self, identity: str, *, client_cert: str | None = None) -> MqttSettings:
        """Client settings for the deployed broker (from the controller) as `identity`, with its own certificate."""
        cert, key = self.site.cert(client_cert or identity)
        return MqttSettings(
            host="127.0.0.1",
            port=self.site.broker_port,
            username=identity,
            tls=TlsSettings(enabled=True, ca_file=self.site.ca, cert_file=cert, key_file=key),
        )

    def hub_client(self, name: str) -> HubClient:
        """A request/reply client of supervisor `name`; `with` connects and closes it."""
        return HubClient(self.settings(name), TOPICS, name)

    def record(self, attempt: str, expected: str, observed: str) -> None:
        """One line of the ACL matrix."""
        self.matrix.append((attempt, expected, observed))

    def broker_log(self, since: str) -> str:
        """Mosquitto's log lines (the journal on the hub target) since a `journalctl --since` time."""
        return self.ssh(S.HUB, f"journalctl -u mosquitto --no-pager -o cat --since {shlex.quote(since)}")

    def audit(self) -> list[tuple[str, str, str]]:
        """(actor, action, details) of every row of the hub's audit log, read inside the hub target."""
        script = (
            "import json, sqlite3; c = sqlite3.connect('file:" + HUB_DB + "?mode=ro', uri=True); "
            "print(json.dumps(c.execute('SELECT actor, action, details FROM audit ORDER BY id').fetchall()))"
        )
        out = self.ssh(S.HUB, f"runuser -u rollcall -- python3 -c {shlex.quote(script)}")
        return [tuple(row) for row in json.loads(out)]


def failures(document: dict[str, Any]) -> list[str]:
    """`task on host: message` for every failed task of a `json` callback document."""
    found = []
    for play in document.get("plays", []):
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("failed") or result.get("unreachable"):
                    message = result.get("msg") or result.get("stderr") or result
                    found.append(f"{task['task']['name']} on {host}: {str(message)[:1500]}")
    return found


def slowest(document: dict[str, Any], count: int = 5) -> list[str]:
    """`seconds task` of the `count` slowest tasks of a run (the json callback's task durations)."""
    spans = []
    for play in document.get("plays", []):
        for task in play["tasks"]:
            duration = task["task"].get("duration", {})
            if "start" in duration and "end" in duration:
                start, end = (
                    dt.datetime.fromisoformat(duration[key].replace("Z", "+00:00")) for key in ("start", "end")
                )
                spans.append(((end - start).total_seconds(), task["task"]["name"]))
    return [f"{seconds:.1f} s {name}" for seconds, name in sorted(spans, reverse=True)[:count]]


def changed(document: dict[str, Any]) -> list[str]:
    """`task on host` for every task that reported a change."""
    found = []
    for play in document.get("plays", []):
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("changed"):
                    found.append(f"{task['task']['name']} on {host}")
    return found


@pytest.fixture(scope="module")
def deployed(
    site_targets: deploy.TargetSet,
    wheelhouse: deploy.Wheelhouse,
    ansible_bin: Path,
    model_dir: Path,
    faces_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    progress: Callable[[str], None],
) -> Deployed:
    """site.yml applied once to hub (+ broker), door-1 (a door clip as its camera, with door-2) and pc-1."""
    folder = tmp_path_factory.mktemp("site")
    video, truth, enrolment = S.make_clip(faces_dir, folder / "clip")
    site_targets[S.DOOR].put(video, f"{S.CLIP_DIR}/{video.name}")
    site_targets[S.WORKSTATION].ssh(f"id {S.DESKTOP_USER} || useradd --create-home --shell /bin/bash {S.DESKTOP_USER}")
    port = deploy.free_port()
    inventory = S.write_site_inventory(
        site_targets,
        folder / "inventory",
        wheelhouse=wheelhouse.path,
        model_dir=model_dir,
        broker_port=port,
        clip_name=video.name,
        version=wheelhouse.rollcall_wheel.name.split("-")[1],
    )
    site = S.Site(inventory, folder / "inventory" / "pki", port, truth, enrolment)
    deployed = Deployed(site, site_targets, ansible_bin, 0.0)
    progress("applying ansible/site.yml to hub, door-1 and pc-1")
    seconds, document = deployed.playbook("site.yml")
    deployed.first_run_s = seconds
    stats = document["stats"]
    line = f"site.yml, first run (a whole site from bare targets): {seconds:.1f} s; changed " + ", ".join(
        f"{host}={counts['changed']}" for host, counts in sorted(stats.items())
    )
    record_timing(line)
    progress(line)
    for host in (S.HUB, S.DOOR, S.WORKSTATION):
        assert stats[host]["failures"] == 0 and stats[host]["unreachable"] == 0, stats
    return deployed


# --- 1. a face at the door becomes attendance ----------------------------------------------------------------


def test_a_face_in_the_door_clip_becomes_an_attendance_row(deployed: Deployed) -> None:
    hub = deployed.targets[S.HUB]
    # The photos to enrol go into the hub's import folder (the only place people.enrol_photos reads).
    for person, photos in deployed.site.enrolment.items():
        for photo in photos:
            hub.put(photo.resolve(), f"{IMPORT_DIR}/{person}/{photo.name}")
    deployed.ssh(S.HUB, f"chown -R root:rollcall {IMPORT_DIR} && chmod -R u=rwX,g=rX,o= {IMPORT_DIR}")
    known: dict[str, str] = {}
    with deployed.hub_client("alice") as alice:
        for person, photos in deployed.site.enrolment.items():
            person_id = alice.call("people.add", {"name": person})["person_id"]
            paths: list[JsonValue] = [f"{IMPORT_DIR}/{person}/{photo.name}" for photo in photos]
            result = alice.call("people.enrol_photos", {"person_id": person_id, "paths": paths}, timeout=120)
            assert result["enrolled"] >= 1, result
            known[person_id] = person
        today = dt.datetime.now(dt.UTC).date().isoformat()

        def attendance() -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = alice.call("attendance.day", {"date": today})
            return [row for row in rows if row["person_id"] in known and row["first_in"]]

        started = time.monotonic()
        rows = S.wait_for(attendance, timeout=240, interval=3)
        waited = time.monotonic() - started
        events = alice.call("events.recent", {"limit": 200})
    assert rows, f"no attendance row within 240 s of enrolment; recent events: {events[:10]}"
    door_events = [e for e in events if e["device"] == S.DOOR and e["person_id"] in known]
    assert door_events, events[:10]
    print(
        f"\nattendance after {waited:.0f} s: "
        + ", ".join(f"{known[r['person_id']]} in at {r['first_in']}" for r in rows)
    )
    # Over TLS with door-1's own certificate: the broker names the client, its user name and its certificate's CN.
    log = deployed.ssh(S.HUB, "journalctl -u mosquitto --no-pager -o cat")
    assert "as door-1 " in log and "u'door-1'" in log, log[-3000:]
    edge_config = deployed.ssh(S.DOOR, "cat /etc/rollcall/edge-door-1.toml")
    assert 'cert_file = "/etc/rollcall/tls/door-1.crt"' in edge_config and "enabled = true" in edge_config


# --- 2. a second run changes nothing ---------------------------------------------------------------------------


def test_a_second_run_of_site_yml_changes_nothing(deployed: Deployed) -> None:
    seconds, document = deployed.playbook("site.yml")
    stats = document["stats"]
    line = f"site.yml, second run: {seconds:.1f} s; changed " + ", ".join(
        f"{host}={counts['changed']}" for host, counts in sorted(stats.items())
    )
    record_timing(line)
    record_timing("  slowest tasks of the second run: " + "; ".join(slowest(document)))
    print(f"\n{line}")
    assert all(counts["changed"] == 0 for counts in stats.values()), changed(document)


def test_tls_keys_belong_to_their_service_alone(deployed: Deployed) -> None:
    """Each key is 0600 and its service's own; nothing warns about it; a key opened to its group is still warned."""
    owners = {
        (S.HUB, "hub"): "rollcall",
        (S.DOOR, S.DOOR): "rollcall",
        (S.DOOR, S.SPARE_DOOR): "rollcall",
        # The agent runs in the desktop user's session (a user unit): the key is that user's.
        (S.WORKSTATION, S.WORKSTATION): S.DESKTOP_USER,
    }
    for (host, identity), owner in owners.items():
        observed = deployed.ssh(host, f"stat -c '%U %a' /etc/rollcall/tls/{identity}.key").strip()
        assert observed == f"{owner} 600", (host, identity, observed)
    checks = [
        (S.HUB, "rollcall", "hub", "/etc/rollcall/hub.toml"),
        (S.DOOR, "rollcall", "edge", f"/etc/rollcall/edge-{S.DOOR}.toml"),
        (S.DOOR, "rollcall", "edge", f"/etc/rollcall/edge-{S.SPARE_DOOR}.toml"),
        (S.WORKSTATION, S.DESKTOP_USER, "agent", "/etc/rollcall/agent.toml"),
    ]
    for host, user, role, config in checks:
        # As the account that runs the service: it can read its key (check-config loads it) and hears no warning.
        done = deployed.targets[host].ssh(
            f"runuser -u {user} -- /opt/rollcall/current/bin/rollcall {role} check-config {config}", check=False
        )
        assert done.returncode == 0 and ": OK:" in done.stdout, (host, config, done.stdout, done.stderr)
        assert "warning" not in done.stderr, (host, config, done.stderr)
    for host, unit in [
        (S.HUB, "rollcall-hub"),
        (S.DOOR, f"rollcall-edge@{S.DOOR}"),
        (S.DOOR, f"rollcall-edge@{S.SPARE_DOOR}"),
    ]:
        journal = deployed.ssh(host, f"journalctl -u {unit} --no-pager -o cat")
        assert "Started" in journal, (unit, journal[-1000:])  # the control: this is the unit's journal
        assert "readable by group or others" not in journal, (unit, journal[-3000:])
    # The warning stays for a key that really is open: door-2's key given to its group for a moment.
    key = f"/etc/rollcall/tls/{S.SPARE_DOOR}.key"
    try:
        deployed.ssh(S.DOOR, f"chmod 0640 {key}")
        done = deployed.targets[S.DOOR].ssh(
            f"/opt/rollcall/current/bin/rollcall edge check-config /etc/rollcall/edge-{S.SPARE_DOOR}.toml", check=False
        )
    finally:
        deployed.ssh(S.DOOR, f"chmod 0600 {key}")
    assert done.returncode == 0
    assert f"mqtt.tls.key_file: {key} is readable by group or others (mode 0640); run: chmod 600 {key}" in done.stderr


# --- 3. the ACL matrix --------------------------------------------------------------------------------------------


@dataclass
class Client:
    """A paho MQTT 5 client against the deployed broker: connection outcome, PUBACK reason codes, messages."""

    mqtt: mqtt.Client
    connected: bool = False
    reason: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    dropped: threading.Event = field(default_factory=threading.Event)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    """Every message delivered since the connection (never cleared)."""
    acks: dict[int, str] = field(default_factory=dict)
    acked: threading.Condition = field(default_factory=threading.Condition)

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0) -> str:
        """Publish at QoS 1; the broker's PUBACK reason ("Success", "Not authorized", ...) or why there was none."""
        info = self.mqtt.publish(topic, payload, qos=1)
        with self.acked:
            if not self.acked.wait_for(lambda: info.mid in self.acks, timeout):
                return "no PUBACK" if self.connected else f"not connected ({self.reason})"
            return self.acks[info.mid]

    def listen(self, topic_filter: str, seconds: float) -> list[tuple[str, bytes]]:
        """Subscribe and collect what the broker delivers on `topic_filter` in `seconds`."""
        start = len(self.received)
        self.mqtt.subscribe(topic_filter, qos=1)
        time.sleep(seconds)
        self.mqtt.unsubscribe(topic_filter)
        time.sleep(0.3)
        return [
            (topic, payload) for topic, payload in self.received[start:] if mqtt.topic_matches_sub(topic_filter, topic)
        ]

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def open_client(
    deployed: Deployed,
    cert: tuple[Path, Path] | None,
    *,
    username: str | None,
    client_id: str,
    ca: Path | None = None,
    timeout: float = 6.0,
) -> Client:
    """Connect to the deployed broker over TLS (MQTT 5) and wait for the outcome."""
    paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client = Client(paho)
    context = ssl.create_default_context(cafile=str(ca or deployed.site.ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    paho.tls_set_context(context)
    if username is not None:
        paho.username_pw_set(username)

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        client.connected = not reason.is_failure
        client.reason = str(reason)
        client.done.set()

    def on_disconnect(_c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        client.reason = client.reason or f"disconnected: {reason}"
        client.connected = False
        client.dropped.set()
        client.done.set()

    def on_publish(_c: mqtt.Client, _u: object, mid: int, reason: ReasonCode, _p: Properties) -> None:
        with client.acked:
            client.acks[mid] = str(reason)
            client.acked.notify_all()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        client.received.append((message.topic, bytes(message.payload)))

    paho.on_connect, paho.on_disconnect, paho.on_publish, paho.on_message = (
        on_connect,
        on_disconnect,
        on_publish,
        on_message,
    )
    paho.reconnect_delay_set(120, 120)  # one try: a refused client must not come back during the test
    try:
        paho.connect("127.0.0.1", deployed.site.broker_port, keepalive=30)
    except (ssl.SSLError, OSError) as exc:
        client.reason = f"TLS handshake failed: {exc}"
        return client
    paho.loop_start()
    if not client.done.wait(timeout):
        client.reason = "no CONNACK"
    if not client.connected:
        paho.loop_stop()
    return client


def as_identity(deployed: Deployed, identity: str, client_id: str | None = None, username: str | None = None) -> Client:
    """A client with `identity`'s own certificate (user name and client id default to the identity)."""
    return open_client(
        deployed,
        deployed.site.cert(identity),
        username=identity if username is None else username,
        client_id=client_id or identity,
    )


def tls_refusal(client: Client, logged: object) -> str:
    """How a connection without a usable certificate ended, with the broker's word for it."""
    state = "connected" if client.connected else "refused"
    return f"{state} ({'broker: TLS handshake failed' if logged else client.reason})"


def marker() -> bytes:
    """A payload no real client sends, to recognise a forged message wherever it turns up."""
    return json.dumps({"forged": str(ULID())}).encode()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        if client.connected:
            client.close()


def test_acl_matrix_against_the_deployed_broker(deployed: Deployed, clients: list[Client]) -> None:
    """Every attempt is refused (by the broker's TLS, plugin or ACL, or by the hub) and recorded for the table."""
    since = deployed.ssh(S.HUB, "date -u '+%Y-%m-%d %H:%M:%S'").strip()

    # The matrix's door is door-2 with its own certificate; its service on the door host is stopped meanwhile (the
    # same identity connecting again takes its session over, as MQTT says), and started again at the end.
    deployed.ssh(S.DOOR, f"systemctl stop rollcall-edge@{S.SPARE_DOOR}")
    try:
        acl_matrix(deployed, clients, since)
    finally:
        deployed.ssh(S.DOOR, f"systemctl start rollcall-edge@{S.SPARE_DOOR}")


def acl_matrix(deployed: Deployed, clients: list[Client], since: str) -> None:
    """The attempts of the matrix (see test_acl_matrix_against_the_deployed_broker)."""
    record = deployed.record
    t = TOPICS
    door2 = as_identity(deployed, S.SPARE_DOOR)
    clients.append(door2)
    assert door2.connected, door2.reason
    watcher = as_identity(deployed, "alice", client_id=f"alice:{ULID()}")
    clients.append(watcher)
    assert watcher.connected, watcher.reason
    for topic_filter in (t.all_devices("status"), t.all_devices("event"), f"{t.base}/hub/#"):
        watcher.mqtt.subscribe(topic_filter, qos=1)
    time.sleep(1.0)

    # A door's own topics work (the control): door-2's status is accepted; its own gallery is delivered.
    reason = door2.publish(t.device_health(S.SPARE_DOOR), b"{}")
    record("door-2 publishes on its own health topic (control)", "Success", reason)
    assert reason == "Success"
    own = door2.listen(t.device_gallery(S.SPARE_DOOR), 3)
    record("door-2 reads its own gallery (control)", "delivered", f"{len(own)} delivered")
    assert own, "the control failed: door-2 did not get its own retained gallery"

    forged = marker()
    for attempt, topic in [
        ("door-2 publishes as door-1 (status)", t.device_status(S.DOOR)),
        ("door-2 publishes as door-1 (event)", t.device_event(S.DOOR)),
        ("door-2 publishes into another site", f"{t.prefix}/elsewhere/device/{S.SPARE_DOOR}/status"),
        ("door-2 publishes on the hub's status", t.hub_status()),
        ("door-2 publishes a gallery for door-1 (hub's topic)", t.device_gallery(S.DOOR)),
        ("door-2 publishes a command to door-1 (hub's topic)", t.device_command(S.DOOR)),
        ("door-2 publishes an ack to door-1 (hub's topic)", t.device_ack(S.DOOR)),
        ("door-2 publishes on alice's request topic", t.supervisor_request("alice")),
    ]:
        reason = door2.publish(topic, forged)
        record(attempt, "Not authorized", reason)
        assert reason == "Not authorized", (attempt, reason)
    time.sleep(1.0)
    leaked = [topic for topic, payload in watcher.received if payload == forged]
    record("forged messages seen by a supervisor subscribed to device/+/status, event, hub/#", "0", str(len(leaked)))
    assert not leaked

    for attempt, topic_filter in [
        ("door-2 reads door-1's gallery", t.device_gallery(S.DOOR)),
        ("door-2 reads door-1's gallery chunks", f"{t.device_gallery(S.DOOR)}/chunk/+"),
        ("door-2 reads door-1's acks", t.device_ack(S.DOOR)),
        ("door-2 subscribes to #", "#"),
    ]:
        got = door2.listen(topic_filter, 4)
        # `#` also matches door-2's own gallery, which it may read: only other topics count.
        mine = [topic for topic, _ in got if topic.startswith(f"{t.base}/device/{S.SPARE_DOOR}/")]
        others = [topic for topic, _ in got if topic not in mine]
        record(attempt, "0 delivered", f"{len(others)} delivered" + (f" (+{len(mine)} of its own)" if mine else ""))
        assert not others, (attempt, others[:5])
    door2.close()

    # Identity: a client id that is another's, a user name that is not the certificate's CN, the hub's id.
    stolen = open_client(deployed, deployed.site.cert(S.SPARE_DOOR), username=S.SPARE_DOOR, client_id=S.DOOR)
    clients.append(stolen)
    record("door-2 connects with door-1's client id", "refused", "connected" if stolen.connected else stolen.reason)
    assert not stolen.connected
    posing = open_client(deployed, deployed.site.cert(S.SPARE_DOOR), username=S.DOOR, client_id=S.DOOR)
    clients.append(posing)
    record("door-2's certificate with user name door-1", "refused", "connected" if posing.connected else posing.reason)
    assert not posing.connected
    hub_id = open_client(deployed, deployed.site.cert("alice"), username="alice", client_id=S.HUB)
    clients.append(hub_id)
    record("alice connects with the hub's client id", "refused", "connected" if hub_id.connected else hub_id.reason)
    assert not hub_id.connected

    # A supervisor posing as a device to get a gallery: as door-1 (refused), and reading it as herself (nothing).
    as_door = open_client(deployed, deployed.site.cert("alice"), username=S.DOOR, client_id=S.DOOR)
    clients.append(as_door)
    record("alice's certificate as user door-1", "refused", "connected" if as_door.connected else as_door.reason)
    assert not as_door.connected
    got = watcher.listen(t.device_gallery(S.DOOR), 3) + watcher.listen(f"{t.device_gallery(S.DOOR)}/chunk/+", 3)
    record("alice subscribes to door-1's gallery", "0 delivered", f"{len(got)} delivered")
    assert not got
    reason = watcher.publish(t.device_status(S.DOOR), marker())
    record("alice publishes door-1's status", "Not authorized", reason)
    assert reason == "Not authorized"
    reason = watcher.publish(t.supervisor_request("bob"), marker())
    record("alice publishes on bob's request topic", "Not authorized", reason)
    assert reason == "Not authorized"

    # Connections without a usable certificate.
    anonymous = open_client(deployed, None, username=None, client_id="anonymous")
    clients.append(anonymous)
    assert not anonymous.connected
    logged = S.wait_for(lambda: "peer did not return a certificate" in deployed.broker_log(since), 10)
    record("anonymous client (no certificate, no user name)", "refused", tls_refusal(anonymous, logged))
    assert logged
    other = Authority("another CA", Path(deployed.site.inventory.parent / "other-ca"))
    cert, key, _ = other.issue(S.DOOR)
    foreign = open_client(deployed, (cert, key), username=S.DOOR, client_id=S.DOOR)
    clients.append(foreign)
    assert not foreign.connected
    logged = S.wait_for(lambda: "certificate verify failed" in deployed.broker_log(since), 10)
    record("door-1 certificate from another CA", "refused", tls_refusal(foreign, logged))
    assert logged

    # The hub's own checks: reply_to elsewhere, enrolment outside the import folder, a viewer removing a person.
    with deployed.hub_client("alice") as alice, deployed.hub_client("bob") as bob:
        spy = as_identity(deployed, "bob", client_id=f"bob:{ULID()}")
        clients.append(spy)
        bob_reply = t.supervisor_reply("bob", bob.session)
        spy.mqtt.subscribe(bob_reply, qos=1)
        time.sleep(0.5)
        request = wire.Request(
            request_id=str(ULID()),
            client="alice",
            sent_at=wire.now_utc(),
            method="people.list",
            params={},
            reply_to=bob_reply,
        )
        alice.link.publish(alice.request_topic, request, qos=1)
        time.sleep(4)
        replies = [topic for topic, _ in spy.received if topic == bob_reply]
        record("alice's request with reply_to = bob's reply topic", "no reply", f"{len(replies)} replies")
        assert not replies

        people = alice.call("people.list")
        assert people
        for path in ["/etc/rollcall/hub.toml", f"{IMPORT_DIR}/../hub/rollcall.db"]:
            try:
                alice.call("people.enrol_photos", {"person_id": people[0]["person_id"], "paths": [path]}, timeout=30)
                observed = "accepted"
            except HubRequestFailed as exc:
                observed = f"{exc.code}: {exc.message[:90]}"
            record(f"alice (admin) enrols from {path}", "forbidden", observed)
            assert observed.startswith("forbidden"), observed
        try:
            bob.call("people.remove", {"person_id": people[0]["person_id"]})
            observed = "removed"
        except HubRequestFailed as exc:
            observed = f"{exc.code}: {exc.message[:80]}"
        record("bob (viewer) calls people.remove", "forbidden", observed)
        assert observed.startswith("forbidden"), observed
        assert [p["person_id"] for p in alice.call("people.list")] == [p["person_id"] for p in people]
    audit = deployed.audit()
    refusals = [row for row in audit if row[0] == "bob" and row[1] == "request.refused" and "people.remove" in row[2]]
    record("audit row for bob's people.remove", "1 row, actor bob", f"{len(refusals)} row(s)")
    assert refusals, audit[-5:]
    foreign_reply = [row for row in audit if row[0] == "alice" and row[1] == "request.refused" and "reply_to" in row[2]]
    record("audit row for alice's foreign reply_to", "1 row, actor alice", f"{len(foreign_reply)} row(s)")
    assert foreign_reply

    # None of this knocked the real door-1 off: no "offline" status, and the broker never closed its connection.
    offline = [p for topic, p in watcher.received if topic == t.device_status(S.DOOR) and b'"offline"' in p]
    log = deployed.broker_log(since)
    knocked = [line for line in log.splitlines() if "door-1" in line and ("closing old" in line or "isconnect" in line)]
    record("door-1 knocked off during the matrix", "never", f"{len(offline)} offline, {len(knocked)} log lines")
    assert not offline and not knocked, knocked


def test_revoked_certificate_is_refused(deployed: Deployed, clients: list[Client]) -> None:
    """revoke.yml for real: rex's certificate (kept aside first) no longer connects; others still do."""
    cert, key = deployed.site.cert("rex")
    kept = (deployed.site.inventory.parent / "rex.crt", deployed.site.inventory.parent / "rex.key")
    kept[0].write_bytes(cert.read_bytes())
    kept[1].write_bytes(key.read_bytes())
    before = open_client(deployed, kept, username="rex", client_id="rex:before")
    clients.append(before)
    assert before.connected, f"the control failed: rex's certificate did not connect before revocation: {before.reason}"
    before.close()
    seconds, _ = deployed.playbook("revoke.yml", "-e", "NAME=rex")
    print(f"\nrevoke.yml: {seconds:.1f} s")
    since = deployed.ssh(S.HUB, "date -u '+%Y-%m-%d %H:%M:%S'").strip()
    after = open_client(deployed, kept, username="rex", client_id="rex:after")
    clients.append(after)
    assert not after.connected
    # OpenSSL's word for a revoked certificate in Mosquitto's log is "certificate verify failed" (CRL checked).
    logged = S.wait_for(lambda: "certificate verify failed" in deployed.broker_log(since), 10)
    deployed.record("rex's certificate after revoke.yml", "refused", tls_refusal(after, logged))
    assert logged, deployed.broker_log(since)[-2000:]
    alice = as_identity(deployed, "alice", client_id=f"alice:{ULID()}")
    clients.append(alice)
    assert alice.connected, f"a certificate that was not revoked is refused too: {alice.reason}"
    status = deployed.ssh(S.HUB, "systemctl is-active mosquitto rollcall-hub").split()
    assert status == ["active", "active"], status


def test_matrix_is_printed(deployed: Deployed, capsys: pytest.CaptureFixture[str]) -> None:
    """The ACL matrix as a table (attempt, expected, observed) for the note; every attempt counted."""
    assert deployed.matrix, "the ACL tests did not run"
    width = max(len(row[0]) for row in deployed.matrix)
    lines = [f"{'attempt':<{width}}  {'expected':<18}  observed", "-" * (width + 40)]
    lines += [f"{a:<{width}}  {e:<18}  {o}" for a, e, o in deployed.matrix]
    attempts = [row for row in deployed.matrix if "(control)" not in row[0]]
    lines.append(f"{len(attempts)} attempts refused (and {len(deployed.matrix) - len(attempts)} controls allowed)")
    with capsys.disabled():
        print("\nACL matrix against the deployed broker\n" + "\n".join(lines))


# --- 4. two TUI sessions of one supervisor -------------------------------------------------------------------------


def test_two_tui_sessions_of_one_supervisor_stay_connected_for_a_minute(deployed: Deployed) -> None:
    from tui.cli import session_links
    from tui.config import TuiConfig

    config = TuiConfig.model_validate(
        {
            "site": {"id": S.SITE_ID, "topic_prefix": S.PREFIX},
            "supervisor": {"name": "alice"},
            "mqtt": deployed.settings("alice").model_dump(),
        }
    )
    since = deployed.ssh(S.HUB, "date -u '+%Y-%m-%d %H:%M:%S'").strip()
    sessions = [session_links(config, f"s{index}{ULID()}".lower()[:20]) for index in range(2)]
    drops = [0, 0]

    def counter(index: int) -> Callable[[bool], None]:
        def count(up: bool) -> None:
            drops[index] += 0 if up else 1

        return count

    for index, (live, _) in enumerate(sessions):
        live.on_connection_change(counter(index))
        live.start()
    for _, hub in sessions:
        hub.start()
    try:
        assert S.wait_for(lambda: all(live.connected for live, _ in sessions), 15), "a session did not connect"
        versions_at_start = [live.versions() for live, _ in sessions]
        samples = 0
        end = time.monotonic() + 60
        while time.monotonic() < end:
            assert all(live.connected for live, _ in sessions), "a session lost its connection"
            samples += 1
            time.sleep(1)
        answers = [len(hub.call("devices.list")) for _, hub in sessions]
        versions_at_end = [live.versions() for live, _ in sessions]
        drops_in_the_minute = list(drops)
    finally:
        for live, hub in sessions:
            hub.close()
            live.stop()
    log = deployed.broker_log(since)
    ids = [hub.client_id for _, hub in sessions] + [f"{hub.client_id}-live" for _, hub in sessions]
    connects = {client_id: log.count(f"as {client_id} ") for client_id in ids}
    taken_over = [line for line in log.splitlines() if "alice:" in line and "already connected" in line]
    print(
        f"\ntwo sessions of alice for 60 s ({samples} samples): drops {drops_in_the_minute}, connections {connects}, "
        f"take-overs {len(taken_over)}, devices.list answered {answers}, live updates "
        f"{[sum(b.values()) - sum(a.values()) for a, b in zip(versions_at_start, versions_at_end, strict=True)]}"
    )
    assert drops_in_the_minute == [0, 0]
    assert all(count == 1 for count in connects.values()), connects
    assert not taken_over
    for before, after in zip(versions_at_start, versions_at_end, strict=True):
        assert after["devices"] > before["devices"], "a session got no state update in the minute"


# --- the units as they run, and the time a deploy takes -------------------------------------------------------


def test_units_exposure_inside_the_targets(deployed: Deployed) -> None:
    figures = {}
    for host, unit in [(S.HUB, "rollcall-hub.service"), (S.DOOR, "rollcall-edge@door-1.service")]:
        out = deployed.ssh(host, f"systemd-analyze security {unit} --no-pager | tail -1")
        figures[unit] = float(out.split("level for")[1].split(":")[1].split()[0])
    line = "systemd-analyze security inside the targets: " + ", ".join(f"{u} {v}" for u, v in figures.items())
    record_timing(line)
    record_timing(f"site.yml first run: {deployed.first_run_s:.1f} s")
    print(f"\n{line}")
    assert all(value <= 2.0 for value in figures.values()), figures


# --- 5. upgrade, an upgrade switched back, a rollback by hand ------------------------------------------------------


@dataclass(frozen=True)
class Versions:
    """The version the site.yml run installed, a good upgrade, and an upgrade whose door service exits at start."""

    old: str
    new: str
    broken: str


@pytest.fixture(scope="module")
def versions(wheelhouse: deploy.Wheelhouse) -> Versions:
    old = wheelhouse.rollcall_wheel.name.split("-")[1]
    major, minor, micro = (int(part) for part in re.findall(r"\d+", old)[:3])
    return Versions(old, f"{major}.{minor}.{micro + 1}", f"{major}.{minor}.{micro + 2}")


def upgrade_wheelhouse(
    wheelhouse: deploy.Wheelhouse, folder: Path, version: str, edit: Callable[[Path], None] | None = None
) -> Path:
    """The session's dependency wheels (hard links) and a wheel of this tree under `version` (edited if asked)."""
    folder.mkdir(parents=True)
    for wheel in wheelhouse.path.glob("*.whl"):
        if not wheel.name.startswith("rollcall-"):
            os.link(wheel, folder / wheel.name)
    deploy.build_rollcall_wheel(REPO_ROOT, folder, version=version, edit=edit)
    return folder


#: What the broken release prints as it exits: its door service never comes up.
BROKEN_EXIT = "rollcall edge: this build exits at start (the upgrade test's broken release)"


def break_edge_run(sources: Path) -> None:
    """Make `rollcall edge run` of this copy exit at start (check-config still passes), as a bad release might."""
    cli = sources / "edge" / "door" / "cli.py"
    text = cli.read_text()
    line = '    return launch("edge", EdgeConfig,'
    if line not in text:
        raise AssertionError(f"edge/door/cli.py no longer has `{line.strip()}`: update break_edge_run")
    cli.write_text(text.replace(line, f"    raise SystemExit({BROKEN_EXIT!r})\n{line}", 1))


def links(deployed: Deployed, host: str) -> tuple[str, str]:
    """Where /opt/rollcall/current and /opt/rollcall/previous point on `host`."""
    out = deployed.ssh(host, "readlink /opt/rollcall/current; readlink /opt/rollcall/previous || true").split()
    return out[0], out[1] if len(out) > 1 else ""


def running_from(deployed: Deployed, host: str, unit: str) -> str:
    """The interpreter the unit's main process runs: /opt/rollcall/<version>/bin/python (its virtualenv)."""
    pid = deployed.ssh(host, f"systemctl show -p MainPID --value {unit}").strip()
    assert pid not in {"", "0"}, f"{unit} on {host} has no main process"
    return deployed.ssh(host, f"tr '\\0' '\\n' < /proc/{pid}/cmdline | head -1").strip()


def retained_status(deployed: Deployed, topic: str) -> dict[str, Any]:
    """The retained status on `topic` at the deployed broker, read as alice."""
    client = as_identity(deployed, "alice", client_id=f"alice:{ULID()}")
    assert client.connected, client.reason
    try:
        got = client.listen(topic, 2)
    finally:
        client.close()
    assert got, f"nothing retained on {topic}"
    status: dict[str, Any] = json.loads(got[-1][1])
    return status


def door_status(deployed: Deployed, software: str, timeout: float = 60) -> dict[str, Any]:
    """door-1's retained status once it says online with `software` (or the last one seen after `timeout`)."""
    seen: dict[str, Any] = {}

    def online() -> bool:
        seen.update(retained_status(deployed, TOPICS.device_status(S.DOOR)))
        return seen.get("state") == "online" and seen.get("software") == software

    S.wait_for(online, timeout, interval=2)
    return seen


def messages(document: dict[str, Any], task_name: str) -> list[str]:
    """`host: msg` of every result of the tasks named `task_name` (debug and fail messages) in a run's document."""
    found = []
    for play in document.get("plays", []):
        for task in play["tasks"]:
            if task["task"]["name"] == task_name:
                for host, result in task["hosts"].items():
                    if "msg" in result:
                        found.append(f"{host}: {result['msg']}")
    return found


def test_upgrade_runs_the_new_version_beside_the_previous(
    deployed: Deployed, wheelhouse: deploy.Wheelhouse, versions: Versions, tmp_path: Path
) -> None:
    house = upgrade_wheelhouse(wheelhouse, tmp_path / "wheels", versions.new)
    seconds, document = deployed.playbook(
        "upgrade.yml", "-e", f"rollcall_version={versions.new}", "-e", f"rollcall_wheelhouse={house}"
    )
    line = f"upgrade.yml {versions.old} -> {versions.new}: {seconds:.1f} s; changed " + ", ".join(
        f"{host}={counts['changed']}" for host, counts in sorted(document["stats"].items())
    )
    record_timing(line)
    print(f"\n{line}")
    for host, unit in [(S.HUB, "rollcall-hub"), (S.DOOR, f"rollcall-edge@{S.DOOR}")]:
        assert links(deployed, host) == (f"/opt/rollcall/{versions.new}", f"/opt/rollcall/{versions.old}"), host
        assert running_from(deployed, host, unit).startswith(f"/opt/rollcall/{versions.new}/bin/python"), unit
        # The previous version is kept whole: it still runs.
        kept = deployed.ssh(host, f"/opt/rollcall/{versions.old}/bin/rollcall --version").strip()
        assert versions.old in kept, kept
    status = door_status(deployed, f"rollcall {versions.new}")
    assert status["state"] == "online" and status["software"] == f"rollcall {versions.new}", status
    # (The hub's status says plain "rollcall": its version is the process's, above.)
    assert deployed.ssh(S.HUB, "/opt/rollcall/current/bin/rollcall --version").split() == ["rollcall", versions.new]


def test_an_upgrade_whose_door_does_not_come_online_is_switched_back(
    deployed: Deployed, wheelhouse: deploy.Wheelhouse, versions: Versions, tmp_path: Path
) -> None:
    house = upgrade_wheelhouse(wheelhouse, tmp_path / "wheels", versions.broken, edit=break_edge_run)
    since = deployed.ssh(S.DOOR, "date -u '+%Y-%m-%d %H:%M:%S'").strip()
    seconds, document = deployed.playbook(
        "upgrade.yml",
        "-e",
        f"rollcall_version={versions.broken}",
        "-e",
        f"rollcall_wheelhouse={house}",
        "-e",
        "rollcall_door_online_timeout_s=60",
        may_fail=True,
    )
    stats = document["stats"]
    said = messages(document, "Say so") + messages(document, "Fail this host, saying it was switched back")
    line = (
        f"upgrade.yml {versions.new} -> {versions.broken} (door exits at start): {seconds:.1f} s; failed "
        + ", ".join(f"{host}={counts['failures']}" for host, counts in sorted(stats.items()))
    )
    record_timing(line)
    print(f"\n{line}\n" + "\n".join(said))
    assert stats[S.HUB]["failures"] == 0 and stats[S.DOOR]["failures"] == 1, (stats, failures(document))
    # The play says so: the door was switched back, and is online again on the version it ran before.
    final = [message for message in said if message.startswith(f"{S.DOOR}: ") and "SWITCHED BACK" in message]
    assert (
        final
        and f"SWITCHED BACK to /opt/rollcall/{versions.new}: online again with rollcall {versions.new}" in (final[-1])
    ), said
    assert f"did not report online with rollcall {versions.broken}" in final[-1], final
    # It failed for the planted reason: the new version's service exited at start.
    journal = deployed.ssh(
        S.DOOR, f"journalctl -u rollcall-edge@{S.DOOR} --no-pager -o cat --since {shlex.quote(since)}"
    )
    assert BROKEN_EXIT in journal, journal[-3000:]
    # The door: back on the version before, with `previous` as it was; the broken version stays installed aside.
    assert links(deployed, S.DOOR) == (f"/opt/rollcall/{versions.new}", f"/opt/rollcall/{versions.old}")
    assert running_from(deployed, S.DOOR, f"rollcall-edge@{S.DOOR}").startswith(f"/opt/rollcall/{versions.new}/")
    status = door_status(deployed, f"rollcall {versions.new}")
    assert status["state"] == "online" and status["software"] == f"rollcall {versions.new}", status
    # The hub went first and took the upgrade (its own service starts fine).
    assert links(deployed, S.HUB) == (f"/opt/rollcall/{versions.broken}", f"/opt/rollcall/{versions.new}")


def test_rollback_by_hand_switches_back_and_the_door_comes_online(deployed: Deployed, versions: Versions) -> None:
    seconds, document = deployed.playbook("rollback.yml")
    said = messages(document, "Say which version runs now")
    moves = f"hub {versions.broken} -> {versions.new}, door {versions.new} -> {versions.old}"
    line = f"rollback.yml ({moves}): {seconds:.1f} s"
    record_timing(line)
    print(f"\n{line}\n" + "\n".join(said))
    assert links(deployed, S.HUB) == (f"/opt/rollcall/{versions.new}", f"/opt/rollcall/{versions.broken}")
    assert links(deployed, S.DOOR) == (f"/opt/rollcall/{versions.old}", f"/opt/rollcall/{versions.new}")
    assert running_from(deployed, S.HUB, "rollcall-hub").startswith(f"/opt/rollcall/{versions.new}/")
    assert running_from(deployed, S.DOOR, f"rollcall-edge@{S.DOOR}").startswith(f"/opt/rollcall/{versions.old}/")
    status = door_status(deployed, f"rollcall {versions.old}")
    assert status["state"] == "online" and status["software"] == f"rollcall {versions.old}", status
    assert any(f"rolled back from /opt/rollcall/{versions.new} to /opt/rollcall/{versions.old}" in m for m in said), (
        said
    )
