"""The frontend's only way to the backend: HTTP with timeouts, parsed into the shared contracts.

Every failure becomes an `ApiError` whose `user_message` a page can show as it is: no page ever
needs to look at a status code or show a stack trace. Requests are built with the contracts'
`model_construct`, which skips validation on purpose: the backend validates once, and its 422
message is what the person sees.
"""

import functools
import re
import ssl
from collections.abc import Generator
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from httpx_sse import EventSource, SSEError
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from shared.accounts import AccountInfo, RegisterRequest, RegisterResponse, RotateResponse
from shared.errors import ErrorResponse
from shared.health import LivenessResponse, ReadinessResponse
from shared.jobs import (
    JOB_TYPE_BY_OPERATION,
    JobAccepted,
    JobInfo,
    JobItemInput,
    JobItemResult,
    JobList,
)
from shared.operator import BreakersResponse, CacheStats
from shared.text import (
    OPTIONS_TYPE_BY_OPERATION,
    REQUEST_TYPE_BY_OPERATION,
    BaseTextRequest,
    BatchResponse,
    HistoryPage,
    Operation,
    StreamDelta,
    StreamDone,
    StreamMeta,
    TextProcessResponse,
)

from streamlit_app.config import FrontendConfig

Model = TypeVar("Model", bound=BaseModel)
StreamEvent = StreamMeta | StreamDelta | StreamDone
_STREAM_EVENTS: dict[str, type[StreamEvent]] = {
    "meta": StreamMeta,
    "delta": StreamDelta,
    "done": StreamDone,
}


class ApiError(Exception):
    def __init__(
        self,
        user_message: str,
        *,
        status: int | None = None,
        code: str = "",
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.status = status
        self.code = code
        self.retry_after_seconds = retry_after_seconds


def _when_to_retry(seconds: float | None, fallback: str) -> str:
    return f"Try again in {seconds:.0f} s." if seconds is not None else fallback


def _backend_message(response: httpx.Response) -> tuple[str, str]:
    """The error body's sentence and code, without the prefixes meant for API clients."""
    try:
        error = ErrorResponse.model_validate(response.json()).error
        message, code = error.message, error.code
    except (ValueError, PydanticValidationError):
        message, code = response.text[:200] or response.reason_phrase, ""
    message = re.sub(r"^Invalid request: (body: )?", "", message).replace("Value error, ", "")
    return (message if message.endswith((".", "!", "?")) else f"{message}."), code


def _explain(response: httpx.Response) -> ApiError:
    message, code = _backend_message(response)
    retry_after = response.headers.get("Retry-After", "")
    seconds = float(retry_after) if retry_after.isdigit() else None
    status = response.status_code
    if status == 401:
        text = (
            f"The backend did not accept the API key: {message} Check BACKEND_API_KEY, "
            "or register on the Account page."
        )
    elif status == 403:
        text = f"This needs an operator key (BACKEND_OPERATOR_KEY): {message}"
    elif status == 409:
        text = message  # the backend's sentence already says what clashed
    elif status in (413, 422):
        text = f"The request was not valid: {message}"
    elif status == 429:
        text = f"Too many requests: {message} {_when_to_retry(seconds, 'Try again in a minute.')}"
    elif code == "circuit_open":
        # The breaker's own message names internals; what matters here is when to come back.
        text = "The AI service is paused after repeated failures. " + _when_to_retry(
            seconds, "Try again shortly."
        )
    elif status == 503:
        retry = _when_to_retry(seconds, "Try again shortly.")
        text = f"The service is unavailable: {message} {retry}"
    elif status in (502, 504):
        text = f"The AI provider failed: {message} Try again in a moment."
    else:
        text = f"The backend answered {status}: {message}"
    return ApiError(text, status=status, code=code, retry_after_seconds=seconds)


def _stream_error(data: str) -> ApiError:
    """An `error` event: the stream began, and then the provider (or, rarely, the database)
    failed before the answer was complete."""
    try:
        error = ErrorResponse.model_validate_json(data).error
    except PydanticValidationError:
        return ApiError("The answer stopped: the backend sent an error it did not explain.")
    cause = "The AI provider failed" if "provider" in error.code else "The answer stopped"
    return ApiError(f"{cause}: {error.message} Try again in a moment.", code=error.code)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS settings, built once: a page opens a client on every run, and each
    new context reads the whole CA bundle again (about 20 ms of CPU)."""
    return httpx.create_ssl_context()


class ApiClient:
    def __init__(self, config: FrontendConfig) -> None:
        self.config = config
        self._http = httpx.Client(
            base_url=config.backend_url, timeout=config.timeout_seconds, verify=_tls_context()
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _unreachable(self, error: httpx.TransportError) -> ApiError:
        if isinstance(error, httpx.TimeoutException):
            return ApiError(
                f"The backend at {self.config.backend_url} did not answer in time. "
                "Try again in a moment."
            )
        return ApiError(
            f"The backend at {self.config.backend_url} is not reachable. Is it running? "
            "(`make run` starts it.)"
        )

    def _not_understood(self) -> ApiError:
        return ApiError(
            f"The backend at {self.config.backend_url} answered something this page does "
            "not understand: are the frontend and the backend the same version?"
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        answer_statuses: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """`answer_statuses`: error statuses whose body is an answer, not an error."""
        headers = {**(headers or {}), **({"X-API-Key": key} if key else {})}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as error:
            raise self._unreachable(error) from None
        if response.is_error and response.status_code not in answer_statuses:
            raise _explain(response)
        return response

    def _request(self, method: str, path: str, model: type[Model], **kwargs: Any) -> Model:
        """`_send`, its body parsed as `model`."""
        response = self._send(method, path, **kwargs)
        try:
            return model.model_validate(response.json())
        except (ValueError, PydanticValidationError):
            raise self._not_understood() from None

    # --- public API, with the caller's key ------------------------------------------------------

    def liveness(self) -> LivenessResponse:
        return self._request("GET", "/healthz", LivenessResponse)

    def readiness(self) -> ReadinessResponse:
        """The backend's own verdict, with no key; 503 (not ready) carries the same body."""
        return self._request("GET", "/readyz", ReadinessResponse, answer_statuses=(503,))

    def process(
        self,
        operation: Operation,
        text: str,
        *,
        options: dict[str, int] | None = None,
        question: str | None = None,
        skip_cache: bool = False,
    ) -> TextProcessResponse:
        body = _process_body(operation, text, options or {}, question)
        return self._request(
            "POST",
            "/v1/text/process",
            TextProcessResponse,
            key=self.config.api_key,
            headers={"Cache-Control": "no-cache"} if skip_cache else None,
            json=body.model_dump(mode="json", exclude_none=True),
        )

    def stream(
        self,
        operation: Operation,
        text: str,
        *,
        options: dict[str, int] | None = None,
        question: str | None = None,
        skip_cache: bool = False,
    ) -> Generator[StreamEvent, None, None]:
        """The answer's events as they arrive: `StreamMeta`, `StreamDelta`s, `StreamDone`.

        A refused request, and an `error` event after the stream began, raise ApiError. Leaving
        the loop early closes the connection, which stops the backend's provider call.
        """
        body = _process_body(operation, text, options or {}, question)
        # Not httpx-sse's connect_sse: it sets Cache-Control itself, over our no-cache.
        headers = {"Accept": "text/event-stream"}
        if self.config.api_key:
            headers["X-API-Key"] = self.config.api_key
        if skip_cache:
            headers["Cache-Control"] = "no-cache"
        try:
            with self._http.stream(
                "POST",
                "/v1/text/stream",
                headers=headers,
                json=body.model_dump(mode="json", exclude_none=True),
            ) as response:
                if response.is_error:
                    response.read()
                    raise _explain(response)
                for event in EventSource(response).iter_sse():
                    if event.event == "error":
                        raise _stream_error(event.data)
                    if (kind := _STREAM_EVENTS.get(event.event)) is not None:  # others: newer
                        yield kind.model_validate_json(event.data)
        except httpx.TransportError as error:
            raise self._unreachable(error) from None
        except (SSEError, PydanticValidationError):
            raise self._not_understood() from None

    def batch(
        self,
        operation: Operation,
        texts: list[str],
        *,
        options: dict[str, int] | None = None,
        question: str | None = None,
    ) -> BatchResponse:
        items = [_process_body(operation, text, options or {}, question) for text in texts]
        return self._request(
            "POST",
            "/v1/text/batch",
            BatchResponse,
            key=self.config.api_key,
            json={"items": [item.model_dump(mode="json", exclude_none=True) for item in items]},
        )

    def submit_job(
        self,
        operation: Operation,
        items: list[tuple[str | None, str]],
        *,
        question: str | None = None,
    ) -> JobAccepted:
        """A job of `(id, text)` items, each with the operation's default options."""
        body = JOB_TYPE_BY_OPERATION[operation].model_construct(
            operation=operation,
            options=OPTIONS_TYPE_BY_OPERATION[operation].model_construct(),
            question=question,
            items=[JobItemInput.model_construct(id=ref, text=text) for ref, text in items],
        )
        return self._request(
            "POST",
            "/v1/jobs",
            JobAccepted,
            key=self.config.api_key,
            json=body.model_dump(mode="json", exclude_none=True),
        )

    def job(self, job_id: str) -> JobInfo:
        return self._request(
            "GET", f"/v1/jobs/{quote(job_id, safe='')}", JobInfo, key=self.config.api_key
        )

    def jobs(self, *, page_size: int = 10) -> JobList:
        return self._request(
            "GET", "/v1/jobs", JobList, key=self.config.api_key, params={"page_size": page_size}
        )

    def cancel_job(self, job_id: str) -> JobInfo:
        return self._request(
            "DELETE", f"/v1/jobs/{quote(job_id, safe='')}", JobInfo, key=self.config.api_key
        )

    def job_results(self, job_id: str) -> list[JobItemResult]:
        """Every item's result in item order, in one NDJSON download."""
        response = self._send(
            "GET",
            f"/v1/jobs/{quote(job_id, safe='')}/results",
            key=self.config.api_key,
            params={"format": "ndjson"},
        )
        try:
            return [
                JobItemResult.model_validate_json(line) for line in response.iter_lines() if line
            ]
        except PydanticValidationError:
            raise self._not_understood() from None

    def history(self, *, page: int = 1, page_size: int = 100) -> HistoryPage:
        return self._request(
            "GET",
            "/v1/history",
            HistoryPage,
            key=self.config.api_key,
            params={"page": page, "page_size": page_size},
        )

    def register(self, email: str, display_name: str) -> RegisterResponse:
        body = RegisterRequest.model_construct(email=email, display_name=display_name)
        return self._request(
            "POST", "/v1/auth/register", RegisterResponse, json=body.model_dump(mode="json")
        )

    def me(self) -> AccountInfo:
        return self._request("GET", "/v1/auth/me", AccountInfo, key=self.config.api_key)

    def rotate_key(self) -> RotateResponse:
        return self._request(
            "POST", "/v1/auth/keys/rotate", RotateResponse, key=self.config.api_key
        )

    # --- operator API, with the operator key ----------------------------------------------------

    def _operator_key(self) -> str:
        if not self.config.operator_key:
            raise ApiError("Set BACKEND_OPERATOR_KEY to see the circuit breakers and the cache.")
        return self.config.operator_key

    def breakers(self) -> BreakersResponse:
        return self._request(
            "GET", "/internal/resilience/breakers", BreakersResponse, key=self._operator_key()
        )

    def cache_stats(self) -> CacheStats:
        return self._request("GET", "/internal/cache/stats", CacheStats, key=self._operator_key())


def _process_body(
    operation: Operation, text: str, options: dict[str, int], question: str | None
) -> BaseTextRequest:
    chosen: dict[str, Any] = dict(options)
    return REQUEST_TYPE_BY_OPERATION[operation].model_construct(
        operation=operation,
        text=text,
        options=OPTIONS_TYPE_BY_OPERATION[operation].model_construct(**chosen),
        question=question,
    )
