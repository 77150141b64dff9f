"""The application's exceptions: one base, three families, a few precise leaves.

    AppError                          500 internal_error
    ├── ConfigurationError            (raised at start; never reaches a client)
    ├── ValidationError               422 validation_error
    │   ├── InvalidJsonError          400 invalid_json
    │   ├── PayloadTooLargeError      413 payload_too_large
    │   └── UnsupportedMediaTypeError 415 unsupported_media_type
    ├── NotFoundError                 404 not_found
    ├── ConflictError                 409 conflict
    ├── AuthenticationError           401 authentication_required
    ├── PermissionDeniedError         403 permission_denied
    ├── RateLimitedError              429 rate_limited        (Retry-After)
    └── InfrastructureError           503 infrastructure_error
        ├── CacheUnavailableError     503 cache_unavailable
        ├── DatabaseUnavailableError  503 database_unavailable
        ├── QueueUnavailableError     503 queue_unavailable    (Retry-After)
        ├── ProviderError             502 provider_error
        │   ├── ProviderTimeoutError  504 provider_timeout
        │   └── InvalidProviderOutputError 502 invalid_provider_output
        └── CircuitOpenError          503 circuit_open         (Retry-After)

Each class carries its HTTP status and code, so `app.api.errors` maps all of them in one place.
"""

from typing import Any


class AppError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, details: Any = None, retry_after_seconds: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.retry_after_seconds = retry_after_seconds


class ConfigurationError(AppError):
    code = "configuration_error"


class ValidationError(AppError):
    status_code = 422
    code = "validation_error"


class InvalidJsonError(ValidationError):
    """The body could not be read as JSON at all: malformed, not UTF-8, nested too deeply."""

    status_code = 400
    code = "invalid_json"


class PayloadTooLargeError(ValidationError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(ValidationError):
    status_code = 415
    code = "unsupported_media_type"


class NotFoundError(AppError):
    status_code = 404
    code = "not_found"


class ConflictError(AppError):
    status_code = 409
    code = "conflict"


class AuthenticationError(AppError):
    status_code = 401
    code = "authentication_required"


class PermissionDeniedError(AppError):
    status_code = 403
    code = "permission_denied"


class RateLimitedError(AppError):
    status_code = 429
    code = "rate_limited"


class InfrastructureError(AppError):
    status_code = 503
    code = "infrastructure_error"


class CacheUnavailableError(InfrastructureError):
    code = "cache_unavailable"


class DatabaseUnavailableError(InfrastructureError):
    code = "database_unavailable"


class QueueUnavailableError(InfrastructureError):
    code = "queue_unavailable"


class ProviderError(InfrastructureError):
    """The AI provider failed. `transient` failures (timeouts, connection errors, 429, 5xx)
    are worth retrying; the others (a rejected request, invalid output) are not."""

    status_code = 502
    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        details: Any = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message, details=details, retry_after_seconds=retry_after_seconds)
        self.transient = transient


class ProviderTimeoutError(ProviderError):
    status_code = 504
    code = "provider_timeout"


class InvalidProviderOutputError(ProviderError):
    code = "invalid_provider_output"


class CircuitOpenError(InfrastructureError):
    code = "circuit_open"
