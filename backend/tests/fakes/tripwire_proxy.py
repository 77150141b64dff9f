"""A loopback TCP proxy that breaks one connection at an exact point of its conversation.

Given a marker (say `b"INSERT INTO api_keys"`), it relays bytes both ways until a client sends
the marker; those bytes never reach the server, and both sides of that connection are reset, as
when the network or the database process dies between two statements of a transaction. The
server rolls back what the connection had not committed. It trips once: connections before and
after, and the other connections, are relayed untouched.
"""

import asyncio
import contextlib
from types import TracebackType

_CHUNK = 64 * 1024


class TripwireProxy:
    def __init__(self, upstream_host: str, upstream_port: int, marker: bytes) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.marker = marker
        self.port = 0  # chosen by the OS on entry
        self.tripped = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> "TripwireProxy":
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in self._writers:
            writer.transport.abort()
        # The relays end on their own once their sockets are gone; nothing outlives the block.
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _relay(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        self._writers.add(to_client)
        try:
            try:
                upstream, to_upstream = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError:
                return  # the server itself is down: the client sees its connection closed
            self._writers.add(to_upstream)
            try:
                await asyncio.gather(
                    self._watch(client, to_upstream, to_client), _pump(upstream, to_client)
                )
            finally:
                self._writers.discard(to_upstream)
                to_upstream.close()
        finally:
            self._writers.discard(to_client)
            to_client.close()
            self._relays.discard(task)

    async def _watch(
        self,
        client: asyncio.StreamReader,
        to_upstream: asyncio.StreamWriter,
        to_client: asyncio.StreamWriter,
    ) -> None:
        """Client to server, until the marker: then reset both sides instead of forwarding."""
        tail = b""  # the end of the previous chunk, so a marker split across two reads is seen
        with contextlib.suppress(OSError):
            while data := await client.read(_CHUNK):
                if not self.tripped and self.marker in tail + data:
                    self.tripped = True
                    to_upstream.transport.abort()
                    to_client.transport.abort()
                    return
                tail = data[-len(self.marker) :]
                to_upstream.write(data)
                await to_upstream.drain()
        to_upstream.close()


async def _pump(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    """Server to client, until either side closes."""
    with contextlib.suppress(OSError):
        while data := await source.read(_CHUNK):
            target.write(data)
            await target.drain()
    target.close()
