"""The offline `local` model: pydantic-ai's FunctionModel backed by `local_engine`.

It goes through the same model request, output validation and resilience path as a real
provider, so the default configuration exercises the whole stack without a key or a network.
Streamed, it sends the same result word by word, `stream_delay_seconds` apart, so that the
offline default shows streaming as a real model does.
"""

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from shared.text import Operation

from app.infrastructure.ai import local_engine

LOCAL_MODEL_NAME = "local"


def user_document(messages: list[ModelMessage]) -> dict[str, Any]:
    """The JSON document of the last user message: what `ProviderRequest` sent."""
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    document: dict[str, Any] = json.loads(part.content)
                    return document
    raise ValueError("no user document in the request")


def run_operation(document: dict[str, Any]) -> BaseModel:
    text: str = document["text"]
    options: dict[str, int] = document.get("options") or {}
    match Operation(document["operation"]):
        case Operation.SUMMARIZE:
            return local_engine.summarize(text, options.get("max_sentences", 3))
        case Operation.SENTIMENT:
            return local_engine.sentiment(text)
        case Operation.KEY_POINTS:
            return local_engine.key_points(text, options.get("max_points", 5))
        case Operation.QUESTIONS:
            return local_engine.questions(text, options.get("max_questions", 3))
        case Operation.QA:
            return local_engine.answer(text, document.get("question") or "")


def _respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    result = run_operation(user_document(messages))
    return ModelResponse(
        parts=[ToolCallPart(info.output_tools[0].name, result.model_dump(mode="json"))],
        model_name=LOCAL_MODEL_NAME,
    )


def argument_chunks(arguments: dict[str, Any]) -> list[str]:
    """The JSON of `arguments` as a model streams it: cut after each word. Compact JSON, so the
    first chunk runs up to the first word of the first text; the chunks join back to the JSON."""
    return re.findall(
        r"\S*\s+|\S+$", json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    )


def tool_call_chunks(tool_name: str, arguments: dict[str, Any]) -> list[DeltaToolCalls]:
    """A call of `tool_name` with `arguments`, as a model streams it."""
    return [
        {0: DeltaToolCall(name=tool_name if index == 0 else None, json_args=chunk)}
        for index, chunk in enumerate(argument_chunks(arguments))
    ]


def local_model(stream_delay_seconds: float = 0.0) -> FunctionModel:
    async def stream(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[DeltaToolCalls]:
        result = run_operation(user_document(messages)).model_dump(mode="json")
        for index, delta in enumerate(tool_call_chunks(info.output_tools[0].name, result)):
            if index and stream_delay_seconds:
                await asyncio.sleep(stream_delay_seconds)
            yield delta

    return FunctionModel(_respond, stream_function=stream, model_name=LOCAL_MODEL_NAME)
