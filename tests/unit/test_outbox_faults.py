"""The outbox under faults: its epoch, a full file system, a 0-byte or page-garbled file (real SQLite, real tmpfs)."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.runtime.outbox import Outbox, OutboxError, OutboxFull, OutboxWriteFailed
from tests.helpers.filesystems import fill, small_tmpfs

TOPIC = "rollcall/hq/device/door1/event"
BIG = 10**9


def msg(size: int = 10, prefix: str = "m") -> Callable[[int], tuple[str, str, bytes]]:
    """A build callback: id derived from the seq, payload padded to ``size`` bytes."""

    def build(seq: int) -> tuple[str, str, bytes]:
        return f"{prefix}{seq}", TOPIC, f"{seq}:".encode().ljust(size, b"x")

    return build


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MB tmpfs for the test."""
    with small_tmpfs(tmp_path / "small-fs", size="1m") as where:
        yield where


# --- the epoch ------------------------------------------------------------------------------------------------


def test_a_new_outbox_file_is_a_new_epoch_and_reopening_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_bytes=BIG) as first:
        epoch = first.epoch
        first.add(msg())
        first.add(msg())
    assert len(epoch) == 16 and int(epoch, 16) > 0
    with Outbox(path, max_bytes=BIG) as again:
        assert again.epoch == epoch and again.stats().next_seq == 3
    path.rename(tmp_path / "outbox.db.bad")  # the advice the outbox gives for a broken file
    with Outbox(path, max_bytes=BIG) as fresh:
        assert fresh.epoch != epoch and fresh.add(msg()).seq == 1


def test_an_outbox_from_before_epochs_gets_one_and_keeps_its_numbers(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_bytes=BIG) as ob:
        for _ in range(5):
            ob.add(msg())
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM meta WHERE key = 'epoch'")
    conn.commit()
    conn.close()
    with Outbox(path, max_bytes=BIG) as upgraded:
        assert len(upgraded.epoch) == 16 and upgraded.stats().depth == 5
        assert upgraded.add(msg()).seq == 6
        epoch = upgraded.epoch
    with Outbox(path, max_bytes=BIG) as again:
        assert again.epoch == epoch


def test_a_zero_byte_outbox_starts_a_new_epoch_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_bytes=BIG) as ob:
        old_epoch = ob.epoch
        for _ in range(3):
            ob.add(msg())
    path.write_bytes(b"")  # truncated: what it held is gone
    with caplog.at_level(logging.WARNING, logger="rollcall.outbox"), Outbox(path, max_bytes=BIG) as ob:
        assert ob.epoch != old_epoch and ob.add(msg()).seq == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("0 bytes" in w and "new epoch" in w for w in warnings), warnings


# --- corruption -----------------------------------------------------------------------------------------------


def _garble_index(path: Path) -> None:
    """Overwrite the root page of the message_id index with junk: the header and the messages table stay readable."""
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'messages'").fetchone()[
        0
    ]
    conn.close()
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(os.urandom(page_size))


def test_a_page_garbled_outbox_is_refused_naming_what_was_not_delivered(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_bytes=BIG) as ob:
        for _ in range(400):
            ob.add(msg(size=200, prefix="message-id-long-enough-"))
        ob.ack([f"message-id-long-enough-{seq}" for seq in range(1, 101)])
    _garble_index(path)
    before = path.read_bytes()
    with pytest.raises(OutboxError) as info:
        Outbox(path, max_bytes=BIG)
    text = str(info.value)
    assert "corrupt" in text and str(path) in text and f"mv '{path}'" in text
    assert "300 undelivered messages" in text and "seq 101-400" in text, text
    assert path.read_bytes() == before, "a refused outbox is left as it was"


def test_an_unreadable_outbox_is_refused_even_when_nothing_can_be_counted(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_bytes=BIG) as ob:
        for _ in range(200):
            ob.add(msg(size=300))
    data = bytearray(path.read_bytes())
    page_size = 4096
    data[2 * page_size : len(data)] = os.urandom(len(data) - 2 * page_size)  # every page after the schema
    path.write_bytes(bytes(data))
    with pytest.raises(OutboxError) as info:
        Outbox(path, max_bytes=BIG)
    assert "corrupt" in str(info.value) and "could not be counted" in str(info.value)


# --- a full file system ---------------------------------------------------------------------------------------


def test_a_full_file_system_refuses_and_counts_then_recovers_by_itself(
    small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ob = Outbox(small_fs / "outbox.db", max_bytes=BIG)
    try:
        for _ in range(5):
            ob.add(msg(size=500))
        ob.mark_sent([1, 2])
        filler = fill(small_fs)
        refused = 0
        with caplog.at_level(logging.INFO, logger="rollcall.outbox"):
            for _ in range(30):  # at least one page per message, so the WAL cannot absorb them
                try:
                    ob.add(msg(size=5000), attachment=("snap", b"s" * 100))
                except OutboxWriteFailed as exc:
                    assert isinstance(exc, OutboxFull), "callers that carry on after a refusal carry on after this"
                    refused += 1
            assert refused > 0
            with pytest.raises(OutboxWriteFailed):
                ob.mark_sent([3], now=1.0)
            stats = ob.stats()
            assert stats.write_error is not None and "full" in stats.write_error
            assert stats.refused == refused and stats.dropped_attachments == refused
            failing = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(failing) == 1, "one log line for the whole outage, not one per write"
            assert failing[0].exc_info is None

            filler.unlink()
            stored = ob.add(msg(size=500))
            assert stored.seq == 5 + 30 - refused + 1
        stats = ob.stats()
        assert stats.write_error is None and stats.refused == refused
        assert any("writing again" in r.getMessage() for r in caplog.records)
    finally:
        ob.close()
    with Outbox(small_fs / "outbox.db", max_bytes=BIG) as again:
        assert again.stats().refused == refused, "the refusals during the outage are kept in the file's counters"


def test_close_on_a_full_file_system_still_closes(small_fs: Path) -> None:
    ob = Outbox(small_fs / "outbox.db", max_bytes=BIG)
    for _ in range(20):
        ob.add(msg(size=3000))
    filler = fill(small_fs)
    ob.close()  # the checkpoint cannot grow the file; the WAL keeps everything
    filler.unlink()
    with Outbox(small_fs / "outbox.db", max_bytes=BIG) as again:
        assert again.stats().depth == 20
