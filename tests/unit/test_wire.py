"""Tests for the wire contract in edge/protocol/wire/ and its human reference, docs/wire.md."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge.protocol import wire
from tests.helpers.wire_examples import doc_examples

DOC = Path(__file__).parents[2] / "docs" / "wire.md"
T = wire.Topics("hq")

# --- valid examples, one per payload kind, with every optional field filled -------------------------------------


def _t(hour: int, minute: int, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 11, 21, hour, minute, second, micro, tzinfo=UTC)


E1 = "01M7YHSSVS0A533JN3YQJYX5XD"
E2 = "01M7YHSSVTSHPEFW4XC41WTQ0S"
ACT = "01M7YK1WMC7G2VV3P09WNATCJN"
CMD = "01M7YP6FZF6YMRRXC6RT3EBNQ9"
ALERT = "01M7YHX300QFT5FP537V3XMS9Z"
REQ = "01M7YQ1WE0JKC7FFH9F3R860DD"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF"
SHA = "3ad75b8e82ca6ebd95c26c6219eaa4e868076c2f92c44c7d5d00e0cba6e15224"

# kind -> (topic, payload). Every field is filled (no None), so that any value of another type is wrong.
CASES: dict[str, tuple[str, wire.Payload]] = {
    "status": (
        T.device_status("door-1"),
        wire.Status(client="door-1", state="online", at=_t(6, 55, 3), software="rollcall 0.1.0"),
    ),
    "health": (
        T.device_health("door-1"),
        wire.Health(
            device="door-1",
            at=_t(8, 0),
            uptime_s=3777.0,
            fps=14.8,
            cpu_percent=37.5,
            temperature_c=58.2,
            disk_free_mb=11840.0,
            outbox_depth=3,
            oldest_unacked_s=4.2,
            dropped_snapshots=2,
            refused_events=1,
            gallery_version=12,
            gallery_error="sha256 mismatch",
            model_pack="scrfd500m-mbf128",
        ),
    ),
    "event": (
        T.device_event("door-1"),
        wire.Event(
            event_id=E1,
            device="door-1",
            seq=4711,
            at=_t(7, 58, 12, 345000),
            type="seen",
            person_id="p-0042",
            score=0.71,
            margin=0.24,
            track=318,
            quality=0.86,
            has_snapshot=True,
            gallery_version=12,
            epoch="3f9a0c27d41b8e65",
        ),
    ),
    "snapshot": (
        T.device_snapshot("door-1"),
        wire.Snapshot(
            event_id=E1,
            device="door-1",
            at=_t(7, 58, 12, 345000),
            content_type="image/jpeg",
            width=112,
            height=112,
            data=JPEG,
        ),
    ),
    "ack": (
        T.device_ack("door-1"),
        wire.Ack(client="door-1", at=_t(7, 58, 13), event_ids=[E1, E2], snapshot_ids=[E1]),
    ),
    "gallery_manifest": (
        T.device_gallery("door-1"),
        wire.GalleryManifest(
            device="door-1",
            version=12,
            created_at=_t(6, 0),
            model_id="mobilefacenet-128",
            embedding_size=128,
            people=214,
            format="npz+fernet",
            size_bytes=1843200,
            chunks=2,
            sha256=SHA,
        ),
    ),
    "gallery_chunk": (
        T.device_gallery_chunk("door-1", 1),
        wire.GalleryChunk(device="door-1", version=12, index=1, total=2, data=b"RCG1\x00\x01\xfb\xef"),
    ),
    "device_command": (
        T.device_command("door-1"),
        wire.DeviceCommand(
            command_id=CMD,
            at=_t(9, 15, 2),
            action="enrol_capture",
            person_id="p-0107",
            count=10,
            issued_by="tui:alice",
        ),
    ),
    "capture": (
        T.device_capture("door-1"),
        wire.Capture(
            capture_id=ACT,
            device="door-1",
            command_id=CMD,
            at=_t(9, 15, 9),
            purpose="enrol",
            person_id="p-0107",
            index=3,
            total=10,
            final=True,
            message="nobody at the camera for 30 s",
            quality=0.91,
            content_type="image/jpeg",
            width=160,
            height=160,
            data=JPEG,
        ),
    ),
    "screen": (
        T.agent_thumbnail("lab-pc-07"),
        wire.Screen(
            agent="lab-pc-07",
            at=_t(8, 20, 4),
            content_type="image/png",
            width=320,
            height=180,
            changed_fraction=0.12,
            full=False,
            data=b"\x89PNG\r\n\x1a\n",
        ),
    ),
    "activity": (
        T.agent_activity("lab-pc-07"),
        wire.Activity(
            event_id=ACT,
            agent="lab-pc-07",
            seq=902,
            at=_t(8, 20, 5),
            user="mkovac",
            session="start",
            intervals=[wire.ActivityInterval(state="active", start=_t(8, 10), end=_t(8, 17, 30))],
            window=wire.WindowInfo(title="results.ipynb - JupyterLab", app="firefox"),
            files=[
                wire.FileChange(
                    path="/home/mkovac/draft.txt",
                    change="moved",
                    at=_t(8, 19, 2),
                    dest_path="/home/mkovac/notes.txt",
                )
            ],
            epoch="8c01d5e2a97b3f40",
        ),
    ),
    "agent_command": (
        T.agent_command("lab-pc-07"),
        wire.AgentCommand(
            command_id=CMD,
            at=_t(10, 0),
            action="message",
            text="Exam ends in 10 minutes.",
            unlock_after_s=900,
            issued_by="tui:alice",
        ),
    ),
    "presence": (
        T.hub_presence(),
        wire.Presence(
            at=_t(8, 3, 40),
            people=[
                wire.PresenceEntry(
                    person_id="p-0042", name="Ana Horvat", state="in", since=_t(7, 58, 12), door="door-1"
                )
            ],
        ),
    ),
    "alert": (
        T.hub_alert(),
        wire.Alert(
            alert_id=ALERT,
            rule="unknown_face",
            severity="warning",
            state="acknowledged",
            subject="door-1",
            message="3 unknown faces at door-1 in 10 minutes",
            first_at=_t(7, 50, 2),
            last_at=_t(7, 58, 12),
            count=3,
            device="door-1",
            person_id="p-0042",
            acknowledged_by="tui:alice",
        ),
    ),
    "request": (
        T.supervisor_request("alice"),
        wire.Request(
            request_id=REQ,
            client="tui-1",
            sent_at=_t(9, 30),
            method="attendance.day",
            params={"date": "2026-11-21", "person_id": "p-0042"},
            reply_to=T.supervisor_reply("alice", "s1"),
        ),
    ),
    "reply": (
        T.supervisor_reply("alice", "s1"),
        wire.Reply(
            request_id=REQ,
            ok=False,
            result=None,
            error=wire.ReplyError(code="not_found", message="no person with id p-9999"),
        ),
    ),
}

# Further valid variants for the round trip: other shapes of the same kinds.
VARIANTS: dict[str, tuple[str, wire.Payload]] = {
    "status_last_will": (T.agent_status("lab-pc-07"), wire.Status(client="lab-pc-07", state="offline")),
    "hub_status": (T.hub_status(), wire.Status(client="hub", state="stopped", at=_t(18, 0))),
    "event_unknown_face": (
        T.device_event("door-1"),
        wire.Event(
            event_id=E2,
            device="door-1",
            seq=0,
            at=_t(7, 58, 12),
            type="left",
            person_id=None,
            score=-0.2,
            margin=0.0,
            track=0,
            quality=0.0,
            has_snapshot=False,
        ),
    ),
    "agent_ack": (T.agent_ack("lab-pc-07"), wire.Ack(client="lab-pc-07", at=_t(8, 20, 6), event_ids=[ACT])),
    "screenshot": (
        T.agent_screenshot("lab-pc-07"),
        wire.Screen(
            agent="lab-pc-07",
            at=_t(10, 0, 2),
            content_type="image/jpeg",
            width=1920,
            height=1080,
            changed_fraction=1.0,
            full=True,
            data=JPEG,
        ),
    ),
    "activity_minimal": (
        T.agent_activity("lab-pc-07"),
        wire.Activity(event_id=ACT, agent="lab-pc-07", seq=1, at=_t(9, 0)),
    ),
    "lock": (
        T.agent_command("lab-pc-07"),
        wire.AgentCommand(command_id=CMD, at=_t(10, 0), action="lock", issued_by="tui:alice"),
    ),
    "reload": (
        T.device_command("door-1"),
        wire.DeviceCommand(command_id=CMD, at=_t(10, 0), action="reload_config", issued_by="hub"),
    ),
    "presence_unknown": (
        T.hub_presence(),
        wire.Presence(
            at=_t(8, 0),
            people=[wire.PresenceEntry(person_id="p-0311", name="Iva Novak", state="unknown", since=None, door=None)],
        ),
    ),
    "reply_ok": (
        T.supervisor_reply("alice", "s1"),
        wire.Reply(request_id=REQ, ok=True, result={"rows": [1, 2.5, "x", None, True], "photo": "_9j_4A=="}),
    ),
}

KINDS = sorted(CASES)
BINARY_KINDS = {"snapshot", "gallery_chunk", "screen", "reply", "capture", "presence"}


def _obj(payload: wire.Payload) -> dict[str, Any]:
    obj = json.loads(wire.encode(payload))
    assert isinstance(obj, dict)
    return obj


def _reject(topic: str, raw: bytes | str | dict[str, Any]) -> wire.WireError:
    data = json.dumps(raw) if isinstance(raw, dict) else raw
    with pytest.raises(wire.WireError) as info:
        wire.decode(topic, data)
    assert info.value.topic == topic
    assert str(info.value) == f"{topic}: {info.value.field}: {info.value.problem}"
    return info.value


def _walk(obj: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def _path_text(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def test_cases_cover_every_payload_type_and_fill_every_field() -> None:
    assert {type(payload) for _, payload in CASES.values()} == set(wire.PAYLOAD_TYPES)
    for kind, (topic, payload) in CASES.items():
        assert payload.kind == kind
        assert wire.parse_topic(topic).schema is type(payload)
        unset = [name for name, value in _obj(payload).items() if value is None and name != "result"]
        assert unset == [], f"{kind}: fill {unset} so that the wrong-type tests mean something"


# --- docs/wire.md ------------------------------------------------------------------------------------------------

DOC_EXAMPLES = doc_examples(DOC)


def test_doc_json_blocks_all_name_their_topic() -> None:
    fences = re.findall(r"^```json.*$", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    assert fences, "docs/wire.md has no JSON examples"
    assert len(fences) == len(DOC_EXAMPLES), [f for f in fences if not f.startswith("```json topic=")]


@pytest.mark.parametrize(("topic", "text"), DOC_EXAMPLES, ids=[topic for topic, _ in DOC_EXAMPLES])
def test_doc_example_decodes(topic: str, text: str) -> None:
    ref, payload = wire.decode(topic, text)
    assert (ref.prefix, ref.site) == (wire.DEFAULT_PREFIX, "hq")
    # The example is exactly what encode writes: every field present, canonical values (UTC, URL-safe base64).
    assert json.loads(wire.encode(payload)) == json.loads(text)


def test_doc_has_an_example_for_every_leaf() -> None:
    covered = set()
    for topic, _ in DOC_EXAMPLES:
        ref = wire.parse_topic(topic)
        covered.add((ref.role, ref.leaf))
    wanted = (
        {("device", leaf) for leaf in wire.DEVICE_LEAVES}
        | {("agent", leaf) for leaf in wire.AGENT_LEAVES}
        | {("hub", leaf) for leaf in wire.HUB_LEAVES}
        | {("supervisor", leaf) for leaf in wire.SUPERVISOR_LEAVES}
    )
    assert sorted(wanted - covered) == []


def test_doc_shows_a_last_will_and_both_reply_shapes() -> None:
    decoded = [wire.decode(topic, text)[1] for topic, text in DOC_EXAMPLES]
    assert any(isinstance(p, wire.Status) and p.state == "offline" and p.at is None for p in decoded)
    assert any(isinstance(p, wire.Reply) and p.ok for p in decoded)
    assert any(isinstance(p, wire.Reply) and not p.ok and p.error is not None for p in decoded)


# --- strict decoding, for every kind ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_field_is_refused(kind: str) -> None:
    topic, payload = CASES[kind]
    obj = _obj(payload) | {"bogus": 1}
    error = _reject(topic, obj)
    assert (error.field, error.problem) == ("bogus", "unknown field")


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("activity", ("window",)),
        ("activity", ("intervals", 0)),
        ("activity", ("files", 0)),
        ("presence", ("people", 0)),
        ("reply", ("error",)),
    ],
)
def test_unknown_nested_field_is_refused(kind: str, path: tuple[str | int, ...]) -> None:
    topic, payload = CASES[kind]
    obj = _obj(payload)
    _walk(obj, path)["bogus"] = "x"
    error = _reject(topic, obj)
    assert (error.field, error.problem) == (_path_text((*path, "bogus")), "unknown field")


REQUIRED = [
    (kind, name) for kind in KINDS for name, info in type(CASES[kind][1]).model_fields.items() if info.is_required()
]


def test_required_fields_are_the_documented_ones() -> None:
    required = {(kind, name) for kind, name in REQUIRED}
    # Spot checks: a nullable field without default is still required; a field with a default is not.
    assert ("event", "person_id") in required
    assert ("event", "gallery_version") not in required
    assert ("status", "at") not in required
    assert ("reply", "error") not in required
    assert all(name != "v" for _, name in required)  # v has a default in Python but is required on the wire


@pytest.mark.parametrize(("kind", "field"), REQUIRED)
def test_missing_required_field_is_refused(kind: str, field: str) -> None:
    topic, payload = CASES[kind]
    obj = _obj(payload)
    del obj[field]
    error = _reject(topic, obj)
    assert (error.field, error.problem) == (field, "missing field")


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("activity", ("intervals", 0, "end")),
        ("activity", ("window", "title")),
        ("activity", ("files", 0, "path")),
        ("presence", ("people", 0, "since")),
        ("reply", ("error", "code")),
    ],
)
def test_missing_nested_field_is_refused(kind: str, path: tuple[str | int, ...]) -> None:
    topic, payload = CASES[kind]
    obj = _obj(payload)
    del _walk(obj, path[:-1])[path[-1]]
    error = _reject(topic, obj)
    assert (error.field, error.problem) == (_path_text(path), "missing field")


def _wrong(value: Any) -> Any:
    """A value of another JSON type: a number where a string is expected, a string anywhere else."""
    return 12345 if isinstance(value, str) else "wrong"


WRONG_TYPES = [
    (kind, name)
    for kind in KINDS
    for name in _obj(CASES[kind][1])
    if name != "v" and not (kind == "reply" and name == "result")  # result is any JSON value
]


@pytest.mark.parametrize(("kind", "field"), WRONG_TYPES)
def test_wrong_type_names_the_field(kind: str, field: str) -> None:
    topic, payload = CASES[kind]
    obj = _obj(payload)
    obj[field] = _wrong(obj[field])
    error = _reject(topic, obj)
    assert error.field == field
    assert error.problem not in {"unknown field", "missing field"}


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("activity", ("intervals", 0, "start"), 12345),
        ("activity", ("window", "title"), 12345),
        ("activity", ("files", 0, "change"), "renamed"),
        ("presence", ("people", 0, "name"), 42),
        ("reply", ("error", "code"), "Not Found"),
        ("ack", ("event_ids", 1), "01m7yhssvtshpefw4xc41wtq0s"),
    ],
)
def test_wrong_nested_value_names_the_path(kind: str, path: tuple[str | int, ...], value: Any) -> None:
    topic, payload = CASES[kind]
    obj = _obj(payload)
    _walk(obj, path[:-1])[path[-1]] = value
    assert _reject(topic, obj).field == _path_text(path)


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("health", "outbox_depth", 1.0),  # a float for an integer
        ("health", "outbox_depth", "3"),  # a numeric string for an integer
        ("health", "fps", "14.8"),  # a numeric string for a number
        ("health", "outbox_depth", -1),
        ("event", "has_snapshot", 1),  # an integer for a boolean
        ("event", "score", 1.5),
        ("event", "event_id", "01M7YHSSVS0A533JN3YQJYX5XI"),  # I is not Crockford base32
        ("event", "device", "door 1"),
        ("event", "type", "entered"),
        ("snapshot", "content_type", "image/png"),
        ("snapshot", "data", "not base64!"),
        ("gallery_manifest", "sha256", SHA.upper()),
        ("request", "method", "Attendance"),
    ],
)
def test_out_of_contract_value_names_the_field(kind: str, field: str, value: Any) -> None:
    topic, payload = CASES[kind]
    obj = _obj(payload)
    obj[field] = value
    assert _reject(topic, obj).field == field


def test_numbers_accept_json_integers() -> None:
    topic, payload = CASES["health"]
    obj = _obj(payload) | {"fps": 15, "uptime_s": 0}
    _, decoded = wire.decode(topic, json.dumps(obj))
    assert isinstance(decoded, wire.Health)
    assert (decoded.fps, decoded.uptime_s) == (15.0, 0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_version_is_refused(kind: str) -> None:
    topic, payload = CASES[kind]
    error = _reject(topic, _obj(payload) | {"v": 99})
    assert error.field == "v"
    assert "unknown version 99" in error.problem


@pytest.mark.parametrize("kind", KINDS)
def test_missing_version_is_refused(kind: str) -> None:
    topic, payload = CASES[kind]
    obj = _obj(payload)
    del obj["v"]
    error = _reject(topic, obj)
    assert (error.field, error.problem) == ("v", "missing version field")


@pytest.mark.parametrize("version", ["1", 1.0, True, None])
def test_version_must_be_an_integer(version: Any) -> None:
    topic, payload = CASES["event"]
    error = _reject(topic, _obj(payload) | {"v": version})
    assert error.field == "v"
    assert "integer" in error.problem


def test_supported_versions_contain_the_written_one() -> None:
    assert wire.WIRE_VERSION in wire.SUPPORTED_VERSIONS
    assert all(_obj(payload)["v"] == wire.WIRE_VERSION for _, payload in CASES.values())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"not json {", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b"null", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
    ],
    ids=["garbage", "not-utf8", "empty", "array", "null", "string"],
)
def test_non_object_payload_is_refused(kind: str, raw: bytes, problem: str) -> None:
    topic, _ = CASES[kind]
    error = _reject(topic, raw)
    assert error.field == "<payload>"
    assert problem in error.problem


@pytest.mark.parametrize("kind", KINDS)
def test_payload_size_is_capped(kind: str) -> None:
    topic, payload = CASES[kind]
    limit = wire.MAX_BINARY_PAYLOAD_BYTES if kind in BINARY_KINDS else wire.MAX_PAYLOAD_BYTES
    raw = wire.encode(payload)
    at_limit = raw + b" " * (limit - len(raw))  # trailing whitespace keeps it valid JSON
    assert wire.decode(topic, at_limit)[1] == payload
    error = _reject(topic, at_limit + b" ")
    assert error.field == "<payload>"
    assert f"{limit + 1} bytes is over the {limit}-byte limit" in error.problem


def test_binary_kinds_are_exactly_the_image_and_chunk_carriers() -> None:
    assert {cls.kind for cls in wire.PAYLOAD_TYPES if cls.binary} == BINARY_KINDS
    assert wire.MAX_PAYLOAD_BYTES < wire.MAX_BINARY_PAYLOAD_BYTES


def test_ordinary_payload_of_binary_size_is_refused() -> None:
    topic, payload = CASES["event"]
    raw = wire.encode(payload) + b" " * (wire.MAX_PAYLOAD_BYTES * 2)
    assert len(raw) < wire.MAX_BINARY_PAYLOAD_BYTES
    assert _reject(topic, raw).field == "<payload>"


def test_ack_names_at_most_max_ack_ids() -> None:
    topic, payload = CASES["ack"]
    _, full = wire.decode(topic, json.dumps(_obj(payload) | {"event_ids": [E1] * wire.MAX_ACK_IDS}))
    assert isinstance(full, wire.Ack)
    assert len(full.event_ids) == wire.MAX_ACK_IDS
    error = _reject(topic, _obj(payload) | {"event_ids": [E1] * (wire.MAX_ACK_IDS + 1)})
    assert error.field == "event_ids"


def test_decode_as_without_topic() -> None:
    _, payload = CASES["event"]
    assert wire.decode_as(wire.Event, wire.encode(payload)) == payload
    with pytest.raises(wire.WireError) as info:
        wire.decode_as(wire.Event, "[]")
    assert str(info.value) == "<no topic>: <payload>: must be a JSON object, got list"


# --- round trip and encoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES.keys() | VARIANTS.keys()))
def test_round_trip(name: str) -> None:
    topic, payload = CASES.get(name) or VARIANTS[name]
    raw = wire.encode(payload)
    assert isinstance(raw, bytes)
    ref, decoded = wire.decode(topic, raw)
    assert decoded == payload
    assert type(decoded) is type(payload) is ref.schema
    assert wire.decode(topic, raw.decode())[1] == payload  # str in, same result
    assert wire.encode(decoded) == raw


def test_binary_data_is_url_safe_base64_and_both_alphabets_are_read() -> None:
    topic, payload = CASES["snapshot"]
    weird = payload.model_copy(update={"data": b"\xfb\xff\xfe"})
    obj = _obj(weird)
    assert obj["data"] == "-__-"
    for text in ("+//+", "-__-", base64.b64encode(JPEG).decode(), base64.urlsafe_b64encode(JPEG).decode()):
        obj["data"] = text
        _, decoded = wire.decode(topic, json.dumps(obj))
        assert isinstance(decoded, wire.Snapshot)
        assert decoded.data == base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_"))
    obj["data"] = base64.b64encode(JPEG).decode().rstrip("=")  # padding left off
    _, decoded = wire.decode(topic, json.dumps(obj))
    assert isinstance(decoded, wire.Snapshot)
    assert decoded.data == JPEG


# --- topics -----------------------------------------------------------------------------------------------------

BUILDERS: list[tuple[str, Callable[[wire.Topics], str], str, str | None, str, type[Any]]] = [
    ("device_status", lambda t: t.device_status("door-1"), "device", "door-1", "status", wire.Status),
    ("device_health", lambda t: t.device_health("door-1"), "device", "door-1", "health", wire.Health),
    ("device_event", lambda t: t.device_event("door-1"), "device", "door-1", "event", wire.Event),
    ("device_snapshot", lambda t: t.device_snapshot("door-1"), "device", "door-1", "snapshot", wire.Snapshot),
    ("device_ack", lambda t: t.device_ack("door-1"), "device", "door-1", "ack", wire.Ack),
    ("device_gallery", lambda t: t.device_gallery("door-1"), "device", "door-1", "gallery", wire.GalleryManifest),
    (
        "device_gallery_chunk",
        lambda t: t.device_gallery_chunk("door-1", 7),
        "device",
        "door-1",
        "gallery/chunk",
        wire.GalleryChunk,
    ),
    ("device_command", lambda t: t.device_command("door-1"), "device", "door-1", "command", wire.DeviceCommand),
    ("device_capture", lambda t: t.device_capture("door-1"), "device", "door-1", "capture", wire.Capture),
    ("agent_status", lambda t: t.agent_status("lab-pc-07"), "agent", "lab-pc-07", "status", wire.Status),
    ("agent_thumbnail", lambda t: t.agent_thumbnail("lab-pc-07"), "agent", "lab-pc-07", "thumbnail", wire.Screen),
    ("agent_screenshot", lambda t: t.agent_screenshot("lab-pc-07"), "agent", "lab-pc-07", "screenshot", wire.Screen),
    ("agent_activity", lambda t: t.agent_activity("lab-pc-07"), "agent", "lab-pc-07", "activity", wire.Activity),
    ("agent_ack", lambda t: t.agent_ack("lab-pc-07"), "agent", "lab-pc-07", "ack", wire.Ack),
    ("agent_command", lambda t: t.agent_command("lab-pc-07"), "agent", "lab-pc-07", "command", wire.AgentCommand),
    ("hub_status", lambda t: t.hub_status(), "hub", None, "status", wire.Status),
    ("hub_presence", lambda t: t.hub_presence(), "hub", None, "presence", wire.Presence),
    ("hub_alert", lambda t: t.hub_alert(), "hub", None, "alert", wire.Alert),
    ("supervisor_request", lambda t: t.supervisor_request("alice"), "supervisor", "alice", "request", wire.Request),
    ("supervisor_reply", lambda t: t.supervisor_reply("alice", "s1"), "supervisor", "alice", "reply", wire.Reply),
]


def test_builders_cover_every_leaf() -> None:
    built = {(role, leaf) for _, _, role, _, leaf, _ in BUILDERS}
    assert built == (
        {("device", leaf) for leaf in wire.DEVICE_LEAVES}
        | {("agent", leaf) for leaf in wire.AGENT_LEAVES}
        | {("hub", leaf) for leaf in wire.HUB_LEAVES}
        | {("supervisor", leaf) for leaf in wire.SUPERVISOR_LEAVES}
    )


@pytest.mark.parametrize(("prefix", "site"), [("rollcall", "hq"), ("acme/rollcall", "site_2.b")])
@pytest.mark.parametrize(
    ("build", "role", "entity", "leaf", "schema"),
    [case[1:] for case in BUILDERS],
    ids=[case[0] for case in BUILDERS],
)
def test_built_topic_parses_back(
    prefix: str,
    site: str,
    build: Callable[[wire.Topics], str],
    role: str,
    entity: str | None,
    leaf: str,
    schema: type[Any],
) -> None:
    topics = wire.Topics(site, prefix)
    topic = build(topics)
    assert topic.startswith(f"{prefix}/{site}/")
    ref = wire.parse_topic(topic)
    assert (ref.prefix, ref.site, ref.role, ref.entity, ref.leaf) == (prefix, site, role, entity, leaf)
    assert ref.schema is schema
    assert ref.index == (7 if leaf == "gallery/chunk" else None)
    assert ref.session == ("s1" if leaf == "reply" else None)


def test_topic_layout_is_literal() -> None:
    assert T.base == "rollcall/hq"
    assert T.device_event("door-1") == "rollcall/hq/device/door-1/event"
    assert T.device_gallery_chunk("door-1", 0) == "rollcall/hq/device/door-1/gallery/chunk/0"
    assert T.agent_thumbnail("lab-pc-07") == "rollcall/hq/agent/lab-pc-07/thumbnail"
    assert T.supervisor_request("alice") == "rollcall/hq/supervisor/alice/request"
    assert T.supervisor_reply("alice", "s1") == "rollcall/hq/supervisor/alice/reply/s1"
    assert T.all_supervisor_requests() == "rollcall/hq/supervisor/+/request"
    assert T.all_devices("event") == "rollcall/hq/device/+/event"
    assert T.all_agents("status") == "rollcall/hq/agent/+/status"


BAD_IDS = ["a/b", "+", "#", "", "x" * 65, "-door", "door 1"]
ID_BUILDERS: list[tuple[str, Callable[[str], str]]] = [
    ("device_status", T.device_status),
    ("device_health", T.device_health),
    ("device_event", T.device_event),
    ("device_snapshot", T.device_snapshot),
    ("device_ack", T.device_ack),
    ("device_gallery", T.device_gallery),
    ("device_gallery_chunk", lambda i: T.device_gallery_chunk(i, 0)),
    ("device_command", T.device_command),
    ("device_capture", T.device_capture),
    ("agent_status", T.agent_status),
    ("agent_thumbnail", T.agent_thumbnail),
    ("agent_screenshot", T.agent_screenshot),
    ("agent_activity", T.agent_activity),
    ("agent_ack", T.agent_ack),
    ("agent_command", T.agent_command),
    ("supervisor_request", T.supervisor_request),
    ("supervisor_reply", lambda i: T.supervisor_reply(i, "s1")),
    ("supervisor_reply_session", lambda i: T.supervisor_reply("alice", i)),
]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("build", [b for _, b in ID_BUILDERS], ids=[n for n, _ in ID_BUILDERS])
def test_builders_refuse_invalid_ids(build: Callable[[str], str], bad: str) -> None:
    with pytest.raises(ValueError, match="not valid"):
        build(bad)


@pytest.mark.parametrize("build", [b for _, b in ID_BUILDERS], ids=[n for n, _ in ID_BUILDERS])
def test_builders_accept_64_character_ids(build: Callable[[str], str]) -> None:
    longest = "d" * 64
    ref = wire.parse_topic(build(longest))
    assert longest in (ref.entity, ref.session)


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_topics_refuse_invalid_site(bad: str) -> None:
    with pytest.raises(ValueError, match="site"):
        wire.Topics(bad)


@pytest.mark.parametrize("prefix", ["", "+", "a/#", "/rollcall"])
def test_topics_refuse_invalid_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        wire.Topics("hq", prefix)


def test_chunk_index_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="index"):
        T.device_gallery_chunk("door-1", -1)


@pytest.mark.parametrize(
    "topic",
    [
        "rollcall/hq/device/door-1/bogus",  # unknown leaf
        "rollcall/hq/agent/lab-pc-07/gallery",  # a device leaf on an agent
        "rollcall/hq/device/door-1/thumbnail",  # an agent leaf on a device
        "rollcall/hq/device/door-1/gallery/chunk",  # chunk without its index
        "rollcall/hq/device/door-1/gallery/chunk/x",
        "rollcall/hq/device/door-1/event/3",  # an index where none belongs
        "rollcall/hq/device/door-1/Event",
        "rollcall/hq/hub/reply/tui-1",  # the old reply topic is gone
        "rollcall/hq/hub/request",  # and so is the old request topic
        "rollcall/hq/supervisor/alice/reply",  # reply without its session
        "rollcall/hq/supervisor/alice/request/s1",  # a session where none belongs
        "rollcall/hq/supervisor/alice:s1/request",  # a client id is not a supervisor name
        "rollcall/hq/supervisor/alice/status",
        "rollcall/hq/hub/status/tui-1",  # a suffix where none belongs
        "rollcall/hq/hub/bogus",
        "rollcall/hq/device/+/event",  # a subscription filter is not a topic
        "rollcall/hq/device/#",
        "rollcall/hq/device/door-1",  # too short
        "hq/device/door-1/event",  # no prefix
        "/hq/device/door-1/event",
        "rollcall/hq/gateway/door-1/event",  # unknown role
        "",
    ],
)
def test_malformed_topic_is_refused(topic: str) -> None:
    with pytest.raises(wire.WireError) as info:
        wire.parse_topic(topic)
    assert (info.value.topic, info.value.field) == (topic, "<topic>")
    _, payload = CASES["event"]
    assert _reject(topic, wire.encode(payload)).field == "<topic>"


# --- who a payload speaks for ----------------------------------------------------------------------------------

IMPERSONATION = [
    ("status", T.device_status("door-2")),
    ("health", T.device_health("door-2")),
    ("event", T.device_event("door-2")),
    ("snapshot", T.device_snapshot("door-2")),
    ("ack", T.device_ack("door-2")),
    ("gallery_manifest", T.device_gallery("door-2")),
    ("gallery_chunk", T.device_gallery_chunk("door-2", 1)),
    ("screen", T.agent_thumbnail("lab-pc-08")),
    ("screen", T.agent_screenshot("lab-pc-08")),
    ("activity", T.agent_activity("lab-pc-08")),
]


@pytest.mark.parametrize(("kind", "topic"), IMPERSONATION, ids=[t.split("/", 2)[2] for _, t in IMPERSONATION])
def test_payload_for_another_entity_is_refused(kind: str, topic: str) -> None:
    _, payload = CASES[kind]
    field = type(payload).entity_field
    assert field is not None
    claimed = getattr(payload, field)
    error = _reject(topic, wire.encode(payload))
    assert error.field == field
    assert repr(claimed) in error.problem
    assert repr(wire.parse_topic(topic).entity) in error.problem


def test_agent_status_and_ack_for_another_agent_are_refused() -> None:
    status = wire.Status(client="lab-pc-07", state="online", at=_t(8, 0))
    assert _reject(T.agent_status("lab-pc-08"), wire.encode(status)).field == "client"
    ack = wire.Ack(client="lab-pc-07", at=_t(8, 0), event_ids=[ACT])
    assert _reject(T.agent_ack("lab-pc-08"), wire.encode(ack)).field == "client"
    assert wire.decode(T.agent_ack("lab-pc-07"), wire.encode(ack))[1] == ack


def test_every_device_and_agent_payload_names_its_entity() -> None:
    for leaf, schema in (*wire.DEVICE_LEAVES.items(), *wire.AGENT_LEAVES.items()):
        if leaf != "command":
            assert schema.entity_field in schema.model_fields, leaf


# --- time --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("event", ("at",)),
        ("status", ("at",)),
        ("alert", ("last_at",)),
        ("request", ("sent_at",)),
        ("activity", ("intervals", 0, "start")),
        ("presence", ("people", 0, "since")),
    ],
)
def test_naive_time_is_refused(kind: str, path: tuple[str | int, ...]) -> None:
    topic, payload = CASES[kind]
    obj = _obj(payload)
    _walk(obj, path[:-1])[path[-1]] = "2026-11-21T07:58:12"
    error = _reject(topic, obj)
    assert error.field == _path_text(path)
    assert "timezone" in error.problem


def test_naive_time_is_refused_in_python_too() -> None:
    with pytest.raises(ValidationError):
        wire.Status(client="door-1", state="online", at=datetime(2026, 11, 21, 8, 0))


def test_offset_time_is_normalised_to_utc() -> None:
    topic, payload = CASES["event"]
    obj = _obj(payload) | {"at": "2026-11-21T09:58:12.345+02:00"}
    _, decoded = wire.decode(topic, json.dumps(obj))
    assert isinstance(decoded, wire.Event)
    assert decoded.at == _t(7, 58, 12, 345000)
    assert decoded.at.utcoffset() == timedelta(0)
    assert decoded.at.hour == 7
    assert _obj(decoded)["at"] == "2026-11-21T07:58:12.345000Z"


# --- rules across fields ----------------------------------------------------------------------------------------


def test_gallery_chunk_index_must_be_below_total() -> None:
    assert wire.GalleryChunk(device="door-1", version=1, index=1, total=2, data=b"x").index == 1
    with pytest.raises(ValidationError, match="below total"):
        wire.GalleryChunk(device="door-1", version=1, index=2, total=2, data=b"x")
    topic, payload = CASES["gallery_chunk"]
    error = _reject(topic, _obj(payload) | {"index": 2, "total": 2})
    assert "below total" in error.problem


def test_reply_has_an_error_exactly_when_not_ok() -> None:
    failure = wire.ReplyError(code="not_found", message="nobody")
    with pytest.raises(ValidationError, match="must not carry an error"):
        wire.Reply(request_id=REQ, ok=True, error=failure)
    with pytest.raises(ValidationError, match="needs an error"):
        wire.Reply(request_id=REQ, ok=False)
    topic, payload = CASES["reply"]
    assert "must not carry an error" in _reject(topic, _obj(payload) | {"ok": True}).problem
    assert "needs an error" in _reject(topic, _obj(payload) | {"error": None}).problem


def test_agent_message_needs_text() -> None:
    with pytest.raises(ValidationError, match="needs text"):
        wire.AgentCommand(command_id=CMD, at=_t(10, 0), action="message", issued_by="tui:alice")
    with pytest.raises(ValidationError, match="needs text"):
        wire.AgentCommand(command_id=CMD, at=_t(10, 0), action="message", text="", issued_by="tui:alice")
    topic, payload = CASES["agent_command"]
    assert "needs text" in _reject(topic, _obj(payload) | {"text": None}).problem
    _, unlock = wire.decode(topic, json.dumps(_obj(payload) | {"action": "unlock", "text": None}))
    assert isinstance(unlock, wire.AgentCommand)
    assert (unlock.action, unlock.text) == ("unlock", None)


def test_enrol_capture_needs_person() -> None:
    with pytest.raises(ValidationError, match="needs person_id"):
        wire.DeviceCommand(command_id=CMD, at=_t(9, 0), action="enrol_capture", issued_by="hub")
    topic, payload = CASES["device_command"]
    assert "needs person_id" in _reject(topic, _obj(payload) | {"person_id": None}).problem
    _, snap = wire.decode(topic, json.dumps(_obj(payload) | {"action": "snapshot", "person_id": None}))
    assert isinstance(snap, wire.DeviceCommand)
    assert (snap.action, snap.person_id) == ("snapshot", None)


def test_activity_interval_must_not_end_before_it_starts() -> None:
    assert wire.ActivityInterval(state="idle", start=_t(8, 0), end=_t(8, 0)).end == _t(8, 0)
    with pytest.raises(ValidationError, match="end is before start"):
        wire.ActivityInterval(state="idle", start=_t(8, 0, 1), end=_t(8, 0))
    topic, payload = CASES["activity"]
    obj = _obj(payload)
    obj["intervals"][0]["end"] = "2026-11-21T08:00:00Z"
    error = _reject(topic, obj)
    assert (error.field, error.problem) == ("intervals[0]", "Value error, end is before start")


def test_payloads_are_immutable() -> None:
    _, payload = CASES["event"]
    assert isinstance(payload, wire.Event)
    with pytest.raises(ValidationError, match="frozen"):
        payload.seq = 1  # type: ignore[misc]
    assert payload.seq == 4711


# --- rules added after review ------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", sorted(wire.RESERVED_IDS))
def test_reserved_words_cannot_name_a_topic_level(word: str) -> None:
    with pytest.raises(ValueError, match="reserved"):
        T.device_status(word)
    with pytest.raises(ValueError, match="reserved"):
        wire.Topics(word)
    with pytest.raises(wire.WireError) as info:
        wire.parse_topic(f"rollcall/hq/device/{word}/status")
    assert info.value.field == "<topic>"


def test_a_topic_parses_one_way_only() -> None:
    # Before ids were reserved, a device called "hub" read as the hub of a site called "device".
    ref = wire.parse_topic("acme/rollcall/hq/supervisor/alice/reply/s1")
    assert (ref.prefix, ref.site, ref.role, ref.entity, ref.session) == (
        "acme/rollcall",
        "hq",
        "supervisor",
        "alice",
        "s1",
    )
    bad_topics = (
        "+/+/supervisor/+/reply/#",
        "rollcall/hq/supervisor/alice/reply/+",
        "rollcall/hq/supervisor/hub/request",
        "rollcall/h q/hub/status",
        "a//b/hq/hub/status",
    )
    for bad in bad_topics:
        with pytest.raises(wire.WireError):
            wire.parse_topic(bad)


def test_nested_objects_carry_no_version_of_their_own() -> None:
    topic, payload = CASES["activity"]
    obj = _obj(payload)
    assert obj["intervals"] and "v" not in obj["intervals"][0]
    obj["intervals"][0]["v"] = 99
    error = _reject(topic, obj)
    assert (error.field, error.problem) == ("intervals[0].v", "unknown field")


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_refused_when_building(value: float) -> None:
    _, payload = CASES["health"]
    with pytest.raises(ValidationError):
        type(payload).model_validate({**payload.model_dump(), "cpu_percent": value})


def test_size_cap_counts_bytes_not_characters() -> None:
    topic = T.supervisor_request("tui-1")
    request = wire.Request(
        request_id=REQ,
        client="tui-1",
        sent_at=_t(9, 0),
        method="people.search",
        params={"q": "\u00e9" * 40_000},  # 40,000 characters, 80,000 bytes in UTF-8
        reply_to=T.supervisor_reply("tui-1", "s1"),
    )
    text = wire.encode(request).decode()
    assert len(text) < wire.MAX_PAYLOAD_BYTES < len(text.encode())
    assert "limit" in _reject(topic, text).problem
    assert "limit" in _reject(topic, text.encode()).problem


def test_gallery_chunk_index_must_match_its_topic() -> None:
    _, chunk = CASES["gallery_chunk"]
    assert isinstance(chunk, wire.GalleryChunk)
    other = T.device_gallery_chunk(chunk.device, chunk.index + 1)
    error = _reject(other, wire.encode(chunk))
    assert error.field == "index"
    with pytest.raises(ValueError):
        T.device_gallery_chunk("door-1", wire.MAX_GALLERY_CHUNKS)
    last = T.device_gallery_chunk("door-1", wire.MAX_GALLERY_CHUNKS - 1)
    assert wire.parse_topic(last).index == wire.MAX_GALLERY_CHUNKS - 1


def test_capture_rules() -> None:
    _, capture = CASES["capture"]
    fields = capture.model_dump()
    with pytest.raises(ValidationError, match="person_id"):
        wire.Capture.model_validate({**fields, "person_id": None})
    with pytest.raises(ValidationError, match="below total"):
        wire.Capture.model_validate({**fields, "index": 10})
    snapshot = wire.Capture.model_validate({**fields, "purpose": "snapshot", "person_id": None})
    assert snapshot.purpose == "snapshot"
