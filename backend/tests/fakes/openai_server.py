"""An OpenAI-compatible chat-completions server on loopback, for tests that cross a real HTTP
boundary: the app's own OpenAI client, its HTTP stack and pydantic-ai's error mapping all run.

It answers POST /v1/chat/completions with a call of the request's first tool (pydantic-ai's
output tool), carrying the local engine's result for the user message's JSON document, and
reporting PROMPT_TOKENS and COMPLETION_TOKENS as its usage; GET /v1/models lists one model, or
answers 401 when `require_key()` names a key the request does not carry. The test switches its
behaviour (`answer()`, `fail()`, `rate_limit()`) and reads `requests`, the number of completions
requests that reached it, and `model_listings`. Nothing listens beyond 127.0.0.1.
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.infrastructure.ai.local_model import run_operation

COMPLETIONS_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
PROMPT_TOKENS = 42
COMPLETION_TOKENS = 17


class OpenAICompatibleServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._model_listings = 0
        self._required_key: str | None = None
        self._status = HTTPStatus.OK
        self._headers: dict[str, str] = {}
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
    def model_listings(self) -> int:
        with self._lock:
            return self._model_listings

    def require_key(self, key: str) -> None:
        """Refuse a model listing (401) that does not carry this key, as a real provider does."""
        with self._lock:
            self._required_key = key

    def answer(self) -> None:
        """Answer every request with a valid tool call (the default)."""
        self._set(HTTPStatus.OK, {})

    def fail(self, status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR) -> None:
        """Answer every request with this error status."""
        self._set(status, {})

    def rate_limit(self, retry_after_seconds: int) -> None:
        """Answer every request with 429 and a Retry-After header, as a throttling provider does."""
        self._set(HTTPStatus.TOO_MANY_REQUESTS, {"Retry-After": str(retry_after_seconds)})

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    def _set(self, status: HTTPStatus, headers: dict[str, str]) -> None:
        with self._lock:
            self._status, self._headers = status, headers

    def _take_request(self) -> tuple[HTTPStatus, dict[str, str]]:
        with self._lock:
            self._requests += 1
            return self._status, dict(self._headers)

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
            status, headers = server._take_request()
            if status is HTTPStatus.OK:
                self._send(status, _completion(request))
            else:
                self._send(status, _error("server_error", status.phrase), headers)

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


def _completion(request: dict[str, Any]) -> dict[str, Any]:
    user_messages = [m for m in request["messages"] if m["role"] == "user"]
    document = json.loads(user_messages[-1]["content"])
    result = run_operation(document).model_dump(mode="json")
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
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        },
    }


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "code": code}}
