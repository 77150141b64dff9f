"""Our app as `make bench` serves it (factories for `uvicorn --factory`); the yardstick it is
compared with is in `bench.bare`.

- `create_bench_app`: our `create_app`, with a model that answers after
  BENCH_PROVIDER_LATENCY_MS (the local engine's results, so answers are real ones of the right
  type).
- `create_breaker_open_app`: our `create_app` with a model that always fails and a breaker that
  opens on the first failure and stays open for the run.

Settings come from the environment the orchestrator sets (keys, database, Redis), as in a
deployment; only what a scenario needs is overridden here.
"""

import asyncio
import os

from app.core.config import load_settings
from app.infrastructure.ai.local_model import run_operation, user_document
from app.main import create_app
from app.resources import Externals
from fastapi import FastAPI
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

MODEL_NAME = "bench-model"


def create_bench_app() -> FastAPI:
    latency_seconds = float(os.environ.get("BENCH_PROVIDER_LATENCY_MS", "50")) / 1000

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(latency_seconds)
        result = run_operation(user_document(messages))
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, result.model_dump(mode="json"))],
            model_name=MODEL_NAME,
        )

    model = FunctionModel(respond, model_name=MODEL_NAME)
    return create_app(load_settings(), Externals(ai_model=model))


def create_breaker_open_app() -> FastAPI:
    async def fail(_messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        raise ModelHTTPError(500, MODEL_NAME, body={"error": "down for the benchmark"})

    settings = load_settings(
        ai_max_attempts=1,  # one failure, no backoff: the priming request returns at once
        breaker_failure_threshold=1,
        breaker_recovery_seconds=24 * 3600,
    )
    return create_app(settings, Externals(ai_model=FunctionModel(fail, model_name=MODEL_NAME)))
