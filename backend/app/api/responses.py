"""OpenAPI `responses=` fragments, so every documented status carries the shared error body."""

from typing import Any

from shared.errors import ErrorResponse


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


AUTH_ERRORS = errors(401, 403)
BODY_ERRORS = errors(400, 413, 415, 422)
PROVIDER_ERRORS = errors(502, 503, 504)
