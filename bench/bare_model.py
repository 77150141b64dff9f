"""The yardstick of a cache miss: FastAPI and one pydantic-ai model request, nothing of ours.

`POST /bare/process` takes the body `/v1/text/process` takes, asks `bench.provider`'s model once
with pydantic-ai's `direct.model_request` and our provider's output tool (the request our
provider makes), validates the tool call into the operation's result type and answers a
`TextProcessResponse`. No authentication, rate limit, cache, breaker, retries, history row or
middleware of ours: its CPU per request is what the framework, pydantic-ai and the benchmark's
provider cost on this machine, the part of a miss's CPU that no change of ours can remove.

`GET /bare` answers the start-up probe.
"""

import json
import time

from app.infrastructure.ai.provider import output_tool_parameters
from fastapi import FastAPI
from pydantic_ai.direct import model_request
from pydantic_ai.messages import ModelRequest, UserPromptPart
from shared.text import RESULT_TYPE_BY_OPERATION, TextProcessRequest, TextProcessResponse

from bench.provider import MODEL_NAME, answering_model


def create_bare_model_app() -> FastAPI:
    model = answering_model()
    app = FastAPI()

    @app.get("/bare")  # its start-up is probed here, as the bare app's is
    async def answer() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bare/process")
    async def process(body: TextProcessRequest) -> TextProcessResponse:
        started = time.perf_counter()
        document: dict[str, object] = {
            "operation": body.operation.value,
            "options": {},
            "question": None,
            "text": body.text,
        }
        prompt = UserPromptPart(json.dumps(document, ensure_ascii=False))
        response = await model_request(
            model,
            [ModelRequest([prompt])],
            model_request_parameters=output_tool_parameters(body.operation),
        )
        call = response.tool_calls[0]
        result_type = RESULT_TYPE_BY_OPERATION[body.operation]
        result = (
            result_type.model_validate_json(call.args)
            if isinstance(call.args, str)
            else result_type.model_validate(call.args or {})
        )
        return TextProcessResponse(
            operation=body.operation,
            result=result,
            model=MODEL_NAME,
            cached=False,
            processing_time_ms=(time.perf_counter() - started) * 1000,
        )

    return app
