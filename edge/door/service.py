"""The door device service behind ``rollcall edge run``: camera → pipeline → outbox → broker, galleries, health.

Threads (named, one stop signal): ``camera`` reads frames and runs the pipeline, ``publisher`` moves the outbox
to the broker, ``health`` reports vitals and pings the systemd watchdog, and paho's network thread hands acks,
galleries and commands over. SIGTERM: stop reading, publish what is ready, say ``stopped``, close the outbox.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from ulid import ULID

from edge.door.config import EdgeConfig
from edge.door.sources import FrameSource, SourceError, open_source
from edge.protocol import wire
from edge.protocol.config import ConfigError, load_config
from edge.protocol.mqtt import MqttLink, Received
from edge.recognition.faces import FaceEngine
from edge.recognition.gallery import Gallery, MatchPolicy
from edge.recognition.gallery_codec import GalleryAssembler, GalleryError, GalleryStore, check_compatible, ensure_key
from edge.recognition.pipeline import FaceEvent, Pipeline, PipelineSettings
from edge.recognition.quality import QualityLimits
from edge.runtime.health import CpuMeter, disk_free_mb, read_temperature_c
from edge.runtime.outbox import Outbox, OutboxFull, OutboxMessage
from edge.runtime.publisher import OutboxPublisher
from edge.runtime.systemd import Notifier

log = logging.getLogger("rollcall.edge")

Image = npt.NDArray[np.uint8]
ENROL_SPACING_S = 0.3
ENROL_TIMEOUT_S = 30.0
SNAPSHOT_MAX_WIDTH = 1280


@dataclass
class _Capture:
    """A command in progress that needs frames."""

    command: wire.DeviceCommand
    total: int
    deadline_pts: float | None = None
    taken: int = 0
    last_pts: float = float("-inf")


@dataclass
class EdgeStatus:
    """What the service knows about itself for health."""

    started: float = field(default_factory=time.monotonic)
    frames: int = 0
    last_frame_monotonic: float = field(default_factory=time.monotonic)
    source_error: str | None = None
    gallery_error: str | None = None
    config_note: str | None = None


def quality_limits(config: EdgeConfig, base: QualityLimits | None = None) -> QualityLimits:
    """The quality gate the config asks for."""
    return replace(
        base or QualityLimits(),
        min_face_px=config.recognition.min_face_px,
        min_sharpness=config.recognition.min_sharpness,
    )


def _jpeg(image: Image, max_width: int) -> tuple[bytes, int, int]:
    height, width = image.shape[:2]
    if width > max_width:
        scale = max_width / width
        image = np.asarray(cv2.resize(image, (max_width, max(1, round(height * scale))), interpolation=cv2.INTER_AREA))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return encoded.tobytes(), int(image.shape[1]), int(image.shape[0])


def _jpeg_size(data: bytes) -> tuple[int, int]:
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return (int(decoded.shape[1]), int(decoded.shape[0])) if decoded is not None else (1, 1)


class EdgeService:
    """One door device. Build it, :meth:`start` it, :meth:`stop` it (or :meth:`run` until SIGTERM)."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        engine: FaceEngine,
        config_path: Path | None = None,
        source_factory: Callable[[EdgeConfig], FrameSource] | None = None,
        notifier: Notifier | None = None,
        software: str = "rollcall",
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.engine = engine
        self.device = config.device.id
        self.topics = wire.Topics(config.site.id, config.site.topic_prefix)
        self.stop_event = threading.Event()
        self.status = EdgeStatus()
        self.notifier = notifier or Notifier()
        self._source_factory = source_factory or self._open_configured_source
        self._commands: queue.Queue[wire.DeviceCommand] = queue.Queue()
        self._capture: _Capture | None = None
        self._reload_requested = threading.Event()

        data_dir = config.device.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(data_dir / "outbox.db", max_bytes=int(config.outbox.max_mb * 1_000_000))
        key_file = config.device.key_file or data_dir / "device.key"
        ensure_key(key_file)
        self.gallery_store = GalleryStore(data_dir / "gallery.bin", key_file)
        gallery = self._load_stored_gallery()
        self.assembler = GalleryAssembler(
            engine.embedder.model_id, engine.embedder.embedding_size, installed_version=gallery.version
        )
        self.pipeline = Pipeline(
            engine,
            gallery,
            policy=self._policy(config),
            settings=PipelineSettings(votes_needed=config.recognition.votes_needed),
        )
        self.link = MqttLink(
            config.mqtt,
            client_id=config.mqtt.client_id_for("edge", self.device),
            status_topic=self.topics.device_status(self.device),
            status_entity=self.device,
            software=software,
            on_message=self._on_message,
        )
        for topic in (
            self.topics.device_ack(self.device),
            self.topics.device_gallery(self.device),
            self.topics.device_gallery_chunk(self.device, 0).rsplit("/", 1)[0] + "/+",
            self.topics.device_command(self.device),
        ):
            self.link.subscribe(topic, qos=1)
        self.publisher = OutboxPublisher(
            self.outbox,
            self.link,
            max_in_flight=config.outbox.max_in_flight,
            resend_after_s=config.outbox.resend_after_s,
        )
        self._threads: list[threading.Thread] = []

    # --- set-up --------------------------------------------------------------------------------------------------

    @staticmethod
    def _policy(config: EdgeConfig) -> MatchPolicy:
        return MatchPolicy(threshold=config.recognition.threshold, min_margin=config.recognition.min_margin)

    @staticmethod
    def _open_configured_source(config: EdgeConfig) -> FrameSource:
        camera = config.camera
        options: dict[str, object] = {}
        if Path(camera.source).expanduser().exists():
            options = {"realtime": camera.realtime, "loop": camera.loop}
        return open_source(camera.source, camera.width, camera.height, camera.fps, **options)

    def _load_stored_gallery(self) -> Gallery:
        try:
            stored = self.gallery_store.load()
        except GalleryError as exc:
            self.status.gallery_error = f"stored gallery unusable: {exc}"
            log.error("%s", self.status.gallery_error)
            stored = None
        if stored is None:
            return Gallery([], np.zeros((0, self.engine.embedder.embedding_size), dtype=np.float32))
        try:
            check_compatible(
                stored.model_id,
                stored.dimension or self.engine.embedder.embedding_size,
                self.engine.embedder.model_id,
                self.engine.embedder.embedding_size,
            )
        except GalleryError as exc:
            # The model changed since the gallery was stored (a new pack): wait for the hub's gallery for it.
            self.status.gallery_error = f"stored gallery unusable: {exc}"
            return Gallery([], np.zeros((0, self.engine.embedder.embedding_size), dtype=np.float32))
        log.info("gallery version %s loaded from disk (%d people)", stored.version, len(stored))
        return stored

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (in the background: an offline device works on) and start every thread."""
        self.link.start()
        self._threads = [
            threading.Thread(target=self._camera_loop, name="camera", daemon=True),
            threading.Thread(target=self.publisher.run, args=(self.stop_event,), name="publisher", daemon=True),
            threading.Thread(target=self._health_loop, name="health", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.notifier.ready(f"door device {self.device} running")

    def stop(self, timeout: float = 10.0) -> None:
        """Flush and stop: threads end, what is ready goes to the broker, ``stopped`` is published."""
        self.notifier.stopping()
        self.stop_event.set()
        self.publisher.wake()
        for thread in self._threads:
            thread.join(timeout)
        self.link.stop()
        self.outbox.close()

    def run(self) -> None:
        """Start and block until the stop event (SIGTERM/SIGINT set it from the CLI)."""
        self.start()
        self.stop_event.wait()
        self.stop()

    # --- camera thread -------------------------------------------------------------------------------------------

    def _camera_loop(self) -> None:
        backoff = 1.0
        while not self.stop_event.is_set():
            try:
                source = self._source_factory(self.config)
                with source:
                    self.status.source_error = None
                    backoff = 1.0
                    while not self.stop_event.is_set():
                        frame = source.read()
                        if frame is None:
                            self.record_events(self.pipeline.finish())
                            log.info("camera source ended (%s); the device stays up", source.describe())
                            self.stop_event.wait()
                            return
                        self._on_frame(frame.image, frame.at, frame.pts_s)
            except SourceError as exc:
                self.status.source_error = str(exc)
                log.error("camera: %s; retrying in %.0f s", exc, backoff)
                self.stop_event.wait(backoff)
                backoff = min(60.0, backoff * 2)

    def _on_frame(self, image: Image, at: datetime, pts_s: float) -> None:
        self.status.frames += 1
        self.status.last_frame_monotonic = time.monotonic()
        if self._reload_requested.is_set():
            self._reload_requested.clear()
            self._reload_config()
        while not self._commands.empty():
            self._begin_command(self._commands.get_nowait(), image, at, pts_s)
        self.record_events(self.pipeline.process(image, at, pts_s))
        if self._capture is not None:
            self._continue_enrol_capture(image, at, pts_s)

    def record_events(self, events: list[FaceEvent]) -> list[OutboxMessage]:
        """Store events in the outbox (durably, in order) and wake the publisher; returns what was stored."""
        stored = [message for event in events if (message := self._store_event(event)) is not None]
        if events:
            self.publisher.wake()
        return stored

    def _store_event(self, event: FaceEvent) -> OutboxMessage | None:
        event_id = str(ULID())
        gallery_version = self.pipeline.gallery.version or None

        def build(seq: int) -> tuple[str, str, bytes]:
            payload = wire.Event(
                event_id=event_id,
                device=self.device,
                seq=seq,
                at=event.at,
                type=event.type,
                person_id=event.person_id,
                score=max(-1.0, min(1.0, event.score)),
                margin=max(0.0, min(2.0, event.margin)),
                track=event.track,
                quality=max(0.0, min(1.0, event.quality)),
                has_snapshot=event.snapshot_jpeg is not None,
                gallery_version=gallery_version,
            )
            return event_id, self.topics.device_event(self.device), wire.encode(payload)

        attachment = None
        if event.snapshot_jpeg is not None:
            width, height = _jpeg_size(event.snapshot_jpeg)
            snapshot = wire.Snapshot(
                event_id=event_id,
                device=self.device,
                at=event.at,
                content_type="image/jpeg",
                width=width,
                height=height,
                data=event.snapshot_jpeg,
            )
            attachment = (self.topics.device_snapshot(self.device), wire.encode(snapshot))
        try:
            return self.outbox.add(build, attachment)
        except OutboxFull:
            log.error("outbox full: event refused (counted in health); is the hub acking?")
            return None

    # --- commands ------------------------------------------------------------------------------------------------

    def _begin_command(self, command: wire.DeviceCommand, image: Image, at: datetime, pts_s: float) -> None:
        log.info("command %s from %s: %s", command.command_id, command.issued_by, command.action)
        if command.action == "snapshot":
            data, width, height = _jpeg(image, SNAPSHOT_MAX_WIDTH)
            self._store_capture(command, "snapshot", 0, 1, True, None, None, data, width, height, at)
        elif command.action == "enrol_capture":
            total = command.count or 5
            self._capture = _Capture(command, total, deadline_pts=pts_s + ENROL_TIMEOUT_S)
        elif command.action == "reload_config":
            self._reload_config()

    def _continue_enrol_capture(self, image: Image, at: datetime, pts_s: float) -> None:
        capture = self._capture
        assert capture is not None
        if capture.deadline_pts is not None and pts_s > capture.deadline_pts:
            message = (
                f"nobody usable at the camera for {ENROL_TIMEOUT_S:.0f} s; {capture.taken} of {capture.total} taken"
            )
            if capture.taken:
                log.warning("enrolment capture %s ended early: %s", capture.command.command_id, message)
            data, width, height = _jpeg(image, 320)
            index = min(capture.taken, capture.total - 1)
            self._store_capture(
                capture.command, "enrol", index, capture.total, True, message, None, data, width, height, at
            )
            self._capture = None
            return
        if pts_s - capture.last_pts < ENROL_SPACING_S:
            return
        faces = self.engine.observe(image)
        if not faces:
            return
        face = max(faces, key=lambda o: o.detection.area)
        if face.quality.problems(self.engine.limits):
            return
        x1, y1, x2, y2 = face.detection.box
        pad_w, pad_h = (x2 - x1) * 0.3, (y2 - y1) * 0.3
        h, w = image.shape[:2]
        crop = image[
            max(0, int(y1 - pad_h)) : min(h, int(y2 + pad_h)), max(0, int(x1 - pad_w)) : min(w, int(x2 + pad_w))
        ]
        data, width, height = _jpeg(np.ascontiguousarray(crop), 320)
        final = capture.taken + 1 >= capture.total
        self._store_capture(
            capture.command,
            "enrol",
            capture.taken,
            capture.total,
            final,
            None,
            face.quality.score,
            data,
            width,
            height,
            at,
        )
        capture.taken += 1
        capture.last_pts = pts_s
        if final:
            self._capture = None

    def _store_capture(
        self,
        command: wire.DeviceCommand,
        purpose: str,
        index: int,
        total: int,
        final: bool,
        message: str | None,
        quality: float | None,
        data: bytes,
        width: int,
        height: int,
        at: datetime,
    ) -> None:
        capture_id = str(ULID())
        payload = wire.Capture(
            capture_id=capture_id,
            device=self.device,
            command_id=command.command_id,
            at=at,
            purpose="enrol" if purpose == "enrol" else "snapshot",
            person_id=command.person_id if purpose == "enrol" else None,
            index=index,
            total=total,
            final=final,
            message=message,
            quality=None if quality is None else max(0.0, min(1.0, quality)),
            content_type="image/jpeg",
            width=width,
            height=height,
            data=data,
        )
        encoded = wire.encode(payload)
        try:
            self.outbox.add(lambda seq: (capture_id, self.topics.device_capture(self.device), encoded))
        except OutboxFull:
            log.error("outbox full: capture refused")
        self.publisher.wake()

    def _reload_config(self) -> None:
        if self.config_path is None:
            self.status.config_note = "reload asked, but the service was not started from a config file"
            return
        try:
            fresh = load_config(EdgeConfig, self.config_path, "edge")
        except ConfigError as exc:
            self.status.config_note = f"reload refused, old config kept: {exc.problems[0]}"
            log.error("%s", self.status.config_note)
            return
        # What can change live: recognition thresholds, quality limits and the health interval. Anything else
        # (camera, broker, models, storage) takes a restart, and health says so.
        restart_needed = [
            name
            for name in ("site", "mqtt", "device", "camera", "models", "outbox")
            if getattr(fresh, name) != getattr(self.config, name)
        ]
        self.pipeline.policy = self._policy(fresh)
        self.engine.limits = quality_limits(fresh, self.engine.limits)
        self.config = fresh.model_copy(update={name: getattr(self.config, name) for name in restart_needed})
        self.status.config_note = (
            f"reloaded; restart to apply: {', '.join(restart_needed)}" if restart_needed else "reloaded"
        )
        log.info("config %s", self.status.config_note)

    # --- MQTT thread ---------------------------------------------------------------------------------------------

    def _on_message(self, message: Received) -> None:
        try:
            ref, payload = wire.decode(message.topic, message.payload)
        except wire.WireError as exc:
            log.warning("ignored a malformed message: %s", exc)
            return
        if ref.entity != self.device:
            return
        if isinstance(payload, wire.Ack):
            self.publisher.on_ack(payload)
        elif isinstance(payload, (wire.GalleryManifest, wire.GalleryChunk)):
            self._on_gallery_part(payload)
        elif isinstance(payload, wire.DeviceCommand):
            if payload.action == "reload_config":
                self._reload_requested.set()
            else:
                self._commands.put(payload)

    def _on_gallery_part(self, payload: wire.GalleryManifest | wire.GalleryChunk) -> None:
        try:
            gallery = self.assembler.feed(payload)
        except GalleryError as exc:
            self.status.gallery_error = str(exc)
            log.error("gallery refused, keeping version %s: %s", self.pipeline.gallery.version, exc)
            return
        if gallery is None:
            return
        data = self.assembler.last_data
        if data is not None:
            try:
                self.gallery_store.save(data)
            except OSError as exc:
                log.error("could not store the gallery on disk: %s", exc)
        self.pipeline.replace_gallery(gallery)  # one reference swap: the camera thread sees old or new, never half
        self.status.gallery_error = None
        log.info("gallery version %s in use (%d people)", gallery.version, len(gallery))

    # --- health thread -------------------------------------------------------------------------------------------

    def health(self, cpu: float, fps: float) -> wire.Health:
        """The health payload as of now."""
        stats = self.outbox.stats()
        errors = [e for e in (self.status.source_error, self.status.gallery_error, self.status.config_note) if e]
        return wire.Health(
            device=self.device,
            at=wire.now_utc(),
            uptime_s=time.monotonic() - self.status.started,
            fps=fps,
            cpu_percent=cpu,
            temperature_c=read_temperature_c(),
            disk_free_mb=disk_free_mb(self.config.device.data_dir),
            outbox_depth=stats.depth,
            oldest_unacked_s=stats.oldest_unacked_age_s,
            dropped_snapshots=stats.dropped_attachments,
            refused_events=stats.refused,
            gallery_version=self.pipeline.gallery.version or None,
            gallery_error="; ".join(errors)[:256] if errors else None,
            model_pack=self.config.models.pack,
        )

    def _health_loop(self) -> None:
        meter = CpuMeter()
        frames_before, clock_before = self.status.frames, time.monotonic()
        next_health = time.monotonic()
        watchdog = self.notifier.watchdog_interval_s
        while not self.stop_event.is_set():
            now = time.monotonic()
            if watchdog is not None and now - self.status.last_frame_monotonic < 4 * watchdog + 5:
                # Ping only while frames arrive: a wedged camera thread should get the service restarted.
                self.notifier.watchdog()
            if now >= next_health:
                fps = (self.status.frames - frames_before) / max(1e-6, now - clock_before)
                frames_before, clock_before = self.status.frames, now
                try:
                    health = self.health(meter.read(), fps)
                    self.link.publish(self.topics.device_health(self.device), health, qos=0)
                except Exception:
                    log.exception("health report failed")
                next_health = now + self.config.health.interval_s
            self.stop_event.wait(min(1.0, watchdog or 1.0))
