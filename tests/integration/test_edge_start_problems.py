"""`rollcall edge run` as a real process: key and password-file problems are messages and exit codes, not tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.conftest import REPO_ROOT
from tests.helpers.brokers import TestBroker
from tests.integration.test_edge_service import write_config

pytestmark = pytest.mark.integration


def _edge_run(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rollcall.cli", "--log-level", "WARNING", "edge", "run", "--config", str(config)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def _key_file(tmp_path: Path, content: bytes, mode: int) -> Path:
    key_file = tmp_path / "edge-data" / "device.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_bytes(content)
    key_file.chmod(mode)
    return key_file


@pytest.mark.parametrize(
    ("content", "mode", "expected"),
    [
        (Fernet.generate_key() + b"\n", 0o644, "is accessible by group or others (mode 0644); run: chmod 600 {key}"),
        (b"garbage\n", 0o600, "key file {key}: line 1 is not a Fernet key"),
    ],
    ids=["mode-0644", "garbage"],
)
def test_a_bad_device_key_stops_the_start_with_a_message(
    broker: TestBroker, tmp_path: Path, model_dir: Path, content: bytes, mode: int, expected: str
) -> None:
    config = write_config(tmp_path, broker, model_dir)
    key = _key_file(tmp_path, content, mode)
    process = _edge_run(config)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert expected.format(key=key) in err
    assert "Traceback" not in err


def test_a_missing_password_file_stops_the_start_naming_key_and_file(
    broker: TestBroker, tmp_path: Path, model_dir: Path
) -> None:
    config = write_config(tmp_path, broker, model_dir)
    missing = tmp_path / "mqtt.password"
    text = config.read_text().replace("[mqtt]\n", f'[mqtt]\nusername = "door-1"\npassword_file = "{missing}"\n', 1)
    config.write_text(text)
    process = _edge_run(config)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert f"mqtt.password_file: no such file {missing}" in err
    assert "Traceback" not in err


def test_a_password_file_open_to_others_is_warned_about_and_the_device_runs(
    broker: TestBroker, tmp_path: Path, model_dir: Path
) -> None:
    config = write_config(tmp_path, broker, model_dir)
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    text = config.read_text().replace("[mqtt]\n", f'[mqtt]\nusername = "door-1"\npassword_file = "{secret}"\n', 1)
    config.write_text(text)
    process = _edge_run(config)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert f"warning: mqtt.password_file: {secret} is readable by group or others (mode 0644)" in first
        assert f"chmod 600 {secret}" in first
        summary = process.stderr.readline()  # the service is built and runs: a warning, not a refusal
        assert summary.startswith("rollcall edge: door device 'door-1'")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0
