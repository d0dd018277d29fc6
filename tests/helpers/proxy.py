"""A TCP proxy on loopback that a test switches between passing, refusing and black-holing (network faults).

``pass``: connections are forwarded to the upstream port. ``refuse``: the listening socket is closed (new
connections get ECONNREFUSED) and every open connection is reset, as when a cable is pulled and the peer's stack
answers. ``blackhole``: packets vanish: nothing is forwarded either way, new connections are accepted but never
answered, and a connection the client gives up on is closed upstream only when the black hole ends (its FIN vanished
too), so both ends must find out by their own timeouts, as behind a dead router.

The proxy runs its own asyncio loop in a daemon thread; :meth:`set_mode` is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Literal

from rollcall.broker import free_port

ProxyMode = Literal["pass", "refuse", "blackhole"]

_CHUNK = 65_536


class FaultProxy:
    """127.0.0.1:``port`` forwarding to 127.0.0.1:``upstream_port`` in the mode the test sets."""

    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port if port is not None else free_port()
        self.mode: ProxyMode = "pass"
        self.connections_accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{self.port}", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()  # set while the mode is not blackhole: the held FINs may pass again

    def start(self) -> None:
        """Listen and forward (mode ``pass``)."""
        self._thread.start()
        self._call(self._set_mode("pass"))

    def stop(self) -> None:
        """Close everything and end the loop's thread."""
        self._call(self._set_mode("refuse"))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def set_mode(self, mode: ProxyMode) -> None:
        """Switch to ``mode``; returns once the listening socket and the open connections follow it."""
        self._call(self._set_mode(mode))

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    async def _set_mode(self, mode: ProxyMode) -> None:
        self.mode = mode
        if mode == "refuse":
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
            for writer in list(self._open):
                _reset(writer)
            self._open.clear()
            self._flowing.set()
            return
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        if mode == "pass":
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        self._open.add(client_writer)
        try:
            if self.mode != "pass":
                # A black-holed connect: accepted by the kernel, never answered; held until the client gives up.
                await _read_until_closed(client_reader)
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                _reset(client_writer)
                return
            self._open.add(upstream_writer)
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer),
                self._pipe(upstream_reader, client_writer),
                return_exceptions=True,
            )
        finally:
            for writer in list(self._open):
                if writer is client_writer or writer.is_closing():
                    self._open.discard(writer)
            with contextlib.suppress(Exception):
                client_writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK):
                if self.mode == "pass":
                    writer.write(data)
                    await writer.drain()
                # Otherwise the bytes vanish, as packets in a black hole do.
        except (ConnectionError, OSError):
            pass
        # The peer closed. In a black hole its FIN vanishes too: the other end hears of it when the hole ends.
        await self._flowing.wait()
        with contextlib.suppress(Exception):
            writer.close()
        self._open.discard(writer)


async def _read_until_closed(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while await reader.read(_CHUNK):
            pass


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as a pulled link looks to the peer's next send."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()
