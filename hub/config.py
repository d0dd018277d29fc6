"""Typed configuration of the hub (``rollcall hub``)."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from edge.protocol.config import ConfigPath, EntityIdSetting, MqttSettings, Section, SiteSettings
from hub.alert_settings import AlertRules  # the rule names and their settings live with the rules


class HubSettings(Section):
    """Where the hub keeps its database, files and key."""

    id: EntityIdSetting = "hub-1"
    database: ConfigPath = Path("/var/lib/rollcall/hub/rollcall.db")
    data_dir: ConfigPath = Path("/var/lib/rollcall/hub")
    key_file: ConfigPath = Path("/etc/rollcall/keys/hub.key")
    accept_unknown_devices: bool = False
    """True: register a device the first time it speaks (role `both`; demos and tests). False (the default, a
    provisioned site): only devices listed under [[cameras]] (or registered before) may deliver or get a gallery."""
    import_dir: ConfigPath | None = None
    """The only folder ``people.enrol_photos`` reads photos from (resolved; no `..` or symlink may leave it). Unset:
    enrolment from photos on the hub is refused."""
    models_dir: ConfigPath | None = None
    """Models for enrolment from photos (default $ROLLCALL_MODEL_DIR)."""
    model_pack: str | None = None
    """The pack devices run, so templates match their model (default: the manifest's default)."""


class RetentionSettings(Section):
    """How long each kind of data is kept; the hub purges older rows once a day at ``run_at`` (site-local time)."""

    run_at: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "03:30"
    """When the daily purge runs, HH:MM on the site's clock (site.timezone); `rollcall hub purge` runs it by hand."""
    events_days: Annotated[int, Field(ge=1, le=3650)] = 180
    snapshots_days: Annotated[int, Field(ge=1, le=3650)] = 30
    """Event snapshots (and whole-view snapshot captures), except the photos attendance shows."""
    attendance_photos_days: Annotated[int, Field(ge=1, le=3650)] = 90
    """The snapshots that show a day's first in and last out (never longer than their event)."""
    activity_days: Annotated[int, Field(ge=1, le=3650)] = 90
    """Workstation agents' activity batches."""
    file_changes_days: Annotated[int, Field(ge=1, le=3650)] = 90
    """Workstation agents' change logs of watched folders."""
    screens_days: Annotated[int, Field(ge=1, le=3650)] = 7
    """Screenshots; the hub stores none (they go straight to the supervisor who asked), kept for older configs."""
    dead_letters_days: Annotated[int, Field(ge=1, le=3650)] = 30
    """Dead letters (messages the hub could not use) older than this are purged."""
    audit_days: Annotated[int, Field(ge=1, le=3650)] = 730
    """The audit log; rows that record an erasure are kept (they name nobody)."""


class IngestSettings(Section):
    """What one sender (the device or agent id in a topic) may cost the hub, checked before the writer sees it.

    Messages over a limit are dropped (the sender resends what the hub never acked) and counted as dead letters.
    """

    queue_messages: Annotated[int, Field(ge=100, le=1_000_000)] = 50_000
    """Messages waiting for the writer, all senders together; past it the newest message is dropped."""
    queue_mb: Annotated[int, Field(ge=8, le=4096)] = 256
    """Payload megabytes waiting for the writer, all senders together."""
    sender_queue_messages: Annotated[int, Field(ge=10, le=1_000_000)] = 5_000
    """Messages of one sender waiting; past it that sender's newest message is dropped."""
    sender_messages_per_s: Annotated[float, Field(gt=0, le=1_000_000)] = 1_000.0
    """Sustained messages a second one sender may deliver."""
    sender_burst: Annotated[int, Field(ge=1, le=1_000_000)] = 5_000
    """Messages one sender may deliver at once above its sustained rate (after an outage, say)."""
    sender_mb_per_s: Annotated[float, Field(gt=0, le=10_000)] = 8.0
    """Sustained payload megabytes a second one sender may deliver."""
    sender_burst_mb: Annotated[float, Field(gt=0, le=10_000)] = 32.0
    max_message_kb: Annotated[int, Field(ge=1, le=2048)] = 2048
    """The largest payload accepted (the wire contract's own limit is 2048 KB for pictures, 64 KB otherwise)."""

    @model_validator(mode="after")
    def _sender_within_queue(self) -> IngestSettings:
        if self.sender_queue_messages > self.queue_messages:
            raise ValueError(
                f"sender_queue_messages ({self.sender_queue_messages}) must not exceed queue_messages "
                f"({self.queue_messages})"
            )
        if self.sender_burst_mb < self.max_message_kb / 1024:
            raise ValueError(
                f"sender_burst_mb ({self.sender_burst_mb}) must hold at least one message of max_message_kb "
                f"({self.max_message_kb})"
            )
        return self


class DeadLetterSettings(Section):
    """How many dead letters are kept one by one; past these limits they are only counted."""

    samples_per_hour: Annotated[int, Field(ge=1, le=10_000)] = 10
    """Rows kept per sender, reason and hour; later letters of that kind add to the last row's count."""
    reasons_per_hour: Annotated[int, Field(ge=1, le=10_000)] = 20
    """Different reasons kept per sender and hour; more are counted under one 'other reasons' row."""
    max_rows: Annotated[int, Field(ge=100, le=10_000_000)] = 10_000
    """The most dead-letter rows kept; the oldest go first."""


class EnrolmentSettings(Section):
    """Enrolment from photos and door captures (it runs on its own thread, never on the writer)."""

    max_photo_megapixels: Annotated[float, Field(gt=0, le=1000)] = 40.0
    """Larger images are refused by their header, before they are decoded."""
    max_photo_mb: Annotated[float, Field(gt=0, le=1000)] = 50.0
    """Larger photo files are refused before they are read."""
    max_waiting: Annotated[int, Field(ge=1, le=1000)] = 16
    """Enrolment requests and captures waiting for the enrolment thread; more are refused (try again later)."""


SupervisorRole = Literal["viewer", "operator", "admin"]


class SupervisorSettings(Section):
    """One supervisor (the name is the table's key, the broker user name and certificate CN) and what it may do."""

    role: SupervisorRole
    """viewer: read-only methods; operator: also acknowledge and resolve alerts, enrol; admin: everything."""


class CameraRoleSettings(Section):
    """A door device the hub knows, and which way its camera looks."""

    device: EntityIdSetting
    name: str = ""
    role: Literal["entrance", "exit", "both"] = "both"


class AttendanceSettings(Section):
    """How the hub turns sightings into days."""

    day_starts_at: time = time(4, 0)
    """Local time a day begins: sightings before it belong to the previous day (night shifts: set it to noon)."""
    settle_out_after_min: Annotated[int, Field(ge=0, le=24 * 60)] = 30
    """A last-out (single `both` camera) is provisional until this long passes without a later sighting."""
    signoff_after_min: Annotated[int, Field(ge=0, le=7 * 24 * 60)] = 30
    """A past day is signed off (final) this long after it ends, once every active device delivered past its end."""
    last_out: Literal["none", "last_sighting", "scheduled_end"] = "none"
    """What a forgotten check-out records as the last out: nothing, the last sighting, or `scheduled_end`."""
    scheduled_end: time = time(17, 0)
    """Local end of the working day, the last out of a forgotten check-out under `last_out = "scheduled_end"`."""
    first_in_photo: Literal["earliest", "best_within"] = "earliest"
    """The photo of a day's first in: the arrival's own (`earliest`), or the best face quality among the person's
    snapshots within `first_in_photo_window_min` after it (`best_within`); the first-in time stays the arrival's."""
    first_in_photo_window_min: Annotated[int, Field(ge=0, le=24 * 60)] = 5
    """How long after the arrival a better first-in photo may be taken (`first_in_photo = "best_within"`)."""
    presence_timeout_h: Annotated[float, Field(gt=0, le=72)] = 12.0
    """Someone not seen leaving is marked out this long after their last sighting."""
    max_clock_ahead_s: Annotated[int, Field(ge=0, le=24 * 3600)] = 300
    """An event dated further ahead of the hub's clock (a device clock gone wrong) is stored and acked, but moves
    neither presence nor attendance; so does one older than `retention.events_days`."""


Periods = list[Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-4]):[0-5][0-9]$")]]


class ScheduleSettings(Section):
    """Work hours per weekday (several periods = breaks between them), holidays, and the mode."""

    mode: Literal["automatic", "on", "off"] = "automatic"
    """automatic: follow the hours below; on / off: a manual override until changed back."""
    paused_until: AwareDatetime | None = None
    """Maintenance: no work time and no schedule alerts until then (UTC, e.g. 2026-11-21T18:00:00Z)."""
    monday: Periods = ["08:00-12:00", "13:00-17:00"]
    tuesday: Periods = ["08:00-12:00", "13:00-17:00"]
    wednesday: Periods = ["08:00-12:00", "13:00-17:00"]
    thursday: Periods = ["08:00-12:00", "13:00-17:00"]
    friday: Periods = ["08:00-12:00", "13:00-17:00"]
    saturday: Periods = []
    sunday: Periods = []
    holidays: list[date] = []
    expected: list[EntityIdSetting] = []
    """People expected every work day (the late-arrival rule looks at them)."""


class TelegramSettings(Section):
    """Alerts to Telegram chats, and the /status, /who and /attendance commands."""

    enabled: bool = False
    token_file: ConfigPath | None = None
    chat_ids: list[int | str] = []
    base_url: str = "https://api.telegram.org"
    min_severity: Literal["info", "warning", "critical"] = "warning"
    rules: list[str] | None = None


class WebhookSettings(Section):
    """Alerts as signed JSON POSTs."""

    enabled: bool = False
    url: str = ""
    secret_file: ConfigPath | None = None
    min_severity: Literal["info", "warning", "critical"] = "info"
    rules: list[str] | None = None


class HomeAssistantSettings(Section):
    """Home Assistant MQTT discovery on the site's broker."""

    enabled: bool = False
    discovery_prefix: str = "homeassistant"


class NotifySettings(Section):
    """Where alerts go besides the hub's alert topic."""

    telegram: TelegramSettings = TelegramSettings()
    webhook: WebhookSettings = WebhookSettings()


class HubConfig(Section):
    """The whole configuration of the hub."""

    site: SiteSettings = SiteSettings()
    mqtt: MqttSettings = MqttSettings()
    hub: HubSettings = HubSettings()
    retention: RetentionSettings = RetentionSettings()
    ingest: IngestSettings = IngestSettings()
    dead_letters: DeadLetterSettings = DeadLetterSettings()
    enrolment: EnrolmentSettings = EnrolmentSettings()
    attendance: AttendanceSettings = AttendanceSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    alerts: dict[str, dict[str, bool | int | float | str]] = {}
    """Per-rule overrides, e.g. ``[alerts.absent] minutes = 45`` (rules and keys in docs/alerts.md)."""
    notify: NotifySettings = NotifySettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()
    cameras: list[CameraRoleSettings] = []
    """Known door devices; with ``hub.accept_unknown_devices`` false, messages of any other device are refused."""
    supervisors: dict[EntityIdSetting, SupervisorSettings] | None = None
    """``[supervisors.<name>] role = ...``; absent: every supervisor is admin (zero-config demo; a warning at start).
    Present: a name not listed is refused."""

    @field_validator("alerts")
    @classmethod
    def _known_rules(
        cls, value: dict[str, dict[str, bool | int | float | str]]
    ) -> dict[str, dict[str, bool | int | float | str]]:
        AlertRules.from_dict(value)  # raises ValueError naming e.g. alerts.absent.after_mins
        return value

    def summary(self) -> str:
        """One line for check-config and the start-up log."""
        return (
            f"hub {self.hub.id!r} for site {self.site.id!r} ({self.site.timezone}), database {self.hub.database}, "
            f"broker {self.mqtt.host}:{self.mqtt.port}"
        )
