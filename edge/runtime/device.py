"""The part every device service shares: topics, stop event, outbox, MQTT link, publisher, hub acks, run."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

from edge.protocol import wire
from edge.protocol.config import MqttSettings, SiteSettings
from edge.protocol.mqtt import MqttLink, Received
from edge.runtime.config import OutboxSettings
from edge.runtime.outbox import Outbox
from edge.runtime.publisher import OutboxPublisher
from edge.runtime.systemd import SystemdNotifier

DeviceRole = Literal["edge", "agent"]
"""Which device process: the door device (``device`` topics) or the workstation agent (``agent`` topics)."""


class DeviceService(ABC):
    """A device process's link to the hub: events wait in ``outbox`` until the hub's ack, ``publisher`` sends them.

    The subclass builds the rest, subscribes to its own topics on ``link`` and takes every well-formed message
    addressed to it other than an ack in :meth:`_on_payload` (on paho's network thread). :meth:`run` starts, blocks
    until ``stop_event`` (SIGTERM/SIGINT set it from the launcher) and stops.
    """

    def __init__(
        self,
        *,
        role: DeviceRole,
        entity: str,
        site: SiteSettings,
        mqtt: MqttSettings,
        outbox: OutboxSettings,
        data_dir: Path,
        software: str,
        notifier: SystemdNotifier | None,
        logger: logging.Logger,
    ) -> None:
        """Open the outbox in ``data_dir`` (which must exist) and prepare the link; nothing connects yet."""
        self.entity = entity
        """The device or agent id this process speaks for (its topics and its retained status)."""
        self.topics = wire.Topics(site.id, site.topic_prefix)
        self.stop_event = threading.Event()
        self.notifier = notifier or SystemdNotifier()
        self._log = logger
        self.outbox = Outbox(data_dir / "outbox.db", max_bytes=int(outbox.max_mb * 1_000_000))
        if role == "edge":
            status_topic, ack_topic = self.topics.device_status(entity), self.topics.device_ack(entity)
        else:
            status_topic, ack_topic = self.topics.agent_status(entity), self.topics.agent_ack(entity)
        self.link = MqttLink(
            mqtt,
            client_id=mqtt.client_id_for(role, entity),
            status_topic=status_topic,
            status_entity=entity,
            software=software,
            on_message=self._on_message,
        )
        self.link.subscribe(ack_topic, qos=1)
        self.publisher = OutboxPublisher(
            self.outbox,
            self.link,
            max_in_flight=outbox.max_in_flight,
            resend_after_s=outbox.resend_after_s,
            max_send_per_s=outbox.max_send_per_s,
        )

    @abstractmethod
    def start(self) -> None:
        """Connect in the background and start every thread."""

    @abstractmethod
    def stop(self, timeout: float = 10.0) -> None:
        """Flush and stop."""

    def run(self) -> None:
        """Start and block until the stop event (SIGTERM/SIGINT set it from the CLI)."""
        self.start()
        self.stop_event.wait()
        self.stop()

    def _on_message(self, message: Received) -> None:
        try:
            ref, payload = wire.decode(message.topic, message.payload)
        except wire.WireError as exc:
            self._log.warning("ignored a malformed message: %s", exc)
            return
        if ref.entity != self.entity:
            return
        if isinstance(payload, wire.Ack):
            self.publisher.on_ack(payload)
        else:
            self._on_payload(payload)

    @abstractmethod
    def _on_payload(self, payload: object) -> None:
        """A decoded message addressed to this process that is not an ack (on paho's network thread)."""
