"""The door device service behind ``rollcall edge run``: camera → pipeline → outbox → broker, galleries, health.

Threads (named, one stop signal): ``camera`` reads frames and runs the pipeline, ``publisher`` moves the outbox
to the broker, ``health`` reports vitals and pings the systemd watchdog, and paho's network thread hands acks,
galleries and commands over. SIGTERM: stop reading, publish what is ready, say ``stopped``, close the outbox.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from edge.door.commands import FrameCommands
from edge.door.config import EdgeConfig
from edge.door.events import store_event
from edge.door.gallery_store import GalleryStore
from edge.door.sources import FrameSource, Image, SourceError, open_source
from edge.protocol import wire
from edge.protocol.config import ConfigError, load_config
from edge.recognition.faces import FaceEngine
from edge.recognition.gallery import Gallery, MatchPolicy
from edge.recognition.gallery_codec import GalleryAssembler, GalleryError, check_compatible
from edge.recognition.pipeline import FaceEvent, Pipeline, PipelineSettings
from edge.recognition.quality import QualityLimits
from edge.runtime.device import DeviceService
from edge.runtime.failures import RepeatedFailure
from edge.runtime.health import CpuMeter, disk_free_mb, read_temperature_c
from edge.runtime.keys import ensure_key
from edge.runtime.outbox import OutboxError, OutboxMessage, OutboxStats
from edge.runtime.systemd import SystemdNotifier

log = logging.getLogger("rollcall.edge")


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


class EdgeService(DeviceService):
    """One door device. Build it, :meth:`start` it, :meth:`stop` it (or :meth:`run` until SIGTERM)."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        engine: FaceEngine,
        config_path: Path | None = None,
        source_factory: Callable[[EdgeConfig], FrameSource] | None = None,
        notifier: SystemdNotifier | None = None,
        software: str = "rollcall",
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.engine = engine
        self.device = config.device.id
        self.status = EdgeStatus()
        self._source_factory = source_factory or self._open_configured_source
        self._commands: queue.Queue[wire.DeviceCommand] = queue.Queue()
        self._reload_requested = threading.Event()

        data_dir = config.device.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            role="edge",
            entity=self.device,
            site=config.site,
            mqtt=config.mqtt,
            outbox=config.outbox,
            data_dir=data_dir,
            software=software,
            notifier=notifier,
            logger=log,
        )
        for topic in (
            self.topics.device_gallery(self.device),
            self.topics.device_gallery_chunk(self.device, 0).rsplit("/", 1)[0] + "/+",
            self.topics.device_command(self.device),
        ):
            self.link.subscribe(topic, qos=1)
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
        self.frame_commands = FrameCommands(self.device, self.topics, self.outbox, engine, self.publisher.wake)
        self._threads: list[threading.Thread] = []
        self._frame_failures = RepeatedFailure(log, "processing a camera frame")
        self._health_failures = RepeatedFailure(log, "the health report")
        self._last_stats: OutboxStats | None = None

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
                        try:
                            self._on_frame(frame.image, frame.at, frame.pts_s)
                            self._frame_failures.succeeded()
                        except SourceError:
                            raise
                        except Exception as exc:  # one bad frame must not end the camera thread for good
                            self._frame_failures.failed(exc)
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
        if self.frame_commands.capturing:
            self.frame_commands.continue_enrolment(image, at, pts_s)

    def record_events(self, events: list[FaceEvent]) -> list[OutboxMessage]:
        """Store events in the outbox (durably, in order) and wake the publisher; returns what was stored."""
        stored: list[OutboxMessage] = []
        for event in events:
            message = store_event(self.outbox, self.topics, self.device, event, self.pipeline.gallery.version or None)
            if message is not None:
                stored.append(message)
        if events:
            self.publisher.wake()
        return stored

    # --- commands ------------------------------------------------------------------------------------------------

    def _begin_command(self, command: wire.DeviceCommand, image: Image, at: datetime, pts_s: float) -> None:
        log.info("command %s from %s: %s", command.command_id, command.issued_by, command.action)
        if command.action == "snapshot":
            self.frame_commands.snapshot(command, image, at)
        elif command.action == "enrol_capture":
            self.frame_commands.begin_enrolment(command, pts_s)
        elif command.action == "reload_config":
            self._reload_config()

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

    def _on_payload(self, payload: object) -> None:
        if isinstance(payload, (wire.GalleryManifest, wire.GalleryChunk)):
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
        gone = set(self.pipeline.gallery.people) - set(gallery.people)
        self.pipeline.replace_gallery(gallery)  # one reference swap: the camera thread sees old or new, never half
        if gone:
            # People left the gallery (an erasure, say): their acked events and snapshots must not linger in the
            # outbox's WAL (freed pages are zeroed by secure_delete). Unacked ones still go to the hub, which stores
            # them without the person.
            self.outbox.forget_delivered()
        self.status.gallery_error = None
        log.info("gallery version %s in use (%d people)", gallery.version, len(gallery))

    # --- health thread -------------------------------------------------------------------------------------------

    def _outbox_stats(self) -> tuple[OutboxStats, str | None]:
        """The outbox's stats and its error; the last stats read (or zeros) when it cannot be read now."""
        try:
            stats = self.outbox.stats()
        except (OutboxError, sqlite3.DatabaseError) as exc:
            last = self._last_stats or OutboxStats(0, 0, 0, 0, 0, self.outbox.max_bytes, None, 0, 0, 0, 0, 0)
            return last, f"outbox cannot be read: {exc}"
        self._last_stats = stats
        return stats, stats.write_error

    def health(self, cpu: float, fps: float) -> wire.Health:
        """The health payload as of now."""
        stats, outbox_error = self._outbox_stats()
        problems = (
            outbox_error,
            self.status.source_error,
            self._frame_failures.error,
            self.status.gallery_error,
            self.status.config_note,
        )
        errors = [e for e in problems if e]
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
                    self._health_failures.succeeded()
                except Exception as exc:  # logged once while it repeats, not every interval
                    self._health_failures.failed(exc)
                next_health = now + self.config.health.interval_s
            self.stop_event.wait(min(1.0, watchdog or 1.0))
