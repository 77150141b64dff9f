"""The one place where exceptions become HTTP responses, all with the `shared.errors` body."""

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from shared.errors import ErrorDetail, ErrorResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.exceptions import (
    AppError,
    CircuitOpenError,
    InvalidJsonError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from app.core.logging import request_id_var

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    401: "authentication_required",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    retry_after_seconds: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = ErrorResponse(
        error=ErrorDetail(
            code=code,
            message=message,
            details=jsonable_encoder(details),
            request_id=request_id_var.get(),
        )
    )
    headers = dict(headers or {})
    if retry_after_seconds is not None:
        # Retry-After takes whole seconds (RFC 9110); Retry-After-Ms, as OpenAI's API sends it,
        # and the body's retry_after_ms give the precise figure.
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_seconds)))
        headers["Retry-After-Ms"] = str(max(0, round(retry_after_seconds * 1000)))
    # pydantic-core writes the JSON (what JSONResponse's json.dumps of model_dump() wrote, at
    # a third of the CPU): an error is the answer to overload (429, 503), so it is a hot path.
    return Response(
        body.model_dump_json(),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def app_error_response(exc: AppError) -> Response:
    details = exc.details
    if exc.retry_after_seconds is not None:
        details = {**(details or {}), "retry_after_ms": round(exc.retry_after_seconds * 1000)}
    return error_response(
        exc.status_code,
        exc.code,
        exc.message,
        details=details,
        retry_after_seconds=exc.retry_after_seconds,
    )


async def _app_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    # An open circuit is logged once by the breaker when it opens, not once per refused request.
    if exc.status_code >= 500 and not isinstance(exc, CircuitOpenError):
        logger.warning("%s: %s", exc.code, exc.message)
    return app_error_response(exc)


class BodyReadError(StarletteHTTPException):
    """Carries an AppError raised while FastAPI reads the request body (the size limit): FastAPI
    passes an HTTPException on from there and turns any other exception into a bare 400."""

    def __init__(self, error: AppError) -> None:
        super().__init__(error.status_code, error.message)
        self.error = error


Location = list[str | int]
_TAG_ERRORS = {"union_tag_invalid", "union_tag_not_found"}


def _path(error: Mapping[str, Any], body: Any) -> Location:
    """Where in `body`, as sent, the error is; its `loc` is relative to `body`.

    Pydantic puts the member it chose of a discriminated union in the location (`qa` in
    `qa.question`): that is a value of the body, not a key, so it goes. An error of the
    discriminator itself (a missing or unknown `operation`) is placed on its field.
    """
    loc: Sequence[str | int] = error.get("loc", ())
    path: Location = []
    node = body
    for position, part in enumerate(loc, start=1):
        is_key = isinstance(node, dict) and part in node
        is_index = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if is_key or is_index:
            node = node[part]
        elif position < len(loc) and isinstance(node, dict) and part in node.values():
            continue  # the tag of a union member
        else:
            node = None
        path.append(part)
    if error.get("type") in _TAG_ERRORS:
        path.append(str(error.get("ctx", {}).get("discriminator", "")).strip("'"))
    return path


def _field_name(loc: Location) -> str:
    """`text`, `items.1.question`; `body` for the body as a whole."""
    return ".".join(str(part) for part in loc[1:]) or str(loc[0] if loc else "request")


def invalid_request(
    errors: Iterable[Mapping[str, Any]], body: Any, at: Location | None = None
) -> ValidationError:
    """The 422 of a request that failed validation: every error at its field, in one sentence.

    Without `at`, `errors` are FastAPI's, located in the request (`body`, `query`, ...); with
    it, they are pydantic's for a part of the body validated on its own (a batch item), and
    `at` is where that part sits.
    """
    details = []
    for error in errors:
        loc = list(error.get("loc", ()))
        if at is not None:
            loc = [*at, *_path(error, body)]
        elif loc[:1] == ["body"]:
            loc = ["body", *_path({**error, "loc": loc[1:]}, body)]
        details.append({"loc": loc, "msg": error.get("msg", ""), "type": error.get("type", "")})
    summary = "; ".join(f"{_field_name(err['loc'])}: {err['msg']}" for err in details)
    return ValidationError(f"Invalid request: {summary}", details=details)


def _unreadable(reason: str) -> InvalidJsonError:
    return InvalidJsonError(
        f"The request body is not valid JSON: {reason}.", details={"reason": reason}
    )


def _why_unreadable(cause: BaseException | None) -> str | None:
    """Why json.loads refused a body, for the errors FastAPI hides behind its bare 400."""
    if isinstance(cause, UnicodeDecodeError):
        return f"it is not UTF-8 text (byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "it is nested too deeply"
    if isinstance(cause, ValueError):  # an integer longer than sys.get_int_max_str_digits()
        return str(cause).split(";")[0]
    return None


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if isinstance(exc.body, bytes):
        # FastAPI hands a route the raw bytes only when the Content-Type is not JSON.
        return app_error_response(
            UnsupportedMediaTypeError(
                "The request body must be JSON, sent with Content-Type: application/json.",
                details={"expected": "application/json"},
            )
        )
    if invalid := next((err for err in errors if err.get("type") == "json_invalid"), None):
        position = invalid["loc"][-1]
        return app_error_response(
            _unreadable(
                f"{invalid.get('ctx', {}).get('error', 'malformed')} at character {position}"
            )
        )
    return app_error_response(invalid_request(errors, exc.body))


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, BodyReadError):
        return app_error_response(exc.error)
    if exc.status_code == 400 and (reason := _why_unreadable(exc.__cause__)):
        return app_error_response(_unreadable(reason))
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _unhandled(_request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "An unexpected error occurred.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
