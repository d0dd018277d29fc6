"""Typed configuration of the door device (``rollcall edge``) and the workstation agent (``rollcall agent``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from edge.protocol.config import ConfigPath, EntityIdSetting, MqttSettings, PositiveFloat, Section, SiteSettings


class DeviceSettings(Section):
    """Who this door device is."""

    id: EntityIdSetting
    name: str = ""
    data_dir: ConfigPath = Path("/var/lib/rollcall/edge")
    key_file: ConfigPath | None = None
    """Fernet key(s) for the gallery stored on disk; default ``<data_dir>/device.key`` (created 0600)."""


class CameraSettings(Section):
    """Where frames come from.

    ``source`` is ``picamera2``, a camera index such as ``"0"``, an ``rtsp://``/``http(s)://`` URL, a video file
    or a folder of images.
    """

    source: Annotated[str, Field(min_length=1)] = "0"
    width: Annotated[int, Field(ge=64, le=7680)] = 1280
    height: Annotated[int, Field(ge=64, le=4320)] = 720
    fps: Annotated[float, Field(gt=0, le=120)] = 10.0
    realtime: bool = True
    """For a video file or folder: play at its frame rate (a replayed door); false = as fast as possible."""
    loop: bool = False
    """For a video file or folder: start again at the end (demos)."""


class RecognitionSettings(Section):
    """Thresholds of the recognition pipeline; defaults measured with `rollcall edge eval` and `bench edge`."""

    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.52
    min_margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.03
    votes_needed: Annotated[int, Field(ge=1, le=20)] = 3
    min_face_px: Annotated[float, Field(ge=16, le=1000)] = 40.0
    min_sharpness: Annotated[float, Field(ge=0)] = 60.0
    detector_input: Annotated[int, Field(ge=160, le=1920, multiple_of=32)] = 640


class ModelSettings(Section):
    """Which model pack to run, from which directory, on which execution providers."""

    dir: ConfigPath | None = None
    """Directory of model weights; unset means ``$ROLLCALL_MODEL_DIR``."""
    pack: Annotated[str, Field(pattern=r"^[a-z0-9_.-]{1,64}$")] = "scrfd500m-mbf128"
    providers: Annotated[list[str], Field(min_length=1)] = ["CPUExecutionProvider"]
    threads: Annotated[int, Field(ge=1, le=64)] = 2


class OutboxSettings(Section):
    """The on-device queue of events waiting for the hub's ack."""

    max_mb: Annotated[float, Field(gt=0)] = 256.0
    max_in_flight: Annotated[int, Field(ge=1, le=10_000)] = 100
    resend_after_s: PositiveFloat = 10.0


class HealthSettings(Section):
    """How often the device reports its health."""

    interval_s: PositiveFloat = 30.0


class EdgeConfig(Section):
    """The whole configuration of one door device."""

    site: SiteSettings = SiteSettings()
    mqtt: MqttSettings = MqttSettings()
    device: DeviceSettings
    camera: CameraSettings = CameraSettings()
    recognition: RecognitionSettings = RecognitionSettings()
    models: ModelSettings = ModelSettings()
    outbox: OutboxSettings = OutboxSettings()
    health: HealthSettings = HealthSettings()

    def summary(self) -> str:
        """One line for check-config and the start-up log."""
        return (
            f"door device {self.device.id!r} at site {self.site.id!r}, camera {self.camera.source!r}, "
            f"model pack {self.models.pack!r}, broker {self.mqtt.host}:{self.mqtt.port}"
        )


class AgentIdentity(Section):
    """Who this workstation agent is."""

    id: EntityIdSetting
    data_dir: ConfigPath = Path("~/.local/state/rollcall-agent")


class CaptureSettings(Section):
    """Screen thumbnails: whether, how big, how often, and what counts as a change."""

    thumbnails: bool = True
    thumbnail_width: Annotated[int, Field(ge=64, le=1920)] = 320
    format: Literal["jpeg", "webp"] = "jpeg"
    min_interval_s: PositiveFloat = 10.0
    change_threshold: Annotated[float, Field(gt=0, le=1)] = 0.01


class ActivitySettings(Section):
    """Idle detection and window titles."""

    window_titles: bool = True
    idle_after_s: PositiveFloat = 300.0
    publish_interval_s: PositiveFloat = 60.0


class FileWatchSettings(Section):
    """Folders whose changes are logged (off unless folders are named)."""

    enabled: bool = False
    watch: list[ConfigPath] = []
    include: list[str] = ["*"]
    exclude: list[str] = ["*.tmp", "*~", ".git/*"]

    @model_validator(mode="after")
    def _folders_when_enabled(self) -> FileWatchSettings:
        if self.enabled and not self.watch:
            raise ValueError("enabled file watching needs at least one folder in watch")
        return self


class CommandSettings(Section):
    """How the agent shows messages and locks the screen."""

    lock_command: Annotated[list[str], Field(min_length=1)] = ["loginctl", "lock-session"]
    unlock_command: list[str] = ["loginctl", "unlock-session"]
    allow_lock: bool = True


class AgentConfig(Section):
    """The whole configuration of one workstation agent."""

    site: SiteSettings = SiteSettings()
    mqtt: MqttSettings = MqttSettings()
    agent: AgentIdentity
    capture: CaptureSettings = CaptureSettings()
    activity: ActivitySettings = ActivitySettings()
    files: FileWatchSettings = FileWatchSettings()
    commands: CommandSettings = CommandSettings()
    outbox: OutboxSettings = OutboxSettings()

    def summary(self) -> str:
        """One line for check-config and the start-up log."""
        collected = [
            name
            for name, on in (
                ("thumbnails", self.capture.thumbnails),
                ("window titles", self.activity.window_titles),
                ("file changes", self.files.enabled),
            )
            if on
        ]
        return (
            f"workstation agent {self.agent.id!r} at site {self.site.id!r}, collects: "
            f"{', '.join(collected) or 'activity only'}; broker {self.mqtt.host}:{self.mqtt.port}"
        )
