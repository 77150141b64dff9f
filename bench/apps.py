"""Our app as `make bench` serves it (factories for `uvicorn --factory`); the yardstick it is
compared with is in `bench.bare`.

- `create_bench_app`: our `create_app`, with `bench.provider`'s model, which answers after
  BENCH_PROVIDER_LATENCY_MS (the local engine's results, so answers are real ones of the right
  type); `bench.bare_model` asks the same model with nothing of ours around it.
- `create_breaker_open_app`: our `create_app` with a model that always fails and a breaker that
  opens on the first failure and stays open for the run.
- `create_stream_app`: our `create_app` with a model that streams its answer a token (a word)
  every BENCH_TOKEN_INTERVAL_MS, the first one included: `provider_tokens` is that provider on
  its own, the yardstick of the time to first token through the service.

Settings come from the environment the orchestrator sets (keys, database, Redis), as in a
deployment; only what a scenario needs is overridden here.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from app.core.config import load_settings
from app.infrastructure.ai.local_model import run_operation, tool_call_chunks, user_document
from app.main import create_app
from app.resources import Externals
from fastapi import FastAPI
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCalls, FunctionModel

from bench.provider import MODEL_NAME, answering_model

# The model that always fails has a name of its own: the model is part of the cache key, and the
# two apps are served at once on one Redis, where the answering app's cached answers would
# otherwise answer the failing app's requests before its breaker is ever asked.
FAILING_MODEL_NAME = "bench-model-down"


def create_bench_app() -> FastAPI:
    return create_app(load_settings(), Externals(ai_model=answering_model()))


def create_breaker_open_app() -> FastAPI:
    async def fail(_messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        raise ModelHTTPError(500, FAILING_MODEL_NAME, body={"error": "down for the benchmark"})

    settings = load_settings(
        ai_max_attempts=1,  # one failure, no backoff: the priming request returns at once
        breaker_failure_threshold=1,
        breaker_recovery_seconds=24 * 3600,
    )
    model = FunctionModel(fail, model_name=FAILING_MODEL_NAME)
    return create_app(settings, Externals(ai_model=model))


def token_interval_seconds() -> float:
    return float(os.environ.get("BENCH_TOKEN_INTERVAL_MS", "20")) / 1000


async def provider_tokens(
    tool_name: str, document: dict[str, Any]
) -> AsyncIterator[DeltaToolCalls]:
    """The streaming provider: the local engine's answer, a word every token interval."""
    interval = token_interval_seconds()
    for chunk in tool_call_chunks(tool_name, run_operation(document).model_dump(mode="json")):
        await asyncio.sleep(interval)
        yield chunk


def create_stream_app() -> FastAPI:
    async def stream(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[DeltaToolCalls]:
        async for chunk in provider_tokens(info.output_tools[0].name, user_document(messages)):
            yield chunk

    model = FunctionModel(stream_function=stream, model_name=MODEL_NAME)
    return create_app(load_settings(), Externals(ai_model=model))
