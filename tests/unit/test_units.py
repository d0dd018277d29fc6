"""The systemd units in systemd/: `systemd-analyze verify` clean, and exposure at most 2.0 for the hub and the doors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

UNITS = REPO_ROOT / "systemd"
ROLLCALL = "/opt/rollcall/current/bin/rollcall"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _stand_in(unit: str, folder: Path, name: str | None = None) -> Path:
    """A copy of ``unit`` whose rollcall command is a stand-in executable (the real one lives on the target)."""
    binary = folder / "rollcall"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    copy = folder / (name or unit)
    copy.write_text((UNITS / unit).read_text().replace(ROLLCALL, str(binary)))
    return copy


@needs_analyze
@pytest.mark.parametrize(
    ("unit", "instance", "user"),
    [
        ("rollcall-hub.service", None, False),
        ("rollcall-edge@.service", "rollcall-edge@door-1.service", False),
        ("rollcall-agent.service", None, True),
    ],
)
def test_unit_verifies_clean(unit: str, instance: str | None, user: bool, tmp_path: Path) -> None:
    copy = _stand_in(unit, tmp_path)
    if instance is not None:
        copy = copy.rename(tmp_path / instance)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    result = subprocess.run(
        [str(ANALYZE), *(["--user"] if user else []), "verify", str(copy)],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        check=False,
    )
    assert result.returncode == 0 and result.stderr.strip() == "" and result.stdout.strip() == "", result.stderr


@needs_analyze
@pytest.mark.parametrize("unit", ["rollcall-hub.service", "rollcall-edge@.service"])
def test_system_unit_exposure_is_at_most_2(unit: str) -> None:
    result = subprocess.run(
        [str(ANALYZE), "security", "--offline=true", "--threshold=20", str(UNITS / unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_units_start_rollcall_from_the_current_release() -> None:
    for unit in ("rollcall-hub.service", "rollcall-edge@.service", "rollcall-agent.service"):
        text = (UNITS / unit).read_text()
        starts = re.findall(r"^Exec\w+=(\S+)", text, re.MULTILINE)
        assert starts and set(starts) == {ROLLCALL}, unit
    edge = (UNITS / "rollcall-edge@.service").read_text()
    assert "--config /etc/rollcall/edge-%i.toml" in edge
    assert not (UNITS / "rollcall-edge.service").exists(), "the door unit is a template now"
