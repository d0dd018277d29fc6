"""An MQTT probe for tests: subscribes through the real MqttLink and waits for what arrives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from edge.protocol.config import MqttSettings
from edge.protocol.mqtt import MqttLink, Received
from tests.helpers.brokers import TestBroker


class Collector:
    """Thread-safe record of received messages with a blocking wait."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()

    def __call__(self, message: Received) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> bool:
        """Block until ``predicate(messages)`` holds or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def on(self, topic: str) -> list[Received]:
        """Messages received on one topic, in arrival order."""
        with self._cond:
            return [m for m in self.messages if m.topic == topic]


def settings_for(broker: TestBroker, **overrides: object) -> MqttSettings:
    """MqttSettings pointing at a test broker."""
    values: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        "keepalive_s": 5,
        "reconnect_min_s": 1,
        "reconnect_max_s": 2,
    }
    values.update(overrides)
    return MqttSettings.model_validate(values)


@contextmanager
def probe(broker: TestBroker, *filters: str, client_id: str = "probe", clean: bool = True) -> Iterator[Collector]:
    """A connected subscriber on ``filters``; yields its Collector and stops it afterwards."""
    collector = Collector()
    link = MqttLink(settings_for(broker), client_id=client_id, on_message=collector, clean_session=clean)
    for topic_filter in filters:
        link.subscribe(topic_filter)
    link.start()
    if not link.wait_subscribed(10):
        link.stop()
        raise RuntimeError(f"probe could not connect and subscribe at {broker.url}")
    try:
        yield collector
    finally:
        link.stop()
