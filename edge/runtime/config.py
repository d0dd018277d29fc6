"""Config every device process shares (door device and workstation agent): the base, the outbox and health."""

from __future__ import annotations

from abc import abstractmethod
from typing import Annotated

from pydantic import Field

from edge.protocol.config import PositiveFloat, Section


class OutboxSettings(Section):
    """The on-device queue of events waiting for the hub's ack."""

    max_mb: Annotated[float, Field(gt=0)] = 256.0
    max_in_flight: Annotated[int, Field(ge=1, le=10_000)] = 100
    resend_after_s: PositiveFloat = 10.0
    max_send_per_s: Annotated[float, Field(gt=0, le=100_000)] = 800.0
    """Messages (events and their snapshots) a second the device sends at most, catching up after an outage: under
    the hub's ``ingest.sender_messages_per_s`` (1,000), so a backlog never trips the hub's flood guard."""


class HealthSettings(Section):
    """How often the device reports its health."""

    interval_s: PositiveFloat = 30.0


class DeviceConfig(Section):
    """Base of the whole config of a device process; it adds no keys (a role's own fields keep their order)."""

    @abstractmethod
    def summary(self) -> str:
        """One line for check-config and the start-up log."""
