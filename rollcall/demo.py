"""``rollcall demo`` (``make demo``): the whole system on one box — broker, hub, door devices replaying a clip, TUI.

A newcomer sees people arrive and leave on the presence board within a minute. Every process it starts is a child
it owns; Ctrl-C (or SIGTERM) stops them all, devices first so they say ``stopped``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from edge.protocol import wire
from edge.protocol.config import MqttSettings
from rollcall.broker import LocalBroker, find_mosquitto, free_port, tcp_port_or_any

DEMO_SITE = "demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rollcall demo``."""
    parser.add_argument(
        "--people", type=Path, default=None, help="one folder of photos per person ($ROLLCALL_FACES_DIR)"
    )
    parser.add_argument("--video", type=Path, default=None, help="replay this clip instead of generating a door clip")
    parser.add_argument("--camera", default=None, help="use a live camera (index such as 0, or an rtsp:// URL)")
    parser.add_argument("--devices", type=int, default=1, help="door devices replaying the clip (1)")
    parser.add_argument("--dir", type=Path, default=Path("var/demo"), help="where the demo keeps its state (var/demo)")
    parser.add_argument(
        "--port", type=tcp_port_or_any, default=0, help="broker port (default: 1883 if free, else any free port)"
    )
    parser.add_argument("--no-tui", action="store_true", help="print presence changes instead of opening the TUI")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _log_to_file(path: Path) -> None:
    """Our own log lines go to a file: the terminal belongs to the TUI (or to the presence lines)."""
    import logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    root.addHandler(handler)


def _say(text: str) -> None:
    print(f"demo: {text}", file=sys.stderr, flush=True)


def _hub_toml(folder: Path, port: int, model_dir: Path, people: Path) -> Path:
    path = folder / "hub.toml"
    path.write_text(
        f"""[site]
id = "{DEMO_SITE}"
timezone = "UTC"

[mqtt]
host = "127.0.0.1"
port = {port}

[hub]
id = "demo-hub"
database = "{folder / "hub" / "rollcall.db"}"
data_dir = "{folder / "hub"}"
key_file = "{folder / "hub" / "hub.key"}"
models_dir = "{model_dir}"
accept_unknown_devices = true
import_dir = "{people.resolve()}"

[attendance]
settle_out_after_min = 1
presence_timeout_h = 0.05

[schedule]
mode = "on"
"""
    )
    return path


def _edge_toml(folder: Path, port: int, model_dir: Path, device: str, source: str) -> Path:
    path = folder / f"{device}.toml"
    path.write_text(
        f"""[site]
id = "{DEMO_SITE}"

[mqtt]
host = "127.0.0.1"
port = {port}

[device]
id = "{device}"
name = "Demo door {device[-1]}"
data_dir = "{folder / device}"

[camera]
source = "{source}"
fps = 10
realtime = true
loop = true

[models]
dir = "{model_dir}"

[health]
interval_s = 5
"""
    )
    return path


def _tui_toml(folder: Path, port: int) -> Path:
    path = folder / "tui.toml"
    path.write_text(
        f'[site]\nid = "{DEMO_SITE}"\n\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n\n[tui]\nid = "demo-tui"\n'
    )
    return path


def run(args: argparse.Namespace) -> int:
    """Set everything up, run until Ctrl-C (or --duration), stop everything."""
    from edge.recognition.packs import ModelError, load_manifest, require_pack, resolve_model_dir

    try:
        model_dir = resolve_model_dir(None)
        require_pack(load_manifest(), None, model_dir, check_hash=False)
    except ModelError as exc:
        _say(f"{exc}")
        _say("get the models with `rollcall models fetch scrfd500m-mbf128 --dir DIR` and set ROLLCALL_MODEL_DIR=DIR")
        return 2
    people = args.people or (Path(os.environ["ROLLCALL_FACES_DIR"]) if os.environ.get("ROLLCALL_FACES_DIR") else None)
    if people is None or not people.is_dir():
        _say("no people to enrol: pass --people DIR (one folder of photos per person) or set ROLLCALL_FACES_DIR")
        return 2
    if args.devices < 1 or args.devices > 4:
        _say("--devices must be between 1 and 4")
        return 2
    folder = args.dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("hub", *[f"door-{i}" for i in range(1, 5)]):
        # A fresh database each run: the demo shows arrivals, not yesterday's state.
        target = folder / stale
        if target.exists():
            import shutil

            shutil.rmtree(target)
    port = args.port or (1883 if _port_free(1883) else free_port())
    broker = LocalBroker("mosquitto" if find_mosquitto() else "embedded", folder / "broker", port=port)
    children: list[subprocess.Popen[bytes]] = []
    stop = {"now": False}

    def request_stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, request_stop)
    try:
        _say(f"starting the {broker.kind} broker on 127.0.0.1:{port}")
        broker.start()
        source, enrol = _prepare_source(args, people, folder)
        logs = folder / "logs"
        logs.mkdir(exist_ok=True)
        _log_to_file(logs / "demo.log")
        command = [sys.executable, "-m", "rollcall.cli", "--log-level", "WARNING"]
        _say("starting the hub")
        children.append(
            subprocess.Popen(
                [*command, "hub", "run", "--config", str(_hub_toml(folder, port, model_dir, people))],
                stdout=subprocess.DEVNULL,
                stderr=(logs / "hub.log").open("wb"),
            )
        )
        _enrol(port, enrol)
        for index in range(1, args.devices + 1):
            device = f"door-{index}"
            _say(f"starting door device {device} on {source}")
            children.append(
                subprocess.Popen(
                    [*command, "edge", "run", "--config", str(_edge_toml(folder, port, model_dir, device, source))],
                    stdout=subprocess.DEVNULL,
                    stderr=(logs / f"{device}.log").open("wb"),
                )
            )
        if args.no_tui:
            return _watch(port, args.duration, stop)
        from tui.cli import run_tui

        _say("opening the TUI (q quits and stops the demo)")
        return run_tui(argparse.Namespace(config=_tui_toml(folder, port), clock=None))
    except KeyboardInterrupt:
        return 0
    finally:
        _say("stopping")
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        broker.stop()
        _say(f"stopped; logs in {folder / 'logs'}")


def _prepare_source(args: argparse.Namespace, people: Path, folder: Path) -> tuple[str, dict[str, list[Path]]]:
    """What the devices watch, and who the hub enrols (with which photos)."""
    from edge.recognition.photos import people_folders

    if args.camera is not None:
        return str(args.camera), people_folders(people)
    if args.video is not None:
        if not args.video.is_file():
            raise SystemExit(f"demo: no such video: {args.video}")
        return str(args.video.resolve()), people_folders(people)
    from edge.protocol.progress import Progress
    from rollcall.tools.doorclip import generate_door_clip

    clip_dir = folder / "clip"
    with Progress("demo: rendering a door clip", 900) as bar:
        video, _, enrolment = generate_door_clip(
            people,
            clip_dir,
            seed=11,
            duration_s=90.0,
            enrol_photos_per_person=2,
            progress=lambda done, total: bar.advance(done - bar.done),
        )
    return str(video), enrolment


def _enrol(port: int, enrolment: dict[str, list[Path]]) -> None:
    from edge.protocol.hub_client import HubClient, HubUnavailable
    from edge.protocol.progress import Progress

    settings = MqttSettings(host="127.0.0.1", port=port)
    with HubClient(settings, wire.Topics(DEMO_SITE), "demo-setup") as client:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.call("people.list", timeout=5)
                break
            except HubUnavailable:
                if time.monotonic() > deadline:
                    raise SystemExit("demo: the hub did not come up within 60 s; see var/demo/logs/hub.log") from None
        with Progress("demo: enrolling people", len(enrolment)) as bar:
            for person, photos in enrolment.items():
                added = client.call("people.add", {"name": person.replace("_", " ")})
                client.call(
                    "people.enrol_photos",
                    {"person_id": added["person_id"], "paths": [str(p) for p in photos]},
                    timeout=120,
                )
                bar.advance()


def _watch(port: int, duration: float, stop: dict[str, bool]) -> int:
    """Without a TUI: print who is in whenever the board changes."""
    from edge.protocol.mqtt import MqttLink, Received

    last: dict[str, str] = {}

    def on_board(message: Received) -> None:
        _, board = wire.decode(message.topic, message.payload)
        if not isinstance(board, wire.Presence):
            return
        for entry in board.people:
            if last.get(entry.person_id) != entry.state:
                last[entry.person_id] = entry.state
                if entry.state != "unknown":
                    print(f"{entry.name}: {entry.state.upper()} at {entry.door or '-'}", flush=True)

    link = MqttLink(
        MqttSettings(host="127.0.0.1", port=port), client_id="demo-watch", on_message=on_board, clean_session=True
    )
    link.subscribe(wire.Topics(DEMO_SITE).hub_presence())
    link.start()
    _say("watching the presence board (Ctrl-C stops the demo)")
    started = time.monotonic()
    try:
        while not stop["now"] and (duration <= 0 or time.monotonic() - started < duration):
            time.sleep(0.2)
    finally:
        link.stop()
    return 0
