"""The broker role's identity plugin and config on a real Mosquitto: who may connect, with which client id, to what."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import shutil
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers.brokers import find_mosquitto, free_port, wait_listening

pytestmark = pytest.mark.deploy

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLE = REPO_ROOT / "ansible" / "roles" / "rollcall_broker"
SITE = "hq"
DOORS = ["door-1", "door-2", "door-3", "door-4"]
SUPERVISORS = ["alice"]


def _require(condition: bool, what: str) -> None:
    """Skip where a build tool is missing, but fail in CI (ROLLCALL_REQUIRE_MOSQUITTO=1), which must run this."""
    if condition:
        return
    message = f"{what} (Debian: apt-get install mosquitto gcc mosquitto-dev libmosquitto-dev libssl-dev)"
    if os.environ.get("ROLLCALL_REQUIRE_MOSQUITTO") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# --- a throwaway PKI ---------------------------------------------------------------------------------------------


@dataclass
class Authority:
    """A CA that issues client and server certificates and keeps a CRL, written as PEM files in ``folder``."""

    name: str
    folder: Path
    key: ec.EllipticCurvePrivateKey = field(init=False)
    cert: x509.Certificate = field(init=False)
    revoked: list[x509.RevokedCertificate] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        (self.folder / "ca.crt").write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.write_crl()

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def crl_file(self) -> Path:
        return self.folder / "crl.pem"

    def issue(self, common_name: str, *, server: bool = False) -> tuple[Path, Path, x509.Certificate]:
        """A key and certificate for ``common_name``; returns (cert file, key file, certificate)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
            ).add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_file = self.folder / f"{common_name}.crt"
        key_file = self.folder / f"{common_name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_file.chmod(0o600)
        return cert_file, key_file, cert

    def revoke(self, cert: x509.Certificate) -> None:
        """Add ``cert`` to the CRL and write it again."""
        self.revoked.append(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(dt.datetime.now(dt.UTC))
            .build()
        )
        self.write_crl()

    def write_crl(self) -> None:
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - dt.timedelta(minutes=1))
            .next_update(now + dt.timedelta(days=1))
        )
        for entry in self.revoked:
            builder = builder.add_revoked_certificate(entry)
        crl = builder.sign(self.key, hashes.SHA256())
        self.crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))


# --- the broker, configured by the role's own templates -----------------------------------------------------------


@dataclass
class Site:
    """A running Mosquitto with the role's config, plugin and ACL, plus the CAs and certificates of the tests."""

    port: int
    ca: Authority
    other_ca: Authority
    certs: dict[str, tuple[Path, Path, x509.Certificate]]
    process: subprocess.Popen[bytes]
    log: Path
    tls_dir: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _render(template: str, variables: dict[str, object]) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROLE / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,  # as Ansible's template module does
    )
    return environment.get_template(template).render(variables)


def _build_plugin(folder: Path) -> Path:
    gcc = shutil.which("gcc")
    _require(gcc is not None, "gcc is not installed")
    _require(Path("/usr/include/mosquitto_broker.h").is_file(), "the Mosquitto plugin headers are not installed")
    plugin = folder / "rollcall_identity.so"
    assert gcc is not None
    build = subprocess.run(
        [
            gcc,
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fPIC",
            "-shared",
            str(ROLE / "files" / "rollcall_identity.c"),
            "-o",
            str(plugin),
            "-lssl",
            "-lcrypto",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, f"the plugin does not build:\n{build.stderr}"
    return plugin


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    mosquitto = find_mosquitto()
    _require(mosquitto is not None, "mosquitto is not installed")
    assert mosquitto is not None
    root = tmp_path_factory.mktemp("broker")
    plugin = _build_plugin(root)
    ca = Authority("rollcall test site CA", root / "ca")
    other_ca = Authority("some other CA", root / "other-ca")
    server_cert, server_key, _ = ca.issue("localhost", server=True)
    tls_dir = root / "tls"
    tls_dir.mkdir()
    shutil.copy(ca.ca_file, tls_dir / "ca.crt")
    shutil.copy(server_cert, tls_dir / "server.crt")
    shutil.copy(server_key, tls_dir / "server.key")
    certs = {name: ca.issue(name) for name in ["hub", *DOORS, *SUPERVISORS, "bob"]}
    certs["intruder"] = other_ca.issue("door-1")
    ca.revoke(certs["door-3"][2])
    shutil.copy(ca.crl_file, tls_dir / "crl.pem")
    port = free_port()
    variables: dict[str, object] = {
        "ansible_managed": "Ansible managed (rendered by tests/deploy/test_broker_identity.py)",
        "rollcall_broker_site": SITE,
        "rollcall_broker_topic_prefix": "rollcall",
        "rollcall_broker_port": port,
        "rollcall_broker_bind_address": "127.0.0.1",
        "rollcall_broker_hub_identity": "hub",
        "rollcall_broker_check_identity": "provisioner",
        "rollcall_broker_doors": DOORS,
        "rollcall_broker_agents": ["pc-1"],
        "rollcall_broker_supervisors": [*SUPERVISORS, "bob"],
        "rollcall_broker_session_users": [*SUPERVISORS, "bob"],
        "rollcall_broker_supervisor_device_leaves": ["status", "health", "event"],
        "rollcall_broker_homeassistant_prefix": "",
        "rollcall_broker_acl_file": str(root / "rollcall.acl"),
        "rollcall_broker_tls_dir": str(tls_dir),
        "rollcall_broker_persistence_dir": f"{root}/",
        "rollcall_broker_autosave_interval_s": 60,
        "rollcall_broker_log_dest": f"file {root / 'mosquitto.log'}",  # stdout would be block-buffered
        # As root (CI) Mosquitto would drop to its own user, which cannot read the test's temporary folder.
        "rollcall_broker_user": "root" if os.geteuid() == 0 else getpass.getuser(),
        "rollcall_broker_plugin_path": str(plugin),
        "rollcall_broker_max_packet_bytes": 2 * 1048576 + 65536,
        "rollcall_broker_max_queued_messages": 1256,
        "rollcall_broker_max_queued_bytes": 106387456,
        "rollcall_broker_max_inflight_messages": 20,
        "rollcall_broker_max_keepalive_s": 300,
    }
    (root / "rollcall.acl").write_text(_render("acl.j2", variables), encoding="utf-8")
    conf = root / "mosquitto.conf"
    conf.write_text(_render("mosquitto.conf.j2", variables), encoding="utf-8")
    log = root / "mosquitto.log"
    with (root / "mosquitto.out").open("wb") as sink:
        process = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=sink, stderr=subprocess.STDOUT)
    try:
        if not wait_listening("127.0.0.1", port, 15):
            process.kill()
            pytest.fail(
                f"mosquitto did not start with the role's config:\n{(root / 'mosquitto.out').read_text()}"
                f"{log.read_text() if log.exists() else ''}"
            )
        yield Site(port, ca, other_ca, certs, process, log, tls_dir)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- clients -----------------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    """The outcome of one connection: connected (and still connected), refused with a reason code, or TLS failure."""

    client: mqtt.Client
    connected: bool = False
    reason: str = ""
    disconnected: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    received: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    site: Site,
    identity: str | None,
    *,
    username: str | None = None,
    client_id: str | None = None,
    ca: Authority | None = None,
    cert: tuple[Path, Path, x509.Certificate] | None = None,
    timeout: float = 5.0,
) -> Attempt:
    """Connect over TLS with ``identity``'s certificate (None: no client certificate); wait for the outcome."""
    authority = ca or site.ca
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id if client_id is not None else (identity or ""),
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    attempt = Attempt(client)
    context = ssl.create_default_context(cafile=str(authority.ca_file))
    chosen = cert or (site.certs[identity] if identity is not None else None)
    if chosen is not None:
        context.load_cert_chain(str(chosen[0]), str(chosen[1]))
    client.tls_set_context(context)
    name = username if username is not None else identity
    if name is not None:
        client.username_pw_set(name)

    def on_connect(_client: mqtt.Client, _data: object, _flags: object, reason: object, _props: object) -> None:
        attempt.connected = not getattr(reason, "is_failure", True)
        attempt.reason = str(reason)
        attempt.done.set()

    def on_disconnect(_client: mqtt.Client, _data: object, _flags: object, reason: object, _props: object) -> None:
        if not attempt.reason:
            attempt.reason = f"disconnected: {reason}"
        attempt.disconnected.set()
        attempt.done.set()

    def on_message(_client: mqtt.Client, _data: object, message: mqtt.MQTTMessage) -> None:
        attempt.received.append(message.topic)

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.reconnect_delay_set(60, 60)  # one try: a refused client must not come back during the test
    try:
        client.connect("localhost", site.port, keepalive=30)
    except (ssl.SSLError, OSError) as exc:
        attempt.reason = f"TLS/socket failure: {exc}"
        return attempt
    client.loop_start()
    if not attempt.done.wait(timeout):
        attempt.reason = "no CONNACK"
    if not attempt.connected:
        client.loop_stop()
    return attempt


def refused(attempt: Attempt) -> bool:
    return not attempt.connected


@pytest.fixture
def clients() -> Iterator[list[Attempt]]:
    opened: list[Attempt] = []
    yield opened
    for attempt in opened:
        if attempt.connected:
            attempt.close()


# --- the tests ---------------------------------------------------------------------------------------------------


def test_each_identity_connects_with_its_own_certificate_name_and_id(site: Site, clients: list[Attempt]) -> None:
    for identity in ["hub", "door-1", "door-2", "alice"]:
        attempt = connect(site, identity)
        clients.append(attempt)
        assert attempt.connected, f"{identity}: {attempt.reason}\n{site.log_text()[-2000:]}"


def test_user_name_other_than_the_certificate_cn_is_refused(site: Site) -> None:
    attempt = connect(site, "door-1", username="door-2", client_id="door-2")
    assert refused(attempt), attempt.reason
    assert "Not authorized" in attempt.reason or "not authori" in attempt.reason.lower(), attempt.reason
    assert "user name differs from the certificate CN" in site.log_text()


def test_no_user_name_is_refused(site: Site) -> None:
    attempt = connect(site, "door-1", username="", client_id="door-1")
    assert refused(attempt), attempt.reason


def test_another_clients_id_is_refused_and_its_owner_stays_connected(site: Site, clients: list[Attempt]) -> None:
    owner = connect(site, "door-1")
    clients.append(owner)
    assert owner.connected, owner.reason
    thief = connect(site, "door-2", client_id="door-1")
    assert refused(thief), thief.reason
    assert "client id is neither the user name" in site.log_text()
    time.sleep(1.0)
    assert not owner.disconnected.is_set(), "the owner of the id was knocked off"


def test_supervisor_sessions_have_their_own_ids_side_by_side(site: Site, clients: list[Attempt]) -> None:
    first = connect(site, "alice", client_id="alice:s1a2b3")
    second = connect(site, "alice", client_id="alice:c4d5e6")
    clients.extend([first, second])
    assert first.connected, first.reason
    assert second.connected, second.reason
    time.sleep(2.0)
    assert not first.disconnected.is_set() and not second.disconnected.is_set()


@pytest.mark.parametrize(
    ("identity", "client_id", "why"),
    [
        ("door-1", "door-1:extra", "allowed only to session users"),  # a door is not a session user
        ("alice", "bob:s1", "neither the user name"),  # another supervisor's session
        ("bob", "alice:s1", "neither the user name"),
        ("alice", "alice:", "neither the user name"),  # empty session
        ("alice", "alice:a/b", "neither the user name"),  # characters outside the session alphabet
        ("alice", "alicex:s1", "neither the user name"),  # a prefix is not the name
        ("alice", "door-1", "neither the user name"),  # a supervisor posing as a door (for its gallery)
    ],
)
def test_session_ids_are_bound_to_their_supervisor(site: Site, identity: str, client_id: str, why: str) -> None:
    attempt = connect(site, identity, client_id=client_id)
    assert refused(attempt), f"{identity} as {client_id}: {attempt.reason}"
    assert why in site.log_text()


def test_no_client_certificate_is_refused(site: Site) -> None:
    assert refused(connect(site, None, username="door-1", client_id="door-1"))


def test_certificate_from_another_ca_is_refused(site: Site) -> None:
    attempt = connect(site, "door-1", cert=site.certs["intruder"])
    assert refused(attempt), attempt.reason


def test_revoked_certificate_is_refused(site: Site) -> None:
    attempt = connect(site, "door-3")
    assert refused(attempt), attempt.reason


def test_revoking_and_reloading_refuses_the_next_connection(site: Site) -> None:
    before = connect(site, "door-4")
    assert before.connected, before.reason
    before.close()
    site.ca.revoke(site.certs["door-4"][2])
    shutil.copy(site.ca.crl_file, site.tls_dir / "crl.pem")
    site.process.send_signal(signal.SIGHUP)  # what `systemctl reload mosquitto` sends
    deadline = time.monotonic() + 10
    while "Reloading config" not in site.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    after = connect(site, "door-4")
    assert refused(after), after.reason
    assert connect(site, "door-2").connected, "a certificate that was not revoked still works after the reload"


def test_the_acl_keeps_a_door_to_its_own_topics(site: Site, clients: list[Attempt]) -> None:
    base = f"rollcall/{SITE}"
    hub = connect(site, "hub")
    door = connect(site, "door-2")
    alice = connect(site, "alice", client_id="alice:x1")
    clients.extend([hub, door, alice])
    assert hub.connected and door.connected and alice.connected
    hub.client.subscribe(f"{base}/device/+/#", qos=1)
    hub.client.subscribe(f"{base}/supervisor/+/request", qos=1)
    door.client.subscribe("#", qos=1)  # granted by Mosquitto 2.0, but only the door's own topics are delivered
    alice.client.subscribe(f"{base}/supervisor/+/reply/+", qos=1)
    time.sleep(0.5)
    door.client.publish(f"{base}/device/door-2/status", b"own", qos=1).wait_for_publish(5)
    door.client.publish(f"{base}/device/door-1/status", b"as-another", qos=1).wait_for_publish(5)
    door.client.publish(f"{base}/supervisor/alice/request", b"as-supervisor", qos=1).wait_for_publish(5)
    hub.client.publish(f"{base}/device/door-1/gallery", b"not-for-door-2", qos=1).wait_for_publish(5)
    hub.client.publish(f"{base}/device/door-2/gallery", b"for-door-2", qos=1).wait_for_publish(5)
    hub.client.publish(f"{base}/supervisor/alice/reply/x1", b"reply", qos=1).wait_for_publish(5)
    hub.client.publish(f"{base}/supervisor/bob/reply/y1", b"reply-bob", qos=1).wait_for_publish(5)
    alice.client.publish(f"{base}/supervisor/alice/request", b"ask", qos=1).wait_for_publish(5)
    time.sleep(1.0)
    assert f"{base}/device/door-2/status" in hub.received
    assert f"{base}/device/door-1/status" not in hub.received
    assert f"{base}/supervisor/alice/request" in hub.received
    assert hub.received.count(f"{base}/supervisor/alice/request") == 1, "the door's forged request got through"
    assert sorted(set(door.received)) == [f"{base}/device/door-2/gallery"], door.received
    assert alice.received == [f"{base}/supervisor/alice/reply/x1"], alice.received
