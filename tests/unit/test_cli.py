"""The `rollcall` command: check-config for every role, wire decode, help and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.protocol import wire
from rollcall.cli import main
from tests.conftest import REPO_ROOT
from tests.helpers.certs import SiteCa
from tests.unit.test_config import example_secrets

EXAMPLES = REPO_ROOT / "docs" / "examples"


@pytest.mark.parametrize("role", ["edge", "agent", "hub", "tui"])
def test_check_config_accepts_the_examples(
    role: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (EXAMPLES / f"{role}.toml").read_text()
    if "password_file" in text:
        for name, value in example_secrets(tmp_path).items():  # the files the example names, here rather than /etc
            monkeypatch.setenv(name, value)
    if "ca_file" in text:  # check-config loads the CA the example names: a real one here
        monkeypatch.setenv(f"ROLLCALL_{role.upper()}__MQTT__TLS__CA_FILE", str(SiteCa(tmp_path / "ca").ca_file))
    assert main([role, "check-config", str(EXAMPLES / f"{role}.toml")]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_config_lists_every_problem_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "hub.toml"
    bad.write_text('[hub]\ndatabase = ""\n[retention]\nevents_days = 0\nsnapshot_days = 3\n')
    assert main(["hub", "check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "3 problems" in err
    assert f"{bad}:2: hub.database" in err
    assert f"{bad}:4: retention.events_days" in err
    assert f"{bad}:5: retention.snapshot_days: unknown key" in err


def test_wire_decode_validates_a_payload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = wire.Status(client="door-1", state="online", at=wire.now_utc())
    good = tmp_path / "status.json"
    good.write_bytes(wire.encode(status))
    topic = wire.Topics("hq").device_status("door-1")
    assert main(["wire", "decode", topic, str(good)]) == 0
    assert "valid status" in capsys.readouterr().out

    assert main(["wire", "decode", wire.Topics("hq").device_status("door-2"), str(good)]) == 2
    assert "speaks for 'door-1'" in capsys.readouterr().err


def test_the_console_command_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rollcall.cli", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for command in ("broker", "edge", "agent", "hub", "tui", "wire"):
        assert command in result.stdout


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: rollcall" in capsys.readouterr().out


def test_check_config_loads_the_tls_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = SiteCa(tmp_path / "ca")
    cert, key = ca.issue("alice")
    _, other_key = ca.issue("bob")
    config = tmp_path / "tui.toml"

    def check(ca_file: Path, cert_file: Path, key_file: Path) -> tuple[int, str]:
        config.write_text(
            f'[mqtt]\nusername = "alice"\n[mqtt.tls]\nenabled = true\nca_file = "{ca_file}"\n'
            f'cert_file = "{cert_file}"\nkey_file = "{key_file}"\n'
        )
        code = main(["tui", "check-config", str(config)])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    key.chmod(0o600)
    code, out = check(ca.ca_file, cert, key)
    assert code == 0 and "supervisor 'alice'" in out and f"client certificate {cert}" in out
    assert "warning" not in out  # a key only its owner may read (as the deployed hosts have them)
    code, out = check(tmp_path / "missing.crt", cert, key)
    assert code == 2 and f"mqtt.tls.ca_file: no such file {tmp_path / 'missing.crt'}" in out
    code, out = check(ca.ca_file, cert, other_key)
    assert code == 2 and "are not a certificate and its private key" in out
    key.chmod(0o644)
    code, out = check(ca.ca_file, cert, key)
    assert code == 0 and f"mqtt.tls.key_file: {key} is readable by group or others" in out
    key.chmod(0o640)  # its group may read it: still warned about
    code, out = check(ca.ca_file, cert, key)
    assert code == 0 and f"mqtt.tls.key_file: {key} is readable by group or others (mode 0640)" in out
