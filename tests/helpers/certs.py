"""A throwaway site CA for tests: PEM files of a CA and of client certificates whose CN is a rollcall identity."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PEM = serialization.Encoding.PEM


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@dataclass
class SiteCa:
    """A CA in ``folder`` (``ca.crt``) that issues ``<cn>.crt`` / ``<cn>.key`` pairs next to it."""

    folder: Path

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = self._sign("rollcall test CA", self.key.public_key(), ca=True)
        self.ca_file = _write(self.folder / "ca.crt", self.cert.public_bytes(PEM))

    def _sign(self, cn: str, public_key: ec.EllipticCurvePublicKey, *, ca: bool) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if ca else self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if ca:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        return builder.sign(self.key, hashes.SHA256())

    def issue(self, cn: str) -> tuple[Path, Path]:
        """A certificate for ``cn`` and its private key: (cert file, key file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(cn, key.public_key(), ca=False)
        key_pem = key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return _write(self.folder / f"{cn}.crt", cert.public_bytes(PEM)), _write(self.folder / f"{cn}.key", key_pem)
