"""The one place where exceptions become HTTP responses, all with the `shared.errors` body."""

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from shared.errors import ErrorDetail, ErrorResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.exceptions import AppError, CircuitOpenError
from app.core.logging import request_id_var

logger = logging.getLogger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    retry_after_seconds: float | None = None,
) -> JSONResponse:
    body = ErrorResponse(
        error=ErrorDetail(
            code=code,
            message=message,
            details=jsonable_encoder(details),
            request_id=request_id_var.get(),
        )
    )
    headers = {}
    if retry_after_seconds is not None:
        # Retry-After takes whole seconds (RFC 9110); Retry-After-Ms, as OpenAI's API sends it,
        # and the body's retry_after_ms give the precise figure.
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_seconds)))
        headers["Retry-After-Ms"] = str(max(0, round(retry_after_seconds * 1000)))
    return JSONResponse(body.model_dump(), status_code=status_code, headers=headers)


def app_error_response(exc: AppError) -> JSONResponse:
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


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    # An open circuit is logged once by the breaker when it opens, not once per refused request.
    if exc.status_code >= 500 and not isinstance(exc, CircuitOpenError):
        logger.warning("%s: %s", exc.code, exc.message)
    return app_error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    if any(err["type"] == "json_invalid" for err in errors):
        return error_response(400, "invalid_json", "The request body is not valid JSON.")
    summary = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'][1:]) or 'body'}: {err['msg']}" for err in errors
    )
    return error_response(422, "validation_error", f"Invalid request: {summary}", details=errors)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _unhandled(_request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "An unexpected error occurred.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
