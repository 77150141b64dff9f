"""Token usage: the provider's counts in every history row, summed per key and per model.

The provider is an OpenAI-compatible server on loopback (fakes.openai_server) reporting a fixed
usage per completion, so the counts cross the same SDK and pydantic-ai parsing as in production.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from app.infrastructure.database.engine import Database, alembic_config
from conftest import OPERATOR_KEY, ClientFactory, DatabaseBackend
from fakes.openai_server import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    OpenAICompatibleServer,
    openai_compatible_server,
)
from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic_ai import models
from shared.accounts import AccountInfo
from shared.text import HistoryPage
from sqlalchemy import text
from sqlalchemy.engine import Connection

HARBOUR = "The harbour reopened on Monday after a week of storms. Ferries run hourly again."
ORCHARD = "The orchard's first harvest was small but sweet; next year's should be larger."


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAICompatibleServer]:
    """The loopback provider; model requests are allowed for this test only, to it alone."""
    monkeypatch.setattr(models, "ALLOW_MODEL_REQUESTS", True)
    with openai_compatible_server() as server:
        yield server


async def token_metrics(client: AsyncClient) -> dict[tuple[str, str], float]:
    response = await client.get("/internal/metrics", headers={"X-API-Key": OPERATOR_KEY})
    return {
        (sample.labels["model"], sample.labels["type"]): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "ai_tokens_total"
    }


class TestTokenUsage:
    """Seam: provider usage → TextProcessor → history rows and key counters → the API.

    Paths: OBS-05
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    history on SQLite and the worker's PostgreSQL database; the OpenAI SDK and pydantic-ai
    parsing usage from an OpenAI-compatible server on loopback over real HTTP.
    Faked: the AI provider (the loopback server, reporting fixed token counts; the local model's
    estimate).
    """

    @pytest.mark.covers("OBS-05")
    async def test_provider_tokens_per_row_summed_per_key_and_model(
        self,
        make_client: ClientFactory,
        database_backend: DatabaseBackend,
        openai_server: OpenAICompatibleServer,
    ):
        """Each request's own tokens are kept, and their sums are where a bill is checked.

        Integration scope: AsyncOpenAI over HTTP → pydantic-ai usage → history row and the
        key's counters (one transaction) → /v1/history, /v1/auth/me and /internal/metrics.
        Business impact: an LLM service is billed by the token; usage per key is what a
        customer's invoice and an operator's budget alert are built on.
        Test strategy: with an issued key, a miss, a hit of it, and another miss, against a
        server reporting PROMPT_TOKENS in and COMPLETION_TOKENS out per completion.
        Success criteria: rows (newest first) with the counts, 0 for the hit, not estimated;
        history totals, the account's usage and the per-model counters all equal two calls.
        """
        client = await make_client(
            database=database_backend,
            ai_model="openai-chat:fake-llm",
            ai_base_url=openai_server.base_url,
            ai_check_interval_seconds=0,
        )
        registered = await client.post(
            "/v1/auth/register", json={"email": "ada@example.com", "display_name": "Ada"}
        )
        issued = {"X-API-Key": registered.json()["api_key"]}
        for body_text in (HARBOUR, HARBOUR, ORCHARD):
            body = {"operation": "summarize", "text": body_text}
            assert (await client.post("/v1/text/process", json=body, headers=issued)).is_success

        page = HistoryPage.model_validate((await client.get("/v1/history", headers=issued)).json())
        me = AccountInfo.model_validate((await client.get("/v1/auth/me", headers=issued)).json())
        metrics = await token_metrics(client)

        call = (PROMPT_TOKENS, COMPLETION_TOKENS, False)
        assert [
            (row.input_tokens, row.output_tokens, row.tokens_estimated) for row in page.items
        ] == [call, (0, 0, False), call]
        assert (page.input_tokens, page.output_tokens) == (2 * PROMPT_TOKENS, 2 * COMPLETION_TOKENS)
        assert (me.usage.input_tokens, me.usage.output_tokens) == (
            2 * PROMPT_TOKENS,
            2 * COMPLETION_TOKENS,
        )
        assert metrics == {
            ("openai:fake-llm", "input"): 2 * PROMPT_TOKENS,
            ("openai:fake-llm", "output"): 2 * COMPLETION_TOKENS,
        }
        assert openai_server.requests == 2

    @pytest.mark.covers("OBS-05")
    async def test_streamed_answer_records_tokens_like_a_processed_one(
        self, make_client: ClientFactory, openai_server: OpenAICompatibleServer
    ):
        """A stream's history row and the token counters hold its provider call's usage.

        Integration scope: AsyncOpenAI streaming over HTTP (`stream_options.include_usage`,
        the usage chunk) → pydantic-ai's stream usage → the stream's history row and
        /internal/metrics.
        Business impact: streamed answers are billed too; a stream that recorded no tokens
        would be a free request on every invoice.
        Test strategy: process one text, stream another, stream the first again (a hit).
        Success criteria: rows (newest first) of the hit with 0, the stream and the processed
        request each with the server's counts, not estimated; counters equal two calls.
        """
        client = await make_client(
            ai_model="openai-chat:fake-llm",
            ai_base_url=openai_server.base_url,
            ai_check_interval_seconds=0,
        )
        await client.post("/v1/text/process", json={"operation": "summarize", "text": HARBOUR})
        for body_text in (ORCHARD, HARBOUR):
            body = {"operation": "summarize", "text": body_text}
            assert (await client.post("/v1/text/stream", json=body)).is_success

        page = HistoryPage.model_validate((await client.get("/v1/history")).json())
        metrics = await token_metrics(client)

        call = (PROMPT_TOKENS, COMPLETION_TOKENS, False)
        assert [
            (row.streamed, row.input_tokens, row.output_tokens, row.tokens_estimated)
            for row in page.items
        ] == [(True, 0, 0, False), (True, *call), (False, *call)]
        assert metrics == {
            ("openai:fake-llm", "input"): 2 * PROMPT_TOKENS,
            ("openai:fake-llm", "output"): 2 * COMPLETION_TOKENS,
        }

    @pytest.mark.covers("OBS-05")
    async def test_local_model_tokens_estimated_and_flagged(self, make_client: ClientFactory):
        """The offline model counts no tokens: an estimate is recorded, and marked as one.

        Integration scope: local FunctionModel → pydantic-ai's usage estimate → history.
        Business impact: figures from the default configuration must not pass for a bill.
        Test strategy: process a text with the default (local) model.
        Success criteria: the row has positive counts and `tokens_estimated`, and so has a
        stream of the same text (the cache skipped; pydantic-ai estimates a streamed request
        its own way, so the figures may differ); the metrics count both under model `local`.
        """
        client = await make_client()
        body = {"operation": "summarize", "text": HARBOUR}
        await client.post("/v1/text/process", json=body)
        await client.post("/v1/text/stream", json=body, headers={"Cache-Control": "no-cache"})

        streamed, row = HistoryPage.model_validate((await client.get("/v1/history")).json()).items
        metrics = await token_metrics(client)

        assert row.tokens_estimated is True
        assert (row.input_tokens or 0) > 0
        assert (row.output_tokens or 0) > 0
        assert (streamed.streamed, streamed.tokens_estimated) == (True, True)
        assert (streamed.input_tokens or 0) > 0
        assert (streamed.output_tokens or 0) > 0
        assert metrics == {
            ("local", "input"): (row.input_tokens or 0) + (streamed.input_tokens or 0),
            ("local", "output"): (row.output_tokens or 0) + (streamed.output_tokens or 0),
        }


class TestTokenMigration:
    """Seam: Alembic 0002 → 0003_tokens on a database that already holds history.

    Paths: OBS-05
    Real: Alembic's migrations 0002 → head on a SQLite file, rows written as the old code did.
    Faked: nothing.
    """

    @pytest.mark.covers("OBS-05")
    async def test_rows_before_migration_keep_unknown_tokens(self, tmp_path: Path):
        """Rows written before token counting say "unknown", not "zero tokens".

        Integration scope: Alembic upgrade 0002 → head (SQLite batch mode) over existing rows.
        Business impact: an upgrade must not rewrite history into free requests.
        Test strategy: migrate a new SQLite file to 0002, insert a row as the old code did,
        migrate to head, read the row back. (PostgreSQL runs the same migration from scratch
        in every session's schema set-up.)
        Success criteria: the old row's tokens are NULL and not estimated.
        """
        from alembic import command

        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        database = Database(url)
        try:
            async with database.engine.begin() as connection:
                await connection.run_sync(
                    lambda sync: command.upgrade(_bound(alembic_config(url), sync), "0002")
                )
                await connection.execute(
                    text(
                        "INSERT INTO request_history (api_key_id, operation, text_length,"
                        " text_sha256, model, cached, degraded, latency_ms, outcome, created_at)"
                        " VALUES ('settings:x', 'summarize', 3, 'ab', 'local', 0, 0, 1.0, 'ok',"
                        " '2026-11-01 00:00:00')"
                    )
                )
            await database.migrate()
            async with database.engine.connect() as connection:
                row = (
                    await connection.execute(
                        text(
                            "SELECT input_tokens, output_tokens, tokens_estimated"
                            " FROM request_history"
                        )
                    )
                ).one()
        finally:
            await database.dispose()

        assert tuple(row) == (None, None, 0)


def _bound(config: Config, connection: Connection) -> Config:
    """The Alembic config, on the test's connection (as `Database.migrate` hands its own)."""
    config.attributes["connection"] = connection
    return config
