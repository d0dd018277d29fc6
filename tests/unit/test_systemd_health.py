"""sd_notify over a real Unix datagram socket, and the health readings."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from edge.runtime.health import CpuMeter, disk_free_mb, read_temperature_c
from edge.runtime.systemd import SystemdNotifier


def test_notifier_sends_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(2)
        notifier = SystemdNotifier(
            {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
        )
        assert notifier.enabled and notifier.watchdog_interval_s == 10.0
        assert notifier.ready("door device running")
        assert listener.recv(1024) == b"READY=1\nSTATUS=door device running"
        assert notifier.watchdog()
        assert listener.recv(1024) == b"WATCHDOG=1"
        assert notifier.stopping()
        assert listener.recv(1024) == b"STOPPING=1"


def test_notifier_is_silent_outside_systemd() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    assert notifier.ready("x") is False


def test_watchdog_for_another_process_is_not_ours() -> None:
    assert (
        SystemdNotifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval_s
        is None
    )


def test_temperature_and_disk_readings(tmp_path: Path) -> None:
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "temp").write_text("57312\n")
    assert read_temperature_c(tmp_path) == 57.312
    assert read_temperature_c(tmp_path / "none") is None
    free = disk_free_mb(tmp_path)
    assert free is not None and free > 0


def test_cpu_meter_sees_work() -> None:
    meter = CpuMeter()
    total = 0
    for value in range(2_000_000):
        total += value * value
    assert total > 0 and meter.read() > 10.0
