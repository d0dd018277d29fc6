"""Typed configuration of the workstation agent (``rollcall agent``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from edge.protocol.config import ConfigPath, EntityIdSetting, MqttSettings, PositiveFloat, Section, SiteSettings
from edge.runtime.config import DeviceConfig, OutboxSettings


class AgentIdentity(Section):
    """Who this workstation agent is."""

    id: EntityIdSetting
    data_dir: ConfigPath = Path("~/.local/state/rollcall-agent")


class ScreenCaptureSettings(Section):
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


class AgentConfig(DeviceConfig):
    """The whole configuration of one workstation agent."""

    site: SiteSettings = SiteSettings()
    mqtt: MqttSettings = MqttSettings()
    agent: AgentIdentity
    capture: ScreenCaptureSettings = ScreenCaptureSettings()
    activity: ActivitySettings = ActivitySettings()
    files: FileWatchSettings = FileWatchSettings()
    commands: CommandSettings = CommandSettings()
    outbox: OutboxSettings = OutboxSettings()

    def collected(self) -> list[str]:
        """What this agent collects besides activity (idle/active intervals and sessions), in words."""
        return [
            name
            for name, on in (
                ("screen thumbnails", self.capture.thumbnails),
                ("window titles", self.activity.window_titles),
                ("file changes", self.files.enabled),
            )
            if on
        ]

    def summary(self) -> str:
        """One line for check-config and the start-up log."""
        return (
            f"workstation agent {self.agent.id!r} at site {self.site.id!r}, collects: "
            f"{', '.join(self.collected()) or 'activity only'}; broker {self.mqtt.host}:{self.mqtt.port}"
        )
