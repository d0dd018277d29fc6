"""Topics of the wire contract: the leaves each role carries, the topic parser, and the topic builders."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from edge.protocol.wire.payloads import (
    DEFAULT_PREFIX,
    MAX_GALLERY_CHUNKS,
    PREFIX_RE,
    Ack,
    Activity,
    AgentCommand,
    Alert,
    Capture,
    DeviceCommand,
    Event,
    GalleryChunk,
    GalleryManifest,
    Health,
    PayloadBase,
    Presence,
    Reply,
    Request,
    Screen,
    Snapshot,
    Status,
    WireError,
    check_id,
)

DEVICE_LEAVES: dict[str, type[PayloadBase]] = {
    "status": Status,
    "health": Health,
    "event": Event,
    "snapshot": Snapshot,
    "ack": Ack,
    "gallery": GalleryManifest,
    "gallery/chunk": GalleryChunk,
    "command": DeviceCommand,
    "capture": Capture,
}
AGENT_LEAVES: dict[str, type[PayloadBase]] = {
    "status": Status,
    "thumbnail": Screen,
    "screenshot": Screen,
    "activity": Activity,
    "ack": Ack,
    "command": AgentCommand,
}
HUB_LEAVES: dict[str, type[PayloadBase]] = {
    "status": Status,
    "presence": Presence,
    "alert": Alert,
}
SUPERVISOR_LEAVES: dict[str, type[PayloadBase]] = {
    "request": Request,
    "reply": Reply,
}
"""A supervisor ``<name>`` asks on ``supervisor/<name>/request`` (only that name may write there: the broker's ACL)
and hears back on ``supervisor/<name>/reply/<session>`` (only that name may read there)."""


@dataclass(frozen=True, slots=True)
class TopicRef:
    """A parsed rollcall topic: which site, which role and entity, which leaf (and chunk index or reply session).

    For supervisor topics ``entity`` is the supervisor's name and ``session`` the reply topic's session.
    """

    prefix: str
    site: str
    role: Literal["device", "agent", "hub", "supervisor"]
    entity: str | None
    leaf: str
    index: int | None = None
    session: str | None = None

    @property
    def schema(self) -> type[PayloadBase]:
        """The payload schema that this topic carries."""
        table = {"device": DEVICE_LEAVES, "agent": AGENT_LEAVES, "hub": HUB_LEAVES, "supervisor": SUPERVISOR_LEAVES}
        return table[self.role][self.leaf]


_TOPIC_RE = re.compile(
    r"^(?P<prefix>.+)/(?P<site>[^/]+)/(?:"
    r"(?P<role>device|agent)/(?P<entity>[^/]+)/(?P<leaf>gallery/chunk|[a-z]+)(?:/(?P<index>[0-9]{1,6}))?"
    r"|hub/(?P<hubleaf>[a-z]+)"
    r"|supervisor/(?P<name>[^/]+)/(?P<supleaf>[a-z]+)(?:/(?P<session>[^/]+))?"
    r")$"
)


def _check_topic_id(topic: str, value: str, what: str) -> None:
    try:
        check_id(value, what)
    except ValueError as exc:
        raise WireError(topic, "<topic>", str(exc)) from None


def parse_topic(topic: str) -> TopicRef:
    """Parse a concrete rollcall topic, or raise :class:`WireError` naming what is wrong with it."""
    match = _TOPIC_RE.match(topic)
    if not match:
        raise WireError(topic, "<topic>", "not a rollcall topic (expected <prefix>/<site>/<role>/...)")
    prefix, site = match["prefix"], match["site"]
    if not PREFIX_RE.match(prefix):
        raise WireError(topic, "<topic>", f"prefix {prefix!r} is not valid")
    _check_topic_id(topic, site, "site")
    if match["role"]:
        role: Literal["device", "agent", "hub"] = "device" if match["role"] == "device" else "agent"
        leaf = match["leaf"]
        leaves = DEVICE_LEAVES if role == "device" else AGENT_LEAVES
        if leaf not in leaves:
            raise WireError(topic, "<topic>", f"unknown {role} topic '{leaf}'; known: {', '.join(leaves)}")
        needs_index = leaf == "gallery/chunk"
        if needs_index != (match["index"] is not None):
            raise WireError(topic, "<topic>", "gallery chunk topics end in /<index>; no other topic does")
        _check_topic_id(topic, match["entity"], f"{role} id")
        index = int(match["index"]) if match["index"] is not None else None
        return TopicRef(prefix, site, role, match["entity"], leaf, index=index)
    if match["supleaf"]:
        leaf = match["supleaf"]
        if leaf not in SUPERVISOR_LEAVES:
            raise WireError(
                topic, "<topic>", f"unknown supervisor topic '{leaf}'; known: {', '.join(SUPERVISOR_LEAVES)}"
            )
        if (leaf == "reply") != (match["session"] is not None):
            raise WireError(
                topic, "<topic>", "reply topics are supervisor/<name>/reply/<session>; requests have no suffix"
            )
        _check_topic_id(topic, match["name"], "supervisor name")
        if match["session"] is not None:
            _check_topic_id(topic, match["session"], "session")
        return TopicRef(prefix, site, "supervisor", match["name"], leaf, session=match["session"])
    hubleaf = match["hubleaf"]
    if hubleaf not in HUB_LEAVES:
        raise WireError(topic, "<topic>", f"unknown hub topic '{hubleaf}'; known: {', '.join(HUB_LEAVES)}")
    return TopicRef(prefix, site, "hub", None, hubleaf)


@dataclass(frozen=True, slots=True)
class Topics:
    """Builds every topic for one site. ``prefix`` is configurable per installation (default ``rollcall``)."""

    site: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_id(self.site, "site")
        if not PREFIX_RE.match(self.prefix):
            raise ValueError(
                f"topic prefix {self.prefix!r} is not valid: one or more '/'-separated levels of letters, digits, "
                "'_' and '-'"
            )

    @property
    def base(self) -> str:
        """``<prefix>/<site>``: the root of everything this site publishes."""
        return f"{self.prefix}/{self.site}"

    def _device(self, device: str, leaf: str) -> str:
        return f"{self.base}/device/{check_id(device, 'device id')}/{leaf}"

    def _agent(self, agent: str, leaf: str) -> str:
        return f"{self.base}/agent/{check_id(agent, 'agent id')}/{leaf}"

    def device_status(self, device: str) -> str:
        """Retained online/offline/stopped of a door device."""
        return self._device(device, "status")

    def device_health(self, device: str) -> str:
        """Periodic health of a door device (QoS 0)."""
        return self._device(device, "health")

    def device_event(self, device: str) -> str:
        """Recognition events of a door device (QoS 1, never retained)."""
        return self._device(device, "event")

    def device_snapshot(self, device: str) -> str:
        """Face crops for events (QoS 1)."""
        return self._device(device, "snapshot")

    def device_ack(self, device: str) -> str:
        """The hub's acks to a door device (QoS 1)."""
        return self._device(device, "ack")

    def device_gallery(self, device: str) -> str:
        """The retained gallery manifest of a door device."""
        return self._device(device, "gallery")

    def device_gallery_chunk(self, device: str, index: int) -> str:
        """One retained gallery chunk."""
        if not 0 <= index < MAX_GALLERY_CHUNKS:
            raise ValueError(f"chunk index must be in 0..{MAX_GALLERY_CHUNKS - 1}")
        return self._device(device, f"gallery/chunk/{index}")

    def device_command(self, device: str) -> str:
        """Commands to a door device (QoS 1)."""
        return self._device(device, "command")

    def device_capture(self, device: str) -> str:
        """Pictures a device took on command (enrolment crops, snapshots), QoS 1."""
        return self._device(device, "capture")

    def agent_status(self, agent: str) -> str:
        """Retained online/offline/stopped of a workstation agent."""
        return self._agent(agent, "status")

    def agent_thumbnail(self, agent: str) -> str:
        """The retained latest screen thumbnail of a workstation."""
        return self._agent(agent, "thumbnail")

    def agent_screenshot(self, agent: str) -> str:
        """A full-size screen snapshot taken on request."""
        return self._agent(agent, "screenshot")

    def agent_activity(self, agent: str) -> str:
        """Activity batches of a workstation (QoS 1, outbox-backed, acked)."""
        return self._agent(agent, "activity")

    def agent_ack(self, agent: str) -> str:
        """The hub's acks to an agent."""
        return self._agent(agent, "ack")

    def agent_command(self, agent: str) -> str:
        """Commands to a workstation agent (QoS 1)."""
        return self._agent(agent, "command")

    def hub_status(self) -> str:
        """Retained online/offline/stopped of the hub."""
        return f"{self.base}/hub/status"

    def hub_presence(self) -> str:
        """Retained presence board."""
        return f"{self.base}/hub/presence"

    def hub_alert(self) -> str:
        """Alert state changes."""
        return f"{self.base}/hub/alert"

    def supervisor_request(self, name: str) -> str:
        """Requests of supervisor ``name`` to the hub (the broker lets only ``name`` write here)."""
        return f"{self.base}/supervisor/{check_id(name, 'supervisor name')}/request"

    def supervisor_reply(self, name: str, session: str) -> str:
        """The hub's replies to one session of supervisor ``name`` (the broker lets only ``name`` read here)."""
        return f"{self.base}/supervisor/{check_id(name, 'supervisor name')}/reply/{check_id(session, 'session')}"

    def all_supervisor_requests(self) -> str:
        """Subscription filter for the requests of every supervisor (the hub's)."""
        return f"{self.base}/supervisor/+/request"

    def all_devices(self, leaf: str) -> str:
        """Subscription filter for one leaf of every device, e.g. ``all_devices('event')``."""
        return f"{self.base}/device/+/{leaf}"

    def all_agents(self, leaf: str) -> str:
        """Subscription filter for one leaf of every agent."""
        return f"{self.base}/agent/+/{leaf}"
