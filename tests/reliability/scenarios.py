"""The reliability scenarios: each runs its faults against its own site and returns its :class:`Result`.

Every scenario is independent (own broker, hub, devices, ports and folder under ``root``), so the runner runs them
side by side. ``scale`` (1.0 in ``make reliability``) multiplies the number of faults and the length of the cuts,
for a quick look while developing (``--scale 0.1``).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.powercut import apply_power_cut, build_shim, preload_env
from tests.helpers.proxy import FaultProxy, ProxyMode
from tests.reliability.harness import (
    PYTHON,
    REPO_ROOT,
    Ledger,
    Producer,
    Result,
    Site,
    child_env,
    reckon,
    stored_events,
    wait_until,
)


@dataclass(frozen=True)
class Scenario:
    """A named scenario, its rough length at scale 1 (the runner starts the longest first) and its body."""

    name: str
    minutes: float
    run: Callable[[Path, float], Result]


def _times(count: int, scale: float) -> int:
    return max(1, round(count * scale))


def _stored_by(site: Site, ledger: Ledger, moment: float) -> bool:
    """Whether the hub has stored every event the ledger accepted before ``moment``."""
    wanted = {item.event_id for item in ledger.items() if item.at < moment}
    stored = {row.event_id for row in stored_events(site.database) if row.device == ledger.device}
    return wanted <= stored


def _stored_count(site: Site, ledger: Ledger) -> int:
    """How many of the ledger's events the hub has stored so far."""
    accepted = {item.event_id for item in ledger.items()}
    return sum(1 for row in stored_events(site.database) if row.event_id in accepted)


# --- kills ---------------------------------------------------------------------------------------------------------


def door_kill(root: Path, scale: float, *, power_loss: bool = False) -> Result:
    """SIGKILL a producing door (events at 200/s, every other with a snapshot) 100 times, 0.5 to 1.2 s apart.

    With ``power_loss`` the door runs under the powercut shim and each kill also drops what the outbox files had
    not fsynced (all of it on even kills, a random half on odd ones), like a power cut at that moment.
    """
    kills = _times(100, scale)
    name = f"door power loss x{kills}" if power_loss else f"door SIGKILL x{kills}"
    result = Result(name, faults=kills)
    started = time.monotonic()
    rng = random.Random(1200 + power_loss)
    with Site(root) as site:
        ledger = Ledger("door-1", root / "door-1")
        env: dict[str, str] = {}
        log = root / "powercut.log"
        if power_loss:
            env = preload_env(build_shim(root / "shim"), ledger.data_dir, log)
        ends: list[float] = []
        dropped = unsynced = 0
        for index in range(kills):
            producer = Producer(ledger, site.port, rate=200, env=env)
            ends.append(producer.started_at)
            if not producer.ready.wait(60):
                result.problems.append(f"the door did not start (run {index + 1}); see {producer.log_path}")
                producer.kill()
                break
            time.sleep(rng.uniform(0.3, 1.0))  # the kill lands at a random moment of production: that is the test
            producer.kill()
            if power_loss:
                cut = apply_power_cut(log, rng, keep_share=0.5 if index % 2 else 0.0)
                unsynced += cut.unsynced_writes
                dropped += cut.dropped_writes
        if power_loss:
            result.extra["unsynced_writes_dropped"] = f"{dropped}/{unsynced}"
        reckon(result, site, [ledger], fault_ends=ends, recover="resume")
    result.seconds = time.monotonic() - started
    return result


def door_power_loss(root: Path, scale: float) -> Result:
    """:func:`door_kill` with the writes after the last fsync dropped at each kill."""
    return door_kill(root, scale, power_loss=True)


def hub_kill(root: Path, scale: float) -> Result:
    """SIGKILL the hub 50 times, 0.5 to 3 s after each start (some during its start-up), while a door produces."""
    kills = _times(50, scale)
    result = Result(f"hub SIGKILL x{kills}", faults=kills)
    started = time.monotonic()
    rng = random.Random(1250)
    with Site(root) as site:
        ledger = Ledger("door-1", root / "door-1")
        producer = Producer(ledger, site.port, rate=100)
        ends = []
        for _ in range(kills):
            time.sleep(rng.uniform(0.5, 3.0))  # a random moment of the hub's life, start-up included
            site.kill_hub()
            ends.append(site.start_hub())
        wait_until(lambda: _stored_by(site, ledger, ends[-1]), 120, step=0.5)
        producer.terminate()
        reckon(result, site, [ledger], fault_ends=ends, recover="resume")
    result.extra["hub_starts"] = site.hub_starts
    result.seconds = time.monotonic() - started
    return result


def broker_kill(root: Path, scale: float) -> Result:
    """SIGKILL Mosquitto (persistence on) 20 times, 1 to 3 s apart, down for up to 1.5 s, while a door produces."""
    kills = _times(20, scale)
    result = Result(f"mosquitto SIGKILL x{kills}", faults=kills)
    started = time.monotonic()
    rng = random.Random(1220)
    with Site(root) as site:
        ledger = Ledger("door-1", root / "door-1")
        producer = Producer(ledger, site.port, rate=100)
        ends = []
        for _ in range(kills):
            time.sleep(rng.uniform(1.0, 3.0))
            process = site.broker.process
            assert process is not None
            process.kill()  # SIGKILL: Mosquitto saves nothing (its last autosave is all it has)
            process.wait(10)
            site.broker.process = None
            time.sleep(rng.uniform(0.0, 1.5))
            site.broker.start()
            ends.append(time.time())
        wait_until(lambda: _stored_by(site, ledger, ends[-1]), 120, step=0.5)
        producer.terminate()
        reckon(result, site, [ledger], fault_ends=ends, recover="resume")
    result.seconds = time.monotonic() - started
    return result


# --- the network ---------------------------------------------------------------------------------------------------


def network_fault(root: Path, scale: float, *, seconds: float, mode: ProxyMode) -> Result:
    """The door reaches the broker through a proxy; it refuses (a cut) or black-holes for ``seconds``, then passes.

    The door produces 20 events a second throughout. Recovery is the time from the network's return to the last
    event accepted before it being stored at the hub (the backlog delivered).
    """
    length = max(1.0, seconds * scale)
    label = "cut" if mode == "refuse" else "black hole"
    result = Result(f"network {label} {length:.0f}s", faults=1)
    started = time.monotonic()
    with Site(root) as site:
        proxy = FaultProxy(site.port)
        proxy.start()
        try:
            ledger = Ledger("door-1", root / "door-1")
            producer = Producer(ledger, proxy.port, rate=20)
            if not wait_until(lambda: _stored_count(site, ledger) >= 20, 60):
                result.problems.append("nothing was delivered before the fault")
            before = ledger.count()
            proxy.set_mode(mode)
            time.sleep(length)  # the outage is the test: it lasts this long
            during = ledger.count() - before
            proxy.set_mode("pass")
            restored = time.time()
            if during < length * 10:
                result.problems.append(f"the door accepted only {during} events during the fault")
            if not wait_until(lambda: _stored_by(site, ledger, restored), 120 + length, step=0.5):
                result.problems.append(
                    "the backlog was not delivered within 120 s + the outage after the network came back"
                )
            producer.terminate()
            result.extra["accepted_during_fault"] = during
            reckon(result, site, [ledger], fault_ends=[restored], recover="drain")
        finally:
            proxy.stop()
    result.seconds = time.monotonic() - started
    return result


# --- storage -------------------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def _garble(path: Path, rng: random.Random, pages: int = 3) -> None:
    """Overwrite a few whole pages after the first (the header stays readable: the damage is inside)."""
    data = bytearray(path.read_bytes())
    page = 4096
    count = len(data) // page
    for index in rng.sample(range(1, count), min(pages, count - 1)):
        data[index * page : (index + 1) * page] = rng.randbytes(page)
    path.write_bytes(bytes(data))


def _attempt(command: list[str], marker: str, log: Path, timeout: float = 60.0) -> tuple[str, str]:
    """Start a role on a damaged file: ``refused`` (exit non-zero) or ``served`` (it printed ``marker``: it runs)."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    outcome = "hung"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            outcome = "refused" if process.returncode != 0 else "exited 0"
            break
        if marker in log.read_text(errors="replace"):
            outcome = "served"
            break
        time.sleep(0.2)
    if process.poll() is None:
        process.kill()
        process.wait(10)
    return outcome, log.read_text(errors="replace")


def corrupted_databases(root: Path, scale: float) -> Result:
    """Damaged databases: the hub's (0 bytes, cut in half, garbled pages) and the door's outbox (cut, garbled).

    Each role must refuse to start with advice (exit non-zero, the file named, no traceback) and leave the file as
    it was; ``rollcall report events`` on a damaged hub database likewise. ``lost`` counts the events in files a
    role overwrote.
    """
    result = Result("corrupted databases", faults=0)
    started = time.monotonic()
    rng = random.Random(1205)
    ledger = Ledger("door-1", root / "door-1")
    with Site(root) as site:
        # A real hub database and a real outbox with undelivered events, made the ordinary way.
        first = Producer(ledger, site.port, rate=200, events=300)
        first.done.wait(60)
        wait_until(lambda: _stored_by(site, ledger, time.time()), 60)
        first.terminate()
        site.stop_hub()
        second = Producer(ledger, site.port, rate=200, events=300)  # these stay in the outbox: the hub is gone
        second.done.wait(60)
        second.terminate()
    events_in_hub = len(stored_events(site.database))
    result.produced = ledger.count()
    result.stored = events_in_hub
    cases: list[tuple[str, Path, int]] = []
    undelivered = result.produced - events_in_hub
    for label, source in (("hub database", site.database), ("outbox", ledger.outbox)):
        for damage in ("zero", "half", "garbled"):
            if label == "outbox" and damage == "zero":
                continue  # a 0-byte outbox is the sequence-epoch question (issue 12, defect 4), not corruption
            folder = root / "cases" / f"{label.replace(' ', '-')}-{damage}"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / source.name
            shutil.copy(source, target)
            if damage == "zero":
                target.write_bytes(b"")
            elif damage == "half":
                with target.open("r+b") as file:
                    file.truncate(target.stat().st_size // 2)
            else:
                _garble(target, rng)
            # What a role that overwrote the file would lose: the events in it (none are left in a 0-byte file).
            events = 0 if damage == "zero" else events_in_hub if label == "hub database" else undelivered
            cases.append((f"{label} {damage}", target, events))
    for case, target, events in cases:
        result.faults += 1
        before = _sha256(target)
        if case.startswith("hub"):
            config = _hub_config_for(site, target)
            runs = [
                ("hub run", [PYTHON, "-m", "rollcall.cli", "hub", "run", "--config", str(config)], "rollcall hub:"),
                ("report events", [PYTHON, "-m", "rollcall.cli", "report", "events", "--config", str(config)], "\x00"),
            ]
        else:
            config = _edge_config_for(root, site.port, target.parent)
            runs = [
                (
                    "edge run",
                    [PYTHON, "-m", "rollcall.cli", "edge", "run", "--config", str(config)],
                    # The summary line comes only after the service was built (its outbox opened): it runs.
                    "rollcall edge: door device 'door-1'",
                )
            ]
        for what, command, marker in runs:
            outcome, output = _attempt(command, marker, target.parent / f"{what.replace(' ', '-')}.log")
            after = _sha256(target)
            if after != before:
                result.lost += events
                result.problems.append(f"{case}: `{what}` changed the file ({events} events in it)")
            if outcome != "refused":
                result.problems.append(f"{case}: `{what}` {outcome} instead of refusing")
            elif "Traceback" in output:
                result.problems.append(f"{case}: `{what}` refused with a traceback instead of a message")
            elif str(target) not in output and target.name not in output:
                result.problems.append(f"{case}: `{what}` refused without naming the file")
            before = after
    result.extra["cases"] = len(cases)
    result.seconds = time.monotonic() - started
    return result


def outbox_replaced(root: Path, scale: float) -> Result:
    """Follow the outbox's own advice for a damaged file (move it aside, start again) and lose nothing after it.

    A door delivers 300 events; its outbox is moved aside as the advice says; the door starts on a new, empty
    outbox and produces 300 more. Every one of them must be stored: a new outbox must not reuse the sequence
    numbers the hub has already seen.
    """
    result = Result("outbox moved aside", faults=1)
    started = time.monotonic()
    with Site(root) as site:
        ledger = Ledger("door-1", root / "door-1")
        first = Producer(ledger, site.port, rate=200, events=300)
        first.done.wait(60)
        if not wait_until(lambda: _stored_by(site, ledger, time.time()), 60):
            result.problems.append("the first 300 events were not delivered")
        first.terminate()
        ledger.outbox.rename(ledger.outbox.with_name("outbox.db.bad"))  # the advice: mv outbox.db outbox.db.bad
        second = Producer(ledger, site.port, rate=200, events=300)
        second.done.wait(60)
        wait_until(lambda: _stored_by(site, ledger, time.time()), 30, step=0.5)
        second.terminate()
        reckon(result, site, [ledger], fault_ends=[second.started_at], recover="resume")
    result.seconds = time.monotonic() - started
    return result


def _hub_config_for(site: Site, database: Path) -> Path:
    path = database.parent / "hub.toml"
    text = site.hub_config().read_text().replace(str(site.database), str(database))
    text = text.replace(f'data_dir = "{site.hub_dir}"', f'data_dir = "{database.parent}"')
    path.write_text(text)
    return path


def _edge_config_for(root: Path, port: int, data_dir: Path) -> Path:
    camera = root / "camera"
    camera.mkdir(exist_ok=True)
    blank = camera / "blank.png"
    if not blank.exists():
        import cv2
        import numpy as np

        cv2.imwrite(str(blank), np.full((360, 640, 3), 90, np.uint8))
    path = data_dir / "edge.toml"
    path.write_text(
        f"""[site]
id = "hq"

[mqtt]
host = "127.0.0.1"
port = {port}

[device]
id = "door-1"
data_dir = "{data_dir}"

[camera]
source = "{camera}"
fps = 5
loop = true

[models]
dir = "{os.environ.get("ROLLCALL_MODEL_DIR", REPO_ROOT.parent / "shared" / "models")}"
"""
    )
    return path


# --- floods --------------------------------------------------------------------------------------------------------


def flood(root: Path, scale: float, *, rate: float = 2000.0, seconds: float = 20.0) -> Result:
    """One publisher floods the hub with junk (QoS 0, ``rate`` a second) while a good door delivers 50 events/s."""
    length = max(2.0, seconds * scale)
    result = Result(f"flood {rate:.0f}/s for {length:.0f}s", faults=1)
    started = time.monotonic()
    with Site(root) as site:
        ledger = Ledger("door-1", root / "door-1")
        producer = Producer(ledger, site.port, rate=50)
        if not wait_until(lambda: _stored_count(site, ledger) >= 50, 60):
            result.problems.append("nothing was delivered before the flood")
        flood_started = time.time()
        flooder = subprocess.run(
            [
                PYTHON,
                "-m",
                "tests.helpers.flooder",
                "--port",
                str(site.port),
                "--rate",
                str(rate),
                "--seconds",
                str(length),
            ],
            cwd=REPO_ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=length + 120,
            check=False,
        )
        flood_ended = time.time()
        sent = flooder.stdout.split()[-1] if flooder.stdout.strip() else "?"
        if not wait_until(lambda: _stored_by(site, ledger, flood_ended), 300, step=0.5):
            result.problems.append("the good door's events were not all stored within 300 s of the flood's end")
        producer.terminate()
        reckon(result, site, [ledger], fault_ends=[flood_ended], recover="drain")
    rows = {row.event_id: row for row in stored_events(site.database)}
    waits = sorted(
        rows[item.event_id].received_at - item.at
        for item in ledger.items()
        if flood_started <= item.at <= flood_ended and item.event_id in rows
    )
    result.extra["junk_sent"] = sent
    if waits:
        result.extra["good_wait_p50_s"] = f"{statistics.median(waits):.2f}"
        result.extra["good_wait_max_s"] = f"{waits[-1]:.2f}"
    result.extra["hub_db_mb"] = f"{site.database.stat().st_size / 1e6:.1f}"
    result.seconds = time.monotonic() - started
    return result


# --- a full disk under the real door -------------------------------------------------------------------------------


def _door_clip(root: Path) -> Path:
    """A 30 s door clip of the test photos ($ROLLCALL_FACES_DIR), rendered under ``root`` (never in the repo)."""
    from rollcall.tools.doorclip import generate_door_clip

    faces = Path(os.environ.get("ROLLCALL_FACES_DIR", REPO_ROOT.parent / "shared" / "faces"))
    video, _, _ = generate_door_clip(faces, root / "clip", seed=5, duration_s=30.0)
    return video


def _door_config(root: Path, port: int, data_dir: Path, clip: Path) -> Path:
    path = root / "door.toml"
    path.write_text(
        f"""[site]
id = "hq"

[mqtt]
host = "127.0.0.1"
port = {port}
keepalive_s = 5
reconnect_max_s = 2

[device]
id = "door-1"
data_dir = "{data_dir}"

[camera]
source = "{clip}"
fps = 10
realtime = true
loop = true

[models]
dir = "{os.environ.get("ROLLCALL_MODEL_DIR", REPO_ROOT.parent / "shared" / "models")}"

[outbox]
resend_after_s = 2

[health]
interval_s = 2
"""
    )
    return path


def _fill(folder: Path) -> Path:
    """Write a filler file until the file system is full; its path."""
    filler = folder / "filler"
    chunk = b"\0" * 65_536
    with filler.open("wb") as file:
        try:
            while True:
                file.write(chunk)
                file.flush()
        except OSError:
            pass
    return filler


def _outbox_numbers(path: Path) -> tuple[int, int]:
    """(numbers handed out, messages refused) from an outbox's meta table."""
    import sqlite3

    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
    finally:
        connection.close()
    return int(meta["next_seq"]) - 1, int(meta["refused"])


def disk_full(root: Path, scale: float) -> Result:
    """The real door (on a looping door clip) with its outbox on a 24 MB tmpfs that is filled, then freed.

    The door must keep running while the disk is full, and store and deliver new events again once space returns,
    without a restart. Produced is every sequence number the outbox handed out; lost is those the hub never got.
    """
    length = max(10.0, 30.0 * scale)
    result = Result(f"outbox disk full {length:.0f}s", faults=1)
    started = time.monotonic()
    if os.geteuid() != 0:
        result.problems.append("needs root to mount a small tmpfs (CI runs as root)")
        return result
    clip = _door_clip(root)
    data = root / "door-1"
    data.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(data)], check=False)
    if mounted.returncode != 0:
        result.problems.append(f"could not mount a tmpfs on {data}")
        return result
    try:
        with Site(root) as site:
            ledger = Ledger("door-1", data)
            with (root / "door.log").open("ab") as log:
                door = subprocess.Popen(
                    [
                        PYTHON,
                        "-m",
                        "rollcall.cli",
                        "edge",
                        "run",
                        "--config",
                        str(_door_config(root, site.port, data, clip)),
                    ],
                    cwd=REPO_ROOT,
                    env=child_env(),
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )

            def events_after(moment: float) -> int:
                return sum(1 for row in stored_events(site.database) if row.device == "door-1" and row.at > moment)

            if not wait_until(lambda: events_after(0) > 0, 120, step=0.5):
                result.problems.append("the door delivered nothing before the disk was filled")
            filler = _fill(data)
            time.sleep(length)  # the disk stays full this long: the door meets it on its next event
            filler.unlink()
            freed = time.time()
            if not wait_until(lambda: events_after(freed + 1) > 0, 90, step=0.5):
                result.problems.append("no event stored after space came back (the door did not recover by itself)")
            if door.poll() is not None:
                result.problems.append(f"the door exited ({door.returncode}) on the full disk")
            else:
                door.terminate()
                try:
                    door.wait(30)
                except subprocess.TimeoutExpired:
                    door.kill()
                    door.wait(10)
            reckon(result, site, [ledger], fault_ends=[freed], recover="resume")
        handed_out, refused = _outbox_numbers(ledger.outbox)
        # A message the full disk refused never got a number (its transaction rolled back); it is counted in
        # ``refused``, not in what the outbox handed out, so subtracting it made ``produced`` negative (-2).
        result.produced = handed_out
        result.stored = sum(1 for row in stored_events(site.database) if row.device == "door-1")
        result.lost = max(0, result.produced - result.stored)
        result.extra["refused"] = refused
    finally:
        subprocess.run(["umount", str(data)], check=False)
    result.seconds = time.monotonic() - started
    return result


# --- the catalogue -------------------------------------------------------------------------------------------------

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("cut-600", 11.5, lambda root, scale: network_fault(root, scale, seconds=600, mode="refuse")),
    Scenario("cut-120", 3.0, lambda root, scale: network_fault(root, scale, seconds=120, mode="refuse")),
    Scenario("blackhole-120", 3.0, lambda root, scale: network_fault(root, scale, seconds=120, mode="blackhole")),
    Scenario("door-kill", 2.5, door_kill),
    Scenario("power-loss", 2.5, door_power_loss),
    Scenario("hub-kill", 2.5, hub_kill),
    Scenario("disk-full", 2.0, disk_full),
    Scenario("broker-kill", 1.5, broker_kill),
    Scenario("flood", 1.5, flood),
    Scenario("cut-30", 1.0, lambda root, scale: network_fault(root, scale, seconds=30, mode="refuse")),
    Scenario("corruption", 1.0, corrupted_databases),
    Scenario("outbox-replaced", 0.5, outbox_replaced),
)
"""Every scenario, longest first (the runner starts them in this order)."""
