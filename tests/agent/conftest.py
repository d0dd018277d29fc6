"""Fixtures for the workstation agent: a real X server (Xvfb), an agent config on the test broker, X windows."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.brokers import TestBroker

SITE = "hq"
AGENT = "lab-pc-07"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/agent runs against real processes (Xvfb, Mosquitto) or files: mark it so."""
    for item in items:
        if "tests/agent/" in str(item.path):
            item.add_marker(pytest.mark.integration)


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def _free_display() -> int:
    for number in range(90, 600):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise RuntimeError("no free X display number between :90 and :599")


@dataclass
class XServer:
    """A running Xvfb: its display name and process."""

    display: str
    process: subprocess.Popen[bytes]


@pytest.fixture
def xvfb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[XServer]:
    """A fresh Xvfb (1024x768, 24 bit, black root) on a free display; DISPLAY points at it for the test."""
    binary = shutil.which("Xvfb")
    if binary is None:
        pytest.fail("Xvfb is not installed: apt-get install xvfb (and xdotool x11-utils libnotify-bin)", pytrace=False)
    server: XServer | None = None
    for _attempt in range(5):
        number = _free_display()
        log = (tmp_path / f"xvfb-{number}.log").open("wb")
        process = subprocess.Popen(
            [binary, f":{number}", "-screen", "0", "1024x768x24", "-nolisten", "tcp", "-br"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        socket = Path(f"/tmp/.X11-unix/X{number}")

        def up(socket: Path = socket, process: subprocess.Popen[bytes] = process) -> bool:
            return socket.exists() or process.poll() is not None

        if wait_until(up, 10) and process.poll() is None:
            server = XServer(f":{number}", process)
            break
        process.wait(5)  # lost a race for the number: try the next
    if server is None:
        pytest.fail("Xvfb did not start", pytrace=False)
    monkeypatch.setenv("DISPLAY", server.display)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    # No desktop bus here: notify-send fails at once and messages use the fallback window, which the tests can see.
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    try:
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)


def write_agent_config(
    tmp_path: Path,
    broker: TestBroker,
    *,
    thumbnails: bool = True,
    idle_after_s: float = 60.0,
    files: bool = True,
    extra: str = "",
) -> Path:
    """An agent config for lab-pc-07 on the test broker, with short intervals; returns its path."""
    watched = tmp_path / "watched"
    watched.mkdir(exist_ok=True)
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[site]
id = "{SITE}"

[mqtt]
host = "127.0.0.1"
port = {broker.port}
keepalive_s = 5
reconnect_min_s = 1
reconnect_max_s = 2

[agent]
id = "{AGENT}"
data_dir = "{tmp_path / "agent-data"}"

[capture]
thumbnails = {str(thumbnails).lower()}
thumbnail_width = 320
format = "jpeg"
min_interval_s = 1.0
change_threshold = 0.01

[activity]
window_titles = true
idle_after_s = {idle_after_s}
publish_interval_s = 1.0

[files]
enabled = {str(files).lower()}
watch = ["{watched}"]
include = ["*"]
exclude = ["*.tmp", ".git/*"]

[commands]
lock_command = ["sh", "-c", "touch {marks}/locked"]
unlock_command = ["sh", "-c", "touch {marks}/unlocked"]
allow_lock = true

[outbox]
resend_after_s = 2.0
{extra}
"""
    )
    return path


def x_window(
    display: str,
    *,
    x: int = 100,
    y: int = 100,
    width: int = 400,
    height: int = 300,
    pixel: int = 0xFF0000,
    title: str = "rollcall test window",
    wm_class: tuple[str, str] = ("rollcall-test", "RollcallTest"),
) -> tuple[Any, Any]:
    """Map a plain window filled with ``pixel`` (24-bit TrueColor RGB); returns (display, window). Keep both."""
    from Xlib import X  # type: ignore[import-untyped]
    from Xlib import display as xdisplay

    conn = xdisplay.Display(display)
    screen = conn.screen()
    window = screen.root.create_window(
        x, y, width, height, 0, screen.root_depth, X.InputOutput, X.CopyFromParent, background_pixel=pixel
    )
    window.set_wm_name(title.encode("ascii", "replace").decode())
    window.change_property(conn.intern_atom("_NET_WM_NAME"), conn.intern_atom("UTF8_STRING"), 8, title.encode())
    window.set_wm_class(*wm_class)
    window.map()
    conn.sync()
    return conn, window


def xdotool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run xdotool on $DISPLAY."""
    return subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=10, check=False)
