"""System readings for device health: CPU share of this process, SoC temperature, free disk."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

THERMAL_ZONES = Path("/sys/class/thermal")


def read_temperature_c(zones: Path = THERMAL_ZONES) -> float | None:
    """The SoC temperature (Raspberry Pi, Jetson, most ARM boards), or None where it cannot be read."""
    for zone in sorted(zones.glob("thermal_zone*")):
        try:
            return int((zone / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
    return None


def disk_free_mb(path: Path) -> float | None:
    """Free space where ``path`` lives, in MB."""
    try:
        return shutil.disk_usage(path).free / 1_000_000
    except OSError:
        return None


class CpuMeter:
    """Percent of one core this process used since the previous reading."""

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.monotonic()

    def read(self) -> float:
        """CPU percent since the last call (100 = one core busy)."""
        cpu, wall = time.process_time(), time.monotonic()
        used, elapsed = cpu - self._cpu, wall - self._wall
        self._cpu, self._wall = cpu, wall
        return max(0.0, 100.0 * used / elapsed) if elapsed > 0 else 0.0


def cores() -> int:
    """CPU cores available to this process."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
