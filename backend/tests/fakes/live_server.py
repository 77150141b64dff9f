"""Our app served by a real uvicorn on loopback, inside the test's own event loop.

httpx's ASGITransport hands a response over only once it is complete and never tells the app
that its client left; a stream needs both, so streaming tests talk to a real server over TCP.
In the test's loop, the fakes handed to the app (fakeredis, a fake model, the fake clock) are
the test's own objects, as with ASGITransport.
"""

import asyncio
import functools
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

STARTUP_SECONDS = 20.0


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The test runner keeps its own signal handlers (Ctrl-C still stops the run)."""
        yield


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """The app's base URL while uvicorn serves it (its lifespan included) on a free port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn would otherwise reconfigure the test process's logging.
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=5
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_SECONDS
    while not server.started:
        if task.done():
            await task  # a failed start raises here
            raise RuntimeError("uvicorn stopped before it started serving")
        if loop.time() > deadline:
            raise RuntimeError(f"uvicorn did not start within {STARTUP_SECONDS:g} s")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def served_client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    """A client of a served app. The URL is plain HTTP, yet httpx builds a TLS context for every
    client, reading the CA bundle (~20 ms of CPU): this one is built once."""
    return httpx.AsyncClient(base_url=url, verify=_tls_context(), **kwargs)
