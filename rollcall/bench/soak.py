"""``rollcall bench soak --minutes N``: the whole system for N minutes, the memory and open files of each process.

Starts a private broker (Mosquitto if installed), the hub (``rollcall hub run``) with the test people enrolled, a
door device (``rollcall edge run``) looping a generated door clip, a workstation agent (``rollcall agent run``) on
Xvfb, and the TUI (``rollcall tui``) in a private tmux server, switching views with its keys. Every few seconds it
samples the resident memory (RSS) and open file descriptors of each process; after a warm-up it fits a line through
each process's samples and reports the growth per hour. A process whose memory grows without bound shows as a
steady slope here long before it runs out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.protocol import wire
from edge.protocol.config import MqttSettings
from edge.protocol.progress import Progress
from rollcall.bench.agent import start_xvfb
from rollcall.bench.runner import Benchmark, Figures
from rollcall.broker import LocalBroker, find_mosquitto

SITE = "soak"
VIEW_KEYS = ("p", "a", "t", "u", "d", "s", "e")
"""The TUI's view keys (presence, alerts, attendance, people, devices, screens, events), pressed in turn."""
MB = 1024 * 1024


@dataclass
class Samples:
    """One process's samples: seconds since the start, RSS in MB, open file descriptors."""

    name: str
    pid: int
    times: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    exited: bool = False


def slope_per_hour(times: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``times`` (seconds), per hour; 0.0 with fewer than two samples."""
    if len(times) < 2:
        return 0.0
    mean_t = sum(times) / len(times)
    mean_v = sum(values) / len(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / spread * 3600.0


def warm_up_s(duration_s: float) -> float:
    """Samples before this are left out of the fit: start-up, imports and first caches (a quarter, at most 5 min)."""
    return min(300.0, duration_s / 4)


def growth(samples: Samples, warm_up: float) -> dict[str, float | int | bool]:
    """One process's figures: RSS and open files at the start and end of the fit, and their growth per hour."""
    kept = [i for i, t in enumerate(samples.times) if t >= warm_up] or list(range(len(samples.times)))
    times = [samples.times[i] for i in kept]
    rss = [samples.rss_mb[i] for i in kept]
    fds = [float(samples.fds[i]) for i in kept]
    return {
        "rss_start_mb": round(rss[0], 1) if rss else 0.0,
        "rss_end_mb": round(rss[-1], 1) if rss else 0.0,
        "growth_mb_per_h": round(slope_per_hour(times, rss), 2),
        "fds_start": int(fds[0]) if fds else 0,
        "fds_end": int(fds[-1]) if fds else 0,
        "fds_growth_per_h": round(slope_per_hour(times, fds), 1),
        "samples": len(kept),
        "exited": samples.exited,
    }


class _System:
    """The processes of the soak, started under ``folder`` and stopped (children first) by :meth:`close`."""

    def __init__(self, folder: Path, model_dir: Path, faces: Path) -> None:
        self.folder = folder
        self.model_dir = model_dir
        self.faces = faces
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.broker = LocalBroker("mosquitto" if find_mosquitto() else "embedded", folder / "broker")
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.xvfb: subprocess.Popen[bytes] | None = None
        self.tmux_socket = f"rollcall-soak-{os.getpid()}"
        self.tui_pid: int | None = None
        self.command = [sys.executable, "-m", "rollcall.cli", "--log-level", "WARNING"]

    def _spawn(self, name: str, arguments: list[str], env: dict[str, str] | None = None) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            self.children[name] = subprocess.Popen(
                [*self.command, *arguments], stdout=subprocess.DEVNULL, stderr=log, env=env
            )

    def start(self, progress: bool) -> None:
        from rollcall.tools.doorclip import generate_door_clip

        with Progress("soak: rendering a door clip", 600, enabled=progress) as bar:
            clip, _, enrolment = generate_door_clip(
                self.faces,
                self.folder / "clip",
                seed=11,
                duration_s=60.0,
                enrol_photos_per_person=2,
                progress=lambda done, total: bar.advance(done - bar.done),
            )
        self.broker.start()
        port = self.broker.port
        self._spawn("hub", ["hub", "run", "--config", str(self._hub_toml(port))])
        self._enrol(port, enrolment)
        self._spawn("door", ["edge", "run", "--config", str(self._door_toml(port, clip))])
        self.xvfb, display = start_xvfb(self.folder)
        self._spawn(
            "agent", ["agent", "run", "--config", str(self._agent_toml(port))], {**os.environ, "DISPLAY": display}
        )
        self._start_tui(port)

    def _start_tui(self, port: int) -> None:
        if shutil.which("tmux") is None:
            raise RuntimeError("the soak runs the TUI in tmux: apt-get install tmux")
        config = self.folder / "tui.toml"
        config.write_text(f'[site]\nid = "{SITE}"\n\n[mqtt]\nport = {port}\n\n[tui]\nid = "soak-tui"\n')
        command = " ".join([*self.command, "tui", "--config", str(config)])
        # A private tmux server (-L): it has this process's environment, and nothing else of the user's is touched.
        subprocess.run(
            ["tmux", "-L", self.tmux_socket, "new-session", "-d", "-s", "soak", "-x", "160", "-y", "48",
             f"exec {command} 2>>{self.logs / 'tui.log'}"],
            check=True,
        )  # fmt: skip
        pane = subprocess.run(
            ["tmux", "-L", self.tmux_socket, "display-message", "-p", "-t", "soak", "#{pane_pid}"],
            check=True,
            capture_output=True,
            text=True,
        )
        self.tui_pid = int(pane.stdout.strip())

    def press(self, key: str) -> None:
        """Press a key in the TUI."""
        subprocess.run(["tmux", "-L", self.tmux_socket, "send-keys", "-t", "soak", key], check=False)

    def pids(self) -> dict[str, int]:
        """Every process of the system, by name."""
        pids = {name: child.pid for name, child in self.children.items()}
        if self.broker.process is not None:
            pids["broker"] = self.broker.process.pid
        if self.tui_pid is not None:
            pids["tui"] = self.tui_pid
        return pids

    def close(self) -> None:
        """Stop the TUI, the devices, the hub, the broker and Xvfb."""
        if self.tui_pid is not None:
            self.press("q")
            subprocess.run(["tmux", "-L", self.tmux_socket, "kill-server"], check=False, capture_output=True)
        for name in ("agent", "door", "hub"):
            child = self.children.get(name)
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
        self.broker.stop()
        if self.xvfb is not None:
            self.xvfb.terminate()
            self.xvfb.wait(10)

    def _enrol(self, port: int, enrolment: dict[str, list[Path]]) -> None:
        """Enrol the clip's known people through the hub's request API, as an operator would."""
        from edge.protocol.hub_client import HubClient, HubUnavailable

        with HubClient(MqttSettings(port=port), wire.Topics(SITE), "soak-setup") as client:
            deadline = time.monotonic() + 90
            while True:
                try:
                    client.call("people.list", timeout=5)
                    break
                except HubUnavailable:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the hub did not answer within 90 s; see {self.logs / 'hub.log'}") from None
            for person, photos in enrolment.items():
                added = client.call("people.add", {"name": person.replace("_", " ")})
                client.call(
                    "people.enrol_photos",
                    {"person_id": added["person_id"], "paths": [str(p) for p in photos]},
                    timeout=120,
                )

    def _hub_toml(self, port: int) -> Path:
        hub = self.folder / "hub"
        path = self.folder / "hub.toml"
        path.write_text(
            f'[site]\nid = "{SITE}"\ntimezone = "UTC"\n\n[mqtt]\nport = {port}\n\n[hub]\n'
            f'database = "{hub / "rollcall.db"}"\ndata_dir = "{hub}"\nkey_file = "{hub / "hub.key"}"\n'
            f'models_dir = "{self.model_dir}"\naccept_unknown_devices = true\nimport_dir = "{self.faces.resolve()}"\n'
            f"\n[attendance]\nsettle_out_after_min = 1\npresence_timeout_h = 0.05\n"
        )
        return path

    def _door_toml(self, port: int, clip: Path) -> Path:
        path = self.folder / "door.toml"
        path.write_text(
            f'[site]\nid = "{SITE}"\n\n[mqtt]\nport = {port}\n\n[device]\nid = "door-1"\n'
            f'data_dir = "{self.folder / "door-1"}"\n\n[camera]\nsource = "{clip}"\nfps = 10\nrealtime = true\n'
            f'loop = true\n\n[models]\ndir = "{self.model_dir}"\n\n[health]\ninterval_s = 5\n'
        )
        return path

    def _agent_toml(self, port: int) -> Path:
        path = self.folder / "agent.toml"
        path.write_text(
            f'[site]\nid = "{SITE}"\n[mqtt]\nport = {port}\n[agent]\nid = "soak-pc"\n'
            f'data_dir = "{self.folder / "agent"}"\n[capture]\nmin_interval_s = 5\n'
        )
        return path


def read_rss_mb(pid: int) -> float:
    """Resident memory of a process in MB, from /proc (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MB
    raise ProcessLookupError(pid)  # a zombie has no VmRSS: it has exited


def count_open_files(pid: int) -> int:
    """Open file descriptors of a process (files, sockets, pipes), from /proc."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _sample(samples: Samples, elapsed: float) -> None:
    try:
        rss, fds = read_rss_mb(samples.pid), count_open_files(samples.pid)
    except (OSError, ProcessLookupError):
        samples.exited = True
        return
    samples.times.append(elapsed)
    samples.rss_mb.append(rss)
    samples.fds.append(fds)


def default_switch_s(duration_s: float) -> float:
    """Seconds between view switches: 30 (as a supervisor might), or a twelfth of a shorter run, at least 5."""
    return min(30.0, max(5.0, duration_s / 12))


def bench_soak(
    minutes: float,
    model_dir: Path,
    faces: Path,
    *,
    interval_s: float = 5.0,
    switch_every_s: float | None = None,
    progress: bool = True,
) -> dict[str, object]:
    """Run the system for ``minutes``, sampling every ``interval_s``; the figures per process and the worst growth.

    The TUI switches views every ``switch_every_s`` (see :func:`default_switch_s`); a short interval packs hours of a
    supervisor's switching into minutes, to see where the TUI's memory levels off.
    """
    duration = minutes * 60.0
    interval = min(interval_s, max(1.0, duration / 30))  # at least 30 samples, even in a one-minute run
    switch_every = default_switch_s(duration) if switch_every_s is None else switch_every_s
    with tempfile.TemporaryDirectory(prefix="rollcall-soak-") as scratch:
        system = _System(Path(scratch), model_dir, faces)
        try:
            system.start(progress)
            series = {name: Samples(name, pid) for name, pid in system.pids().items()}
            started = time.monotonic()
            next_switch = switch_every
            view = switches = 0
            steps = int(duration / interval)
            with Progress(
                f"soak: sampling {len(series)} processes every {interval:.0f} s", steps, enabled=progress
            ) as bar:
                for step in range(1, steps + 1):
                    elapsed = time.monotonic() - started
                    for samples in series.values():
                        if not samples.exited:
                            _sample(samples, elapsed)
                    bar.advance()
                    next_sample = started + step * interval
                    while (switch_at := started + next_switch) < next_sample:  # the switches before the next sample
                        time.sleep(max(0.0, switch_at - time.monotonic()))
                        view = (view + 1) % len(VIEW_KEYS)
                        system.press(VIEW_KEYS[view])
                        switches += 1
                        next_switch += switch_every
                    time.sleep(max(0.0, next_sample - time.monotonic()))
        finally:
            system.close()
    warm_up = warm_up_s(duration)
    per_process = {name: growth(samples, warm_up) for name, samples in series.items()}
    worst = max((figures["growth_mb_per_h"] for figures in per_process.values()), default=0.0)
    return {
        "minutes": minutes,
        "warm_up_s": warm_up,
        "interval_s": interval,
        "view_switch_s": switch_every,
        "view_switches": switches,
        "max_growth_mb_per_h": worst,
        "processes": per_process,
    }


def _data_dir(variable: str, fallback: str) -> Path:
    configured = os.environ.get(variable)
    return Path(configured) if configured else Path(fallback)


def _measure(args: argparse.Namespace) -> Figures:
    model_dir = args.model_dir or _data_dir("ROLLCALL_MODEL_DIR", "models")
    faces = args.faces or _data_dir("ROLLCALL_FACES_DIR", "faces")
    return bench_soak(args.minutes, model_dir, faces, switch_every_s=args.switch_every)


def _report(figures: Figures, args: argparse.Namespace) -> list[str]:
    lines = [
        f"  the TUI switched views every {figures['view_switch_s']:g} s ({figures['view_switches']} switches)",
        f"  growth per hour after a {figures['warm_up_s']:.0f} s warm-up (least-squares line through the samples):",
    ]
    for name, proc in figures["processes"].items():
        gone = "  EXITED during the soak" if proc["exited"] else ""
        lines.append(
            f"  {name:<7} RSS {proc['rss_start_mb']:>7.1f} -> {proc['rss_end_mb']:>7.1f} MB "
            f"{proc['growth_mb_per_h']:>+8.2f} MB/h   open files {proc['fds_start']:>4} -> {proc['fds_end']:>4} "
            f"{proc['fds_growth_per_h']:>+7.1f}/h{gone}"
        )
    lines.append(f"  worst   {figures['max_growth_mb_per_h']:+.2f} MB/h")
    return lines


def _check(args: argparse.Namespace) -> str | None:
    if args.minutes < 1:
        return "rollcall bench soak: --minutes must be at least 1 (a line through fewer samples says nothing)"
    if args.switch_every is not None and not 1 <= args.switch_every <= 3600:
        return (
            f"rollcall bench soak: --switch-every {args.switch_every:g} is out of range: give 1 to 3600 seconds "
            "(a switch needs about a second to draw)"
        )
    for option, variable in (("--model-dir", "ROLLCALL_MODEL_DIR"), ("--faces", "ROLLCALL_FACES_DIR")):
        value = getattr(args, option.removeprefix("--").replace("-", "_"))
        if value is None and not os.environ.get(variable):
            return f"rollcall bench soak: set {variable} or pass {option} (the door and the hub need them)"
    return None


BENCHMARK = Benchmark(
    headline=lambda args: (
        f"bench soak: broker, hub, door on a looping clip, agent on Xvfb and the TUI switching views, "
        f"{args.minutes:g} min"
    ),
    measure=_measure,
    report=_report,
    check=_check,
)
