"""The wire contract: every MQTT topic rollcall uses and the strict, versioned schema of every payload.

This module is imported by door devices, the hub and the TUI alike, so it must stay light: it imports the
standard library and pydantic only (never numpy, cv2, onnxruntime or textual; a test enforces that).

Topics are ``<prefix>/<site>/<role>/<id>/<leaf>`` for devices and agents, ``<prefix>/<site>/hub/<leaf>`` for the
hub, and ``<prefix>/<site>/supervisor/<name>/request`` and ``.../reply/<session>`` for supervisors' requests. Every
payload is a JSON object with a version field ``v``. Decoding is strict: an unknown field, a wrong type, a missing
field, an unknown version, a payload that speaks for another device than its topic, or an oversized payload raises
:class:`WireError`, whose message names the topic and the field.

Its parts: :mod:`.payloads` (schemas, ids, limits), :mod:`.topics` (topic parser and builders) and
:mod:`.codec` (encode, strict decode). Import the package (``from edge.protocol import wire``) and use ``wire.X``.
"""

from __future__ import annotations

from edge.protocol.wire.codec import (
    decode,
    decode_as,
    encode,
    now_utc,
)
from edge.protocol.wire.payloads import (
    DEFAULT_PREFIX,
    MAX_ACK_IDS,
    MAX_BINARY_PAYLOAD_BYTES,
    MAX_GALLERY_CHUNKS,
    MAX_PAYLOAD_BYTES,
    PAYLOAD_TYPES,
    PREFIX_RE,
    RESERVED_IDS,
    SUPPORTED_VERSIONS,
    WIRE_VERSION,
    Ack,
    Activity,
    ActivityInterval,
    AgentCommand,
    Alert,
    Capture,
    DeviceCommand,
    EntityId,
    Event,
    FileChange,
    GalleryChunk,
    GalleryManifest,
    Health,
    ImageType,
    NonNegFloat,
    NonNegInt,
    Payload,
    PayloadBase,
    Presence,
    PresenceEntry,
    Ratio,
    Reply,
    ReplyError,
    Request,
    Screen,
    ShortText,
    Snapshot,
    Status,
    Ulid,
    UtcTime,
    WindowInfo,
    WireError,
    check_id,
)
from edge.protocol.wire.topics import (
    AGENT_LEAVES,
    DEVICE_LEAVES,
    HUB_LEAVES,
    SUPERVISOR_LEAVES,
    TopicRef,
    Topics,
    parse_topic,
)

__all__ = [
    "AGENT_LEAVES",
    "DEFAULT_PREFIX",
    "DEVICE_LEAVES",
    "HUB_LEAVES",
    "MAX_ACK_IDS",
    "MAX_BINARY_PAYLOAD_BYTES",
    "MAX_GALLERY_CHUNKS",
    "MAX_PAYLOAD_BYTES",
    "PAYLOAD_TYPES",
    "PREFIX_RE",
    "RESERVED_IDS",
    "SUPERVISOR_LEAVES",
    "SUPPORTED_VERSIONS",
    "WIRE_VERSION",
    "Ack",
    "Activity",
    "ActivityInterval",
    "AgentCommand",
    "Alert",
    "Capture",
    "DeviceCommand",
    "EntityId",
    "Event",
    "FileChange",
    "GalleryChunk",
    "GalleryManifest",
    "Health",
    "ImageType",
    "NonNegFloat",
    "NonNegInt",
    "Payload",
    "PayloadBase",
    "Presence",
    "PresenceEntry",
    "Ratio",
    "Reply",
    "ReplyError",
    "Request",
    "Screen",
    "ShortText",
    "Snapshot",
    "Status",
    "TopicRef",
    "Topics",
    "Ulid",
    "UtcTime",
    "WindowInfo",
    "WireError",
    "check_id",
    "decode",
    "decode_as",
    "encode",
    "now_utc",
    "parse_topic",
]
