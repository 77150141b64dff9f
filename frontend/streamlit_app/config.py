"""Where the backend is and which keys to send, from the environment (set by `make run`)."""

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class FrontendConfig:
    backend_url: str
    api_key: str | None
    operator_key: str | None
    timeout_seconds: float


def load_config() -> FrontendConfig:
    return FrontendConfig(
        backend_url=os.environ.get("BACKEND_URL", "http://127.0.0.1:8000").rstrip("/"),
        api_key=os.environ.get("BACKEND_API_KEY") or None,
        operator_key=os.environ.get("BACKEND_OPERATOR_KEY") or None,
        timeout_seconds=float(os.environ.get("BACKEND_TIMEOUT_SECONDS", "30")),
    )
