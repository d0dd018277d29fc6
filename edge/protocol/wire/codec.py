"""Encoding and strict decoding of wire payloads: size caps, version check, first problem named with its field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from edge.protocol.wire.payloads import (
    MAX_BINARY_PAYLOAD_BYTES,
    MAX_PAYLOAD_BYTES,
    SUPPORTED_VERSIONS,
    GalleryChunk,
    PayloadBase,
    WireError,
)
from edge.protocol.wire.topics import TopicRef, parse_topic


def encode(payload: PayloadBase) -> bytes:
    """Serialise a payload to the JSON bytes that go on the wire."""
    return payload.model_dump_json().encode()


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-after[") or part in {"str", "int", "float", "bool"}:
            continue  # pydantic's internal validator steps, not part of the payload's shape
        else:
            path += f".{part}" if path else part
    return path or "<payload>"


NESTED_TOO_DEEPLY = "nested too deeply (arrays or objects inside each other beyond what any payload needs)"


def _peek_version(topic: str, raw: bytes | str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(topic, "<payload>", f"not valid JSON ({exc})") from None
    except RecursionError:
        # A few kilobytes of brackets exhaust the parser's stack: hostile or broken, never a payload of the contract.
        raise WireError(topic, "<payload>", NESTED_TOO_DEEPLY) from None
    if not isinstance(obj, dict):
        raise WireError(topic, "<payload>", f"must be a JSON object, got {type(obj).__name__}")
    if "v" not in obj:
        raise WireError(topic, "v", "missing version field")
    version = obj["v"]
    if type(version) is not int:
        raise WireError(topic, "v", f"version must be an integer, got {version!r}")
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(s) for s in sorted(SUPPORTED_VERSIONS))
        raise WireError(
            topic, "v", f"unknown version {version}; this build speaks {supported} (upgrade the older side)"
        )
    return obj


def decode_as(schema: type[PayloadBase], raw: bytes | str, topic: str = "<no topic>") -> PayloadBase:
    """Validate ``raw`` JSON against one schema, raising :class:`WireError` on the first problem."""
    limit = MAX_BINARY_PAYLOAD_BYTES if schema.binary else MAX_PAYLOAD_BYTES
    size = len(raw.encode()) if isinstance(raw, str) else len(raw)
    if size > limit:
        raise WireError(topic, "<payload>", f"{size} bytes is over the {limit}-byte limit for {schema.kind}")
    _peek_version(topic, raw)
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        problem = first["msg"]
        if first["type"] == "json_invalid" and "recursion limit" in problem:
            raise WireError(topic, "<payload>", NESTED_TOO_DEEPLY) from None
        if first["type"] == "extra_forbidden":
            problem = "unknown field"
        elif first["type"] == "missing":
            problem = "missing field"
        raise WireError(topic, _field_path(tuple(first["loc"])), problem) from None


def decode(topic: str, raw: bytes | str) -> tuple[TopicRef, PayloadBase]:
    """Decode a message received on ``topic``: parse the topic, validate the payload, check who it speaks for."""
    ref = parse_topic(topic)
    payload = decode_as(ref.schema, raw, topic)
    if ref.entity is not None and payload.entity_field is not None:
        claimed = getattr(payload, payload.entity_field)
        if claimed != ref.entity:
            raise WireError(
                topic,
                payload.entity_field,
                f"payload speaks for {claimed!r} but the topic is for {ref.entity!r}",
            )
    if isinstance(payload, GalleryChunk) and payload.index != ref.index:
        raise WireError(topic, "index", f"payload is chunk {payload.index} but the topic is for chunk {ref.index}")
    return ref, payload


def now_utc() -> datetime:
    """The current UTC time; only for callers at the edge of the program (domain code takes ``now``)."""
    return datetime.now(UTC)
