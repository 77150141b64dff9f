"""The frontend's only way to the backend: HTTP with timeouts, parsed into the shared contracts.

Every failure becomes an `ApiError` whose `user_message` a page can show as it is: no page ever
needs to look at a status code or show a stack trace.
"""

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from shared.errors import ErrorResponse
from shared.health import LivenessResponse, ReadinessResponse

from streamlit_app.config import FrontendConfig

Model = TypeVar("Model", bound=BaseModel)


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


def _explain(response: httpx.Response) -> ApiError:
    try:
        error = ErrorResponse.model_validate(response.json()).error
        message, code = error.message, error.code
    except (ValueError, PydanticValidationError):
        message, code = response.text[:200] or response.reason_phrase, ""
    retry_after = response.headers.get("Retry-After")
    seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
    status = response.status_code
    if status == 401:
        text = f"The backend did not accept the API key: {message}"
    elif status == 403:
        text = f"This needs an operator key: {message}"
    elif status == 422:
        text = f"The request was not valid: {message}"
    elif status in (429, 503) and seconds is not None:
        text = f"{message} Try again in {seconds:.0f} s."
    else:
        text = f"The backend answered {status}: {message}"
    return ApiError(text, status=status, code=code, retry_after_seconds=seconds)


class ApiClient:
    def __init__(self, config: FrontendConfig, transport: httpx.BaseTransport | None = None):
        self.config = config
        self._http = httpx.Client(
            base_url=config.backend_url, timeout=config.timeout_seconds, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def _request(
        self, method: str, path: str, model: type[Model], *, key: str | None = None, **kwargs: Any
    ) -> Model:
        headers = {"X-API-Key": key} if key else {}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(
                f"The backend at {self.config.backend_url} did not answer in time."
            ) from None
        except httpx.TransportError:
            raise ApiError(
                f"The backend at {self.config.backend_url} is not reachable. Is it running?"
            ) from None
        if response.is_error:
            raise _explain(response)
        return model.model_validate(response.json())

    def liveness(self) -> LivenessResponse:
        return self._request("GET", "/v1/health", LivenessResponse)

    def readiness(self) -> ReadinessResponse:
        if not self.config.operator_key:
            raise ApiError("Set BACKEND_OPERATOR_KEY to see the backend's dependencies.")
        return self._request(
            "GET", "/internal/health", ReadinessResponse, key=self.config.operator_key
        )
