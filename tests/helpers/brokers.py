"""Real MQTT brokers for tests: Mosquitto (config written by the test) or the embedded amqtt broker.

The broker process handling lives in ``rollcall.broker.LocalBroker`` (benchmarks use it too); tests use it under
the name ``TestBroker``.
"""

from __future__ import annotations

from rollcall.broker import BrokerKind, LocalBroker, find_mosquitto, free_port, wait_listening

__all__ = ["BrokerKind", "TestBroker", "find_mosquitto", "free_port", "wait_listening"]


class TestBroker(LocalBroker):
    """A :class:`LocalBroker` owned by one test."""

    __test__ = False  # not a pytest test class
