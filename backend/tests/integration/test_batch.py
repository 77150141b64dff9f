"""API → batch route → text service per item, with a provider that fails and delays on cue."""

import asyncio
import json
from typing import Any

import pytest
from app.infrastructure.ai.local_model import run_operation
from conftest import ClientFactory
from fakes.providers import FakeProvider, server_error
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from shared.text import BatchResponse

SLOW = "The slow river wound through the valley. Its banks were lined with willows."
FAILING = "The provider will refuse this text. Nothing about it is wrong."
QUICK = "The quick train left on time. Passengers praised the new carriages."


class CuedProvider:
    """Answers like the local model, but refuses FAILING (HTTP 400, so no retry) and holds
    SLOW until FAILING has been refused: the items of a batch then finish out of order."""

    def __init__(self) -> None:
        self.failing_seen = asyncio.Event()
        self.model = FunctionModel(self._respond, model_name="cued")

    async def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        request = messages[-1]
        assert isinstance(request, ModelRequest)
        prompt = next(part for part in request.parts if isinstance(part, UserPromptPart))
        document: dict[str, Any] = json.loads(str(prompt.content))
        if document["text"] == FAILING:
            self.failing_seen.set()
            raise server_error(400)
        if document["text"] == SLOW:
            # Bounded, so a batch that runs items one by one fails here instead of hanging.
            await asyncio.wait_for(self.failing_seen.wait(), timeout=2)
        output = run_operation(document).model_dump(mode="json")
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, output)])


class TestBatch:
    """Seam: POST /v1/text/batch → TextProcessor.process_batch (bounded concurrency) → provider.

    Paths: BATCH-01, BATCH-02, BATCH-03
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the in-memory cache; SQLite.
    Faked: the AI provider (a FunctionModel that refuses one item and holds another, so items
    finish out of order; FakeProvider to count calls).
    """

    @pytest.mark.covers("BATCH-01")
    async def test_one_failing_item_gets_error_others_results_in_request_order(
        self, make_client: ClientFactory
    ):
        """A failing item does not sink the batch, and answers come back in request order.

        Integration scope: batch route → concurrent per-item processing → per-item error
        mapping → BatchResponse.
        Business impact: a client matching answers to inputs by position must never get one
        text's answer under another's, nor lose nine answers to one bad item.
        Test strategy: three items; the provider refuses the second and holds the first until
        then, so the first finishes after the second.
        Success criteria: 200; items 0 and 2 carry their own operation's result, item 1 the
        error `provider_error`; counts 2 succeeded, 1 failed.
        """
        provider = CuedProvider()
        client = await make_client(model=provider.model)
        items = [
            {"operation": "summarize", "text": SLOW},
            {"operation": "sentiment", "text": FAILING},
            {"operation": "key_points", "text": QUICK},
        ]

        response = await client.post("/v1/text/batch", json={"items": items})

        body = BatchResponse.model_validate(response.json())
        outcomes = [
            (
                item.index,
                item.response.operation if item.response else item.error and item.error.code,
            )
            for item in body.items
        ]
        assert response.status_code == 200
        assert outcomes == [(0, "summarize"), (1, "provider_error"), (2, "key_points")]
        assert (body.succeeded, body.failed) == (2, 1)

    @pytest.mark.covers("BATCH-02")
    async def test_more_items_than_limit_rejected_422_before_provider(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """A batch over BATCH_MAX_ITEMS is refused whole; one at the limit is served.

        Integration scope: settings → batch route's size check → error contract.
        Business impact: one request cannot tie up the provider (and the bill) with an
        unbounded amount of work.
        Test strategy: limit 3; send 4 items, then 3.
        Success criteria: 4 items → 422 naming the limit, no provider call; 3 items → 200.
        """
        client = await make_client(model=provider.model, batch_max_items=3)
        item = {"operation": "sentiment", "text": QUICK}

        too_many = await client.post("/v1/text/batch", json={"items": [item] * 4})
        calls_after_refusal = provider.calls
        at_limit = await client.post("/v1/text/batch", json={"items": [item] * 3})

        assert too_many.status_code == 422
        assert too_many.json()["error"]["details"] == {"max_items": 3}
        assert calls_after_refusal == 0
        assert at_limit.status_code == 200

    @pytest.mark.covers("BATCH-03")
    async def test_invalid_items_get_their_own_validation_error_and_the_others_are_processed(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """An item that is not a valid request is answered in its place, as the plan promises.

        Integration scope: batch route → per-item validation of the shared contract → error
        mapping (the single endpoint's) → TextProcessor.process_batch → BatchResponse.
        Business impact: one Q&A item without a question used to refuse the whole batch with
        a 422, losing every other answer the caller had asked for.
        Test strategy: four items: valid, a `qa` without a question, a string, valid; then the
        same `qa` item alone to `/v1/text/process`, to compare the two errors.
        Success criteria: 200; items 0 and 3 answered; items 1 and 2 `validation_error` whose
        `loc` starts with `["body", "items", index]` and whose message and type match the
        single endpoint's 422; 2 succeeded, 2 failed; 2 provider calls; the rate limit
        charged for the 2 valid items only.
        """
        client = await make_client(model=provider.model)
        no_question = {"operation": "qa", "text": QUICK}
        items = [
            {"operation": "summarize", "text": SLOW},
            no_question,
            "not a request",
            {"operation": "sentiment", "text": QUICK},
        ]

        response = await client.post("/v1/text/batch", json={"items": items})
        alone = await client.post("/v1/text/process", json=no_question)

        body = BatchResponse.model_validate(response.json())
        errors = [item.error for item in body.items if item.error is not None]
        single = alone.json()["error"]
        charged = int(response.headers["X-RateLimit-Limit"]) - int(
            response.headers["X-RateLimit-Remaining"]
        )
        assert response.status_code == 200
        assert [item.index for item in body.items if item.response is not None] == [0, 3]
        assert [(e.code, [d["loc"] for d in e.details]) for e in errors] == [
            ("validation_error", [["body", "items", 1, "question"]]),
            ("validation_error", [["body", "items", 2]]),
        ]
        assert [(d["msg"], d["type"]) for d in errors[0].details] == [
            (d["msg"], d["type"]) for d in single["details"]
        ]
        assert errors[0].message == single["message"].replace("question", "items.1.question")
        assert (body.succeeded, body.failed, provider.calls) == (2, 2, 2)
        assert charged == 2

    @pytest.mark.covers("BATCH-03")
    @pytest.mark.parametrize(
        ("envelope", "loc"),
        [
            ({"items": "summarize this"}, ["body", "items"]),
            ({"items": []}, ["body", "items"]),
            (
                {"items": [{"operation": "sentiment", "text": QUICK}], "mode": "fast"},
                ["body", "mode"],
            ),
            (["not", "an", "object"], ["body"]),
        ],
        ids=["items_not_a_list", "no_items", "unknown_field", "not_an_object"],
    )
    async def test_malformed_envelope_is_refused_whole_with_422(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        envelope: object,
        loc: list[str],
    ):
        """A body that is not a list of items is refused as a whole, before any item runs.

        Integration scope: batch route → envelope validation → error mapping.
        Business impact: per-item errors are for items; a body the server cannot read as a
        batch must not come back as a 200 that looks like an empty success.
        Test strategy: items that are not a list, no items, an unknown field, a list body.
        Success criteria: 422 `validation_error` pointing at the envelope's field; no
        provider call.
        """
        client = await make_client(model=provider.model)

        response = await client.post("/v1/text/batch", json=envelope)

        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (422, "validation_error")
        assert [detail["loc"] for detail in error["details"]] == [loc]
        assert provider.calls == 0
