"""Frame sources: dispatch of camera.source, replays of synthetic files and folders, stream reconnects, clear errors."""

from __future__ import annotations

import functools
import http.server
import logging
import sys
import threading
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from edge.door.sources import (
    CaptureBackend,
    Frame,
    FrameSource,
    ImageFolderSource,
    OpenCVDeviceSource,
    Picamera2Source,
    SourceError,
    StreamSource,
    VideoFileSource,
    open_source,
    redact_url,
)

START = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
WIDTH, HEIGHT = 64, 48


def level(i: int) -> int:
    """The grey level of synthetic frame ``i``: far enough apart to survive MJPEG."""
    return 10 + 30 * i


def synthetic(i: int, width: int = WIDTH, height: int = HEIGHT) -> NDArray[np.uint8]:
    image = np.full((height, width, 3), level(i), dtype=np.uint8)
    cv2.rectangle(image, (4, 4), (12, 12), (0, 0, 255), -1)
    return image


def mean_level(frame: Frame) -> float:
    return float(frame.image[20:, 20:].mean())


def write_video(path: Path, count: int, fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(count):
        writer.write(synthetic(i))
    writer.release()
    return path


class FakeTime:
    """A monotonic clock that only moves when something sleeps or the test advances it; a wall clock tied to it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> datetime:
        return START + timedelta(seconds=self.now - 100.0)


class FakeCapture:
    """A cv2.VideoCapture look-alike: opened or not, then ``frames`` good reads, then failures."""

    def __init__(self, opened: bool = True, frames: int = 0, fps: float = 0.0, seekable: bool = True) -> None:
        """``fps`` is what the capture reports; like many drivers it ignores a request for another rate."""
        self.opened = opened
        self.remaining = frames
        self.seekable = seekable
        self.props: dict[int, float] = {cv2.CAP_PROP_FPS: fps}
        self.released = False
        self.reads = 0

    def isOpened(self) -> bool:
        return self.opened and not self.released

    def read(self) -> tuple[bool, Any]:
        self.reads += 1
        if self.released or not self.opened or self.remaining <= 0:
            return False, None
        self.remaining -= 1
        return True, synthetic(self.reads)

    def set(self, prop_id: int, value: float, /) -> bool:
        if prop_id == cv2.CAP_PROP_FPS or (prop_id == cv2.CAP_PROP_POS_FRAMES and not self.seekable):
            return False
        self.props[prop_id] = value
        return True

    def get(self, prop_id: int, /) -> float:
        return self.props.get(prop_id, 0.0)

    def release(self) -> None:
        self.released = True


class Script:
    """A capture factory that hands out prepared captures in order, then unopenable ones."""

    def __init__(self, *captures: FakeCapture) -> None:
        self.pending = list(captures)
        self.handed: list[FakeCapture] = []
        self.asked: list[str] = []

    def __call__(self, url: str) -> CaptureBackend:
        self.asked.append(url)
        capture = self.pending.pop(0) if self.pending else FakeCapture(opened=False)
        self.handed.append(capture)
        return capture


# --- open_source dispatch -------------------------------------------------------------------------------------


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.avi", 7, 5.0)


@pytest.mark.parametrize(
    ("spec", "kind", "described"),
    [
        ("picamera2", Picamera2Source, "picamera2"),
        (" PiCamera2 ", Picamera2Source, "picamera2"),
        ("0", OpenCVDeviceSource, "camera 0"),
        ("3", OpenCVDeviceSource, "camera 3"),
        ("/dev/video2", OpenCVDeviceSource, "camera 2"),
        ("rtsp://10.0.0.5:554/stream1", StreamSource, "stream rtsp://10.0.0.5:554/stream1"),
        ("rtsps://cam.example/live", StreamSource, "stream rtsps://cam.example/live"),
        ("http://cam.local/video.mjpg", StreamSource, "stream http://cam.local/video.mjpg"),
        ("HTTPS://cam.local/video.mjpg", StreamSource, "stream HTTPS://cam.local/video.mjpg"),
    ],
)
def test_open_source_maps_camera_forms(spec: str, kind: type[FrameSource], described: str) -> None:
    source = open_source(spec, 640, 480, 15.0)
    assert type(source) is kind
    assert described in source.describe()
    assert not source.is_open
    assert source.fps == 15.0


def test_open_source_passes_size_and_fps_to_cameras() -> None:
    device = open_source("3", 800, 600, 12.0, fourcc="MJPG")
    assert isinstance(device, OpenCVDeviceSource)
    assert (device.index, device.width, device.height, device.fps) == (3, 800, 600, 12.0)
    stream = open_source("rtsp://cam/s", 800, 600, 12.0, backoff_max_s=5.0, open_attempts=1)
    assert isinstance(stream, StreamSource)
    assert (stream.width, stream.height, stream.backoff_max_s, stream.open_attempts) == (800, 600, 5.0, 1)


def test_open_source_maps_a_file_and_a_folder(clip: Path, tmp_path: Path) -> None:
    video = open_source(str(clip), 1280, 720, 10.0, loop=True)
    assert isinstance(video, VideoFileSource)
    assert video.path == clip and video.loop and str(clip) in video.describe()
    folder = tmp_path / "shots"
    folder.mkdir()
    images = open_source(str(folder), 1280, 720, 4.0)
    assert isinstance(images, ImageFolderSource)
    assert images.path == folder and images.fps == 4.0


@pytest.mark.parametrize("spec", ["/nowhere/clip.mp4", "cam0", "ftp://cam.local/x", "  "])
def test_open_source_refuses_what_it_cannot_map_naming_the_source_and_the_forms(spec: str) -> None:
    with pytest.raises(SourceError) as caught:
        open_source(spec)
    message = str(caught.value)
    assert spec.strip() in message
    for form in ("picamera2", "camera index", "rtsp://", "http://", "video file", "folder of images"):
        assert form in message


def test_open_source_masks_a_password_in_an_unknown_url() -> None:
    with pytest.raises(SourceError) as caught:
        open_source("rtmp://admin:hunter2@cam/live")
    assert "hunter2" not in str(caught.value)
    assert "rtmp" in str(caught.value)


# --- video files ----------------------------------------------------------------------------------------------


def test_video_file_yields_every_frame_in_order_with_media_time_stamps(clip: Path) -> None:
    with VideoFileSource(clip, start_at=START) as source:
        assert source.fps == pytest.approx(5.0)
        frames: list[Frame] = []
        while (frame := source.read()) is not None:
            frames.append(frame)
        assert source.read() is None  # the end stays the end
    assert [f.index for f in frames] == list(range(7))
    assert [f.pts_s for f in frames] == pytest.approx([i / 5.0 for i in range(7)])
    assert [f.at for f in frames] == [START + timedelta(seconds=i / 5.0) for i in range(7)]
    for i, frame in enumerate(frames):
        assert frame.image.dtype == np.uint8 and frame.image.shape == (HEIGHT, WIDTH, 3)
        assert mean_level(frame) == pytest.approx(level(i), abs=6)
        assert frame.at.tzinfo is not None


def test_file_frames_keep_their_size_whatever_the_camera_settings_ask(clip: Path) -> None:
    source = open_source(str(clip), 1280, 720, 10.0, start_at=START)
    frames = list(source)
    source.close()
    assert len(frames) == 7
    assert {f.image.shape for f in frames} == {(HEIGHT, WIDTH, 3)}
    assert source.fps == pytest.approx(5.0)  # the file's rate, not the config's


def test_replays_are_deterministic_and_start_at_defaults_to_the_clock_at_open(clip: Path) -> None:
    fake = FakeTime()
    fake.now = 130.0
    source = VideoFileSource(clip, clock=fake.clock)
    first = [(f.index, f.at) for f in source]
    source.close()
    assert source.start_at == START + timedelta(seconds=30)
    assert first[3] == (3, START + timedelta(seconds=30.6))
    again = VideoFileSource(clip, start_at=START)
    assert [f.at for f in again] == [START + timedelta(seconds=i / 5.0) for i in range(7)]
    again.close()


def test_loop_mode_restarts_the_file_and_keeps_counting(clip: Path) -> None:
    with VideoFileSource(clip, loop=True, start_at=START) as source:
        frames = [source.read() for _ in range(17)]
    got = [f for f in frames if f is not None]
    assert len(got) == 17
    assert [f.index for f in got] == list(range(17))
    assert [mean_level(f) for f in got] == pytest.approx([level(i % 7) for i in range(17)], abs=6)
    assert got[16].pts_s == pytest.approx(16 / 5.0)
    assert source.loops == 2


def test_loop_reopens_a_file_that_cannot_seek() -> None:
    first, second = FakeCapture(frames=3, fps=10.0, seekable=False), FakeCapture(frames=3, fps=10.0)
    script = Script(first, second)
    with VideoFileSource(Path(__file__), loop=True, start_at=START, capture_factory=script) as source:
        indexes = [f.index for f in (source.read() for _ in range(5)) if f is not None]
    assert indexes == [0, 1, 2, 3, 4]
    assert len(script.asked) == 2 and first.released and second.released


def test_a_file_without_a_frame_rate_uses_the_fallback(caplog: pytest.LogCaptureFixture) -> None:
    script = Script(FakeCapture(frames=2, fps=0.0))
    with caplog.at_level(logging.WARNING, "rollcall.sources"):
        source = VideoFileSource(Path(__file__), fps=8.0, start_at=START, capture_factory=script)
        pts = [f.pts_s for f in source]
    assert source.fps == 8.0 and pts == [0.0, 0.125]
    assert "assuming 8 fps" in caplog.text


def test_realtime_paces_to_the_file_rate(clip: Path) -> None:
    fake = FakeTime()
    with VideoFileSource(clip, realtime=True, start_at=START, monotonic=fake.monotonic, sleep=fake.sleep) as source:
        assert source.read() is not None
        assert fake.sleeps == []  # the first frame is due at once
        assert source.read() is not None
        fake.now += 0.05  # the caller spent 50 ms on the frame
        assert source.read() is not None
        for _ in range(4):
            assert source.read() is not None
    assert fake.sleeps == pytest.approx([0.2, 0.15, 0.2, 0.2, 0.2, 0.2])


def test_realtime_does_not_burst_to_catch_up_a_late_caller(clip: Path) -> None:
    fake = FakeTime()
    with VideoFileSource(clip, realtime=True, start_at=START, monotonic=fake.monotonic, sleep=fake.sleep) as source:
        source.read()
        fake.now += 1.0  # the caller stalled for five frame times
        source.read()
        source.read()
    assert fake.sleeps == pytest.approx([0.2])


def test_replay_without_realtime_never_sleeps(clip: Path) -> None:
    fake = FakeTime()
    source = VideoFileSource(clip, start_at=START, monotonic=fake.monotonic, sleep=fake.sleep)
    assert len(list(source)) == 7
    assert fake.sleeps == []


def test_a_missing_video_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "gone.mp4"
    with pytest.raises(SourceError) as caught:
        VideoFileSource(missing).open()
    assert str(missing) in str(caught.value) and "no such file" in str(caught.value)


def test_a_file_that_is_not_a_video_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"this is not a video at all" * 10)
    source = VideoFileSource(junk)
    with pytest.raises(SourceError) as caught:
        source.open()
    assert str(junk) in str(caught.value)
    assert caught.value.source == source.describe()
    assert not source.is_open


def test_naive_start_at_is_refused(clip: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        VideoFileSource(clip, start_at=datetime(2024, 1, 1))  # naive on purpose


# --- image folders --------------------------------------------------------------------------------------------


def write_png(path: Path, i: int) -> None:
    assert cv2.imwrite(str(path), synthetic(i))


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = tmp_path / "shots"
    folder.mkdir()
    write_png(folder / "img1.png", 1)
    write_png(folder / "img10.png", 10 % 8)
    write_png(folder / "img2.PNG", 2)
    (folder / "img3.png").write_bytes(b"\x89PNG but truncated garbage")
    assert cv2.imwrite(str(folder / "img4.jpg"), synthetic(4))
    write_png(folder / ".hidden.png", 7)
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    write_png(folder / "sub" / "img0.png", 0)
    return folder


def test_folder_yields_images_in_natural_order_skipping_and_counting_unreadable_ones(
    shots: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "rollcall.sources"), ImageFolderSource(shots, fps=4.0, start_at=START) as src:
        assert [p.name for p in src.files] == ["img1.png", "img2.PNG", "img3.png", "img4.jpg", "img10.png"]
        frames = list(src)
        assert src.read() is None
    assert [f.index for f in frames] == [0, 1, 3, 4]  # img3 leaves a gap, like a dropped frame
    assert [f.pts_s for f in frames] == [0.0, 0.25, 0.75, 1.0]
    assert [f.at for f in frames] == [START + timedelta(seconds=s) for s in (0.0, 0.25, 0.75, 1.0)]
    assert np.array_equal(frames[0].image, synthetic(1))  # PNG is lossless: exactly the file's pixels
    assert np.array_equal(frames[1].image, synthetic(2))
    assert mean_level(frames[2]) == pytest.approx(level(4), abs=6)
    assert np.array_equal(frames[3].image, synthetic(2))
    assert src.skipped == 1
    assert "img3.png" in caplog.text and str(shots) in caplog.text


def test_folder_loop_counts_an_unreadable_file_once(shots: Path, caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, "rollcall.sources"),
        ImageFolderSource(shots, fps=4.0, loop=True, start_at=START) as source,
    ):
        indexes = [f.index for f in (source.read() for _ in range(9)) if f is not None]
    assert indexes == [0, 1, 3, 4, 5, 6, 8, 9, 10]
    assert source.skipped == 1 and source.loops == 2
    assert caplog.text.count("img3.png") == 1


def test_folder_realtime_waits_across_a_skipped_image(shots: Path) -> None:
    fake = FakeTime()
    source = ImageFolderSource(
        shots, fps=4.0, realtime=True, start_at=START, monotonic=fake.monotonic, sleep=fake.sleep
    )
    assert len(list(source)) == 4
    assert fake.sleeps == pytest.approx([0.25, 0.5, 0.25])


def test_an_empty_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures here")
    with pytest.raises(SourceError) as caught:
        ImageFolderSource(empty).open()
    assert str(empty) in str(caught.value) and "no images" in str(caught.value)


def test_a_folder_of_unreadable_images_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg")
    (bad / "b.png").write_bytes(b"")
    with ImageFolderSource(bad, loop=True) as source, pytest.raises(SourceError) as caught:
        source.read()
    assert str(bad) in str(caught.value) and "2 image(s)" in str(caught.value)
    assert source.skipped == 2


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such folder"):
        ImageFolderSource(tmp_path / "nope").open()


# --- lifecycle ------------------------------------------------------------------------------------------------


def test_lifecycle_read_needs_open_close_is_idempotent_and_reopen_starts_over(clip: Path) -> None:
    source = VideoFileSource(clip, start_at=START)
    with pytest.raises(SourceError, match="not open"):
        source.read()
    source.open()
    source.open()  # idempotent
    first = source.read()
    second = source.read()
    assert first is not None and second is not None and second.index == 1
    source.close()
    source.close()
    assert not source.is_open
    with pytest.raises(SourceError, match="not open"):
        source.read()
    source.open()
    again = source.read()
    assert again is not None and again.index == 0
    source.close()


def test_context_manager_releases_the_capture_even_on_error() -> None:
    capture = FakeCapture(frames=5, fps=10.0)
    with (
        pytest.raises(RuntimeError, match="boom"),
        VideoFileSource(Path(__file__), start_at=START, capture_factory=Script(capture)) as source,
    ):
        assert source.read() is not None
        raise RuntimeError("boom")
    assert capture.released and not source.is_open


# --- OpenCV device index --------------------------------------------------------------------------------------


def test_a_camera_index_that_does_not_exist_names_the_camera() -> None:
    source = OpenCVDeviceSource(97, 640, 480, 10.0)
    with pytest.raises(SourceError) as caught:
        source.open()
    message = str(caught.value)
    assert message.startswith("cannot open camera 97")
    assert "camera.source" in message
    if sys.platform.startswith("linux"):
        assert "/dev/video97" in message and "v4l2-ctl --list-devices" in message
    source.close()
    assert not source.is_open


def test_open_source_device_error_comes_at_open() -> None:
    source = open_source("97")
    with pytest.raises(SourceError, match="camera 97"):
        source.open()


def test_device_asks_the_driver_for_size_and_rate_and_stamps_live_time() -> None:
    fake = FakeTime()
    capture = FakeCapture(frames=3, fps=30.0)
    asked: list[int] = []

    def factory(index: int) -> CaptureBackend:
        asked.append(index)
        return capture

    source = OpenCVDeviceSource(
        2, 800, 600, 12.0, fourcc="MJPG", capture_factory=factory, clock=fake.clock, monotonic=fake.monotonic
    )
    with source:
        assert asked == [2]
        assert capture.props[cv2.CAP_PROP_FRAME_WIDTH] == 800
        assert capture.props[cv2.CAP_PROP_FRAME_HEIGHT] == 600
        assert capture.props[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter.fourcc(*"MJPG")
        assert source.fps == 30.0  # what the driver says it does
        fake.now += 0.5
        first = source.read()
        fake.now += 0.25
        second = source.read()
    assert first is not None and second is not None
    assert (first.index, second.index) == (0, 1)
    assert (first.pts_s, second.pts_s) == (0.5, 0.75)
    assert first.at == START + timedelta(seconds=0.5) and second.at == START + timedelta(seconds=0.75)
    assert capture.released


def test_device_that_stops_delivering_raises_naming_it() -> None:
    capture = FakeCapture(frames=1, fps=10.0)
    with OpenCVDeviceSource(1, max_failed_reads=3, capture_factory=lambda index: capture) as source:
        assert source.read() is not None
        with pytest.raises(SourceError, match=r"camera 1 .*stopped delivering frames \(3 reads"):
            source.read()
    assert capture.reads == 4


def test_device_that_opens_but_gives_no_frame_is_an_open_error() -> None:
    capture = FakeCapture(frames=0)
    source = OpenCVDeviceSource(4, capture_factory=lambda index: capture)
    with pytest.raises(SourceError, match=r"camera 4 .*delivered no frame"):
        source.open()
    assert capture.released and not source.is_open


# --- picamera2 ------------------------------------------------------------------------------------------------


def test_picamera2_missing_gives_the_raspberry_pi_os_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # absent whatever this machine has
    source = open_source("picamera2", 1280, 720, 10.0)
    with pytest.raises(SourceError) as caught:
        source.open()
    message = str(caught.value)
    assert "Raspberry Pi OS" in message
    assert "apt install python3-picamera2" in message
    assert "--system-site-packages" in message
    assert isinstance(caught.value.__cause__, ImportError)


def test_picamera2_is_absent_here_and_not_imported_until_open() -> None:
    assert "picamera2" not in sys.modules
    source = Picamera2Source(640, 480, 5.0)
    assert "picamera2" not in sys.modules
    with pytest.raises(SourceError, match="python3-picamera2"):
        source.open()


class FakePicamera2:
    instances: list[FakePicamera2] = []

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.started = False
        self.stops = 0
        self.closes = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main: dict[str, Any], controls: dict[str, Any]) -> dict[str, Any]:
        return {"main": main, "controls": controls}

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str) -> Any:
        assert name == "main" and self.started
        width, height = self.config["main"]["size"]
        return np.zeros((height, width, 4), dtype=np.uint8)  # XBGR8888-style 4 channels

    def stop(self) -> None:
        self.stops += 1

    def close(self) -> None:
        self.closes += 1


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakePicamera2]]:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.instances = []
    yield FakePicamera2


def test_picamera2_is_configured_and_read_when_present(fake_picamera2: type[FakePicamera2]) -> None:
    fake = FakeTime()
    source = Picamera2Source(320, 240, 15.0, clock=fake.clock, monotonic=fake.monotonic)
    with source:
        (camera,) = fake_picamera2.instances
        assert camera.config == {"main": {"size": (320, 240), "format": "RGB888"}, "controls": {"FrameRate": 15.0}}
        fake.now += 1.0
        frame = source.read()
    assert frame is not None
    assert frame.image.shape == (240, 320, 3) and frame.image.flags.c_contiguous
    assert (frame.index, frame.pts_s, frame.at) == (0, 1.0, START + timedelta(seconds=1))
    source.close()
    assert (camera.stops, camera.closes) == (1, 1)


# --- streams --------------------------------------------------------------------------------------------------


def stream(script: Script, fake: FakeTime, **opts: Any) -> StreamSource:
    options: dict[str, Any] = {"backoff_min_s": 0.5, "backoff_max_s": 3.0, "open_attempts": 3}
    options.update(opts)
    return StreamSource(
        "rtsp://admin:secret@10.0.0.5:554/stream1",
        capture_factory=script,
        clock=fake.clock,
        monotonic=fake.monotonic,
        sleep=fake.sleep,
        **options,
    )


def test_stream_open_retries_with_backoff_then_reconnects_mid_stream() -> None:
    fake = FakeTime()
    closed = [FakeCapture(opened=False) for _ in range(6)]
    script = Script(
        closed[0],
        closed[1],
        FakeCapture(frames=3, fps=25.0),
        closed[2],
        closed[3],
        closed[4],
        closed[5],
        FakeCapture(frames=2),
    )
    source = stream(script, fake)
    source.open()
    assert fake.sleeps == [0.5, 1.0]  # two refused opens, third attempt connects
    assert source.fps == 25.0
    first = [source.read() for _ in range(3)]
    fake.sleeps.clear()
    resumed = source.read()  # the stream fails here: reconnect, not the end
    assert fake.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]  # doubling, capped at backoff_max_s
    assert resumed is not None
    assert [f.index for f in first if f is not None] == [0, 1, 2]
    assert resumed.index == 3
    assert resumed.pts_s == pytest.approx(sum([0.5, 1.0, 2.0, 3.0, 3.0]))
    assert (source.reconnects, source.reconnect_attempts) == (1, 5)
    assert all(c.released for c in closed) and script.handed[2].released
    source.close()
    source.close()
    assert script.handed[-1].released


def test_stream_backoff_grows_while_a_server_accepts_but_sends_nothing_and_resets_after_frames() -> None:
    fake = FakeTime()
    script = Script(
        FakeCapture(frames=1),
        FakeCapture(frames=0),
        FakeCapture(frames=0),
        FakeCapture(frames=0),
        FakeCapture(frames=1),
        FakeCapture(opened=False),
        FakeCapture(frames=1),
    )
    with stream(script, fake) as source:
        assert source.read() is not None
        fake.sleeps.clear()
        frame = source.read()
        assert frame is not None and frame.index == 1
        assert fake.sleeps == [0.5, 1.0, 2.0, 3.0]
        assert (source.reconnects, source.reconnect_attempts) == (1, 4)
        fake.sleeps.clear()
        frame = source.read()
        assert frame is not None and frame.index == 2
        assert fake.sleeps == [0.5, 1.0]  # a new outage starts from the minimum again
        assert source.reconnects == 2


def test_stream_gives_up_after_max_reconnect_attempts_naming_the_stream_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime()
    script = Script(FakeCapture(frames=1))
    with caplog.at_level(logging.INFO, "rollcall.sources"), stream(script, fake, max_reconnect_attempts=4) as source:
        assert source.read() is not None
        with pytest.raises(SourceError) as caught:
            source.read()
    assert fake.sleeps == [0.5, 1.0, 2.0, 3.0]
    message = str(caught.value)
    assert "rtsp://admin:***@10.0.0.5:554/stream1" in message and "4 reconnect attempt(s) failed" in message
    assert "secret" not in message and "secret" not in caplog.text
    assert "reconnect attempt 4" in caplog.text
    assert script.asked[0] == "rtsp://admin:secret@10.0.0.5:554/stream1"  # the real URL still reaches OpenCV


def test_stream_that_never_opens_is_an_error_naming_it() -> None:
    fake = FakeTime()
    script = Script()
    source = stream(script, fake, open_attempts=2)
    with pytest.raises(SourceError) as caught:
        source.open()
    assert "cannot open stream rtsp://admin:***@10.0.0.5:554/stream1" in str(caught.value)
    assert "2 attempt(s)" in str(caught.value)
    assert fake.sleeps == [0.5] and len(script.asked) == 2
    assert not source.is_open


def test_stream_refuses_bad_settings() -> None:
    with pytest.raises(SourceError, match="not a stream URL"):
        StreamSource("ftp://cam/x")
    with pytest.raises(ValueError, match="backoff"):
        StreamSource("rtsp://cam/x", backoff_min_s=5.0, backoff_max_s=1.0)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:s3cr3t@cam:554/live", "rtsp://admin:***@cam:554/live"),
        ("http://cam/live", "http://cam/live"),
        ("rtsp://user@cam/live", "rtsp://user@cam/live"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """Serves tmp_path over loopback HTTP; yields the base URL and a function that stops the server."""
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", stop
    finally:
        stop()


def test_real_http_stream_reconnects_after_it_ends_and_gives_up_when_the_server_is_gone(
    clip: Path, http_server: tuple[str, Callable[[], None]]
) -> None:
    base, stop = http_server
    fake = FakeTime()
    source = StreamSource(
        f"{base}/{clip.name}",
        WIDTH,
        HEIGHT,
        backoff_min_s=0.01,
        max_reconnect_attempts=2,
        sleep=fake.sleep,
        monotonic=fake.monotonic,
    )
    with source:
        frames = [source.read() for _ in range(9)]  # 7 frames, the stream ends, reconnect, 2 more
        assert source.reconnects == 1
        stop()
        rest = [source.read() for _ in range(5)]  # the rest of the buffered second pass
        with pytest.raises(SourceError, match="2 reconnect attempt"):
            source.read()
    got = [f for f in frames + rest if f is not None]
    assert [f.index for f in got] == list(range(14))
    assert [mean_level(f) for f in got] == pytest.approx([level(i % 7) for i in range(14)], abs=6)
    assert fake.sleeps == [0.01, 0.01, 0.02]
    assert got[0].at.tzinfo is UTC
