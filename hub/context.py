"""What the hub's parts share, handed to each by the composition root: config, store and its lock, publishing, clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from edge.protocol import wire
from hub.config import HubConfig
from hub.store import HubStore


class Publish(Protocol):
    """Publish one message on the hub's broker link (``MqttLink.publish``)."""

    def __call__(self, topic: str, payload: bytes | wire.Payload, qos: int = 1, retain: bool = False) -> object:
        """Queue the message; QoS 1 messages published while disconnected go out after reconnecting."""
        ...


@dataclass(frozen=True)
class HubContext:
    """The hub's shared means; the parts that receive it never see the service itself.

    ``store_lock`` is held by whoever uses the store: the writer thread, or a caller driving the hub by hand (tests,
    tools). ``model_id`` and ``embedding_size`` name the face model whose templates make the galleries.
    """

    config: HubConfig
    store: HubStore
    store_lock: threading.RLock
    publish: Publish
    topics: wire.Topics
    clock: Callable[[], datetime]
    model_id: str
    embedding_size: int

    def registered(self, device: str) -> bool:
        """Whether door ``device`` may deliver and get galleries.

        It must be listed under ``[[cameras]]``; with ``hub.accept_unknown_devices`` (demos, tests) any device the
        store knows will do (it registered when it first spoke).
        """
        if any(camera.device == device for camera in self.config.cameras):
            return True
        return self.config.hub.accept_unknown_devices and self.store.get_device(device) is not None
