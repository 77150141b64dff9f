"""API → text service → request history in the database, and back out through /v1/history."""

import hashlib

import pytest
from app.infrastructure.database.engine import Database
from app.infrastructure.database.models import RequestHistory
from conftest import PUBLIC_KEY, ClientFactory, DatabaseBackend
from fakes.providers import FakeProvider, server_error
from sqlalchemy import select

HARBOUR = "The harbour opened at dawn. Fishing boats returned with a record catch."
ORCHARD = "The orchard flowered early this year. Frost in April ruined half of the apples."
OTHER_KEY = "test-other-public-key"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def stored_rows(database_url: str) -> list[RequestHistory]:
    """The history table as the database holds it, read through a connection of the test's own."""
    database = Database(database_url)
    try:
        async with database.session() as session:
            return list(await session.scalars(select(RequestHistory).order_by(RequestHistory.id)))
    finally:
        await database.dispose()


class TestHistoryRecording:
    """Seam: TextProcessor → HistoryService → RequestHistory rows, on SQLite and PostgreSQL.

    Paths: HIST-01
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    SQLite and PostgreSQL, read back through the test's own session.
    Faked: the AI provider (FakeProvider, failing for the error outcomes).
    """

    @pytest.mark.covers("HIST-01")
    async def test_each_request_leaves_one_row_with_hash_never_text(
        self,
        make_client: ClientFactory,
        database_backend: DatabaseBackend,
        provider: FakeProvider,
    ):
        """Every processed request is recorded, whatever its outcome, without its text.

        Integration scope: route → service → history insert → each database engine.
        Business impact: usage and failures can be audited per key, while the users' texts
        (possibly personal data) are never kept.
        Test strategy: a miss, a hit, and a request the provider refuses; then read the table
        with the test's own connection.
        Success criteria: three rows in order with operation, cached flag, outcome, length and
        sha256 of the text; no column holds the text or the API key; /v1/history shows them.
        """
        client = await make_client(database=database_backend, model=provider.model)
        await client.post("/v1/text/process", json={"operation": "summarize", "text": HARBOUR})
        await client.post("/v1/text/process", json={"operation": "summarize", "text": HARBOUR})
        provider.fail(server_error(400))
        refused = await client.post(
            "/v1/text/process", json={"operation": "sentiment", "text": ORCHARD}
        )

        rows = await stored_rows(database_backend.url)
        listed = (await client.get("/v1/history")).json()

        assert refused.status_code == 502
        assert [
            (row.operation, row.cached, row.outcome, row.text_length, row.text_sha256)
            for row in rows
        ] == [
            ("summarize", False, "ok", len(HARBOUR), sha256(HARBOUR)),
            ("summarize", True, "ok", len(HARBOUR), sha256(HARBOUR)),
            ("sentiment", False, "provider_error", len(ORCHARD), sha256(ORCHARD)),
        ]
        columns = [column.key for column in RequestHistory.__table__.columns]
        stored = " ".join(str(getattr(row, name)) for row in rows for name in columns)
        assert [leak for leak in ("Fishing boats", "Frost in", PUBLIC_KEY) if leak in stored] == []
        assert sorted(item["id"] for item in listed["items"]) == [row.id for row in rows]


class TestHistoryListing:
    """Seam: GET /v1/history → HistoryService.page → query by key, ordered and paginated.

    Paths: HIST-02
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    SQLite and PostgreSQL.
    Faked: the AI provider (FakeProvider).
    """

    @pytest.mark.covers("HIST-02")
    async def test_caller_sees_only_own_records_newest_first_in_pages(
        self,
        make_client: ClientFactory,
        database_backend: DatabaseBackend,
        provider: FakeProvider,
    ):
        """Each key sees its own history only, newest first, a page at a time.

        Integration scope: authentication (key id) → history query (filter, order, offset,
        limit) → each database engine → HistoryPage contract.
        Business impact: one customer must never see another's activity; pages keep large
        histories cheap to read.
        Test strategy: key A makes three requests (three operations, in a known order), key B
        one; A reads pages of two, B reads its page.
        Success criteria: A's pages hold its three operations newest first (2 + 1) with total
        3; B sees only its own one.
        """
        client = await make_client(
            database=database_backend,
            model=provider.model,
            api_keys=[PUBLIC_KEY, OTHER_KEY],
        )
        as_b = {"X-API-Key": OTHER_KEY}
        for operation in ("summarize", "sentiment", "key_points"):
            await client.post("/v1/text/process", json={"operation": operation, "text": HARBOUR})
        await client.post(
            "/v1/text/process", json={"operation": "questions", "text": HARBOUR}, headers=as_b
        )

        first = (await client.get("/v1/history", params={"page_size": 2})).json()
        second = (await client.get("/v1/history", params={"page": 2, "page_size": 2})).json()
        of_b = (await client.get("/v1/history", headers=as_b)).json()

        assert [item["operation"] for item in first["items"] + second["items"]] == [
            "key_points",
            "sentiment",
            "summarize",
        ]
        assert (first["total"], len(first["items"]), len(second["items"])) == (3, 2, 1)
        assert [item["operation"] for item in of_b["items"]] == ["questions"]
