"""The suite's own tools hold what they promise: the fault proxy's three modes and the power-cut shim's log."""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollcall.broker import free_port
from tests.helpers.powercut import apply_power_cut, build_shim, preload_env
from tests.helpers.proxy import FaultProxy

pytestmark = pytest.mark.reliability


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A loopback echo server in a thread: what it reads it sends back."""
    import threading

    server = socket.create_server(("127.0.0.1", free_port()))
    port = int(server.getsockname()[1])

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


def _echo(connection: socket.socket) -> None:
    with connection, contextlib.suppress(OSError):  # the proxy resets connections on purpose
        while data := connection.recv(4096):
            connection.sendall(data)


def test_the_proxy_passes_refuses_and_black_holes(echo_port: int) -> None:
    proxy = FaultProxy(echo_port)
    proxy.start()
    try:
        passing = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        passing.sendall(b"ping")
        assert passing.recv(4) == b"ping"

        proxy.set_mode("blackhole")
        passing.sendall(b"lost")
        passing.settimeout(1.0)
        with pytest.raises(TimeoutError):
            passing.recv(4)  # nothing comes back, and nothing says so
        hanging = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)  # the connect itself succeeds
        hanging.settimeout(1.0)
        hanging.sendall(b"hello")
        with pytest.raises(TimeoutError):
            hanging.recv(5)

        proxy.set_mode("refuse")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        passing.settimeout(5)
        with pytest.raises(ConnectionResetError):  # an open connection is cut, as a pulled link looks
            passing.recv(4)

        proxy.set_mode("pass")
        again = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        again.sendall(b"back")
        assert again.recv(4) == b"back"
        for sock in (passing, hanging, again):
            sock.close()
    finally:
        proxy.stop()


WRITER = """
import os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"A" * 100)
os.fsync(fd)
os.pwrite(fd, b"B" * 50, 20)   # overwrites synced bytes
os.write(fd, b"C" * 100)       # grows the file
os.ftruncate(fd, 150)
print("WRITTEN", flush=True)
sys.stdin.read()                # wait for the kill
"""


@pytest.mark.parametrize("keep_share", [0.0, 1.0])
def test_the_power_cut_drops_exactly_what_was_not_fsynced(tmp_path: Path, keep_share: float) -> None:
    shim = build_shim(tmp_path / "shim")
    folder = tmp_path / "disk"
    folder.mkdir()
    log = tmp_path / "cut.log"
    target = folder / "data.bin"
    env = {"PATH": "/usr/bin:/bin", **preload_env(shim, folder, log)}
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline() == "WRITTEN\n"
    process.kill()
    process.wait(10)
    after_kill = target.read_bytes()
    assert after_kill == b"A" * 20 + b"B" * 50 + b"A" * 30 + b"C" * 50, "a SIGKILL alone loses nothing"

    report = apply_power_cut(log, random.Random(1), keep_share=keep_share)

    assert report.unsynced_writes == 3
    if keep_share == 0.0:
        assert target.read_bytes() == b"A" * 100, "every write after the fsync is gone"
    else:
        assert target.read_bytes() == after_kill, "replaying every unsynced write gives the file as it was"
    assert not log.exists()
