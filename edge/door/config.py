"""Typed configuration of the door device (``rollcall edge``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from edge.protocol.config import ConfigPath, EntityIdSetting, MqttSettings, Section, SiteSettings
from edge.runtime.config import DeviceConfig, HealthSettings, OutboxSettings


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


class EdgeConfig(DeviceConfig):
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
