"""The agent's pure parts: change detection, interval merging, file patterns, payload sizes, states, encoding."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image

from edge.agent.activity import IntervalMerger, decide_state
from edge.agent.commands import Desktop
from edge.agent.files import FileBatch, matches
from edge.agent.screen import (
    changed_fraction,
    encode_screenshot,
    max_image_bytes,
    small_grey,
    thumbnail,
    x_display_problem,
)
from edge.agent.service import split_activity
from edge.protocol import wire

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_changed_fraction_counts_changed_pixels() -> None:
    black = Image.new("L", (100, 50), 0)
    half = black.copy()
    half.paste(255, (0, 0, 50, 50))
    assert changed_fraction(black, black) == 0.0
    assert changed_fraction(black, half) == 0.5
    assert changed_fraction(None, black) == 1.0
    assert changed_fraction(Image.new("L", (10, 10)), black) == 1.0  # resolution changed
    noise = Image.new("L", (100, 50), 10)  # below the per-pixel threshold: not a change
    assert changed_fraction(black, noise) == 0.0


def test_small_grey_keeps_aspect() -> None:
    grey = small_grey(Image.new("RGB", (1920, 1080), (255, 0, 0)))
    assert grey.mode == "L" and grey.size == (160, 90)


def test_interval_merger_merges_and_backdates_idle() -> None:
    merger = IntervalMerger(max_gap_s=10)
    for second in range(0, 6):
        merger.add("active", at(second))
    # Idle noticed at 8 s, but input stopped at 5.5 s: the active interval ends there.
    merger.add("idle", at(8), since=at(5.5))
    merger.add("idle", at(9))
    merger.add("active", at(10))
    intervals = merger.take(at(11))
    assert [(i.state, i.start, i.end) for i in intervals] == [
        ("active", at(0), at(5.5)),
        ("idle", at(5.5), at(10)),
        ("active", at(10), at(11)),
    ]
    # The open interval goes on from the batch boundary, with no overlap.
    merger.add("active", at(12))
    assert [(i.state, i.start, i.end) for i in merger.take(at(12))] == [("active", at(11), at(12))]


def test_interval_merger_does_not_bridge_gaps() -> None:
    merger = IntervalMerger(max_gap_s=5)
    merger.add("active", at(0))
    merger.add("active", at(2))
    merger.add("active", at(60))  # the machine slept: nothing claimed for 2..60
    merger.add("locked", at(61))
    intervals = merger.take(at(61))
    assert [(i.state, i.start, i.end) for i in intervals] == [
        ("active", at(0), at(2)),
        ("active", at(60), at(61)),
    ]
    assert merger.state == "locked"  # open, zero length so far: reported once it has lasted


def test_decide_state() -> None:
    assert decide_state(locked=True, input_idle_s=0, static_s=0, idle_after_s=60) == "locked"
    assert decide_state(locked=False, input_idle_s=61, static_s=0, idle_after_s=60) == "idle"
    assert decide_state(locked=False, input_idle_s=5, static_s=600, idle_after_s=60) == "active"
    # No input idle time (Wayland/XWayland, no extension): a static screen counts as idle.
    assert decide_state(locked=False, input_idle_s=None, static_s=600, idle_after_s=60) == "idle"
    assert decide_state(locked=False, input_idle_s=None, static_s=3, idle_after_s=60) == "active"
    assert decide_state(locked=False, input_idle_s=None, static_s=None, idle_after_s=60) is None


def test_file_patterns() -> None:
    include, exclude = ["*"], ["*.tmp", "*~", ".git/*"]
    assert matches("report.txt", include, exclude)
    assert matches("sub/dir/report.txt", include, exclude)
    assert not matches("scratch.tmp", include, exclude)
    assert not matches("sub/scratch.tmp", include, exclude)
    assert not matches(".git/config", include, exclude)
    assert not matches("project/.git/config", include, exclude)
    assert not matches("notes.txt~", include, exclude)
    assert matches("src/main.py", ["*.py"], [])
    assert not matches("src/main.c", ["*.py"], [])
    assert matches("build/x.py", ["*.py"], ["tmp/*"])
    assert not matches("a/tmp/x.py", ["*.py"], ["tmp/*"])


def test_file_batch_dedupes_and_caps() -> None:
    batch = FileBatch(max_pending=2)
    change = wire.FileChange(path="/a", change="modified", at=T0)
    batch.add(change)
    batch.add(change.model_copy(update={"at": at(1)}))
    batch.add(wire.FileChange(path="/b", change="created", at=T0))
    batch.add(wire.FileChange(path="/c", change="created", at=T0))
    assert [c.path for c in batch.take()] == ["/a", "/b"]
    assert batch.dropped == 1 and len(batch) == 0


def test_split_activity_keeps_payloads_within_limits() -> None:
    files = [wire.FileChange(path="/home/u/" + "x" * 3000 + f"/{n}", change="modified", at=T0) for n in range(100)]
    intervals = [wire.ActivityInterval(state="active", start=at(n), end=at(n + 1)) for n in range(700)]
    window = wire.WindowInfo(title="t" * 1024, app="app")
    pieces = split_activity("lab-pc-07", T0, intervals, files, window, session="end", user="u")
    assert len(pieces) > 2
    assert [f for _, fs in pieces for f in fs] == files
    assert [i for ivs, _ in pieces for i in ivs] == intervals
    for ivs, fs in pieces:
        payload = wire.Activity(
            event_id="01M7YK1WMC7G2VV3P09WNATCJN",
            agent="lab-pc-07",
            seq=10**9,
            at=T0,
            user="u",
            session="end",
            intervals=ivs,
            window=window,
            files=fs,
        )
        raw = wire.encode(payload)
        assert len(raw) <= wire.MAX_PAYLOAD_BYTES
        wire.decode("rollcall/hq/agent/lab-pc-07/activity", raw)
    assert split_activity("a", T0, [], [], None) == [([], [])]


def test_thumbnail_and_screenshot_sizes() -> None:
    rng = random.Random(7)
    noise = Image.frombytes("RGB", (1600, 1000), rng.randbytes(1600 * 1000 * 3))
    thumb = thumbnail("lab-pc-07", noise, T0, 0.5, 320, "webp")
    assert (thumb.width, thumb.height, thumb.content_type) == (320, 200, "image/webp")
    assert Image.open(io.BytesIO(thumb.data)).size == (320, 200)
    limit = 300_000
    shot = encode_screenshot("lab-pc-07", noise, T0, 0.5, limit=limit)
    assert shot.full and len(wire.encode(shot)) <= limit
    assert shot.width < 1600  # noise does not compress: it had to be scaled down
    assert len(shot.data) <= max_image_bytes(limit)
    plain = encode_screenshot("lab-pc-07", Image.new("RGB", (1920, 1080), (30, 60, 90)), T0, 0.0)
    assert (plain.width, plain.height) == (1920, 1080)
    raw = wire.encode(plain)
    wire.decode("rollcall/hq/agent/lab-pc-07/screenshot", raw)


def test_display_problem_names_wayland() -> None:
    assert x_display_problem({"DISPLAY": ":0"}) is None
    problem = x_display_problem({"WAYLAND_DISPLAY": "wayland-0"})
    assert problem is not None and "Wayland" in problem and "not available" in problem
    assert "DISPLAY" in (x_display_problem({}) or "")


def test_lock_refused_when_not_allowed(tmp_path: Path) -> None:
    mark = tmp_path / "locked"
    desktop = Desktop(lock_command=["touch", str(mark)], unlock_command=[], allow_lock=False)
    assert desktop.lock() is False
    assert not mark.exists()
    allowed = Desktop(lock_command=["touch", str(mark)], unlock_command=[], allow_lock=True)
    assert allowed.lock() is True and mark.exists()
    failing = Desktop(lock_command=["false"], unlock_command=[], allow_lock=True)
    assert failing.lock() is False
