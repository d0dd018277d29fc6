"""Typed configuration of the supervisor's terminal UI (``rollcall tui``)."""

from __future__ import annotations

from datetime import time
from typing import Annotated

from pydantic import Field, model_validator

from edge.protocol.config import ConfigPath, EntityIdSetting, MqttSettings, PositiveFloat, Section, SiteSettings
from edge.protocol.wire import check_id


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
    day_starts_at: time = time(4, 0)
    """Fallback only: the TUI asks the hub (`site.info`) for its `attendance.day_starts_at` and time zone and uses
    these until the hub answers or when an older hub cannot tell (the Attendance screen opens on the current
    attendance day: at 00:30 before a 04:00 start, that is the previous date)."""


class SupervisorSettings(Section):
    """Who is asking: the supervisor's name is the hub's key for their role and the broker's user name."""

    name: EntityIdSetting | None = None
    """Default: ``mqtt.username`` when set, else ``tui.id``. On a provisioned site it is the CN of the TLS client
    certificate in ``[mqtt.tls]`` and the broker user name."""


class TuiConfig(Section):
    """The whole configuration of the TUI."""

    site: SiteSettings = SiteSettings()
    mqtt: MqttSettings = MqttSettings()
    tui: TuiSettings = TuiSettings()
    supervisor: SupervisorSettings = SupervisorSettings()

    @model_validator(mode="after")
    def _one_identity(self) -> TuiConfig:
        name, user = self.supervisor.name, self.mqtt.username
        if name is not None and user is not None and name != user:
            raise ValueError(
                f"supervisor.name {name!r} and mqtt.username {user!r} differ: the broker knows a supervisor by their "
                "user name (the certificate's CN); set them alike or leave supervisor.name out"
            )
        if name is None and user is not None:
            check_id(user, "mqtt.username (the supervisor's name)")
        return self

    @property
    def supervisor_name(self) -> str:
        """The name this TUI asks the hub as: ``supervisor.name``, else ``mqtt.username``, else ``tui.id``."""
        return self.supervisor.name or self.mqtt.username or self.tui.id

    def summary(self) -> str:
        """One line for check-config."""
        tls = self.mqtt.tls
        secure = (
            f"TLS{' with client certificate ' + str(tls.cert_file) if tls.cert_file is not None else ''}"
            if tls.enabled
            else "no TLS"
        )
        return (
            f"TUI {self.tui.id!r} of supervisor {self.supervisor_name!r} for site {self.site.id!r}, "
            f"broker {self.mqtt.host}:{self.mqtt.port} ({secure})"
        )
