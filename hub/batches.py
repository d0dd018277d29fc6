"""Batches: the drain loop and the ack sizes that the hub's writer and its stand-in (``rollcall.tools.receiver``) share.

Both take up to N queued messages at once, store them in one transaction and ack only after the commit; this module
has the loop and the acks, and imports nothing heavy, so the stand-in stays light.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Protocol, TypeVar

from edge.protocol import wire

Item = TypeVar("Item")
Item_co = TypeVar("Item_co", covariant=True)


class BatchSource(Protocol[Item_co]):
    """Where the batches come from: a :class:`queue.Queue`, or the hub's fair gate (:class:`hub.gate.IngestGate`)."""

    def get(self, block: bool = True, timeout: float | None = None) -> Item_co:
        """The next item; raises :class:`queue.Empty` when none came within ``timeout``."""
        ...

    def get_nowait(self) -> Item_co:
        """The next item, or :class:`queue.Empty`."""
        ...


def drain_batches(
    source: BatchSource[Item],
    handle: Callable[[list[Item]], None],
    stop: threading.Event,
    *,
    max_batch: int,
    wait_s: float | Callable[[], float],
    before_wait: Callable[[], None] | None = None,
) -> None:
    """Until ``stop`` is set: take a batch of up to ``max_batch`` queued messages and hand it to ``handle``.

    Waits up to ``wait_s`` (seconds, or a function that says how long this time) for the first message, then takes
    what else is queued; ``handle`` stores the batch in one go and acks after the commit. ``before_wait`` runs before
    every wait (the hub's maintenance, on the thread that writes the store).
    """
    while not stop.is_set():
        if before_wait is not None:
            before_wait()
        try:
            first = source.get(timeout=wait_s() if callable(wait_s) else wait_s)
        except queue.Empty:
            continue
        batch = [first]
        while len(batch) < max_batch:
            try:
                batch.append(source.get_nowait())
            except queue.Empty:
                break
        handle(batch)


def device_acks(device: str, event_ids: list[str], snapshot_ids: list[str], at: datetime) -> Iterator[wire.Ack]:
    """The acks for a device, each naming at most ``wire.MAX_ACK_IDS`` events and snapshots."""
    for start in range(0, max(len(event_ids), len(snapshot_ids)), wire.MAX_ACK_IDS):
        yield wire.Ack(
            client=device,
            at=at,
            event_ids=event_ids[start : start + wire.MAX_ACK_IDS],
            snapshot_ids=snapshot_ids[start : start + wire.MAX_ACK_IDS],
        )


def agent_acks(agent: str, event_ids: list[str], at: datetime) -> Iterator[wire.Ack]:
    """The acks for a workstation agent, each naming at most ``wire.MAX_ACK_IDS`` activity batches."""
    for start in range(0, len(event_ids), wire.MAX_ACK_IDS):
        yield wire.Ack(client=agent, at=at, event_ids=event_ids[start : start + wire.MAX_ACK_IDS])
