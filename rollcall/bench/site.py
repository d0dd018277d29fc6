"""``rollcall bench site``: a day of a site with 100 doors and 10,000 people, through Mosquitto into a hub process.

A realistic day is generated: everybody arrives in a 30-minute morning rush at an entrance door, leaves for lunch
through an exit door and comes back, and leaves in the evening; a few forget to check out; two doors deliver their
whole day late (their events arrive in the evening, as after a network outage). A sender process publishes it, door
by door topic, through a private broker (Mosquitto if installed) to the hub, which runs in its own process on its own
database file with a controlled clock: the sender moves the hub's clock with the events it publishes (shared memory),
so a day takes seconds, not hours. The morning rush is paced at ``--pace`` times real time (default 100: 10,000
arrivals in 18 s, 560 a second where a real site's rush brings 5.6); the rest of the day goes as fast as the hub
takes it. At 1000x the rush (5,600 arrivals a second) outruns what one hub process on two cores stores (about 1,500
events a second), so the board lags by the backlog: that pace measures throughput, not the board's latency.

Figures: the day's span over the wall time it took to store it (``speedup_vs_realtime``); the sign-off sweep that
makes the day final for everybody (run once the doors reported their outboxes empty the next morning); a month's
attendance report for everybody (``rollcall report attendance --from --to``, on the hub file, with the 29 days
before filled from the measured day); the latency of the presence board during the rush, from a door's publish to the
retained board (all the site's rows) showing that person IN at a supervisor's subscription; and the hub process's
peak resident memory. Baselines where meaningful: the goals of issue 14.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from edge.protocol.progress import Progress
from rollcall.bench.runner import Benchmark, Figures, percentile

SITE = "bench-site"
DAY = date(2026, 3, 2)  # a Monday; the site runs on UTC with the default 04:00 day start
GOALS = {
    "speedup_vs_realtime": 1000.0,
    "signoff_s": 10.0,
    "month_report_s": 5.0,
    "presence_p95_ms": 300.0,
    "hub_rss_mb": 500.0,
}
"""The goals of issue 14 (speed-up at least, the others at most)."""
LATE_DOORS = 2
FORGETFUL_SHARE = 0.01
MB = 1024 * 1024

Plan = list[tuple[float, str, str, str]]
"""(UTC timestamp, device, person id, ``seen``/``left``) in time order."""


def _at(hour: float) -> float:
    return datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC).timestamp() + hour * 3600


def door_ids(doors: int) -> tuple[list[str], list[str]]:
    """(entrance doors, exit doors): the even-numbered doors face in, the odd ones out (at least one each)."""
    names = [f"door-{i:03d}" for i in range(max(2, doors))]
    return names[0::2], names[1::2]


def generate_day(people: list[str], doors: int, seed: int = 14) -> tuple[Plan, Plan, float]:
    """The day's sightings: (on time, delivered late by the first entrance and exit doors, end of the rush).

    Arrival 07:45-08:15 at an entrance door (a fifth are seen twice: a second track while lingering), lunch out
    11:45-13:15 at an exit door and back 20-60 min later, home 16:30-18:30 at an exit door; ``FORGETFUL_SHARE`` of
    the people are never seen leaving.
    """
    rng = random.Random(seed)
    entrances, exits = door_ids(doors)
    late = {entrances[0], exits[0]} if LATE_DOORS else set()
    plan: Plan = []
    for person in people:
        arrive = _at(7.75) + rng.uniform(0, 1800)
        door = rng.choice(entrances)
        plan.append((arrive, door, person, "seen"))
        if rng.random() < 0.2:
            plan.append((arrive + rng.uniform(5, 40), door, person, "left"))
        lunch = _at(11.75) + rng.uniform(0, 5400)
        plan.append((lunch, rng.choice(exits), person, "seen"))
        plan.append((lunch + rng.uniform(1200, 3600), rng.choice(entrances), person, "seen"))
        if rng.random() >= FORGETFUL_SHARE:
            plan.append((_at(16.5) + rng.uniform(0, 7200), rng.choice(exits), person, "seen"))
    plan.sort()
    on_time = [s for s in plan if s[1] not in late]
    delayed = [s for s in plan if s[1] in late]
    return on_time, delayed, _at(8.25)


# --- the hub process -----------------------------------------------------------------------------------------------


def _hub_config(folder: Path, port: int, doors: int) -> Any:
    from edge.protocol.config import MqttSettings, SiteSettings
    from hub.config import CameraRoleSettings, HubConfig, HubSettings

    entrances, exits = door_ids(doors)
    cameras = [CameraRoleSettings(device=d, role="entrance") for d in entrances]
    cameras += [CameraRoleSettings(device=d, role="exit") for d in exits]
    return HubConfig(
        mqtt=MqttSettings(port=port, client_id="hub", keepalive_s=30),
        hub=HubSettings(database=folder / "hub.db", data_dir=folder / "hub", key_file=folder / "hub.key"),
        site=SiteSettings(id=SITE),
        cameras=cameras,
    )


def _hub_toml(folder: Path, port: int) -> Path:
    path = folder / "hub.toml"
    path.write_text(
        f'[mqtt]\nport = {port}\n\n[site]\nid = "{SITE}"\n\n[hub]\ndatabase = "{folder / "hub.db"}"\n'
        f'data_dir = "{folder / "hub"}"\nkey_file = "{folder / "hub.key"}"\n'
    )
    return path


def _hub_main(folder: str, port: int, doors: int, clock_cell: Any, conn: Connection) -> None:
    """The hub process: a real HubService on its own file; its clock is ``clock_cell``; commands on ``conn``."""
    import hub.service
    from hub.service import HubService
    from hub.store import HubStore

    # The bench runs the sign-off sweep itself, at the moment it measures; the start-up sweep still runs.
    hub.service.SIGNOFF_EVERY_S = 10**9

    def clock() -> datetime:
        return datetime.fromtimestamp(clock_cell.value, UTC)

    config = _hub_config(Path(folder), port, doors)
    store = HubStore.from_settings(config.hub)
    service = HubService(config, store, model_id="bench:site", embedding_size=128, clock=clock)
    service.start()
    if not service.link.wait_subscribed(30):
        conn.send(("error", "the hub could not subscribe"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        command, argument = conn.recv()
        if command == "stored":
            conn.send(service.counters.events_stored)
        elif command == "drained":
            with service.store_lock:
                through = [d.drained_through for d in store.list_devices()]
            conn.send(sum(1 for t in through if t is not None and t.timestamp() >= argument))
        elif command == "signoff":
            started = time.perf_counter()
            with service.store_lock:
                signed = service.sign_off(datetime.fromtimestamp(argument, UTC))
            conn.send((time.perf_counter() - started, signed))
        elif command == "month":
            with service.store_lock:
                conn.send(_fill_month(store, argument))
        elif command == "stop":
            service.stop()
            store.close()
            conn.send("stopped")
            return


def _fill_month(store: Any, days: int) -> int:
    """Copy the measured day's attendance rows to the ``days`` days before it (the report reads a month)."""
    from hub.store.schema import transaction

    rows = store.db.conn.execute(
        "SELECT person_id, first_in, last_out, present_s, status, updated_at, final FROM attendance WHERE day = ?",
        (DAY.isoformat(),),
    ).fetchall()

    def shifted(value: str | None, back: int) -> str | None:
        return None if value is None else (datetime.fromisoformat(value) - timedelta(days=back)).isoformat()

    copies = [
        ((DAY - timedelta(days=back)).isoformat(), p, shifted(fi, back), shifted(lo, back), s, st, u, f)
        for back in range(1, days + 1)
        for p, fi, lo, s, st, u, f in rows
    ]
    with transaction(store.db) as tx:
        tx.executemany(
            "INSERT OR REPLACE INTO attendance (day, person_id, first_in, last_out, present_s, status, updated_at, "
            "final) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            copies,
        )
    return len(copies)


# --- the doors (one sender process) --------------------------------------------------------------------------------


def _sender_main(
    port: int, plan: Plan, late: Plan, rush_end: float, pace: float, clock_cell: Any, conn: Connection
) -> None:
    """Publish the day as the doors would: the rush paced at ``pace`` x real time, the rest at once, late doors last.

    Sends back the monotonic publish time of every person's first arrival in the rush (the presence probe).
    """
    from ulid import ULID

    from edge.protocol import wire
    from edge.protocol.config import MqttSettings
    from edge.protocol.mqtt import MqttLink

    topics = wire.Topics(SITE)
    link = MqttLink(MqttSettings(port=port), client_id="bench-doors", max_inflight=1000)
    link.start()
    link.wait_connected(10)
    seqs: dict[str, int] = {}

    def encoded(at: float, device: str, person: str, kind: str) -> tuple[str, bytes]:
        seqs[device] = seqs.get(device, 0) + 1
        event = wire.Event(
            event_id=str(ULID.from_timestamp(at)),
            device=device,
            seq=seqs[device],
            at=datetime.fromtimestamp(at, UTC),
            type="left" if kind == "left" else "seen",
            person_id=person,
            score=0.8,
            margin=0.3,
            track=seqs[device],
            quality=0.9,
            has_snapshot=False,
        )
        return topics.device_event(device), wire.encode(event)

    messages = [(s[0], s[2], s[3], *encoded(*s)) for s in plan]
    late_messages = [(s[0], *encoded(*s)) for s in late]
    conn.send("ready")
    conn.recv()
    arrivals: dict[str, float] = {}
    start_wall = time.monotonic()
    first_at = plan[0][0] if plan else 0.0
    infos = []
    for at, person, kind, topic, payload in messages:
        if at <= rush_end and pace > 0:
            delay = start_wall + (at - first_at) / pace - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        clock_cell.value = max(clock_cell.value, at + 1.0)
        infos.append(link.publish(topic, payload, qos=1))
        if at <= rush_end and kind == "seen":
            arrivals.setdefault(person, time.monotonic())
    evening = _at(22.0)  # the two late doors come back online and deliver their day
    clock_cell.value = max(clock_cell.value, evening)
    for _, topic, payload in late_messages:
        infos.append(link.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    conn.send((arrivals, evening))
    # Next morning: every door reports an empty outbox (the sign-off waits for that), then the bench signs off.
    morning = _at(28.75)  # 04:45, after the 04:00 day start
    conn.recv()
    clock_cell.value = max(clock_cell.value, morning)
    reported = datetime.fromtimestamp(morning, UTC)
    for device in seqs:
        health = wire.Health(device=device, at=reported, uptime_s=86_400.0, fps=10.0, cpu_percent=30.0, outbox_depth=0)
        link.publish(topics.device_health(device), health, qos=1).wait_for_publish(30)
    conn.send(morning)
    link.stop()


# --- the supervisor's view of the board ----------------------------------------------------------------------------


class BoardWatcher:
    """Subscribes to the retained presence board; notes when each person first shows IN (monotonic time)."""

    def __init__(self, port: int) -> None:
        from edge.protocol import wire
        from edge.protocol.config import MqttSettings
        from edge.protocol.mqtt import MqttLink, Received

        self.first_in: dict[str, float] = {}
        self.boards = 0
        self.rows = 0
        self._lock = threading.Lock()

        def on_board(message: Received) -> None:
            arrived = time.monotonic()
            # The stdlib parser, not the contract's validation: this process is the measuring instrument and shares
            # the two cores with the hub, so it spends as little as it can (the hub's boards are validated in tests).
            board = json.loads(message.payload)
            with self._lock:
                self.boards += 1
                self.rows = len(board["people"])
                for entry in board["people"]:
                    if entry["state"] == "in" and entry["person_id"] not in self.first_in:
                        self.first_in[entry["person_id"]] = arrived

        self.link = MqttLink(MqttSettings(port=port), client_id="bench-supervisor", on_message=on_board)
        self.link.subscribe(wire.Topics(SITE).hub_presence(), qos=1)

    def start(self) -> None:
        self.link.start()
        if not self.link.wait_subscribed(10):
            raise ConnectionError("the bench's supervisor could not subscribe to the presence board")

    def stop(self) -> None:
        self.link.stop()


# --- the bench -----------------------------------------------------------------------------------------------------


def _seed_people(folder: Path, port: int, doors: int, count: int) -> list[str]:
    from hub.store import HubStore
    from hub.store.schema import transaction

    first = ["Ana", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal", "Lena"]
    last = ["Almeida", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hansen", "Ivanova", "Jensen"]
    store = HubStore.from_settings(_hub_config(folder, port, doors).hub)
    stamp = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC) - timedelta(days=40)
    ids = [f"p-{i:06d}" for i in range(count)]
    rows = [(pid, f"{first[i % 12]} {last[(i // 12) % 10]} {i:05d}", stamp.isoformat()) for i, pid in enumerate(ids)]
    with transaction(store.db) as tx:  # enrolment one by one would take longer than the day
        tx.executemany(
            "INSERT INTO people (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
            [(p, n, s, s) for p, n, s in rows],
        )
    store.close()
    return ids


def _ask(conn: Connection, command: str, argument: Any = None, timeout: float = 600.0) -> Any:
    conn.send((command, argument))
    if not conn.poll(timeout):
        raise TimeoutError(f"the bench hub did not answer {command!r} in {timeout:.0f} s")
    return conn.recv()


def _rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of process ``pid`` in MB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _month_report(folder: Path, port: int) -> tuple[float, int]:
    """Seconds for ``rollcall report attendance`` over the 30 days (CSV), and the rows it printed."""
    from hub.cli import report_attendance

    args = argparse.Namespace(config=_hub_toml(folder, port), start=DAY - timedelta(days=29), end=DAY, format="csv")
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = report_attendance(args)
    elapsed = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"rollcall report attendance failed with exit code {code}")
    return elapsed, out.getvalue().count("\n") - 1


def bench_site(
    people: int = 10_000, doors: int = 100, pace: float = 100.0, progress: bool = True
) -> dict[str, float | int | str]:
    """Every figure of the site bench; starts a private broker (Mosquitto if installed), a hub and a sender."""
    from rollcall.broker import LocalBroker, find_mosquitto

    say: Callable[[str], None] = (
        (lambda line: print(line, file=sys.stderr, flush=True)) if progress else (lambda line: None)
    )
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="rollcall-bench-site-", dir=os.environ.get("ROLLCALL_BENCH_DIR")) as tmp:
        folder = Path(tmp)
        broker = LocalBroker(
            "mosquitto" if find_mosquitto() else "embedded", folder / "broker", max_queued_messages=1_000_000
        )
        broker.start()
        clock_cell = spawn.RawValue("d", _at(6.0))
        hub_proc = sender = None
        try:
            ids = _seed_people(folder, broker.port, doors, people)
            plan, late, rush_end = generate_day(ids, doors)
            total = len(plan) + len(late)
            say(f"site: {people} people, {doors} doors, {total} sightings ({len(late)} from {LATE_DOORS} late doors)")
            hub_end, hub_conn = spawn.Pipe()
            hub_proc = spawn.Process(
                target=_hub_main, args=(str(folder), broker.port, doors, clock_cell, hub_conn), name="bench-hub"
            )
            hub_proc.start()
            if not hub_end.poll(120):
                raise TimeoutError("the bench hub did not start in 120 s")
            status, hub_pid = hub_end.recv()
            if status != "ready":
                raise RuntimeError(f"the bench hub did not start: {hub_pid}")
            watcher = BoardWatcher(broker.port)
            watcher.start()
            sender_end, sender_conn = spawn.Pipe()
            sender = spawn.Process(
                target=_sender_main,
                args=(broker.port, plan, late, rush_end, pace, clock_cell, sender_conn),
                name="bench-doors",
            )
            sender.start()
            if not sender_end.poll(300) or sender_end.recv() != "ready":
                raise TimeoutError("the bench's doors did not start")
            started = time.monotonic()
            sender_end.send("go")
            with Progress("site: the day into the hub", total, enabled=progress) as bar:
                stored = 0
                while stored < total:
                    time.sleep(0.1)
                    stored = _ask(hub_end, "stored")
                    bar.advance(stored - bar.done)
                    if time.monotonic() - started > 3600:
                        raise TimeoutError(f"the hub stored {stored} of {total} events in an hour")
            wall = time.monotonic() - started
            arrivals, evening = sender_end.recv()
            span = evening - min(s[0] for s in plan)
            time.sleep(1.0)  # the last board reaches the watcher
            watcher.stop()
            latencies = sorted(
                (watcher.first_in[p] - sent) * 1000 for p, sent in arrivals.items() if p in watcher.first_in
            )
            say(f"site: day stored in {wall:.1f} s; {watcher.boards} boards of {watcher.rows} rows seen")
            sender_end.send("morning")
            morning = sender_end.recv()
            day_end = _at(28.0)  # the attendance day ends at 04:00 the next morning
            deadline = time.monotonic() + 120
            while (drained := _ask(hub_end, "drained", day_end)) < doors:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {drained} of {doors} doors reported an empty outbox to the hub")
                time.sleep(0.2)
            say("site: sign-off sweep")
            signoff_s, signed = _ask(hub_end, "signoff", morning)
            say(f"site: {signed} days signed off; filling 29 more days and reporting the month")
            _ask(hub_end, "month", 29)
            month_s, month_rows = _month_report(folder, broker.port)
            rss_peak = _rss_mb(hub_pid)[1]
            _ask(hub_end, "stop", timeout=60)
        finally:
            for process in (sender, hub_proc):
                if process is not None:
                    process.join(10)
                    if process.is_alive():
                        process.kill()
            broker.stop()
    return {
        "speedup_vs_realtime": round(span / wall, 1),
        "signoff_s": round(signoff_s, 3),
        "month_report_s": round(month_s, 3),
        "presence_p95_ms": round(percentile(latencies, 0.95), 1),
        "hub_rss_mb": round(rss_peak, 1),
        "_people": people,
        "_doors": doors,
        "_events": total,
        "_events_per_s": round(total / wall),
        "_signed_off": signed,
        "_month_rows": month_rows,
        "_presence_p50_ms": round(percentile(latencies, 0.5), 1),
        "_presence_samples": len(latencies),
        "_board_rows": watcher.rows,
        "_broker": broker.kind,
    }


def _check(args: argparse.Namespace) -> str | None:
    if args.people < 10 or args.doors < 2:
        return "rollcall bench site: --people must be at least 10 and --doors at least 2"
    if args.pace < 0:
        return "rollcall bench site: --pace must be 0 (no pacing) or more"
    return None


def public(figures: Figures) -> dict[str, Any]:
    """The figures ``--json`` prints: exactly the five keys of issue 14."""
    return {key: figures[key] for key in GOALS}


def _report(figures: Figures, args: argparse.Namespace) -> list[str]:
    def verdict(key: str) -> str:
        value, goal = figures[key], GOALS[key]
        met = value >= goal if key == "speedup_vs_realtime" else value < goal
        return "meets goal" if met else "MISSES goal"

    return [
        f"  site     : {figures['_people']} people, {figures['_doors']} doors, {figures['_events']} events "
        f"({figures['_broker']} broker)",
        f"  ingest   : {figures['speedup_vs_realtime']:>9}x real time ({figures['_events_per_s']} events/s)   "
        f"goal >= {GOALS['speedup_vs_realtime']:.0f}x  {verdict('speedup_vs_realtime')}",
        f"  sign-off : {figures['signoff_s']:>9} s for {figures['_signed_off']} days   "
        f"goal < {GOALS['signoff_s']:.0f} s  {verdict('signoff_s')}",
        f"  month    : {figures['month_report_s']:>9} s for {figures['_month_rows']} rows   "
        f"goal < {GOALS['month_report_s']:.0f} s  {verdict('month_report_s')}",
        f"  presence : p95 {figures['presence_p95_ms']} ms, p50 {figures['_presence_p50_ms']} ms "
        f"({figures['_presence_samples']} arrivals, boards of {figures['_board_rows']} rows)   "
        f"goal < {GOALS['presence_p95_ms']:.0f} ms  {verdict('presence_p95_ms')}",
        f"  hub RSS  : {figures['hub_rss_mb']:>9} MB peak   "
        f"goal < {GOALS['hub_rss_mb']:.0f} MB  {verdict('hub_rss_mb')}",
    ]


BENCHMARK = Benchmark(
    headline=lambda args: (
        f"bench site: a day of {args.people} people at {args.doors} doors through the broker into a hub process "
        f"(rush paced at {args.pace:g}x real time), sign-off, a month's report, presence latency, hub memory"
    ),
    measure=lambda args: bench_site(people=args.people, doors=args.doors, pace=args.pace),
    report=_report,
    check=_check,
    public=public,
)
