"""Real MQTT brokers for tests: Mosquitto (config written by the test) or the embedded amqtt broker.

Each broker runs as a child process on a free loopback port and is stopped through its process handle, never by
name, so tests cannot touch a broker that belongs to someone else.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
class TestBroker:
    """One broker process on 127.0.0.1:port, restartable on the same port with its persisted sessions."""

    kind: BrokerKind
    workdir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    max_queued_messages: int = 10_000
    process: subprocess.Popen[bytes] | None = None

    __test__ = False  # not a pytest test class

    @property
    def log_path(self) -> Path:
        """Where the broker's own log goes (useful when a test fails)."""
        return self.workdir / f"{self.kind}.log"

    def _mosquitto_config(self) -> Path:
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    "allow_anonymous true",
                    # Sessions and queued QoS 1 messages survive a broker restart, as on a real site.
                    "persistence true",
                    f"persistence_location {self.workdir}/",
                    f"max_queued_messages {self.max_queued_messages}",
                    # Started as root (CI), mosquitto would drop to its own user and fail to write persistence.
                    "user root",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    f"log_dest file {self.log_path}",
                    "",
                ]
            )
        )
        return config

    def command(self) -> list[str]:
        """The command line that starts this broker."""
        if self.kind == "mosquitto":
            binary = find_mosquitto()
            if binary is None:
                raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
            return [binary, "-c", str(self._mosquitto_config())]
        return [
            sys.executable,
            "-m",
            "rollcall.cli",
            "--log-level",
            "WARNING",
            "broker",
            "--port",
            str(self.port),
        ]

    def start(self, timeout: float = 15.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("broker already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        out = (self.workdir / f"{self.kind}.out").open("ab")
        self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        out.close()
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
