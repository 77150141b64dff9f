"""API → accounts service → database: registration, keys, revocation, rotation, usage."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from app.infrastructure.database.engine import Database
from app.infrastructure.database.models import Account, ApiKey, RequestHistory
from app.infrastructure.security import hash_api_key
from conftest import OPERATOR_KEY, TEST_KEY_HASH_SECRET, ClientFactory, DatabaseBackend
from fakes.clock import FakeClock
from fakes.providers import FakeProvider
from httpx import AsyncClient, Response
from sqlalchemy import func, select, text

TEXT = {"operation": "summarize", "text": "Rates rose again. Markets fell. Savers cheered."}


@pytest.fixture
async def database(database_backend: DatabaseBackend) -> AsyncIterator[Database]:
    """The test's own connection to the app's database, to check what was really stored."""
    database = Database(database_backend.url)
    yield database
    await database.dispose()


async def register(client: AsyncClient, email: str, display_name: str = "Ada") -> Response:
    return await client.post(
        "/v1/auth/register", json={"email": email, "display_name": display_name}
    )


def as_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def count(database: Database, model: Any) -> int:
    async with database.session() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def keys_of(database: Database, account_id: int) -> list[ApiKey]:
    async with database.session() as session:
        rows = await session.scalars(
            select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.id)
        )
        return list(rows)


class TestRegistration:
    """Seam: POST /v1/auth/register → AccountService → accounts and api_keys tables.

    Paths: ACCT-01, ACCT-02
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    SQLite and PostgreSQL, read back through the test's own session.
    Faked: nothing: registration calls no provider.
    """

    @pytest.mark.covers("ACCT-01")
    async def test_registered_key_works_and_only_its_hash_is_stored(
        self, make_client: ClientFactory, database_backend: DatabaseBackend, database: Database
    ):
        """The key handed out once works at once, and the database could not give it back.

        Integration scope: register route → key generation → keyed hash → commit, then the key
        through the Authenticator's database lookup on a text route.
        Business impact: a leaked database dump must not leak working keys; a new customer
        must be able to call the API with the key they were just shown.
        Test strategy: register (mixed-case email), process a text with the key, then read
        every stored column of the account's rows on SQLite and PostgreSQL.
        Success criteria: 201 then 200; the row holds HMAC(key) and the 10-character prefix,
        and no column holds the key or its secret part; the email is stored lower-cased.
        """
        client = await make_client(database=database_backend)

        registered = await register(client, "Ada.Lovelace@Example.COM")
        key = registered.json()["api_key"]
        processed = await client.post("/v1/text/process", json=TEXT, headers=as_key(key))

        assert registered.status_code == 201
        assert processed.status_code == 200
        async with database.session() as session:
            stored = [
                value
                for table in ("accounts", "api_keys")
                for row in (await session.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608
                for value in row
            ]
        stored_key = (await keys_of(database, registered.json()["account"]["id"]))[0]
        assert stored_key.key_hash == hash_api_key(key, TEST_KEY_HASH_SECRET)
        assert stored_key.prefix == key[:10] == registered.json()["account"]["key_prefix"]
        assert not any(key[10:] in str(value) for value in stored)
        assert "ada.lovelace@example.com" in stored

    @pytest.mark.covers("ACCT-02")
    async def test_same_email_in_other_case_is_rejected_with_409(
        self, make_client: ClientFactory, database_backend: DatabaseBackend, database: Database
    ):
        """An email registers once, whatever its case.

        Integration scope: register route → unique email index → IntegrityError → ConflictError.
        Business impact: one person cannot farm free-tier accounts by varying letter case.
        Test strategy: register an email, then the same email upper-cased.
        Success criteria: 201 then 409 `conflict`; one account and one key in the database.
        """
        client = await make_client(database=database_backend)

        first = await register(client, "grace@example.com")
        second = await register(client, "GRACE@example.com")

        assert first.status_code == 201
        assert second.status_code == 409
        assert second.json()["error"]["code"] == "conflict"
        assert (await count(database, Account), await count(database, ApiKey)) == (1, 1)

    @pytest.mark.covers("ACCT-02")
    async def test_invalid_email_is_rejected_with_422(
        self, make_client: ClientFactory, database_backend: DatabaseBackend, database: Database
    ):
        """An address that cannot be an email never reaches the database.

        Integration scope: shared RegisterRequest contract (EmailStr) → validation error mapping.
        Business impact: accounts stay reachable; clients get a field-level reason to show.
        Test strategy: register `not-an-email`.
        Success criteria: 422 `validation_error` naming `email`; no account row.
        """
        client = await make_client(database=database_backend)

        response = await register(client, "not-an-email")

        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["loc"] == ["body", "email"]
        assert await count(database, Account) == 0


class TestRevocation:
    """Seam: POST /internal/accounts/{id}/revoke → database → Authenticator on the next call.

    Paths: ACCT-03
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    SQLite and PostgreSQL, read back through the test's own session.
    Faked: nothing: the local model answers the requests made with the key.
    """

    @pytest.mark.covers("ACCT-03")
    async def test_revoked_account_key_gets_401_on_the_next_request(
        self, make_client: ClientFactory, database_backend: DatabaseBackend, database: Database
    ):
        """An operator's revocation takes effect on the very next request.

        Integration scope: operator route → UPDATE accounts and api_keys → uncached key lookup.
        Business impact: an abused or compromised account can be cut off at once.
        Test strategy: register, use the key, revoke as operator, use the key again.
        Success criteria: 200, then the revoke shows `active: false` and no key prefix, then
        401; both rows carry a timezone-aware `revoked_at`.
        """
        client = await make_client(database=database_backend)
        registered = (await register(client, "eve@example.com")).json()
        key, account_id = registered["api_key"], registered["account"]["id"]

        before = await client.get("/v1/auth/me", headers=as_key(key))
        revoked = await client.post(
            f"/internal/accounts/{account_id}/revoke", headers=as_key(OPERATOR_KEY)
        )
        after = await client.get("/v1/auth/me", headers=as_key(key))

        assert before.status_code == 200
        assert (revoked.status_code, revoked.json()["active"]) == (200, False)
        assert revoked.json()["key_prefix"] is None
        assert after.status_code == 401
        async with database.session() as session:
            account = await session.get(Account, account_id)
        (stored_key,) = await keys_of(database, account_id)
        assert account is not None
        assert account.revoked_at is not None
        assert stored_key.revoked_at is not None
        assert stored_key.revoked_at.tzinfo is not None

    @pytest.mark.covers("ACCT-03")
    async def test_revoking_unknown_account_gives_404(self, make_client: ClientFactory):
        """Revoking an id that does not exist says so instead of pretending.

        Integration scope: operator route → UPDATE with no matching row → NotFoundError mapping.
        Business impact: an operator who mistyped an id learns that nobody was cut off.
        Test strategy: revoke account 999 on an empty database.
        Success criteria: 404 `not_found`.
        """
        client = await make_client(api_key=OPERATOR_KEY)

        response = await client.post("/internal/accounts/999/revoke")

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


class TestRevocationOnAnotherWorker:
    """Seam: a revocation on one worker → the database → another worker's kept key lookup.

    Paths: ACCT-07
    Real: two apps from create_app in their lifespans (two workers) on one database, every
    layer of ours, over in-process HTTP; SQLite and PostgreSQL.
    Faked: the clock both apps read (the lookup's expiry); nothing else.
    """

    @pytest.mark.covers("ACCT-07")
    async def test_revocation_reaches_another_worker_within_auth_cache_seconds(
        self, make_client: ClientFactory, database_backend: DatabaseBackend, clock: FakeClock
    ):
        """A worker reuses a key's lookup for AUTH_CACHE_SECONDS, and no longer.

        Integration scope: operator revoke on worker A → UPDATE api_keys → worker B's kept
        lookup, until it expires → B's next database lookup.
        Business impact: an issued key costs no query per request, yet a revoked key stops
        working everywhere within the documented delay (at once on the revoking worker).
        Test strategy: B serves the key (keeping its lookup); A revokes; both are asked again,
        then B once the fake clock has moved to the end of the delay.
        Success criteria: A refuses at once (401); B accepts until the delay ends, then 401.
        """
        delay = 1.0
        worker_a = await make_client(database=database_backend, auth_cache_seconds=delay)
        worker_b = await make_client(database=database_backend, auth_cache_seconds=delay)
        registered = (await register(worker_a, "mallory@example.com")).json()
        key, account_id = registered["api_key"], registered["account"]["id"]
        assert (await worker_b.get("/v1/text/operations", headers=as_key(key))).status_code == 200

        revoked = await worker_a.post(
            f"/internal/accounts/{account_id}/revoke", headers=as_key(OPERATOR_KEY)
        )
        on_a = await worker_a.get("/v1/text/operations", headers=as_key(key))
        on_b_within = await worker_b.get("/v1/text/operations", headers=as_key(key))
        clock.advance(delay)
        on_b_after = await worker_b.get("/v1/text/operations", headers=as_key(key))

        assert revoked.status_code == 200
        assert on_a.status_code == 401
        assert on_b_within.status_code == 200
        assert on_b_after.status_code == 401


class TestRotation:
    """Seam: POST /v1/auth/keys/rotate → api_keys rows → Authenticator.

    Paths: ACCT-04, ACCT-05
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    SQLite and PostgreSQL, concurrent rotations included.
    Faked: nothing: the local model answers the requests made with the keys.
    """

    @pytest.mark.covers("ACCT-04")
    async def test_rotated_key_works_and_the_old_one_gets_401(
        self, make_client: ClientFactory, database_backend: DatabaseBackend, database: Database
    ):
        """Rotation swaps the working key in one step.

        Integration scope: rotate route → revoke the presented key and insert a new one in one
        transaction → key lookup for both keys.
        Business impact: a customer who suspects a leak replaces the key without downtime, and
        the leaked key is dead afterwards.
        Test strategy: register, rotate with the first key, call /v1/auth/me with each key.
        Success criteria: new key 200 with its prefix shown, old key 401; the database holds
        two key rows for the account: the old one revoked, the new one active.
        """
        client = await make_client(database=database_backend)
        registered = (await register(client, "bob@example.com")).json()
        old_key, account_id = registered["api_key"], registered["account"]["id"]

        rotated = await client.post("/v1/auth/keys/rotate", headers=as_key(old_key))
        new_key = rotated.json()["api_key"]
        with_new = await client.get("/v1/auth/me", headers=as_key(new_key))
        with_old = await client.get("/v1/auth/me", headers=as_key(old_key))

        assert rotated.status_code == 200
        assert (with_new.status_code, with_new.json()["key_prefix"]) == (200, new_key[:10])
        assert with_old.status_code == 401
        old_row, new_row = await keys_of(database, account_id)
        assert old_row.revoked_at is not None
        assert new_row.revoked_at is None
        assert new_row.key_hash == hash_api_key(new_key, TEST_KEY_HASH_SECRET)

    @pytest.mark.covers("ACCT-04")
    async def test_parallel_rotations_with_one_key_leave_one_active_key(
        self, make_client: ClientFactory, database_backend: DatabaseBackend, database: Database
    ):
        """A rotation raced with itself hands out exactly one new key.

        Integration scope: concurrent rotate transactions → conditional revoke of the presented
        key (row lock on PostgreSQL, write lock on SQLite) → one-active-key index.
        Business impact: a retried or double-clicked rotation must not leave two live keys, or
        a client holding a key that silently never worked.
        Test strategy: fire five rotations with the same key at once.
        Success criteria: one 200; the others 409 (they lost the race) or 401 (they arrived
        after the winner revoked the key), never 5xx; exactly one active key row, the winner's.
        """
        client = await make_client(database=database_backend)
        registered = (await register(client, "race@example.com")).json()
        key, account_id = registered["api_key"], registered["account"]["id"]

        responses = await asyncio.gather(
            *(client.post("/v1/auth/keys/rotate", headers=as_key(key)) for _ in range(5))
        )

        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 1
        assert set(statuses) - {200} <= {401, 409}
        (winner,) = [r.json()["api_key"] for r in responses if r.status_code == 200]
        active = [row for row in await keys_of(database, account_id) if row.revoked_at is None]
        assert [row.key_hash for row in active] == [hash_api_key(winner, TEST_KEY_HASH_SECRET)]

    @pytest.mark.covers("ACCT-04", "ACCT-05")
    async def test_settings_key_has_no_account_to_show_or_rotate(self, make_client: ClientFactory):
        """Keys from the settings authenticate, but own no account.

        Integration scope: Authenticator (settings key) → account routes.
        Business impact: the frontend's configured key gets a clear answer, not a 500.
        Test strategy: call /v1/auth/me and rotate with the public settings key.
        Success criteria: 404 `not_found` for both.
        """
        client = await make_client()

        me = await client.get("/v1/auth/me")
        rotate = await client.post("/v1/auth/keys/rotate")

        assert (me.status_code, rotate.status_code) == (404, 404)
        assert me.json()["error"]["code"] == "not_found"


def counts(usage: dict[str, int]) -> dict[str, int]:
    """The request counters of a usage view (its token sums are OBS-05's business)."""
    return {name: usage[name] for name in ("requests", "cache_hits", "provider_calls")}


class TestUsage:
    """Seam: text route → TextProcessor → usage counters → /v1/auth/me and /internal/accounts.

    Paths: ACCT-05
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the cache; SQLite and PostgreSQL holding the counters.
    Faked: the AI provider (FakeProvider at the pydantic-ai boundary, counting its calls).
    """

    @pytest.mark.covers("ACCT-05")
    async def test_usage_and_limits_show_on_both_account_views(
        self,
        make_client: ClientFactory,
        database_backend: DatabaseBackend,
        database: Database,
        provider: FakeProvider,
    ):
        """Requests, cache hits and provider calls are counted per key and shown per account.

        Integration scope: text route → cache and fake provider → atomic UPDATE of the key's
        counters → aggregate query behind both account views.
        Business impact: customers and operators see the same usage that drives cost.
        Test strategy: process one text twice with a registered key (provider, then cache);
        read the caller's view, the operator's list and the key's row.
        Success criteria: 2 requests, 1 cache hit, 1 provider call everywhere, matching the
        calls the fake provider saw; limits show the default tier's figure.
        """
        client = await make_client(database=database_backend, model=provider.model)
        key = (await register(client, "ann@example.com")).json()["api_key"]

        for _ in range(2):
            await client.post("/v1/text/process", json=TEXT, headers=as_key(key))
        mine = (await client.get("/v1/auth/me", headers=as_key(key))).json()
        listed = (await client.get("/internal/accounts", headers=as_key(OPERATOR_KEY))).json()

        expected = {"requests": 2, "cache_hits": 1, "provider_calls": 1}
        assert provider.calls == 1
        assert counts(mine["usage"]) == expected
        assert mine["limits"] == {"tier": "free", "requests_per_minute": 60}
        assert (listed["total"], listed["items"][0]["usage"]) == (1, mine["usage"])
        (row,) = await keys_of(database, mine["id"])
        assert (row.requests, row.cache_hits, row.provider_calls) == (2, 1, 1)

    @pytest.mark.covers("ACCT-05")
    async def test_concurrent_requests_of_two_keys_are_each_counted_exactly(
        self,
        make_client: ClientFactory,
        database_backend: DatabaseBackend,
        database: Database,
        provider: FakeProvider,
    ):
        """Requests that share one group commit still add up to exact per-key counters.

        Integration scope: 15 concurrent text requests from two registered keys → one or more
        group commits, each writing its history rows and one summed UPDATE per key.
        Business impact: usage drives billing and limits; a batch write that merged two keys'
        sums, or dropped a request's increment, would bill the wrong customer.
        Test strategy: key A sends one text (1 provider call), then at once A sends it 9 more
        times (cache hits) while B sends 5 distinct texts (5 provider calls); then read both
        keys' usage and count the history rows.
        Success criteria: A = (10 requests, 9 cache hits, 1 provider call), B = (5, 0, 5),
        15 history rows, and the fake provider saw 6 calls.
        """
        client = await make_client(database=database_backend, model=provider.model)
        key_a = (await register(client, "ann@example.com")).json()["api_key"]
        key_b = (await register(client, "bob@example.com")).json()["api_key"]
        distinct = [{**TEXT, "text": f"Report {n}: sales grew. Costs fell."} for n in range(5)]

        await client.post("/v1/text/process", json=TEXT, headers=as_key(key_a))
        await asyncio.gather(
            *(client.post("/v1/text/process", json=TEXT, headers=as_key(key_a)) for _ in range(9)),
            *(client.post("/v1/text/process", json=b, headers=as_key(key_b)) for b in distinct),
        )

        usage = {}
        for key in (key_a, key_b):
            usage[key] = (await client.get("/v1/auth/me", headers=as_key(key))).json()["usage"]
        assert counts(usage[key_a]) == {"requests": 10, "cache_hits": 9, "provider_calls": 1}
        assert counts(usage[key_b]) == {"requests": 5, "cache_hits": 0, "provider_calls": 5}
        assert provider.calls == 6
        assert await count(database, RequestHistory) == 15


class TestConcurrentRegistration:
    """Seam: parallel POST /v1/auth/register → transactions → unique constraints.

    Paths: ACCT-06
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    SQLite's write lock and PostgreSQL's unique constraints under 20 concurrent requests.
    Faked: nothing.
    """

    @pytest.mark.covers("ACCT-06")
    async def test_parallel_registrations_of_distinct_emails_all_persist(
        self, make_client: ClientFactory, database_backend: DatabaseBackend, database: Database
    ):
        """Concurrent sign-ups do not lose or block one another.

        Integration scope: 20 concurrent requests → 20 write transactions on one engine (SQLite
        WAL with its busy timeout; PostgreSQL row locks).
        Business impact: a launch-day burst of sign-ups must not turn into 503s or lost accounts.
        Test strategy: fire 20 registrations with distinct emails at once.
        Success criteria: all 20 get 201 and distinct keys; 20 accounts and 20 key rows stored.
        """
        # All from one test address: the per-address limit is raised out of the way.
        client = await make_client(database=database_backend, registrations_per_minute=100)

        responses = await asyncio.gather(
            *(register(client, f"user{n}@example.com") for n in range(20))
        )

        assert [r.status_code for r in responses] == [201] * 20
        assert len({r.json()["api_key"] for r in responses}) == 20
        assert (await count(database, Account), await count(database, ApiKey)) == (20, 20)

    @pytest.mark.covers("ACCT-06")
    async def test_parallel_registrations_of_one_email_create_one_account(
        self, make_client: ClientFactory, database_backend: DatabaseBackend, database: Database
    ):
        """A race on one email has exactly one winner, and the losers leave nothing behind.

        Integration scope: 20 concurrent transactions → unique email index → IntegrityError →
        rollback → ConflictError mapping.
        Business impact: a double-clicked sign-up cannot create twin accounts, half-written
        keys or a 500.
        Test strategy: fire 20 registrations of the same email at once.
        Success criteria: one 201 and nineteen 409 `conflict`; one account and one key row.
        """
        client = await make_client(database=database_backend, registrations_per_minute=100)

        responses = await asyncio.gather(*(register(client, "same@example.com") for _ in range(20)))

        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * 19
        assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
            "conflict"
        }
        assert (await count(database, Account), await count(database, ApiKey)) == (1, 1)
