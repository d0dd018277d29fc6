"""Tests for the device outbox in edge/runtime/outbox.py, on real SQLite files."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.runtime.outbox import APPLICATION_ID, Outbox, OutboxError, OutboxFull, OutboxMessage

REPO_ROOT = Path(__file__).resolve().parents[2]
TOPIC = "rollcall/hq/device/door1/event"
SNAP = "rollcall/hq/device/door1/snapshot"
BIG = 10**9


class Clock:
    """A settable clock for the outbox."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def msg(size: int = 10, prefix: str = "m") -> Callable[[int], tuple[str, str, bytes]]:
    """A build callback: id and payload derived from the seq it is given, payload padded to ``size`` bytes."""

    def build(seq: int) -> tuple[str, str, bytes]:
        head = f"{seq}:".encode()
        return f"{prefix}{seq}", TOPIC, head + b"x" * max(0, size - len(head))

    return build


def seq_payload(message_id: str) -> Callable[[int], tuple[str, str, bytes]]:
    """A build callback with a fixed id whose payload is the seq it is given."""
    return lambda seq: (message_id, TOPIC, str(seq).encode())


def all_messages(ob: Outbox) -> list[OutboxMessage]:
    return ob.due(limit=10**9, resend_after_s=0.0, now=10**12)


def conn_of(ob: Outbox) -> sqlite3.Connection:
    conn = ob._conn
    assert conn is not None
    return conn


# --- sequence numbers -----------------------------------------------------------------------------------------


def test_seq_is_strictly_increasing_and_never_reused_after_deletes_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_bytes=BIG) as ob:
        seqs = [ob.add(msg()).seq for _ in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        # Deleting the newest rows must not let their numbers come back (a rowid default would reuse them).
        assert ob.ack(["m4", "m5"]) == 2
        assert ob.add(msg()).seq == 6
    with Outbox(path, max_bytes=BIG) as ob:
        assert ob.ack(["m1", "m2", "m3", "m6"]) == 4
        assert ob.stats().depth == 0
        assert ob.add(msg()).seq == 7
        assert ob.stats().next_seq == 8


def test_build_gets_the_seq_and_its_failure_stores_nothing(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=BIG) as ob:
        first = ob.add(msg())
        assert first.payload.startswith(b"1:") and first.message_id == "m1" and first.attempts == 0

        def broken(seq: int) -> tuple[str, str, bytes]:
            raise RuntimeError("encoder failed")

        with pytest.raises(RuntimeError, match="encoder failed"):
            ob.add(broken)
        with pytest.raises(ValueError, match="already stored"):
            ob.add(lambda seq: ("m1", TOPIC, b"again"))
        # Neither failure spent a number or left a row.
        assert ob.add(msg()).seq == 2
        assert [m.seq for m in all_messages(ob)] == [1, 2]


def test_duplicate_id_of_a_message_whose_attachment_remains_is_refused(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=BIG) as ob:
        ob.add(lambda seq: ("e1", TOPIC, b"event"), attachment=(SNAP, b"jpeg"))
        ob.ack(["e1"])
        with pytest.raises(ValueError, match="e1"):
            ob.add(lambda seq: ("e1", TOPIC, b"event"))


def test_payload_must_be_bytes(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=BIG) as ob:
        with pytest.raises(TypeError):
            ob.add(lambda seq: ("a", TOPIC, "text"))  # type: ignore[arg-type, return-value]
        assert ob.stats().depth == 0


# --- durability settings and file handling --------------------------------------------------------------------


def test_wal_synchronous_full_and_marks_are_set(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, max_bytes=BIG) as ob:
        conn = conn_of(ob)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        ob.add(msg())
        assert (tmp_path / "o.db-wal").exists()
    # WAL is persistent in the file; the header marks it as an outbox; the schema version is recorded.
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert other.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == 1
    finally:
        other.close()


def test_close_checkpoints_and_truncates_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = Outbox(path, max_bytes=BIG)
    for _ in range(20):
        ob.add(msg(1000))
    wal = tmp_path / "o.db-wal"
    assert wal.stat().st_size > 0
    ob.close()
    assert not wal.exists() or wal.stat().st_size == 0
    ob.close()  # idempotent
    with pytest.raises(OutboxError, match="closed"):
        ob.stats()
    with Outbox(path, max_bytes=BIG) as again:
        assert again.stats().depth == 20
        assert again.integrity_check() == "ok"


def test_a_corrupt_file_is_refused_with_the_path_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not sqlite at all, just some bytes " * 200)
    with pytest.raises(OutboxError) as info:
        Outbox(path, max_bytes=BIG)
    assert str(path) in str(info.value) and "move it aside" in str(info.value)


def test_a_foreign_sqlite_database_is_not_adopted(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError, match="not a rollcall outbox") as info:
        Outbox(path, max_bytes=BIG)
    assert str(path) in str(info.value)
    # Untouched: the foreign table is still the only one.
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_schema")] == ["people"]
    conn.close()


def test_an_outbox_from_a_newer_build_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    Outbox(path, max_bytes=BIG).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError, match="schema version 99"):
        Outbox(path, max_bytes=BIG)


def test_unopenable_path_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "o.db"
    with pytest.raises(OutboxError, match="missing-dir"):
        Outbox(path, max_bytes=BIG)


# --- sending, backoff and acks --------------------------------------------------------------------------------


def test_due_is_in_seq_order_and_resends_back_off_to_sixteen_times(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    with Outbox(tmp_path / "o.db", max_bytes=BIG, clock=clock) as ob:
        for _ in range(3):
            ob.add(msg())
        assert [m.seq for m in ob.due(10, 10.0)] == [1, 2, 3]
        assert [m.seq for m in ob.due(2, 10.0)] == [1, 2]

        assert ob.mark_sent([1, 2], now=1000.0) == 2
        assert [m.seq for m in ob.due(10, 10.0, now=1000.0)] == [3]
        assert [m.seq for m in ob.due(10, 10.0, now=1009.9)] == [3]
        due = ob.due(10, 10.0, now=1010.0)
        assert [m.seq for m in due] == [1, 2, 3]
        assert due[0].attempts == 1 and due[0].last_sent_at == 1000.0

        # Seq 1: attempts n waits 10 * 2**(n-1), capped at 160 s.
        sent_at = 1000.0
        for attempts, wait in [(2, 20.0), (3, 40.0), (4, 80.0), (5, 160.0), (6, 160.0)]:
            sent_at += 1000.0
            ob.mark_sent([1], now=sent_at)
            assert 1 not in [m.seq for m in ob.due(10, 10.0, now=sent_at + wait - 0.5)], attempts
            resent = [m for m in ob.due(10, 10.0, now=sent_at + wait) if m.seq == 1]
            assert resent and resent[0].attempts == attempts

        # Many attempts (a long outage) keep the 16x cap; they must not wrap round to "resend at once".
        for _ in range(70):
            ob.mark_sent([3], now=50_000.0)
        assert 3 not in [m.seq for m in ob.due(10, 10.0, now=50_159.0)]
        assert 3 in [m.seq for m in ob.due(10, 10.0, now=50_160.0)]

        # The default "now" is the injected clock.
        clock.now = 1000.0
        assert [m.seq for m in ob.due(10, 10.0)] == []


def test_mark_sent_and_ack_touch_only_the_named_rows(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=BIG, clock=Clock()) as ob:
        for _ in range(4):
            ob.add(msg())
        assert ob.mark_sent([2, 4, 2], now=5.0) == 2  # a repeated seq is one attempt
        by_seq = {m.seq: m for m in all_messages(ob)}
        assert {s: m.attempts for s, m in by_seq.items()} == {1: 0, 2: 1, 3: 0, 4: 1}
        assert by_seq[1].last_sent_at is None and by_seq[2].last_sent_at == 5.0
        # A PUBACK-like mark never deletes; only the ack does, and only what it names.
        assert ob.stats().depth == 4
        assert ob.ack(["m2", "m3"]) == 2
        assert [m.message_id for m in all_messages(ob)] == ["m1", "m4"]
        stats = ob.stats()
        assert stats.depth == 2 and stats.acked_total == 2
        assert stats.message_bytes == sum(len(m.payload) for m in all_messages(ob))


def test_acking_unknown_or_already_acked_ids_is_harmless(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=BIG) as ob:
        ob.add(msg())
        ob.add(msg())
        assert ob.ack([]) == 0
        assert ob.ack(["nope", "01M7YHSSVS0A533JN3YQJYX5XD"], ["nope"]) == 0
        assert ob.ack(["m1", "m1"]) == 1
        assert ob.ack(["m1"]) == 0
        assert ob.mark_sent([999]) == 0
        stats = ob.stats()
        assert stats.depth == 1 and stats.acked_total == 1
        assert stats.message_bytes == len(all_messages(ob)[0].payload)


def test_large_acks_are_split_below_the_parameter_limit(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=BIG) as ob:
        for _ in range(1200):
            ob.add(msg())
        ids = [f"m{i}" for i in range(1, 1201)]
        assert ob.mark_sent(list(range(1, 1201)), now=1.0) == 1200
        assert ob.ack(ids[:1100] + [f"x{i}" for i in range(2000)]) == 1100
        assert ob.stats().depth == 100


# --- attachments -----------------------------------------------------------------------------------------------


def test_attachments_are_stored_due_after_their_message_and_acked_separately(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=BIG, clock=Clock()) as ob:
        ob.add(lambda seq: ("e1", TOPIC, b"event1"), attachment=(SNAP, b"jpeg1"))
        ob.add(lambda seq: ("e2", TOPIC, b"event2"))
        ob.add(lambda seq: ("e3", TOPIC, b"event3"), attachment=(SNAP, b"jpeg3"))
        stored = ob.attachment("e1")
        assert stored is not None and (stored.topic, stored.payload, stored.attempts) == (SNAP, b"jpeg1", 0)
        assert ob.attachment("e2") is None
        assert ob.stats().attachments == 2 and ob.stats().attachment_bytes == 10

        # Not before its event has gone out.
        assert ob.due_attachments(10, 10.0, now=0.0) == []
        ob.mark_sent([1], now=0.0)
        assert [a.message_id for a in ob.due_attachments(10, 10.0, now=0.0)] == ["e1"]
        ob.mark_sent([3], now=0.0)
        assert [a.message_id for a in ob.due_attachments(10, 10.0, now=0.0)] == ["e1", "e3"]
        assert [a.message_id for a in ob.due_attachments(1, 10.0, now=0.0)] == ["e1"]

        # Same backoff as messages.
        assert ob.mark_attachments_sent(["e1", "e3", "e2"], now=1.0) == 2
        assert ob.due_attachments(10, 10.0, now=10.9) == []
        assert [a.message_id for a in ob.due_attachments(10, 10.0, now=11.0)] == ["e1", "e3"]

        # The event's ack leaves its snapshot; the snapshot's ack removes only the snapshot.
        assert ob.ack(["e1"]) == 1
        assert ob.attachment("e1") is not None
        assert [a.message_id for a in ob.due_attachments(10, 10.0, now=11.0)] == ["e1", "e3"]
        assert ob.ack([], ["e1"]) == 1
        assert ob.attachment("e1") is None
        assert ob.ack(["e1"], ["e1"]) == 0
        assert ob.ack([], ["e3"]) == 1
        assert ob.attachment("e3") is None and ob.stats().depth == 2  # e2 and e3 still wait for their acks
        stats = ob.stats()
        assert (stats.acked_total, stats.acked_attachments, stats.attachment_bytes) == (1, 2, 0)


# --- the size cap ------------------------------------------------------------------------------------------------


def test_cap_drops_attachments_oldest_first_then_refuses_messages(tmp_path: Path) -> None:
    clock = Clock()
    with Outbox(tmp_path / "o.db", max_bytes=1000, clock=clock) as ob:

        def add(n: int, snap: int | None = 200) -> OutboxMessage:
            attachment = None if snap is None else (SNAP, b"j" * snap)
            stored = ob.add(lambda seq: (f"e{n}", TOPIC, b"e" * 100), attachment=attachment)
            assert ob.stats().bytes <= 1000
            return stored

        for n in (1, 2, 3):
            add(n)
        assert ob.stats().bytes == 900 and ob.stats().dropped_attachments == 0
        add(4)  # 400 of events leave 600 for snapshots: the oldest (e1) goes so e4's fits
        assert [ob.attachment(f"e{n}") is not None for n in (1, 2, 3, 4)] == [False, True, True, True]
        assert ob.stats().dropped_attachments == 1 and ob.stats().bytes == 1000
        add(5, snap=None)  # an event alone also pushes out the oldest snapshot
        assert [ob.attachment(f"e{n}") is not None for n in (2, 3, 4)] == [False, True, True]
        assert ob.stats().dropped_attachments == 2
        add(6, snap=450)  # 600 of events leave 400: e6's snapshot can never fit, so it alone is dropped
        assert ob.attachment("e6") is None and ob.stats().dropped_attachments == 3
        assert ob.attachment("e3") is not None and ob.stats().attachments == 2

        for n in (7, 8, 9, 10):  # events alone fill the cap; every snapshot goes first
            add(n)
        stats = ob.stats()
        assert (stats.depth, stats.attachments, stats.bytes) == (10, 0, 1000)
        assert stats.dropped_attachments == 3 + 2 + 4 and stats.refused == 0

        with pytest.raises(OutboxFull, match="full"):
            add(11)
        with pytest.raises(OutboxFull):
            ob.add(lambda seq: ("e12", TOPIC, b"x"))
        stats = ob.stats()
        assert stats.refused == 2 and stats.depth == 10 and stats.bytes == 1000
        assert [m.message_id for m in all_messages(ob)] == [f"e{n}" for n in range(1, 11)]  # nothing evicted

        # Still usable; an ack makes room again. The refused messages used up their numbers (11 and 12).
        assert ob.ack(["e1", "e2", "e3"]) == 3
        assert add(13).seq == 13
        assert ob.attachment("e13") is not None
        assert ob.stats().bytes == 1000


def test_a_message_larger_than_the_cap_is_refused(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=100) as ob:
        with pytest.raises(OutboxFull):
            ob.add(msg(101))
        assert ob.add(msg(100)).seq == 2
        assert ob.stats().refused == 1


def test_counters_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, max_bytes=300, clock=Clock()) as ob:
        ob.add(lambda seq: ("a", TOPIC, b"x" * 100), attachment=(SNAP, b"s" * 150))
        ob.add(lambda seq: ("b", TOPIC, b"x" * 100), attachment=(SNAP, b"s" * 50))  # drops a's snapshot
        with pytest.raises(OutboxFull):
            ob.add(lambda seq: ("c", TOPIC, b"x" * 101))
        ob.ack(["a"], ["b"])
        before = ob.stats()
    assert (before.dropped_attachments, before.refused, before.acked_total, before.acked_attachments) == (1, 1, 1, 1)
    with Outbox(path, max_bytes=300, clock=Clock()) as ob:
        after = ob.stats()
    assert after == before


def test_oldest_unacked_age(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    with Outbox(tmp_path / "o.db", max_bytes=BIG, clock=clock) as ob:
        assert ob.stats().oldest_unacked_age_s is None
        ob.add(msg())
        clock.now = 1030.0
        ob.add(msg())
        clock.now = 1100.0
        assert ob.stats().oldest_unacked_age_s == 100.0
        assert ob.stats(now=1001.5).oldest_unacked_age_s == 1.5
        assert ob.stats(now=900.0).oldest_unacked_age_s == 0.0  # a clock stepped back reports 0, not negative
        ob.ack(["m1"])
        assert ob.stats().oldest_unacked_age_s == 70.0
        ob.ack(["m2"])
        assert ob.stats().oldest_unacked_age_s is None


# --- threads and crashes -----------------------------------------------------------------------------------------


def test_concurrent_adds_and_acks_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    per_thread, adders = 150, 4
    results: dict[int, list[int]] = {k: [] for k in range(adders)}
    acked: list[str] = []
    errors: list[BaseException] = []
    done = threading.Event()

    with Outbox(tmp_path / "o.db", max_bytes=BIG) as ob:

        def adder(k: int) -> None:
            try:
                for i in range(per_thread):
                    stored = ob.add(seq_payload(f"t{k}-{i}"))
                    assert stored.payload == str(stored.seq).encode()
                    results[k].append(stored.seq)
            except BaseException as exc:
                errors.append(exc)

        def acker() -> None:
            try:
                while True:
                    finished = done.is_set()  # read before due(), so the last adds are seen after it is set
                    batch = ob.due(7, resend_after_s=3600.0)  # each message once: sent ones wait an hour
                    ob.mark_sent([m.seq for m in batch])
                    chosen = [m.message_id for m in batch if m.seq % 2 == 0]
                    assert ob.ack(chosen) == len(chosen)
                    acked.extend(chosen)
                    if finished and not batch:
                        break
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=adder, args=(k,)) for k in range(adders)]
        ack_thread = threading.Thread(target=acker)
        ack_thread.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        ack_thread.join()
        assert not errors

        total = per_thread * adders
        all_seqs = sorted(s for seqs in results.values() for s in seqs)
        assert all_seqs == list(range(1, total + 1))
        for seqs in results.values():
            assert seqs == sorted(seqs)  # each thread sees its own adds in increasing order
        remaining = all_messages(ob)
        remaining_ids = [m.message_id for m in remaining]
        assert len(set(acked)) == len(acked)
        assert not set(acked) & set(remaining_ids)
        assert len(acked) + len(remaining_ids) == total
        assert all(m.seq % 2 == 1 for m in remaining)
        stats = ob.stats()
        assert stats.acked_total == len(acked) and stats.depth == len(remaining)
        assert stats.message_bytes == sum(len(m.payload) for m in remaining)
        assert ob.integrity_check() == "ok"


CHILD = """
import sys
from pathlib import Path
from edge.runtime.outbox import Outbox

ob = Outbox(Path(sys.argv[1]), max_bytes=10**9)
print("ready", flush=True)
while True:
    expected = ob.stats().next_seq  # this process is the only writer, so it knows the next number
    stored = ob.add(
        lambda seq: (f"m{seq}", "t/event", f"{seq}:".encode() + b"x" * (seq % 700)),
        attachment=("t/snap", f"{expected}:".encode() + b"j" * 3000),
    )
    assert stored.seq == expected
    print(stored.seq, flush=True)
"""


def test_killed_writers_never_corrupt_or_lose_committed_messages(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    rng = random.Random(4)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    highest = 0
    reported_total = 0
    for round_no in range(10):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env
        )
        assert child.stdout is not None
        if round_no in (0, 5):
            # Kill while it starts up (importing, creating or opening the file).
            threading.Event().wait(rng.uniform(0.0, 0.15))
        else:
            assert child.stdout.readline().strip() == "ready"
            threading.Event().wait(rng.uniform(0.0, 0.04))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL
        lines = [line.strip() for line in child.stdout.read().splitlines()]
        child.stdout.close()
        reported = [int(line) for line in lines if line and line != "ready"]
        reported_total += len(reported)

        with Outbox(path, max_bytes=10**9) as ob:
            assert ob.integrity_check() == "ok"
            stored = all_messages(ob)
            seqs = [m.seq for m in stored]
            assert seqs == list(range(1, len(seqs) + 1))  # contiguous, no duplicates, nothing lost in the middle
            assert set(reported) <= set(seqs)  # everything add() returned survived
            assert reported == sorted(reported) and all(s > highest for s in reported)  # never reused
            # At most one more than reported: the add that committed just before the kill, not yet printed.
            assert len(seqs) - highest - len(reported) in (0, 1)
            for m in stored:
                assert m.message_id == f"m{m.seq}" and m.payload.startswith(f"{m.seq}:".encode())
                att = ob.attachment(m.message_id)
                assert att is not None and att.payload.startswith(f"{m.seq}:".encode())
            stats = ob.stats()
            assert stats.next_seq == len(seqs) + 1
            assert stats.message_bytes == sum(len(m.payload) for m in stored)
            assert stats.attachment_bytes == stats.attachments * 3000 + sum(len(f"{s}:") for s in seqs)
            highest = len(seqs)
    assert reported_total > 0, "the child never got to add anything; the test proved nothing"
