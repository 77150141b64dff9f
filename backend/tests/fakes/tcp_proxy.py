"""A loopback TCP proxy that a test can cut and restore: a real network partition on demand.

Put between the app and a real server (Redis), it lets a test take the server away mid-flow and
bring it back, with no root, no firewall rules and no sleeping: `cut()` closes every open
connection and stops listening, so new connections are refused exactly as if the server were
down; `restore()` listens again on the same port.

Given `trip_on=marker` (say `b"INSERT INTO api_keys"`), it also breaks one connection at an
exact point of its conversation: the first time a client sends the marker, those bytes never
reach the server and both sides of that connection are reset, as when the network or the
database process dies between two statements of a transaction. It trips once.

It also counts what clients send, per connection (`heard`): against a server that never
answers (a Redis stopped with SIGSTOP), every connection a client has written to is one
command that waited out its timeout, since the client drops a connection that timed out.
"""

import asyncio
import contextlib
import itertools
from collections import Counter
from types import TracebackType

_CHUNK = 64 * 1024


class TcpProxy:
    def __init__(
        self, upstream_host: str, upstream_port: int, *, trip_on: bytes | None = None
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.trip_on = trip_on
        self.tripped = False
        self.port = 0  # chosen by the OS at the first start, then kept
        self.heard: Counter[int] = Counter()  # connection number → chunks its client sent
        self._numbers = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Drop every connection and refuse new ones until `restore()`."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        # Wait for the relays to notice, so that nothing of the old connections outlives the cut.
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    def connections_heard_since(self, before: Counter[int]) -> int:
        """Connections whose client sent anything since `before` (a copy of `heard`)."""
        return sum(1 for number, chunks in self.heard.items() if chunks > before[number])

    async def __aenter__(self) -> "TcpProxy":
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.cut()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        self._writers.add(writer)
        try:
            try:
                upstream = await asyncio.open_connection(self.upstream_host, self.upstream_port)
            except OSError:
                return  # the server itself is down: the client sees its connection closed
            up_reader, up_writer = upstream
            self._writers.add(up_writer)
            try:
                await asyncio.gather(
                    self._forward(next(self._numbers), reader, up_writer, writer),
                    _pump(up_reader, writer),
                )
            finally:
                self._writers.discard(up_writer)
                up_writer.close()
        finally:
            self._writers.discard(writer)
            writer.close()
            self._relays.discard(task)

    async def _forward(
        self,
        number: int,
        client: asyncio.StreamReader,
        to_upstream: asyncio.StreamWriter,
        to_client: asyncio.StreamWriter,
    ) -> None:
        """Client to server, counted; on the trip marker, reset both sides instead."""
        marker = self.trip_on
        tail = b""  # the end of the previous chunk, so a marker split across two reads is seen
        with contextlib.suppress(OSError):
            while data := await client.read(_CHUNK):
                self.heard[number] += 1
                if marker is not None and not self.tripped and marker in tail + data:
                    self.tripped = True
                    to_upstream.transport.abort()
                    to_client.transport.abort()
                    return
                if marker is not None:
                    tail = data[-len(marker) :]
                to_upstream.write(data)
                await to_upstream.drain()
        to_upstream.close()


async def _pump(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    """Copy bytes one way until either side closes, then close the other side too."""
    with contextlib.suppress(OSError):  # a cut connection ends the pump, nothing more
        while data := await source.read(_CHUNK):
            target.write(data)
            await target.drain()
    target.close()
