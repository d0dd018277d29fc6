"""The embedded MQTT broker (amqtt) behind ``rollcall broker``: zero-install for the demo and Mosquitto-less boxes.

Production sites run Mosquitto (TLS, one identity per device, ACLs); this broker has none of that and says so when
bound beyond loopback. It speaks MQTT 3.1.1 with retained messages, last wills and persistent sessions in memory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from collections.abc import Callable
from typing import Any

log = logging.getLogger("rollcall.broker")


def broker_config(host: str, port: int) -> dict[str, Any]:
    """amqtt configuration: one TCP listener, anonymous clients, no $SYS chatter."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 1000}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(host: str, port: int, ready: Callable[[], None] | None = None) -> None:
    """Run the broker until SIGTERM or SIGINT, then shut it down cleanly."""
    from amqtt.broker import Broker  # the hub extra brings amqtt; imported here so the CLI stays light

    if not _is_loopback(host):
        log.warning(
            "the embedded broker has no TLS, authentication or ACLs; bind it to 127.0.0.1 or run Mosquitto "
            "for a real site (see docs/brokers.md)"
        )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    broker = Broker(broker_config(host, port), loop=loop)
    await broker.start()
    log.info("embedded broker listening on %s:%s", host, port)
    print(f"rollcall broker: listening on {host}:{port} (Ctrl-C or SIGTERM stops it)", flush=True)
    if ready is not None:
        ready()
    await stop.wait()
    log.info("stopping embedded broker")
    await broker.shutdown()


def run(host: str, port: int) -> int:
    """Blocking entry point for the CLI; returns the exit status."""
    for noisy in ("transitions", "amqtt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        asyncio.run(serve(host, port))
    except OSError as exc:
        print(
            f"rollcall broker: cannot listen on {host}:{port}: {exc.strerror or exc}. "
            "Choose another --port or stop whatever holds it."
        )
        return 1
    return 0
