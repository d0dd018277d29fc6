"""``rollcall bench soak`` end to end, for one minute: every process is started, sampled and reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]


def test_a_one_minute_soak_samples_every_process(model_dir: Path, faces_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("DISPLAY", None)  # its own Xvfb, never the desktop of whoever runs the tests
    run = subprocess.run(
        [sys.executable, "-m", "rollcall.cli", "bench", "soak", "--minutes", "1", "--switch-every", "2", "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(figures["processes"]) == {"broker", "hub", "door", "agent", "tui"}
    for name, process in figures["processes"].items():
        assert not process["exited"], f"{name} exited during the soak; see its log"
        assert process["samples"] >= 10, f"{name}: too few samples after the warm-up"
        assert process["rss_end_mb"] > 0 and process["fds_end"] > 0
        assert f"  {name:<7} RSS" in run.stdout, "one line per process for the person reading"
    assert figures["view_switch_s"] == 2.0
    assert 25 <= figures["view_switches"] <= 30, "a switch every 2 s, between the samples too"
    assert "switched views every 2 s" in run.stdout
    assert figures["max_growth_mb_per_h"] == max(p["growth_mb_per_h"] for p in figures["processes"].values())
    assert "soak: sampling 5 processes" in run.stderr, "progress is shown while it runs"


def test_the_soak_refuses_less_than_a_minute() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "rollcall.cli", "bench", "soak", "--minutes", "0.5"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "--minutes must be at least 1" in run.stderr


def test_the_soak_refuses_a_switch_interval_out_of_range() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "rollcall.cli", "bench", "soak", "--switch-every", "0.1"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "--switch-every 0.1 is out of range" in run.stderr
