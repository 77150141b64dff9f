"""An OpenAI-compatible chat-completions server on loopback, for tests that cross a real HTTP
boundary: the app's own OpenAI client, its HTTP stack and pydantic-ai's error mapping all run.

It answers POST /v1/chat/completions with a call of the request's first tool (pydantic-ai's
output tool), carrying the local engine's result for the user message's JSON document, and
reporting PROMPT_TOKENS and COMPLETION_TOKENS as its usage; GET /v1/models lists one model, or
answers 401 when `require_key()` names a key the request does not carry. The test switches its
behaviour (`answer()`, `fail()`, `rate_limit()`, `take(seconds)` to answer that much later, as a
real model takes its time) and reads `requests`, the number of completions requests that reached
it, and `model_listings`. Nothing listens beyond 127.0.0.1.

A request with `"stream": true` is answered as the Chat Completions API streams: `data:` lines
of `chat.completion.chunk`s, the tool call's arguments a word per chunk (`chunk_interval`
seconds apart), a last chunk with the usage when `stream_options.include_usage` asks for it (as
pydantic-ai does), then `data: [DONE]`. `cut_after(n)` drops the connection after `n` chunks, in
the middle of the chunked body; `pause_after(n)` goes silent after `n` chunks until the client
leaves. `abandoned` counts streams whose client closed the connection before their end: the server
watches its socket while it waits, so it notices at once, as a provider that stops generating
(and billing) does.
"""

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.infrastructure.ai.local_model import argument_chunks, run_operation

COMPLETIONS_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
PROMPT_TOKENS = 42
COMPLETION_TOKENS = 17
# How long a paused stream waits for its client to leave before giving up on it.
PAUSE_LIMIT_SECONDS = 30.0
# How long a held request waits for `release()` or its client to leave: longer than any test.
HOLD_LIMIT_SECONDS = 600.0


@dataclass(frozen=True)
class StreamPlan:
    chunk_interval: float = 0.0
    cut_after: int | None = None
    pause_after: int | None = None


class OpenAICompatibleServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._model_listings = 0
        self._required_key: str | None = None
        self._status = HTTPStatus.OK
        self._headers: dict[str, str] = {}
        self._plan = StreamPlan()
        self._latency = 0.0
        self._abandoned = 0
        self._hold_after: int | None = None
        self._holding = 0
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._http.daemon_threads = True
        # A short poll interval: stop() waits for the serving loop to notice, up to one interval.
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """What AI_BASE_URL takes: the OpenAI client appends /chat/completions."""
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def abandoned(self) -> int:
        with self._lock:
            return self._abandoned

    @property
    def holding(self) -> int:
        """Requests held now (see `hold_after`)."""
        with self._lock:
            return self._holding

    @property
    def model_listings(self) -> int:
        with self._lock:
            return self._model_listings

    def require_key(self, key: str) -> None:
        """Refuse a model listing (401) that does not carry this key, as a real provider does."""
        with self._lock:
            self._required_key = key

    def answer(self) -> None:
        """Answer every request with a valid tool call (the default), streams in full."""
        self._set(HTTPStatus.OK, {})
        self.stream_with(StreamPlan())

    def stream_with(self, plan: StreamPlan) -> None:
        with self._lock:
            self._plan = plan

    def cut_after(self, chunks: int) -> None:
        self.stream_with(StreamPlan(cut_after=chunks))

    def pause_after(self, chunks: int) -> None:
        self.stream_with(StreamPlan(pause_after=chunks))

    def take(self, seconds: float) -> None:
        """Answer each completions request `seconds` after it arrived (each on its own thread)."""
        with self._lock:
            self._latency = seconds

    def hold_after(self, requests: int) -> None:
        """Answer the next `requests` completions requests; hold every later one, unanswered,
        until its client leaves (counted as abandoned) or `release()`, then answer it as the
        server answers at that moment (`fail()` before `release()`: an error). Counted from
        this call: a server shared by several tests holds what each test asks."""
        with self._lock:
            self._hold_after = self._requests + requests

    def release(self) -> None:
        """Answer held requests, and every request from now on."""
        with self._lock:
            self._hold_after = None

    def fail(self, status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR) -> None:
        """Answer every request with this error status."""
        self._set(status, {})

    def rate_limit(self, retry_after_seconds: int) -> None:
        """Answer every request with 429 and a Retry-After header, as a throttling provider does."""
        self._set(HTTPStatus.TOO_MANY_REQUESTS, {"Retry-After": str(retry_after_seconds)})

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    def _set(self, status: HTTPStatus, headers: dict[str, str]) -> None:
        with self._lock:
            self._status, self._headers = status, headers

    def _take_request(self) -> tuple[HTTPStatus, dict[str, str], StreamPlan, float]:
        with self._lock:
            self._requests += 1
            return self._status, dict(self._headers), self._plan, self._latency

    def _held(self) -> bool:
        """Whether the request just taken is to be held (see `hold_after`)."""
        with self._lock:
            held = self._hold_after is not None and self._requests > self._hold_after
            self._holding += held
            return held

    def _reply(self) -> tuple[HTTPStatus, dict[str, str]]:
        with self._lock:
            return self._status, dict(self._headers)

    def _still_held(self) -> bool:
        with self._lock:
            return self._hold_after is not None

    def _let_go(self, *, client_left: bool) -> None:
        with self._lock:
            self._holding -= 1
            self._abandoned += client_left

    def _client_left(self) -> None:
        with self._lock:
            self._abandoned += 1

    def _take_listing(self, authorization: str | None) -> bool:
        """Whether a model listing with this Authorization header is accepted."""
        with self._lock:
            self._model_listings += 1
            return self._required_key is None or authorization == f"Bearer {self._required_key}"


@contextmanager
def openai_compatible_server() -> Iterator[OpenAICompatibleServer]:
    server = OpenAICompatibleServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _handler_for(server: OpenAICompatibleServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != MODELS_PATH:
                self._send(HTTPStatus.NOT_FOUND, _error("not_found", f"no route {self.path}"))
            elif server._take_listing(self.headers.get("Authorization")):
                model = {"id": "fake-llm", "object": "model", "created": 0, "owned_by": "test"}
                self._send(HTTPStatus.OK, {"object": "list", "data": [model]})
            else:
                self._send(HTTPStatus.UNAUTHORIZED, _error("invalid_api_key", "Incorrect key"))

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if self.path != COMPLETIONS_PATH:
                self._send(HTTPStatus.NOT_FOUND, _error("not_found", f"no route {self.path}"))
                return
            status, headers, plan, latency = server._take_request()
            if server._held():
                deadline = time.monotonic() + HOLD_LIMIT_SECONDS
                left = False
                while server._still_held() and time.monotonic() < deadline and not left:
                    left = self._client_leaves_within(0.02)
                server._let_go(client_left=left)
                if left:
                    return
                status, headers = server._reply()  # what the server answers now
            if latency:
                time.sleep(latency)
            if status is not HTTPStatus.OK:
                self._send(status, _error("server_error", status.phrase), headers)
            elif request.get("stream"):
                try:
                    finished = self._stream(request, plan)
                except (BrokenPipeError, ConnectionResetError):
                    finished = False
                if not finished and plan.cut_after is None:
                    server._client_left()
            else:
                self._send(status, _completion(request))

        def _stream(self, request: dict[str, Any], plan: StreamPlan) -> bool:
            """Whether the stream was sent to its end. Chunked, as real providers send it, so a
            stream cut short is a broken response for the client, not a short one."""
            self.protocol_version = "HTTP/1.1"
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            name = request["tools"][0]["function"]["name"]
            opening = {"role": "assistant", "tool_calls": [_tool_delta(name=name, arguments="")]}
            self._event(_chunk(request, opening))
            for sent, piece in enumerate(argument_chunks(_result(request))):
                if sent == plan.cut_after:
                    return False
                if sent == plan.pause_after:
                    self._client_leaves_within(PAUSE_LIMIT_SECONDS)
                    return False
                if sent and plan.chunk_interval and self._client_leaves_within(plan.chunk_interval):
                    return False
                self._event(_chunk(request, {"tool_calls": [_tool_delta(arguments=piece)]}))
            self._event(_chunk(request, {}, finish_reason="tool_calls"))
            if request.get("stream_options", {}).get("include_usage"):
                self._event(_chunk(request, None) | {"usage": _USAGE})
            self._write(b"data: [DONE]\n\n")
            self._write(b"")  # the last chunk of the body
            return True

        def _event(self, chunk: dict[str, Any]) -> None:
            self._write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        def _write(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        def _client_leaves_within(self, seconds: float) -> bool:
            """Wait up to `seconds`; True as soon as the client closes its end. The request was
            read whole, so the socket turning readable means end of file."""
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                readable, _, _ = select.select([self.connection], [], [], left)
                if readable:
                    peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
                    return peeked == b""
            return False

        def _send(
            self, status: HTTPStatus, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: pytest shows the test's own output, not an access log per request."""

    return Handler


def _result(request: dict[str, Any]) -> dict[str, Any]:
    user_messages = [m for m in request["messages"] if m["role"] == "user"]
    document = json.loads(user_messages[-1]["content"])
    return run_operation(document).model_dump(mode="json")


def _tool_delta(*, arguments: str, name: str | None = None) -> dict[str, Any]:
    function = {"arguments": arguments} if name is None else {"name": name, "arguments": arguments}
    delta: dict[str, Any] = {"index": 0, "function": function}
    if name is not None:
        delta |= {"id": "call_fake", "type": "function"}
    return delta


def _chunk(
    request: dict[str, Any], delta: dict[str, Any] | None, finish_reason: str | None = None
) -> dict[str, Any]:
    """A chunk carrying `delta`; with None, a chunk with no choices (the usage chunk's shape)."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    choices = [] if delta is None else [choice]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": request["model"],
        "choices": choices,
    }


def _completion(request: dict[str, Any]) -> dict[str, Any]:
    result = _result(request)
    tool_name = request["tools"][0]["function"]["name"]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": request["model"],
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_fake",
                            "type": "function",
                            "function": {"name": tool_name, "arguments": json.dumps(result)},
                        }
                    ],
                },
            }
        ],
        "usage": _USAGE,
    }


_USAGE = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "code": code}}
