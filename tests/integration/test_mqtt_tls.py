"""MqttLink over TLS with a password, against a Mosquitto configured like a production site."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.protocol.config import MqttSettings
from edge.protocol.mqtt import MqttLink
from rollcall.broker import find_mosquitto, free_port, wait_listening
from tests.conftest import broker_kind

pytestmark = pytest.mark.integration


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, signer: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer.subject if issuer else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Mosquitto with a TLS listener (own CA) and a password file; yields (port, CA file)."""
    binary = find_mosquitto()
    if binary is None:
        broker_kind()  # fails when ROLLCALL_REQUIRE_MOSQUITTO=1
        pytest.skip("mosquitto is not installed; the embedded broker has no TLS")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("rollcall test CA", ca_key, None, ca_key)
    server = _certificate("127.0.0.1", server_key, ca, ca_key)
    pem = serialization.Encoding.PEM
    ca_file = _write(tmp_path / "ca.crt", ca.public_bytes(pem))
    cert_file = _write(tmp_path / "server.crt", server.public_bytes(pem))
    key_file = _write(
        tmp_path / "server.key",
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "door-1", "s3cret"], check=True)
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\ncafile {ca_file}\ncertfile {cert_file}\nkeyfile {key_file}\n"
        f"allow_anonymous false\npassword_file {passwords}\nuser root\nlog_dest file {tmp_path / 'log'}\n"
    )
    process = subprocess.Popen([binary, "-c", str(config)])
    try:
        assert wait_listening("127.0.0.1", port, 10)
        yield port, ca_file
    finally:
        process.terminate()
        process.wait(10)


def _connects(settings: MqttSettings) -> bool:
    link = MqttLink(settings, client_id="door-1-tls")
    link.start()
    try:
        return link.wait_connected(4)
    finally:
        link.stop()


def test_tls_with_password_connects_and_bad_credentials_do_not(tls_broker: tuple[int, Path], tmp_path: Path) -> None:
    port, ca_file = tls_broker
    password_file = _write(tmp_path / "mqtt.password", b"s3cret\n")
    good = MqttSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "username": "door-1",
            "password_file": str(password_file),
            "tls": {"enabled": True, "ca_file": str(ca_file)},
        }
    )
    assert _connects(good)
    assert not _connects(good.model_copy(update={"password_file": None, "password": "wrong"}))
    assert not _connects(good.model_copy(update={"tls": good.tls.model_copy(update={"enabled": False})}))
