"""Home Assistant MQTT discovery: a device_tracker per person and a connectivity sensor per door device.

The discovery messages (:func:`ha_discovery_messages`, :func:`ha_state_messages`, :func:`ha_removal_messages`) are
published on topics that are deliberately **outside** the rollcall wire contract (``edge/protocol/wire/``): the
config topics live under Home Assistant's discovery prefix (``homeassistant/...``) and the state topics under
``<prefix>/<site>/ha/...``, with plain-string or free-form JSON payloads in the shapes Home Assistant expects, without a
version field. ``wire.parse_topic`` does not accept them, and nothing in rollcall subscribes to them; they exist only
for Home Assistant. See docs/notifications.md.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from edge.protocol import wire
from edge.protocol.times import iso_utc
from hub.context import HubContext

HA_DISCOVERY_PREFIX = "homeassistant"


class MqttMessage(NamedTuple):
    """One message to publish (QoS 1): Home Assistant configs and states are retained."""

    topic: str
    payload: bytes
    retain: bool = True


def ha_status_topic(discovery_prefix: str = HA_DISCOVERY_PREFIX) -> str:
    """Home Assistant's birth/will topic; ``online`` there means: publish the discovery configs again."""
    return f"{discovery_prefix}/status"


def ha_is_birth(topic: str, payload: bytes | str, discovery_prefix: str = HA_DISCOVERY_PREFIX) -> bool:
    """Whether a message is Home Assistant's birth message (``online`` on ``<discovery prefix>/status``)."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    return topic == ha_status_topic(discovery_prefix) and text.strip() == "online"


def _ha_id(value: str) -> str:
    """An id usable as a discovery node_id/object_id ([A-Za-z0-9_-]); injective: '_' → '__', '.' → '_d'."""
    return value.replace("_", "__").replace(".", "_d")


def _ha_node(topics: wire.Topics) -> str:
    return f"rollcall_{_ha_id(topics.site)}"


def _ha_base(topics: wire.Topics) -> str:
    return f"{topics.base}/ha"


def ha_person_topics(
    topics: wire.Topics, person_id: str, discovery_prefix: str = HA_DISCOVERY_PREFIX
) -> tuple[str, str, str]:
    """(config, state, attributes) topics of a person's device_tracker."""
    wire.check_id(person_id, "person id")
    return _ha_entity_topics(topics, discovery_prefix, "device_tracker", "person", person_id)


def ha_device_topics(
    topics: wire.Topics, device_id: str, discovery_prefix: str = HA_DISCOVERY_PREFIX
) -> tuple[str, str, str]:
    """(config, state, attributes) topics of a door device's connectivity binary_sensor."""
    wire.check_id(device_id, "device id")
    return _ha_entity_topics(topics, discovery_prefix, "binary_sensor", "device", device_id)


def _ha_entity_topics(
    topics: wire.Topics, discovery_prefix: str, component: str, kind: str, entity_id: str
) -> tuple[str, str, str]:
    config = f"{discovery_prefix}/{component}/{_ha_node(topics)}/{kind}_{_ha_id(entity_id)}/config"
    base = f"{_ha_base(topics)}/{kind}/{entity_id}"
    return config, f"{base}/state", f"{base}/attributes"


def _json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _availability(topics: wire.Topics) -> dict[str, Any]:
    # The hub's retained status (last will "offline"): when the hub is gone, its entities are unavailable.
    return {
        "availability_topic": topics.hub_status(),
        "availability_template": "{{ 'online' if value_json.state == 'online' else 'offline' }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }


def _hub_device(topics: wire.Topics) -> dict[str, Any]:
    return {
        "identifiers": [_ha_node(topics)],
        "name": f"rollcall {topics.site}",
        "manufacturer": "rollcall",
        "model": "hub",
    }


_ORIGIN = {"name": "rollcall"}


def ha_discovery_messages(
    topics: wire.Topics,
    people: Iterable[tuple[str, str]],
    devices: Iterable[tuple[str, str]],
    prefix: str = HA_DISCOVERY_PREFIX,
) -> list[MqttMessage]:
    """Retained discovery configs: a person ``device_tracker`` and a door-device connectivity ``binary_sensor`` each.

    ``people`` and ``devices`` are (id, name) pairs. Publish the configs at start, whenever Home Assistant says
    ``online`` on ``<prefix>/status`` (:func:`ha_is_birth`), and when people or devices change.
    """
    messages: list[MqttMessage] = []
    node = _ha_node(topics)
    for person_id, name in people:
        config, state, attributes = ha_person_topics(topics, person_id, prefix)
        doc = {
            "name": name or person_id,
            "unique_id": f"{node}_person_{_ha_id(person_id)}",
            "state_topic": state,
            "json_attributes_topic": attributes,
            "payload_home": "home",
            "payload_not_home": "not_home",
            "icon": "mdi:account",
            "qos": 1,
            **_availability(topics),
            "device": _hub_device(topics),
            "origin": _ORIGIN,
        }
        messages.append(MqttMessage(config, _json(doc)))
    for device_id, name in devices:
        config, state, attributes = ha_device_topics(topics, device_id, prefix)
        doc = {
            "name": "Connectivity",
            "unique_id": f"{node}_device_{_ha_id(device_id)}",
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "state_topic": state,
            "json_attributes_topic": attributes,
            "payload_on": "ON",
            "payload_off": "OFF",
            "qos": 1,
            **_availability(topics),
            "device": {
                "identifiers": [f"{node}_device_{_ha_id(device_id)}"],
                "name": name or device_id,
                "manufacturer": "rollcall",
                "model": "door device",
                "via_device": node,
            },
            "origin": _ORIGIN,
        }
        messages.append(MqttMessage(config, _json(doc)))
    return messages


def ha_state_messages(
    topics: wire.Topics,
    presence: wire.Presence | None = None,
    devices: Iterable[tuple[str, bool, datetime | None]] = (),
) -> list[MqttMessage]:
    """Retained states for the discovered entities.

    Per presence entry: ``home`` (state ``in``) or ``not_home``, with attributes ``last_door`` and ``last_seen`` (the
    door and time of the latest change). Per (device_id, online, last_seen): ``ON``/``OFF`` with ``last_seen``.
    """
    messages: list[MqttMessage] = []
    for entry in presence.people if presence is not None else ():
        _, state, attributes = ha_person_topics(topics, entry.person_id)
        messages.append(MqttMessage(state, b"home" if entry.state == "in" else b"not_home"))
        doc = {
            "person_id": entry.person_id,
            "presence": entry.state,
            "last_door": entry.door,
            "last_seen": iso_utc(entry.since),
        }
        messages.append(MqttMessage(attributes, _json(doc)))
    for device_id, online, last_seen in devices:
        _, state, attributes = ha_device_topics(topics, device_id)
        messages.append(MqttMessage(state, b"ON" if online else b"OFF"))
        messages.append(MqttMessage(attributes, _json({"device": device_id, "last_seen": iso_utc(last_seen)})))
    return messages


def ha_removal_messages(topics: wire.Topics, person_id: str, prefix: str = HA_DISCOVERY_PREFIX) -> list[MqttMessage]:
    """On erasure: empty retained payloads on the person's config, state and attributes topics.

    Home Assistant drops the entity, and the broker forgets the retained messages.
    """
    return [MqttMessage(topic, b"") for topic in ha_person_topics(topics, person_id, prefix)]


def ha_device_removal_messages(
    topics: wire.Topics, device_id: str, prefix: str = HA_DISCOVERY_PREFIX
) -> list[MqttMessage]:
    """Empty retained payloads that remove a door device's entity and its retained state."""
    return [MqttMessage(topic, b"") for topic in ha_device_topics(topics, device_id, prefix)]


# --- the hub's side -------------------------------------------------------------------------------------------


class HomeAssistantBridge:
    """Keeps Home Assistant's entities and states in step with the hub (when ``[homeassistant]`` is enabled).

    ``presence`` gives the current presence board, for the person states.
    """

    def __init__(self, context: HubContext, presence: Callable[[datetime], wire.Presence]) -> None:
        settings = context.config.homeassistant
        self.context = context
        self.presence = presence
        self.enabled = settings.enabled
        self.prefix = settings.discovery_prefix
        self._dirty = threading.Event()
        if self.enabled:
            self._dirty.set()
        self._states_sent: dict[str, bytes] = {}
        """State and attribute topic -> the payload last published there (retained at the broker)."""
        self._entries_sent: dict[str, wire.PresenceEntry] = {}
        """Person id -> the board entry their states were last made from: an entry unchanged since is skipped before
        its messages are made (encoding 20,000 of them took about 90 ms a board at 10,000 people)."""

    @property
    def status_topic(self) -> str:
        """Home Assistant's birth/will topic under this site's discovery prefix."""
        return ha_status_topic(self.prefix)

    def is_status(self, topic: str) -> bool:
        """Whether a message on ``topic`` is Home Assistant's own status (the hub listens only when enabled)."""
        return self.enabled and topic == self.status_topic

    def on_status(self, topic: str, payload: bytes) -> None:
        """Home Assistant said something on its status topic."""
        if ha_is_birth(topic, payload, self.prefix):
            self._dirty.set()  # Home Assistant restarted: it needs every discovery config again

    def mark_dirty(self) -> None:
        """People or devices changed: publish the discovery configs again soon."""
        self._dirty.set()

    def publish_if_dirty(self, now: datetime) -> None:
        """Publish the discovery configs (and states) when something changed since the last time."""
        if self._dirty.is_set():
            self._dirty.clear()
            self.publish_discovery(now)

    def _publish(self, messages: list[MqttMessage]) -> None:
        for message in messages:
            self.context.publish(message.topic, message.payload, qos=1, retain=message.retain)

    def publish_states(self, now: datetime, board: wire.Presence | None = None) -> None:
        """The person and device states that changed since last published (``board``: the board just published).

        The broker retains every state, so only changes go out: with 10,000 people each board sent 20,000 retained
        messages, up to ten boards a second during a morning rush. :meth:`publish_discovery` sends them all again.
        """
        if not self.enabled:
            return
        devices = [(d.id, d.status == "online", d.last_seen) for d in self.context.store.list_devices()]
        board = board or self.presence(now)
        sent = self._entries_sent
        moved = []
        for entry in board.people:
            before = sent.get(entry.person_id)
            if before is not entry and before != entry:  # the board hands out the same entry until it changes
                sent[entry.person_id] = entry
                moved.append(entry)
        changed = []
        for message in ha_state_messages(self.context.topics, board.model_copy(update={"people": moved}), devices):
            if self._states_sent.get(message.topic) != message.payload:
                self._states_sent[message.topic] = message.payload
                changed.append(message)
        self._publish(changed)

    def publish_discovery(self, now: datetime) -> None:
        """Every person and device as Home Assistant entities, then all their current states."""
        store = self.context.store
        people = [(p.id, p.name or p.id) for p in store.list_people()]
        devices = [(d.id, d.name or d.id) for d in store.list_devices()]
        self._publish(ha_discovery_messages(self.context.topics, people, devices, self.prefix))
        self._states_sent.clear()  # Home Assistant (re)started or entities changed: every state goes out again
        self._entries_sent.clear()
        self.publish_states(now)

    def forget_person(self, person_id: str) -> None:
        """After an erasure: Home Assistant drops the person's entity, and the broker its retained states."""
        if self.enabled:
            removal = ha_removal_messages(self.context.topics, person_id, self.prefix)
            self._entries_sent.pop(person_id, None)
            for message in removal:
                self._states_sent.pop(message.topic, None)  # nothing of them is kept, not even a topic
            self._publish(removal)
