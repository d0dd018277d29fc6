"""Runs the real door device service in a child process for crash and outage tests.

python -m tests.helpers.edge_process --config FILE [--events N] [--rate R] [--snapshots]

The camera is a folder with one blank picture (no faces), so every event comes from this script: it feeds N
synthetic face events through EdgeService.record_events at R per second and prints ``ADDED <seq> <event_id>`` after
each one is durably in the outbox, then ``DONE``; it keeps the service running (delivering) until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from edge.door.config import EdgeConfig
from edge.door.service import EdgeService
from edge.protocol.config import load_config
from edge.recognition.engine import build_engine
from edge.recognition.pipeline import FaceEvent

SNAPSHOT = cv2.imencode(".jpg", np.full((96, 96, 3), 128, np.uint8))[1].tobytes()


def main() -> int:
    """Start the service, produce events, wait for SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--snapshots", action="store_true")
    args = parser.parse_args()
    config = load_config(EdgeConfig, args.config, "edge")
    engine = build_engine(config.models.pack, config.models.dir, check_hash=False)
    service = EdgeService(config, engine=engine, config_path=args.config)
    signal.signal(signal.SIGTERM, lambda *_: service.stop_event.set())
    service.start()
    print("READY", flush=True)
    for index in range(args.events):
        if service.stop_event.is_set():
            break
        event = FaceEvent(
            type="seen" if index % 2 == 0 else "left",
            at=datetime.now(UTC),
            pts_s=float(index),
            track=index // 2,
            person_id=f"p-{index % 7:04d}",
            name=None,
            score=0.7,
            margin=0.2,
            quality=0.8,
            snapshot_jpeg=SNAPSHOT if args.snapshots and index % 2 == 0 else None,
        )
        for message in service.record_events([event]):
            print(f"ADDED {message.seq} {message.message_id}", flush=True)
        time.sleep(1.0 / args.rate)
    print("DONE", flush=True)
    service.stop_event.wait()
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
