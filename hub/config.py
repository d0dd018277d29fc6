"""Typed configuration of the hub (``rollcall hub``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from edge.settings import ConfigPath, EntityIdSetting, MqttSettings, Section, SiteSettings


class HubSettings(Section):
    """Where the hub keeps its database, files and key."""

    id: EntityIdSetting = "hub-1"
    database: ConfigPath = Path("/var/lib/rollcall/hub/rollcall.db")
    data_dir: ConfigPath = Path("/var/lib/rollcall/hub")
    key_file: ConfigPath = Path("/etc/rollcall/hub.key")


class RetentionSettings(Section):
    """How long personal data is kept; the hub purges older rows daily."""

    events_days: Annotated[int, Field(ge=1, le=3650)] = 180
    snapshots_days: Annotated[int, Field(ge=1, le=3650)] = 30
    screens_days: Annotated[int, Field(ge=1, le=3650)] = 7


class HubConfig(Section):
    """The whole configuration of the hub."""

    site: SiteSettings = SiteSettings()
    mqtt: MqttSettings = MqttSettings()
    hub: HubSettings = HubSettings()
    retention: RetentionSettings = RetentionSettings()

    def summary(self) -> str:
        """One line for check-config and the start-up log."""
        return (
            f"hub {self.hub.id!r} for site {self.site.id!r} ({self.site.timezone}), database {self.hub.database}, "
            f"broker {self.mqtt.host}:{self.mqtt.port}"
        )
