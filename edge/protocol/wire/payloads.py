"""Payloads of the wire contract: ids, limits, and the strict, versioned schema of every message."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    model_validator,
)

WIRE_VERSION = 1
"""The payload version this build writes. Decoders accept the versions in :data:`SUPPORTED_VERSIONS`."""

SUPPORTED_VERSIONS = frozenset({1})

DEFAULT_PREFIX = "rollcall"

MAX_PAYLOAD_BYTES = 64 * 1024
"""Cap for ordinary JSON payloads."""

MAX_BINARY_PAYLOAD_BYTES = 2 * 1024 * 1024
"""Cap for payloads that carry an image or a gallery chunk (base64 inside JSON)."""

MAX_ACK_IDS = 1000
"""Most event ids one ack may name; the hub splits larger commits into several acks."""

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED_IDS = frozenset({"hub", "device", "agent", "supervisor"})
"""Topic-level words that no site, device, agent or client may be named, so every topic parses one way only."""
PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
"""A topic prefix: one or more levels of letters, digits, '_' and '-'."""
MAX_GALLERY_CHUNKS = 100_000
_ULID_RE = r"^[0-9A-HJKMNP-TV-Z]{26}$"
_SHA256_RE = r"^[0-9a-f]{64}$"


class WireError(ValueError):
    """A payload or topic that breaks the contract; ``field`` names where (``"<payload>"`` for the whole)."""

    def __init__(self, topic: str, field: str, problem: str) -> None:
        self.topic = topic
        self.field = field
        self.problem = problem
        super().__init__(f"{topic}: {field}: {problem}")


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is usable as one topic level (device, agent, site or client id), else raise."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is not valid: use 1-64 characters from letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    if value in RESERVED_IDS:
        raise ValueError(f"{what} {value!r} is reserved (it is a topic word); choose another name")
    return value


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# Payload ids need only the shape; where an id is also a topic level, decode() holds it to the topic's, and topic
# builders and parse_topic refuse the reserved words.
EntityId = Annotated[str, Field(pattern=_ID_RE.pattern)]
Ulid = Annotated[str, Field(pattern=_ULID_RE)]
# Naive datetimes are refused: rollcall only speaks offset-aware time, normalised to UTC.
UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegInt = Annotated[int, Field(ge=0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]
ShortText = Annotated[str, Field(max_length=256)]
Epoch = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
"""A device outbox's epoch, 16 lowercase hex digits: sequence numbers count within one epoch."""
ImageType = Literal["image/jpeg", "image/webp", "image/png"]


class _Strict(BaseModel):
    """Strict types, no unknown fields, immutable, finite numbers: the rules for payloads and their parts."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,  # JSON has no NaN or infinity; encoding them would make payloads decoding refuses
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )

    kind: ClassVar[str]
    """The name of this kind of object, as docs/wire.md and error messages use it."""


class _Part(_Strict):
    """A nested object inside a payload; versioned by its enclosing payload."""


class PayloadBase(_Strict):
    """A whole message body, with its version field."""

    entity_field: ClassVar[str | None] = None
    """The field that must equal the device or agent id in the topic (a device speaks only for itself)."""
    binary: ClassVar[bool] = False
    """Whether the payload carries an image or chunk and so gets the larger size cap."""

    v: int = WIRE_VERSION


# --- device payloads -----------------------------------------------------------------------------------------


class Status(PayloadBase):
    """Connection state of a device, agent or the hub; retained. ``offline`` is the last will."""

    kind = "status"
    entity_field = "client"
    client: EntityId
    state: Literal["online", "offline", "stopped"]
    at: UtcTime | None = None
    software: ShortText | None = None


class Health(PayloadBase):
    """Periodic vital signs of a door device."""

    kind = "health"
    entity_field = "device"
    device: EntityId
    at: UtcTime
    uptime_s: NonNegFloat
    fps: NonNegFloat
    cpu_percent: NonNegFloat
    temperature_c: float | None = None
    disk_free_mb: NonNegFloat | None = None
    outbox_depth: NonNegInt
    oldest_unacked_s: NonNegFloat | None = None
    dropped_snapshots: NonNegInt = 0
    refused_events: NonNegInt = 0
    gallery_version: NonNegInt | None = None
    gallery_error: ShortText | None = None
    model_pack: ShortText | None = None


class Event(PayloadBase):
    """A recognition event: a track confirmed (``seen``) or ended (``left``). ``person_id`` None = unknown face."""

    kind = "event"
    entity_field = "device"
    event_id: Ulid
    device: EntityId
    seq: NonNegInt
    at: UtcTime
    type: Literal["seen", "left"]
    person_id: EntityId | None
    score: Annotated[float, Field(ge=-1.0, le=1.0)]
    margin: Annotated[float, Field(ge=0.0, le=2.0)]
    track: NonNegInt
    quality: Ratio
    has_snapshot: bool
    gallery_version: NonNegInt | None = None
    epoch: Epoch | None = None
    """The outbox epoch ``seq`` counts in; None from devices made before epochs (one series per device)."""


class Snapshot(PayloadBase):
    """The best face crop of an event's track, JPEG, base64 in ``data``."""

    kind = "snapshot"
    entity_field = "device"
    binary = True
    event_id: Ulid
    device: EntityId
    at: UtcTime
    content_type: Literal["image/jpeg"]
    width: Annotated[int, Field(ge=1, le=4096)]
    height: Annotated[int, Field(ge=1, le=4096)]
    data: bytes


class Ack(PayloadBase):
    """The hub's application-level ack: these events (and snapshots) are committed; the sender may delete them.

    ``event_ids`` names every outbox message the hub committed: events, captures (by ``capture_id``) and agent
    activity batches; ``snapshot_ids`` names the events whose snapshot crop was committed.
    """

    kind = "ack"
    entity_field = "client"
    client: EntityId
    at: UtcTime
    event_ids: Annotated[list[Ulid], Field(max_length=MAX_ACK_IDS)]
    snapshot_ids: Annotated[list[Ulid], Field(max_length=MAX_ACK_IDS)] = []


class GalleryManifest(PayloadBase):
    """Describes the device's gallery; retained. The gallery bytes arrive in ``chunks`` chunk messages."""

    kind = "gallery_manifest"
    entity_field = "device"
    device: EntityId
    version: Annotated[int, Field(ge=1)]
    created_at: UtcTime
    model_id: ShortText
    embedding_size: Annotated[int, Field(ge=16, le=4096)]
    people: NonNegInt
    format: Annotated[str, Field(pattern=r"^[a-z0-9+._-]{1,64}$")]
    size_bytes: NonNegInt
    chunks: Annotated[int, Field(ge=0, le=MAX_GALLERY_CHUNKS)]
    sha256: Annotated[str, Field(pattern=_SHA256_RE)]


class GalleryChunk(PayloadBase):
    """One piece of a gallery; retained under its index so a device that boots offline-then-online finds them."""

    kind = "gallery_chunk"
    entity_field = "device"
    binary = True
    device: EntityId
    version: Annotated[int, Field(ge=1)]
    index: Annotated[int, Field(ge=0, lt=MAX_GALLERY_CHUNKS)]
    total: Annotated[int, Field(ge=1, le=MAX_GALLERY_CHUNKS)]
    data: bytes

    @model_validator(mode="after")
    def _index_in_range(self) -> GalleryChunk:
        if self.index >= self.total:
            raise ValueError(f"index {self.index} must be below total {self.total}")
        return self


class DeviceCommand(PayloadBase):
    """A command for a door device from the hub or supervisor."""

    kind = "device_command"
    command_id: Ulid
    at: UtcTime
    action: Literal["enrol_capture", "snapshot", "reload_config"]
    person_id: EntityId | None = None
    count: Annotated[int, Field(ge=1, le=50)] | None = None
    issued_by: ShortText

    @model_validator(mode="after")
    def _enrol_names_person(self) -> DeviceCommand:
        if self.action == "enrol_capture" and self.person_id is None:
            raise ValueError("enrol_capture needs person_id")
        return self


class Capture(PayloadBase):
    """A picture a device took because a command asked: an enrolment face crop, or a snapshot of the whole view.

    ``index``/``total`` number the pictures of one command; ``final`` marks the last one the device will send for
    it (with ``message`` saying why it stopped early, e.g. nobody stood at the camera).
    """

    kind = "capture"
    entity_field = "device"
    binary = True
    capture_id: Ulid
    device: EntityId
    command_id: Ulid
    at: UtcTime
    purpose: Literal["enrol", "snapshot"]
    person_id: EntityId | None = None
    index: NonNegInt
    total: Annotated[int, Field(ge=1, le=50)]
    final: bool
    message: ShortText | None = None
    quality: Ratio | None = None
    content_type: Literal["image/jpeg"]
    width: Annotated[int, Field(ge=1, le=8192)]
    height: Annotated[int, Field(ge=1, le=8192)]
    data: bytes

    @model_validator(mode="after")
    def _index_in_range(self) -> Capture:
        if self.index >= self.total:
            raise ValueError(f"index {self.index} must be below total {self.total}")
        if self.purpose == "enrol" and self.person_id is None:
            raise ValueError("an enrolment capture needs person_id")
        return self


# --- agent payloads ------------------------------------------------------------------------------------------


class Screen(PayloadBase):
    """A workstation screen image: the small retained thumbnail, or a full snapshot on request."""

    kind = "screen"
    entity_field = "agent"
    binary = True
    agent: EntityId
    at: UtcTime
    content_type: ImageType
    width: Annotated[int, Field(ge=1, le=8192)]
    height: Annotated[int, Field(ge=1, le=8192)]
    changed_fraction: Ratio
    full: bool = False
    data: bytes


class ActivityInterval(_Part):
    """A merged stretch of one input state."""

    kind = "activity_interval"
    state: Literal["active", "idle", "locked"]
    start: UtcTime
    end: UtcTime

    @model_validator(mode="after")
    def _ordered(self) -> ActivityInterval:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class WindowInfo(_Part):
    """The active window; either part may be unavailable (Wayland) and is then None."""

    kind = "window"
    title: Annotated[str, Field(max_length=1024)] | None
    app: ShortText | None


class FileChange(_Part):
    """One change in a watched folder."""

    kind = "file_change"
    path: Annotated[str, Field(max_length=4096)]
    change: Literal["created", "modified", "deleted", "moved"]
    at: UtcTime
    dest_path: Annotated[str, Field(max_length=4096)] | None = None


class Activity(PayloadBase):
    """A batch of workstation activity, delivered through the outbox and acked like door events."""

    kind = "activity"
    entity_field = "agent"
    event_id: Ulid
    agent: EntityId
    seq: NonNegInt
    at: UtcTime
    user: ShortText | None = None
    session: Literal["start", "end"] | None = None
    intervals: Annotated[list[ActivityInterval], Field(max_length=500)] = []
    window: WindowInfo | None = None
    files: Annotated[list[FileChange], Field(max_length=1000)] = []
    epoch: Epoch | None = None
    """The outbox epoch ``seq`` counts in; None from agents made before epochs."""


class AgentCommand(PayloadBase):
    """A command for a workstation agent from the supervisor."""

    kind = "agent_command"
    command_id: Ulid
    at: UtcTime
    action: Literal["message", "lock", "unlock", "screenshot"]
    text: Annotated[str, Field(max_length=2000)] | None = None
    unlock_after_s: Annotated[int, Field(ge=1, le=86400)] | None = None
    issued_by: ShortText

    @model_validator(mode="after")
    def _message_has_text(self) -> AgentCommand:
        if self.action == "message" and not self.text:
            raise ValueError("message needs text")
        return self


# --- hub payloads --------------------------------------------------------------------------------------------


class PresenceEntry(_Part):
    """One person's presence."""

    kind = "presence_entry"
    person_id: EntityId
    name: ShortText
    state: Literal["in", "out", "unknown"]
    since: UtcTime | None
    door: EntityId | None


class Presence(PayloadBase):
    """Who is in; retained and republished on every change."""

    kind = "presence"
    binary = True  # not binary, but large: 2,000 people are about 200 KB, over the ordinary 64 KiB cap
    at: UtcTime
    people: Annotated[list[PresenceEntry], Field(max_length=100_000)]


class Alert(PayloadBase):
    """An alert as it stands now (published on every change of state or count)."""

    kind = "alert"
    alert_id: Ulid
    rule: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]
    severity: Literal["info", "warning", "critical"]
    state: Literal["open", "acknowledged", "resolved"]
    subject: ShortText
    message: Annotated[str, Field(max_length=2000)]
    first_at: UtcTime
    last_at: UtcTime
    count: Annotated[int, Field(ge=1)]
    device: EntityId | None = None
    person_id: EntityId | None = None
    acknowledged_by: ShortText | None = None


class Request(PayloadBase):
    """A question or command for the hub; the reply goes to ``reply_to`` (MQTT 3.1.1 has no response topic)."""

    kind = "request"
    request_id: Ulid
    client: EntityId
    sent_at: UtcTime
    method: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]{0,63}$")]
    params: dict[str, JsonValue] = {}
    reply_to: Annotated[str, Field(min_length=1, max_length=512)]


class ReplyError(_Part):
    """Why a request failed: a stable code and a message for people."""

    kind = "reply_error"
    code: Annotated[str, Field(pattern=r"^[a-z_]{1,64}$")]
    message: Annotated[str, Field(max_length=2000)]


class Reply(PayloadBase):
    """The hub's answer to one request."""

    kind = "reply"
    binary = True  # replies may carry photos (attendance, snapshots)
    request_id: Ulid
    ok: bool
    result: JsonValue = None
    error: ReplyError | None = None

    @model_validator(mode="after")
    def _error_iff_not_ok(self) -> Reply:
        if self.ok and self.error is not None:
            raise ValueError("ok reply must not carry an error")
        if not self.ok and self.error is None:
            raise ValueError("failed reply needs an error")
        return self


Payload: TypeAlias = (
    Status
    | Health
    | Event
    | Snapshot
    | Ack
    | GalleryManifest
    | GalleryChunk
    | DeviceCommand
    | Capture
    | Screen
    | Activity
    | AgentCommand
    | Presence
    | Alert
    | Request
    | Reply
)

PAYLOAD_TYPES: tuple[type[PayloadBase], ...] = (
    Status,
    Health,
    Event,
    Snapshot,
    Ack,
    GalleryManifest,
    GalleryChunk,
    DeviceCommand,
    Capture,
    Screen,
    Activity,
    AgentCommand,
    Presence,
    Alert,
    Request,
    Reply,
)
