"""Fake AI providers at the pydantic-ai boundary: they count calls, record what reached them,
and answer, fail or hang on command. Everything of ours between the route and the model runs.

Exceptions raised here are pydantic-ai's own (ModelHTTPError, ModelAPIError...), exactly what a
real provider's SDK surfaces, so the translation into our errors is exercised too.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from app.infrastructure.ai.local_model import run_operation, tool_call_chunks, user_document
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCalls, FunctionModel


def server_error(status: int = 500, retry_after: str | None = None) -> ModelHTTPError:
    headers = {"retry-after": retry_after} if retry_after is not None else None
    return ModelHTTPError(status, "fake-model", body={"error": "boom"}, headers=headers)


class FakeProvider:
    """A model whose behaviour the test sets: `succeed()`, `fail(exc)`, `hang()`.

    Answers are the local engine's, so they are real results of the right type.
    `calls` counts requests that reached the provider; `documents` holds what they carried and
    `instructions` the instructions (system prompt) each came with.

    Streamed, the answer comes as a model streams a tool call: a JSON chunk per word,
    `chunk_interval` seconds apart. `fail(exc)` and `hang()` act before the first chunk;
    `cut_after(n)` fails after `n` chunks, `pause_after(n)` goes silent after `n` chunks until
    its consumer leaves. `abandoned` counts streams whose consumer left before their end.
    """

    def __init__(self, name: str = "fake-model") -> None:
        self.name = name
        self.calls = 0
        self.documents: list[dict[str, Any]] = []
        self.instructions: list[str | None] = []
        self._failure: BaseException | None = None
        self._hang = False
        self._output_override: dict[str, Any] | None = None
        self.hanging = asyncio.Event()  # set when a call starts to hang
        self.release = asyncio.Event()  # a hanging call returns once this is set
        self.chunk_interval = 0.0
        self.abandoned = 0
        self._cut_after: int | None = None
        self._pause_after: int | None = None
        self.model = FunctionModel(self._respond, stream_function=self._stream, model_name=name)

    def succeed(self) -> None:
        self._failure, self._hang, self._output_override = None, False, None
        self._cut_after = self._pause_after = None

    def cut_after(self, chunks: int, exc: BaseException | None = None) -> None:
        """Streams fail (with `exc`, a 500 by default) once `chunks` chunks are sent."""
        self._cut_after, self._failure = chunks, exc or server_error(500)

    def pause_after(self, chunks: int) -> None:
        """Streams go silent once `chunks` chunks are sent, until their consumer leaves."""
        self._pause_after = chunks

    def fail(self, exc: BaseException | None = None) -> None:
        self._failure = exc or server_error(500)

    def hang(self) -> None:
        self._hang = True

    def answer_with(self, output: dict[str, Any]) -> None:
        """Return this (possibly invalid) output instead of a real result."""
        self._output_override = output

    async def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls += 1
        document = user_document(messages)
        self.documents.append(document)
        self.instructions.append(info.instructions)
        if self._hang:
            self.hanging.set()
            await self.release.wait()
        if self._failure is not None:
            raise self._failure
        output = self._output_override or run_operation(document).model_dump(mode="json")
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, output)], model_name=self.name
        )

    async def _stream(
        self, messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[DeltaToolCalls]:
        self.calls += 1
        document = user_document(messages)
        self.documents.append(document)
        if self._hang:
            await self.release.wait()
        if self._failure is not None and self._cut_after is None:
            raise self._failure
        output = self._output_override or run_operation(document).model_dump(mode="json")
        try:
            for sent, chunk in enumerate(tool_call_chunks(info.output_tools[0].name, output)):
                if sent == self._cut_after:
                    assert self._failure is not None
                    raise self._failure
                if sent == self._pause_after:
                    await asyncio.Event().wait()  # only its consumer leaving ends this
                if sent and self.chunk_interval:
                    await asyncio.sleep(self.chunk_interval)
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            self.abandoned += 1
            raise


class RecordingSleep:
    """Stands in for asyncio.sleep in the retry loop: records the waits, returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
