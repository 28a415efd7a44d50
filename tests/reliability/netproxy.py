"""A TCP proxy on loopback for the tests: a cable to cut between a server and its database.

It forwards bytes and nothing else, like haproxy in TCP mode, round-robin over its backends.
`cut()` drops every open connection and refuses new ones until `restore()`: a database outage.
(The load balancer in front of the line's processes is the recipe's nginx: tests/helpers/nginx.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

Backend = tuple[str, int]


class TcpProxy:
    """Listen on a loopback port and forward each connection to one of `backends`."""

    def __init__(self, backends: Sequence[Backend]) -> None:
        self.backends = list(backends)
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-tcp-proxy")
        self.port = 0
        self.connections: list[int] = []  # backend index of every connection, in order

    def start(self) -> TcpProxy:
        """Start listening (on a free port, see `port`)."""
        self._thread.start()
        self._call(self._listen(0))
        return self

    def stop(self) -> None:
        """Close everything and end the proxy's thread."""
        self._call(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones (the far side sees resets)."""
        self._call(self._close_all())

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self._call(self._listen(self.port))

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(5)  # type: ignore[arg-type]

    async def _listen(self, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            # abort, not close: the peer must see the connection die, not end politely
            writer.transport.abort()
        self._writers.clear()

    def _pick(self) -> int:
        index = self._next % len(self.backends)
        self._next += 1
        return index

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        index = self._pick()
        self.connections.append(index)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.backends[index])
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either side ends; then end the other side too."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
