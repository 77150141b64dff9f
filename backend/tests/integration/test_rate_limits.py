"""API → rate limiter → Redis (or memory): per-key limits by tier, with their headers."""

import asyncio
import time

import fakeredis
import pytest
from app.infrastructure.database.engine import Database
from app.infrastructure.database.models import Account, ApiKey
from conftest import OPERATOR_KEY, ClientFactory, DatabaseBackend, RedisBackend
from fakes.clock import FakeClock
from fakes.services import free_port
from httpx import AsyncClient, Response
from redis.asyncio import Redis
from sqlalchemy import select

TEXT = {"operation": "sentiment", "text": "The service was quick and the staff were kind."}
LIMIT_PREFIX = "llm:ratelimit:"


async def register(client: AsyncClient, email: str = "ada@example.com") -> str:
    response = await client.post("/v1/auth/register", json={"email": email, "display_name": "Ada"})
    key: str = response.json()["api_key"]
    return key


async def limit_keys(redis: Redis, pattern: str = "*") -> list[bytes]:
    """The rate-limit windows stored in Redis, seen from outside the app."""
    return [key async for key in redis.scan_iter(match=f"{LIMIT_PREFIX}{pattern}")]


async def window_length(redis: Redis, window: bytes, expected: int) -> int:
    """A window's entries, polled until there are `expected` of them (a second at most)."""
    length = -1
    for _ in range(100):
        if (length := int(await redis.llen(window))) == expected:
            break
        await asyncio.sleep(0.01)
    return length


class TestRateLimit:
    """Seam: text routes → charge_rate_limit → `limits` moving window in Redis → headers.

    Paths: RATE-01
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    `limits` counting on fakeredis, a redis-server and a container; SQLite and PostgreSQL for
    the keys' tiers and usage; the wall clock `limits` reads.
    Faked: nothing: the local model is the provider.
    """

    @pytest.mark.covers("RATE-01")
    async def test_limit_reached_returns_429_with_retry_after_and_limit_headers(
        self,
        make_client: ClientFactory,
        database_backend: DatabaseBackend,
        redis_backend: RedisBackend,
    ):
        """The request over the tier's limit is refused with everything a client needs to wait.

        Integration scope: registered key → tier from the database → limiter counting in Redis
        (fakeredis, a real server, a container) → 429 mapping with headers; usage in the DB.
        Business impact: one customer cannot run up the provider bill or starve the others, and
        well-behaved clients know exactly when to retry.
        Test strategy: a free tier of 3 per minute; four requests with a registered key; look
        into Redis for the counter and into the database for the usage.
        Success criteria: 200s counting X-RateLimit-Remaining down 2, 1, 0; then 429
        `rate_limited` with Retry-After (1-60 s), limit 3, remaining 0 and a reset one minute
        after the first request; the key's window in Redis holds 3 requests; only those 3
        count as usage in the database.
        """
        client = await make_client(
            database=database_backend,
            redis=redis_backend,
            rate_limit_tiers={"free": 3, "pro": 600},
        )
        key = await register(client)

        # The limiter reads the wall clock; the reset is bracketed by readings of it taken around
        # the requests, so no assumption about how long they take is made.
        started = time.time()
        responses = [
            await client.post("/v1/text/process", json=TEXT, headers={"X-API-Key": key})
            for _ in range(4)
        ]
        finished = time.time()

        *admitted, refused = responses
        assert [r.status_code for r in admitted] == [200, 200, 200]
        assert [r.headers["X-RateLimit-Remaining"] for r in admitted] == ["2", "1", "0"]
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["X-RateLimit-Limit"] == "3"
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        # One minute after the oldest counted request, rounded up to a whole second.
        assert int(started) + 60 <= int(refused.headers["X-RateLimit-Reset"]) <= finished + 61
        database = Database(database_backend.url)
        try:
            async with database.session() as session:
                key_id, requests = (await session.execute(select(ApiKey.id, ApiKey.requests))).one()
        finally:
            await database.dispose()
        assert requests == 3
        inspector = redis_backend.client()
        try:
            (window,) = await limit_keys(inspector, f"*/key:{key_id}/*")
            assert await inspector.llen(window) == 3
        finally:
            await inspector.aclose()

    @pytest.mark.covers("RATE-01")
    async def test_limit_is_shared_by_every_worker_on_one_redis(
        self, make_client: ClientFactory, redis_backend: RedisBackend
    ):
        """Two app instances count one key's requests together.

        Integration scope: two apps (as two workers) → one Redis → one moving window per key.
        Business impact: scaling out to N workers must not multiply every customer's limit by N.
        Test strategy: a limit of 2; one request through each app, then a third through either.
        Success criteria: 200, 200 (remaining 0), then 429 from the other worker.
        """
        settings = {"rate_limit_tiers": {"free": 2}, "api_keys_tier": "free"}
        first = await make_client(redis=redis_backend, **settings)
        second = await make_client(redis=redis_backend, **settings)

        one = await first.post("/v1/text/process", json=TEXT)
        two = await second.post("/v1/text/process", json=TEXT)
        three = await first.post("/v1/text/process", json=TEXT)

        assert (one.status_code, two.status_code, three.status_code) == (200, 200, 429)
        assert two.headers["X-RateLimit-Remaining"] == "0"

    @pytest.mark.covers("RATE-01")
    async def test_batch_counts_one_request_per_item(self, make_client: ClientFactory):
        """A batch is charged by its items, so batching does not multiply the limit.

        Integration scope: batch route → size check → limiter charged with the item count.
        Business impact: a customer cannot send 20 texts for the price of one request.
        Test strategy: a limit of 3; a batch of 2, another batch of 2, then a batch of 4.
        Success criteria: 200 with 1 remaining; 429 (2 do not fit in 1); 422 for the batch that
        could never fit, naming the tier's limit.
        """
        client = await make_client(rate_limit_tiers={"free": 3}, api_keys_tier="free")
        batch = {"items": [TEXT, TEXT]}

        first = await client.post("/v1/text/batch", json=batch)
        second = await client.post("/v1/text/batch", json=batch)
        oversized = await client.post("/v1/text/batch", json={"items": [TEXT] * 4})

        assert (first.status_code, first.headers["X-RateLimit-Remaining"]) == (200, "1")
        assert second.status_code == 429
        assert oversized.status_code == 422
        assert oversized.json()["error"]["details"]["requests_per_minute"] == 3


class TestChargedAhead:
    """Seam: text routes → RateLimiter's batches charged ahead per worker → one window in Redis.

    Paths: RATE-05
    Real: two apps from create_app in their lifespans (two workers), every layer of ours, over
    in-process HTTP; the moving window on fakeredis, a redis-server and a container; SQLite.
    Faked: nothing: the local model is the provider.
    """

    @pytest.mark.covers("RATE-05")
    async def test_busy_key_on_two_workers_gets_its_limit_exactly_and_unused_entries_go_back(
        self, make_client: ClientFactory, redis_backend: RedisBackend
    ):
        """Entries charged ahead never let a key past its limit, and none is lost to it.

        Integration scope: two apps (as two workers) → each worker's batches charged ahead in
        one script → one moving window in Redis; what a worker did not hand out goes back.
        Business impact: a busy key is served without a round trip to Redis per request; the
        limit must stay a limit (scaling out must not multiply it), and a customer must not
        lose part of it to entries a worker charged and never used.
        Test strategy: a tier of 240 per minute (batches of up to 4); 200 requests at once,
        half through each app; then 4 in a row through a third app, new to the key (charged 1,
        2, then 4 at once, of which 1 is used); after each, the window once it has settled;
        then one request at a time through the first two until both refuse.
        Success criteria: every request of the burst and of the row served; the window then
        holds exactly 200, then 204 entries (what was charged ahead and not used is back); in
        all, exactly 240 served, each refusal a 429 with Retry-After.
        """
        settings = {"rate_limit_tiers": {"free": 60, "pro": 240}, "api_keys_tier": "pro"}
        apps = [await make_client(redis=redis_backend, **settings) for _ in range(2)]
        third = await make_client(redis=redis_backend, **settings)
        inspector = redis_backend.client()

        try:
            burst = await asyncio.gather(
                *(apps[i % 2].post("/v1/text/process", json=TEXT) for i in range(200))
            )
            (window,) = await limit_keys(inspector)
            after_burst = await window_length(inspector, window, 200)
            row = [await third.post("/v1/text/process", json=TEXT) for _ in range(4)]
            after_row = await window_length(inspector, window, 204)
            later: list[Response] = []
            while not later or any(r.status_code == 200 for r in later[-2:]):
                later.extend([await app.post("/v1/text/process", json=TEXT) for app in apps])
        finally:
            await inspector.aclose()

        refusals = [r for r in later if r.status_code != 200]
        assert [r.status_code for r in [*burst, *row]] == [200] * 204
        assert (after_burst, after_row) == (200, 204)
        assert 204 + sum(r.status_code == 200 for r in later) == 240
        assert {r.status_code for r in refusals} == {429}
        assert all(1 <= int(r.headers["Retry-After"]) <= 60 for r in refusals)


class TestRegistrationLimit:
    """Seam: POST /v1/auth/register → per-address moving window in Redis → accounts service.

    Paths: RATE-04
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the limiter on every Redis tier; SQLite and PostgreSQL.
    Faked: nothing: registration calls no provider.
    """

    @pytest.mark.covers("RATE-04")
    async def test_registrations_past_the_address_limit_get_429_and_create_nothing(
        self,
        make_client: ClientFactory,
        database_backend: DatabaseBackend,
        redis_backend: RedisBackend,
    ):
        """Sign-up needs no key, so the client's address is what bounds account creation.

        Integration scope: register route → RateLimiter keyed by the client address → Redis
        (shared by two app instances) → AccountService → database.
        Business impact: without it one script could mint unlimited accounts, each with a fresh
        rate limit, and so get around every per-key limit.
        Test strategy: a limit of 3 per minute; two registrations through one app instance, one
        through another sharing the Redis, then a fourth; count the rows from outside the app.
        Success criteria: 201, 201, 201, then 429 `rate_limited` with Retry-After, its window
        stored in Redis under the address, and exactly three accounts in the database.
        """
        settings = {"database": database_backend, "registrations_per_minute": 3}
        first = await make_client(redis=redis_backend, **settings)
        second = await make_client(redis=redis_backend, **settings)
        emails = [f"user{n}@example.com" for n in range(4)]

        statuses = [
            (await first.post("/v1/auth/register", json=body(emails[0]))).status_code,
            (await first.post("/v1/auth/register", json=body(emails[1]))).status_code,
            (await second.post("/v1/auth/register", json=body(emails[2]))).status_code,
        ]
        refused = await second.post("/v1/auth/register", json=body(emails[3]))

        assert statuses == [201, 201, 201]
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        inspector = redis_backend.client()
        try:
            assert await limit_keys(inspector, "*register:*")
        finally:
            await inspector.aclose()
        database = Database(database_backend.url)
        try:
            async with database.session() as session:
                stored = await session.scalars(select(Account.email).order_by(Account.email))
                assert list(stored) == emails[:3]
        finally:
            await database.dispose()


def body(email: str) -> dict[str, str]:
    return {"email": email, "display_name": "Ada"}


class TestRateLimitFallback:
    """Seam: rate limiter → Redis outage → in-memory counting → back to Redis.

    Paths: RATE-02
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    a real Redis client meeting a refused connection; the in-memory limiter.
    Faked: Redis for the way back (a FakeServer disconnected and reconnected on command), time
    (FakeClock, past the retry window).
    """

    @pytest.mark.covers("RATE-02")
    async def test_unreachable_redis_limits_from_memory_without_5xx(
        self, make_client: ClientFactory
    ):
        """With Redis gone, limits still hold, per process, and requests still succeed.

        Integration scope: limiter → real Redis client → connection refused → memory storage.
        Business impact: a Redis outage degrades the service instead of failing every request
        or switching the limits off.
        Test strategy: point the app at a loopback port where nothing listens; a limit of 2.
        Success criteria: 200, 200, then 429 with its headers; never a 5xx.
        """
        client = await make_client(
            redis_url=f"redis://127.0.0.1:{free_port()}/0",
            rate_limit_tiers={"free": 2},
            api_keys_tier="free",
        )

        responses = [await client.post("/v1/text/process", json=TEXT) for _ in range(3)]

        assert [r.status_code for r in responses] == [200, 200, 429]
        assert responses[-1].headers["X-RateLimit-Limit"] == "2"

    @pytest.mark.covers("RATE-02")
    async def test_limits_move_back_to_redis_when_it_recovers(
        self, make_client: ClientFactory, clock: FakeClock
    ):
        """After an outage, counting returns to Redis, so workers share limits again.

        Integration scope: limiter → Redis outage (fakeredis disconnected) → memory → retry
        after the back-off on the app's clock → Redis.
        Business impact: an outage must not leave each worker counting alone for good.
        Test strategy: disconnect Redis, send a request, reconnect, move the fake clock past
        the retry delay, send another; look into Redis directly.
        Success criteria: both requests 200; nothing counted in Redis after the first, one
        window holding one request after the second.
        """
        backend = RedisBackend("fakeredis", fake_server=fakeredis.FakeServer())
        assert backend.fake_server is not None
        client = await make_client(redis=backend)
        inspector = backend.client()
        try:
            backend.fake_server.connected = False
            during = await client.post("/v1/text/process", json=TEXT)
            backend.fake_server.connected = True
            counted_during = await limit_keys(inspector)
            clock.advance(5)
            after = await client.post("/v1/text/process", json=TEXT)
            counted_after = await limit_keys(inspector)
            window = await inspector.llen(counted_after[0]) if counted_after else 0
        finally:
            await inspector.aclose()

        assert (during.status_code, after.status_code) == (200, 200)
        assert counted_during == []
        assert (len(counted_after), window) == (1, 1)


class TestTiers:
    """Seam: Principal (role, tier) → charge_rate_limit → settings' tiers.

    Paths: RATE-03
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the in-memory limiter; SQLite.
    Faked: nothing.
    """

    @pytest.mark.covers("RATE-03")
    async def test_operator_key_is_never_rate_limited(self, make_client: ClientFactory):
        """Operators pass however small the limits are.

        Integration scope: Authenticator (operator role) → charge_rate_limit → text route.
        Business impact: an operator diagnosing an incident is never locked out by limits.
        Test strategy: every tier at 1 per minute; three requests with the operator key.
        Success criteria: three 200s and no X-RateLimit-* headers.
        """
        client = await make_client(api_key=OPERATOR_KEY, rate_limit_tiers={"free": 1, "pro": 1})

        responses = [await client.post("/v1/text/process", json=TEXT) for _ in range(3)]

        assert [r.status_code for r in responses] == [200, 200, 200]
        assert all("X-RateLimit-Limit" not in r.headers for r in responses)

    @pytest.mark.covers("RATE-03")
    async def test_each_key_gets_its_tiers_limit_and_its_own_window(
        self, make_client: ClientFactory
    ):
        """Settings keys and registered accounts are limited by their own tiers, each apart.

        Integration scope: settings key (API_KEYS_TIER) and database keys (account tier) →
        per-key windows in one limiter.
        Business impact: paying tiers get what they pay for; one customer exhausting their
        limit does not touch anyone else's, even on the same tier.
        Test strategy: free = 1, pro = 5, settings keys on pro; exhaust one registered key,
        then call with a second registered key and with the settings key.
        Success criteria: the first account sees limit 1, then 429, and /v1/auth/me shows
        free/1; the second account still gets 200; the settings key gets 200 with limit 5.
        """
        client = await make_client(rate_limit_tiers={"free": 1, "pro": 5}, api_keys_tier="pro")
        first_account = {"X-API-Key": await register(client, "first@example.com")}
        second_account = {"X-API-Key": await register(client, "second@example.com")}

        first = await client.post("/v1/text/process", json=TEXT, headers=first_account)
        refused = await client.post("/v1/text/process", json=TEXT, headers=first_account)
        me = await client.get("/v1/auth/me", headers=first_account)
        other_account = await client.post("/v1/text/process", json=TEXT, headers=second_account)
        settings_key = await client.post("/v1/text/process", json=TEXT)

        assert (first.status_code, first.headers["X-RateLimit-Limit"]) == (200, "1")
        assert refused.status_code == 429
        assert me.json()["limits"] == {"tier": "free", "requests_per_minute": 1}
        assert other_account.status_code == 200
        assert (settings_key.status_code, settings_key.headers["X-RateLimit-Limit"]) == (200, "5")
