"""Typed configuration of the supervisor's terminal UI (``rollcall tui``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edge.protocol.config import ConfigPath, EntityIdSetting, MqttSettings, PositiveFloat, Section, SiteSettings


class TuiSettings(Section):
    """How the TUI identifies itself and paces itself."""

    id: EntityIdSetting = "tui"
    max_redraw_hz: Annotated[float, Field(gt=0, le=60)] = 10.0
    request_timeout_s: PositiveFloat = 5.0
    poll_s: PositiveFloat = 10.0
    """How often the TUI asks the hub for open alerts (and notices that a silent hub answers again)."""
    export_dir: ConfigPath | None = None
    """Where attendance CSV exports go; the current directory when unset."""
    events_shown: Annotated[int, Field(ge=10, le=500)] = 200
    """How many of the latest events the events screen keeps."""


class TuiConfig(Section):
    """The whole configuration of the TUI."""

    site: SiteSettings = SiteSettings()
    mqtt: MqttSettings = MqttSettings()
    tui: TuiSettings = TuiSettings()

    def summary(self) -> str:
        """One line for check-config."""
        return f"TUI {self.tui.id!r} for site {self.site.id!r}, broker {self.mqtt.host}:{self.mqtt.port}"
