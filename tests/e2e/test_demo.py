"""`rollcall demo` end to end: broker, hub, a door device replaying a door clip; people arrive on the board."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rollcall.broker import free_port
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration


def test_demo_shows_people_arriving_within_a_minute(tmp_path: Path, model_dir: Path, faces_dir: Path) -> None:
    env = {**os.environ, "ROLLCALL_MODEL_DIR": str(model_dir), "ROLLCALL_FACES_DIR": str(faces_dir)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rollcall.cli",
            "demo",
            "--no-tui",
            "--duration",
            "60",
            "--dir",
            str(tmp_path / "demo"),
            "--port",
            str(free_port()),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    arrivals = [line for line in result.stdout.splitlines() if ": IN at door-1" in line]
    assert arrivals, f"nobody arrived on the board:\n{result.stderr[-2000:]}"
    assert "stopped" in result.stderr
    for log in (tmp_path / "demo" / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(), f"{log.name} has a traceback"


def test_demo_without_people_says_what_to_do(tmp_path: Path, model_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ROLLCALL_FACES_DIR"}
    env["ROLLCALL_MODEL_DIR"] = str(model_dir)
    result = subprocess.run(
        [sys.executable, "-m", "rollcall.cli", "demo", "--no-tui", "--dir", str(tmp_path / "demo")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--people" in result.stderr and "ROLLCALL_FACES_DIR" in result.stderr
