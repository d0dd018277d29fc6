"""The embedded MQTT broker (amqtt) behind ``rollcall broker``: zero-install for the demo and Mosquitto-less boxes.

Production sites run Mosquitto (TLS, one identity per device, ACLs); this broker has none of that and says so when
bound beyond loopback. It speaks MQTT 3.1.1 with retained messages, last wills and persistent sessions in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("rollcall.broker")


def tcp_port(text: str) -> int:
    """An argparse type: a TCP port number from 1 to 65535, refused with the range otherwise."""
    return _port_in(text, 1)


def tcp_port_or_any(text: str) -> int:
    """An argparse type: a TCP port number, or 0 for "any free port"."""
    return _port_in(text, 0)


def _port_in(text: str, lowest: int) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not lowest <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port: give a TCP port from {lowest} to 65535")
    return port


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
    from amqtt.errors import BrokerError

    try:
        asyncio.run(serve(host, port))
    except (OSError, BrokerError) as exc:
        # amqtt wraps the socket's OSError (address in use, not this machine's, unknown name) in a BrokerError.
        cause = exc.__cause__ if isinstance(exc, BrokerError) and exc.__cause__ is not None else exc
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        print(
            f"rollcall broker: cannot listen on {host}:{port}: {reason}. "
            "Choose another --port or --host (an address of this machine), or stop whatever holds the port.",
            file=sys.stderr,
        )
        return 1
    return 0


# --- private brokers for tests and benchmarks ----------------------------------------------------------------------

BrokerKind = Literal["mosquitto", "embedded"]
SBIN_PATH = "/usr/sbin:/sbin:/usr/local/sbin"


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, looking in sbin too (Debian installs it in /usr/sbin)."""
    return shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(host: str, port: int, timeout: float) -> bool:
    """Poll until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class LocalBroker:
    """A broker child process on 127.0.0.1:port, restartable on the same port with its persisted sessions.

    Mosquitto gets a config written here (persistence in ``workdir``); the embedded broker is ``rollcall broker``.
    Stopped through the process handle, never by name.
    """

    kind: BrokerKind
    workdir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    max_queued_messages: int = 10_000
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """Where the broker's own log goes."""
        return self.workdir / f"{self.kind}.log"

    def _mosquitto_config(self) -> Path:
        config = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            # Sessions and queued QoS 1 messages survive a broker restart, as on a real site.
            "persistence true",
            f"persistence_location {self.workdir}/",
            f"max_queued_messages {self.max_queued_messages}",
            # Deliver small messages now instead of batching them (Nagle): acks are latency-bound.
            "set_tcp_nodelay true",
            # Started as root (CI), mosquitto would drop to its own user and fail to write persistence.
            "user root",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            f"log_dest file {self.log_path}",
            "",
        ]
        config.write_text("\n".join(lines))
        return config

    def command(self) -> list[str]:
        """The command line that starts this broker."""
        if self.kind == "mosquitto":
            binary = find_mosquitto()
            if binary is None:
                raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
            return [binary, "-c", str(self._mosquitto_config())]
        return [sys.executable, "-m", "rollcall.cli", "--log-level", "WARNING", "broker", "--port", str(self.port)]

    def start(self, timeout: float = 15.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("broker already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / f"{self.kind}.out").open("ab") as out:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        if not wait_listening(self.host, self.port, timeout):
            self.stop()
            raise RuntimeError(f"{self.kind} did not start listening on {self.port}; see {self.workdir}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly (SIGTERM: mosquitto saves its sessions), killing only if it does not exit in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        """host:port for messages."""
        return f"{self.host}:{self.port}"
