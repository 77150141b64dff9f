"""The provider every miss of `make bench` asks, ours and the yardstick's alike: a pydantic-ai
`FunctionModel` that answers after BENCH_PROVIDER_LATENCY_MS with the local engine's result for
the document it was sent, as a call of the output tool it was offered."""

import asyncio
import os

from app.infrastructure.ai.local_model import run_operation, user_document
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

MODEL_NAME = "bench-model"


def answering_model() -> FunctionModel:
    latency_seconds = float(os.environ.get("BENCH_PROVIDER_LATENCY_MS", "50")) / 1000

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(latency_seconds)
        result = run_operation(user_document(messages))
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, result.model_dump(mode="json"))],
            model_name=MODEL_NAME,
        )

    return FunctionModel(respond, model_name=MODEL_NAME)
