"""The real `rollcall demo` with its TUI in a real terminal (tmux): people appear, an alert is acknowledged, q stops."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rollcall.broker import free_port
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.tui]


def _screen(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False
    ).stdout


def _wait_screen(session: str, condition: Callable[[str], bool], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _screen(session)
        if condition(screen):
            return screen
        time.sleep(0.5)
    raise AssertionError(f"the terminal never showed what was expected; last screen:\n{screen}")


@pytest.fixture
def tmux_session(tmp_path: Path) -> Iterator[str]:
    """A tmux server of this test's own (its socket under tmp_path), killed afterwards."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: apt-get install tmux (.ci/run does this)", pytrace=False)
    os.environ["TMUX_TMPDIR"] = str(tmp_path)
    session = "rollcall-demo"
    try:
        yield session
    finally:
        subprocess.run(["tmux", "kill-server"], check=False, capture_output=True)
        os.environ.pop("TMUX_TMPDIR", None)


def test_the_tui_shows_arrivals_and_acknowledges_an_alert(
    tmux_session: str, tmp_path: Path, model_dir: Path, faces_dir: Path
) -> None:
    demo_dir = tmp_path / "demo"
    command = " ".join(
        [
            f"ROLLCALL_MODEL_DIR={shlex.quote(str(model_dir))}",
            f"ROLLCALL_FACES_DIR={shlex.quote(str(faces_dir))}",
            shlex.quote(str(REPO_ROOT / ".venv" / "bin" / "python")) if (REPO_ROOT / ".venv").exists() else "python3",
            "-m rollcall.cli demo",
            f"--dir {shlex.quote(str(demo_dir))} --port {free_port()}",
            f"; echo DEMO-EXIT-$? > {shlex.quote(str(tmp_path / 'exit'))}",
        ]
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", tmux_session, "-x", "160", "-y", "48", "-c", str(REPO_ROOT), command],
        check=True,
    )
    board = _wait_screen(
        tmux_session,
        lambda s: "Presence" in s and any(" IN " in line and "door" in line for line in s.splitlines()),
        180,
    )
    assert "status: ok" in board
    subprocess.run(["tmux", "send-keys", "-t", tmux_session, "a"], check=True)
    _wait_screen(tmux_session, lambda s: "unknown_face" in s and "OPEN" in s, 120)
    subprocess.run(["tmux", "send-keys", "-t", tmux_session, "k"], check=True)
    _wait_screen(tmux_session, lambda s: "ACK" in s and "OPEN ALERTS 0" in s, 30)
    subprocess.run(["tmux", "send-keys", "-t", tmux_session, "q"], check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (tmp_path / "exit").exists():
        time.sleep(0.5)
    assert (tmp_path / "exit").read_text().strip() == "DEMO-EXIT-0", "q stops the TUI and every demo process"
