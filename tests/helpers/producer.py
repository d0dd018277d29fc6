"""A light door device in a child process: the real device base (outbox, publisher, MQTT link, hub acks), no camera.

python -m tests.helpers.producer --port P --device ID --data-dir DIR [--rate R] [--events N] [--snapshots]
                                 [--drain] [--keepalive S] [--resend-after S]

It starts in well under a second (no models, no numpy), so kill loops can kill it every half second. Every event is
stored through the real ``Outbox.add`` with the real sequence numbering and sent by the real ``OutboxPublisher``;
``ADDED <seq> <event_id> <has_snapshot>`` is printed after ``add`` returned (the event is durable), ``DONE`` after
``--events`` (0: produce until stopped). With ``--drain`` it produces nothing and exits 0 once the outbox is empty
(messages and attachments), printing ``DRAINED``. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from ulid import ULID

from edge.protocol import wire
from edge.protocol.config import MqttSettings, SiteSettings
from edge.runtime.config import OutboxSettings
from edge.runtime.device import DeviceService

SITE = "hq"
SNAPSHOT_BYTES = 6_000
"""About a real face crop's size; the bytes are random (the hub stores snapshots encrypted, it never decodes them)."""


class ProducerDevice(DeviceService):
    """The device base with a publisher thread and nothing else; events come from :meth:`produce`."""

    def __init__(self, args: argparse.Namespace) -> None:
        mqtt = MqttSettings(
            host="127.0.0.1",
            port=args.port,
            keepalive_s=args.keepalive,
            reconnect_min_s=1,
            reconnect_max_s=args.reconnect_max,
        )
        super().__init__(
            role="edge",
            entity=args.device,
            site=SiteSettings(id=SITE),
            mqtt=mqtt,
            outbox=OutboxSettings(resend_after_s=args.resend_after),
            data_dir=args.data_dir,
            software="rollcall reliability producer",
            notifier=None,
            logger=logging.getLogger("rollcall.producer"),
        )
        self._publisher = threading.Thread(target=self.publisher.run, args=(self.stop_event,), name="publisher")

    def start(self) -> None:
        self.link.start()
        self._publisher.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.publisher.wake()
        self._publisher.join(timeout)
        self.link.stop()
        self.outbox.close()

    def _on_payload(self, payload: object) -> None:
        """Commands and galleries are not this producer's business."""

    def produce(self, index: int, with_snapshot: bool) -> tuple[int, str]:
        """Store one ``seen``/``left`` event (a snapshot with it when asked) durably; its seq and event id."""
        event_id = str(ULID())
        at = datetime.now(UTC)

        def build(seq: int) -> tuple[str, str, bytes]:
            event = wire.Event(
                event_id=event_id,
                device=self.entity,
                seq=seq,
                at=at,
                type="seen" if index % 2 == 0 else "left",
                person_id=f"p-{index % 7:04d}",
                score=0.7,
                margin=0.2,
                track=index // 2,
                quality=0.8,
                has_snapshot=with_snapshot,
                epoch=self.outbox.epoch,  # as the door does: a new outbox file is a new sequence series
            )
            return event_id, self.topics.device_event(self.entity), wire.encode(event)

        attachment = None
        if with_snapshot:
            snapshot = wire.Snapshot(
                event_id=event_id,
                device=self.entity,
                at=at,
                content_type="image/jpeg",
                width=96,
                height=96,
                data=b"\xff\xd8" + os.urandom(SNAPSHOT_BYTES) + b"\xff\xd9",
            )
            attachment = (self.topics.device_snapshot(self.entity), wire.encode(snapshot))
        message = self.outbox.add(build, attachment)
        self.publisher.wake()
        return message.seq, message.message_id


def main() -> int:
    """Produce (or drain) until SIGTERM, ``--events``, or an empty outbox with ``--drain``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", default="door-1")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--events", type=int, default=0, help="stop producing after this many (0: never)")
    parser.add_argument("--snapshots", action="store_true", help="every other event carries a snapshot")
    parser.add_argument("--drain", action="store_true", help="produce nothing; exit once the outbox is empty")
    parser.add_argument("--keepalive", type=int, default=5)
    parser.add_argument("--reconnect-max", type=int, default=2)
    parser.add_argument("--resend-after", type=float, default=2.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    device = ProducerDevice(args)
    signal.signal(signal.SIGTERM, lambda *_: device.stop_event.set())
    device.start()
    print("READY", flush=True)
    try:
        if args.drain:
            while not device.stop_event.is_set():
                stats = device.outbox.stats()
                if stats.depth == 0 and stats.attachments == 0:
                    print("DRAINED", flush=True)
                    return 0
                device.stop_event.wait(0.1)
            return 1
        index = 0
        next_at = time.monotonic()
        while not device.stop_event.is_set() and (args.events == 0 or index < args.events):
            with_snapshot = args.snapshots and index % 2 == 0
            seq, event_id = device.produce(index, with_snapshot)
            print(f"ADDED {seq} {event_id} {int(with_snapshot)}", flush=True)
            index += 1
            next_at += 1.0 / args.rate
            device.stop_event.wait(max(0.0, next_at - time.monotonic()))
        print("DONE", flush=True)
        device.stop_event.wait()
        return 0
    finally:
        device.stop()


if __name__ == "__main__":
    sys.exit(main())
