"""bench/bare_model.py, the yardstick of a cache miss: FastAPI and one pydantic-ai model request
with the provider's own output tool, answering as our route does."""

import pytest
from httpx import ASGITransport, AsyncClient

from bench.bare_model import create_bare_model_app


class TestBareMissApp:
    async def test_answers_the_operations_result_computed_by_the_provider(
        self, monkeypatch: pytest.MonkeyPatch
    ):
        monkeypatch.setenv("BENCH_PROVIDER_LATENCY_MS", "0")
        transport = ASGITransport(app=create_bare_model_app())
        body = {"operation": "sentiment", "text": "The release is fast and the team was helpful."}

        async with AsyncClient(transport=transport, base_url="http://bench") as client:
            response = await client.post("/bare/process", json=body)

        assert response.status_code == 200
        answer = response.json()
        assert (answer["operation"], answer["cached"], answer["model"]) == (
            "sentiment",
            False,
            "bench-model",
        )
        assert answer["result"]["kind"] == "sentiment"
        assert answer["result"]["sentiment"] == "positive"
