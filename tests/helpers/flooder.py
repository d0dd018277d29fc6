"""A hostile publisher in a child process: junk on one device's event topic as fast as asked, for flood tests.

python -m tests.helpers.flooder --port P --device ID --rate R --seconds S

Publishes QoS 0 (the cheapest for the flooder, the dearest for the hub) a mix of invalid JSON, JSON the contract
refuses, events of another device than the topic's, and now and then a 10 KB deeply nested JSON; prints
``SENT <count>`` at the end.
"""

from __future__ import annotations

import argparse
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.protocol import wire


def junk(index: int, device: str) -> bytes:
    """The index-th junk payload."""
    if index % 100 == 99:
        return b"[" * 5000 + b"]" * 5000
    kind = index % 3
    if kind == 0:
        return b'{"event_id": "not json' + str(index).encode()
    if kind == 1:
        return (
            b'{"kind": "event", "device": "' + device.encode() + b'", "seq": -1, "junk": ' + str(index).encode() + b"}"
        )
    return b'{"kind": "event", "device": "someone-else", "seq": ' + str(index).encode() + b"}"


def main() -> int:
    """Flood for ``--seconds`` at ``--rate`` messages a second."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", default="flood-1")
    parser.add_argument("--site", default="hq")
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"flooder-{args.device}")
    client.connect("127.0.0.1", args.port, keepalive=30)
    client.loop_start()
    topic = wire.Topics(args.site).device_event(args.device)
    sent = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < args.seconds:
        due = int(elapsed * args.rate)
        while sent < due:
            client.publish(topic, junk(sent, args.device), qos=0)
            sent += 1
        time.sleep(0.005)
    client.loop_stop()
    client.disconnect()
    print(f"SENT {sent}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
