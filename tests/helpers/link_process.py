"""A stand-alone process holding one MqttLink with a status topic, for last-will and SIGTERM tests.

Run: python -m tests.helpers.link_process --port P --entity ID --keepalive S. It prints READY once connected and
stops cleanly (publishing ``stopped``) on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from edge.protocol.config import MqttSettings
from edge.protocol.mqtt import MqttLink
from edge.protocol.wire import Topics


def main() -> int:
    """Connect, announce READY, wait for SIGTERM, stop cleanly."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--entity", required=True)
    parser.add_argument("--keepalive", type=int, default=5)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = MqttSettings(host="127.0.0.1", port=args.port, keepalive_s=args.keepalive)
    link = MqttLink(
        settings,
        client_id=f"edge-{args.entity}",
        status_topic=Topics("hq").device_status(args.entity),
        status_entity=args.entity,
        software="test",
    )
    link.start()
    if not link.wait_connected(10):
        print("NOT CONNECTED", flush=True)
        return 1
    print("READY", flush=True)
    stop.wait()
    link.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
