"""The one error body every non-2xx response of the API carries."""

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable error code, e.g. `validation_error`.")
    message: str = Field(description="What went wrong, in a sentence a person can act on.")
    details: Any = Field(default=None, description="Structured context, e.g. the invalid fields.")
    request_id: str | None = Field(default=None, description="Echo of the X-Request-ID header.")


class ErrorResponse(BaseModel):
    error: ErrorDetail
