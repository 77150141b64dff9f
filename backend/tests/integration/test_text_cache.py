"""API → text service → response cache → Redis, with the AI provider counted at its boundary."""

import asyncio
import json
import pickle
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from conftest import OPERATOR_KEY, ClientFactory, RedisBackend
from fakes.clock import FakeClock
from fakes.providers import FakeProvider
from fakes.tcp_proxy import TcpProxy
from httpx import AsyncClient
from redis.asyncio import Redis
from shared.health import ReadinessResponse

OPERATOR = {"X-API-Key": OPERATOR_KEY}
HARBOUR = (
    "The harbour opened at dawn. Fishing boats returned with a record catch. "
    "The town held a festival that lasted until midnight."
)
ORCHARD = "The orchard flowered early this year. Frost in April ruined half of the apples."
VALLEY = "Rain filled the reservoir in the valley. Farmers expect a generous harvest."


def summarize(text: str = HARBOUR, **options: Any) -> dict[str, Any]:
    return {"operation": "summarize", "text": text, "options": options}


async def process(client: AsyncClient, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await client.post("/v1/text/process", json=body, headers=headers)
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


async def cache_stats(client: AsyncClient) -> dict[str, Any]:
    stats: dict[str, Any] = (await client.get("/internal/cache/stats", headers=OPERATOR)).json()
    return stats


async def readiness(client: AsyncClient) -> dict[str, str]:
    body = ReadinessResponse.model_validate(
        (await client.get("/internal/health", headers=OPERATOR)).json()
    )
    statuses: dict[str, str] = {dep.name: dep.status for dep in body.dependencies}
    return {"overall": body.status, **statuses}


@dataclass
class RedisLink:
    """The app's way to Redis, which the test can cut and restore.

    On real tiers the app talks to Redis through a TcpProxy, so a cut is a real partition
    (connections dropped, new ones refused); on fakeredis it is the FakeServer's disconnect.
    """

    for_app: RedisBackend
    proxy: TcpProxy | None

    async def cut(self) -> None:
        await self._set_connected(False)

    async def restore(self) -> None:
        await self._set_connected(True)

    async def _set_connected(self, connected: bool) -> None:
        if self.proxy is not None:
            await (self.proxy.restore() if connected else self.proxy.cut())
        else:
            assert self.for_app.fake_server is not None
            self.for_app.fake_server.connected = connected


@pytest.fixture
async def redis_link(redis_backend: RedisBackend) -> AsyncIterator[RedisLink]:
    if redis_backend.url is None:
        yield RedisLink(redis_backend, proxy=None)
        return
    url = urlsplit(redis_backend.url)
    assert url.hostname is not None
    assert url.port is not None
    async with TcpProxy(url.hostname, url.port) as proxy:
        proxied = urlunsplit(url._replace(netloc=f"127.0.0.1:{proxy.port}"))
        yield RedisLink(replace(redis_backend, url=proxied), proxy)


async def cache_keys(redis: Redis) -> set[str]:
    """The cache entries stored in Redis, seen from outside the app (not the stats hash)."""
    keys = {key.decode() async for key in redis.scan_iter(match="llm:cache:*")}
    return keys - {"llm:cache:__stats__"}


async def stored_json(redis: Redis, key: str) -> Any:
    raw = await redis.get(key)
    assert raw is not None
    return json.loads(raw)


class TestCacheAside:
    """Seam: POST /v1/text/process → TextProcessor → ResponseCache (LRU + Redis) → provider.

    Paths: CACHE-01, CACHE-02, CACHE-03
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the cache on fakeredis, a redis-server and a container, inspected with the test's own
    client; two apps for the shared case.
    Faked: the AI provider (FakeProvider counting its calls), time (FakeClock, for TTLs).
    """

    @pytest.mark.covers("CACHE-01")
    async def test_repeated_request_served_from_cache_provider_called_once(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        redis_inspector: Redis,
        provider: FakeProvider,
    ):
        """The second identical request is answered from the cache.

        Integration scope: route → service → cache-aside over each Redis tier → fake provider.
        Business impact: repeated work costs one provider call, which is what users pay for.
        Test strategy: send the same summarize request twice to one app.
        Success criteria: `cached` false then true, same result, one provider call, one key in
        Redis.
        """
        client = await make_client(redis=redis_backend, model=provider.model)

        first = await process(client, summarize())
        second = await process(client, summarize())

        assert (first["cached"], second["cached"]) == (False, True)
        assert second["result"] == first["result"]
        assert provider.calls == 1
        assert len(await cache_keys(redis_inspector)) == 1

    @pytest.mark.covers("CACHE-01")
    async def test_answer_stored_by_one_worker_served_to_another(
        self, make_client: ClientFactory, redis_backend: RedisBackend, provider: FakeProvider
    ):
        """An answer cached by one worker is a hit for another worker with an empty LRU.

        Integration scope: two app instances → their own LRUs → one shared Redis.
        Business impact: with several workers, each answer is still paid for once.
        Test strategy: build two apps over the same Redis and model; ask each the same thing.
        Success criteria: the second app answers `cached: true`; the provider was called once.
        """
        worker_a = await make_client(redis=redis_backend, model=provider.model)
        worker_b = await make_client(redis=redis_backend, model=provider.model)

        await process(worker_a, summarize())
        from_b = await process(worker_b, summarize())

        assert from_b["cached"] is True
        assert provider.calls == 1

    @pytest.mark.covers("CACHE-02")
    async def test_clock_past_ttl_answer_recomputed(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        provider: FakeProvider,
        clock: FakeClock,
    ):
        """A cached answer is served until its operation's TTL, then computed again.

        Integration scope: CACHE_TTL_SECONDS → cache entry expiry in the LRU and in Redis.
        Business impact: answers do not outlive the freshness an operator configured.
        Test strategy: TTL of 60 s for summarize; move the fake clock to 59 s, then to 61 s.
        Success criteria: cached at 59 s; at 61 s a fresh provider call, `cached: false`.
        """
        client = await make_client(
            redis=redis_backend, model=provider.model, cache_ttl_seconds={"summarize": 60}
        )
        await process(client, summarize())

        clock.advance(59)
        before_expiry = await process(client, summarize())
        clock.advance(2)
        after_expiry = await process(client, summarize())

        assert before_expiry["cached"] is True
        assert after_expiry["cached"] is False
        assert provider.calls == 2

    @pytest.mark.covers("CACHE-03")
    async def test_invalidate_one_operation_only_its_answers_recomputed(
        self, make_client: ClientFactory, redis_backend: RedisBackend, provider: FakeProvider
    ):
        """Invalidating one operation leaves the other operations' answers cached.

        Integration scope: POST /internal/cache/invalidate → LRU and Redis, then /v1 requests.
        Business impact: an operator can drop stale summaries without paying again for the rest.
        Test strategy: cache a summary and a sentiment; invalidate `summarize`; ask both again.
        Success criteria: one key removed; summary recomputed, sentiment still cached.
        """
        client = await make_client(redis=redis_backend, model=provider.model)
        sentiment = {"operation": "sentiment", "text": HARBOUR}
        await process(client, summarize())
        await process(client, sentiment)

        invalidated = await client.post(
            "/internal/cache/invalidate", json={"operation": "summarize"}, headers=OPERATOR
        )
        summary_again = await process(client, summarize())
        sentiment_again = await process(client, sentiment)

        assert invalidated.json() == {"removed": 1}
        assert (summary_again["cached"], sentiment_again["cached"]) == (False, True)
        assert provider.calls == 3

    @pytest.mark.covers("CACHE-03")
    async def test_invalidate_all_redis_emptied_every_answer_recomputed(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        redis_inspector: Redis,
        provider: FakeProvider,
    ):
        """Invalidating everything empties the cache in Redis as well as in memory.

        Integration scope: POST /internal/cache/invalidate without an operation → LRU and Redis.
        Business impact: after a model or prompt fix, no old answer can be served again.
        Test strategy: cache two answers; invalidate all; inspect Redis; ask again.
        Success criteria: two removed, no cache key left in Redis, the next request recomputed.
        """
        client = await make_client(redis=redis_backend, model=provider.model)
        await process(client, summarize())
        await process(client, summarize(ORCHARD))

        invalidated = await client.post("/internal/cache/invalidate", json={}, headers=OPERATOR)
        keys_left = await cache_keys(redis_inspector)
        again = await process(client, summarize())

        assert invalidated.json() == {"removed": 2}
        assert keys_left == set()
        assert again["cached"] is False


class TestRedisOutage:
    """Seam: ResponseCache ↔ Redis over a link the test cuts and restores mid-flow.

    Paths: CACHE-04, CACHE-05, CACHE-11
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP; on
    the real tiers a loopback TCP proxy the test cuts (a real partition), on fakeredis a
    FakeServer disconnected.
    Faked: the AI provider (FakeProvider), time (FakeClock, past the retry window).
    """

    @pytest.mark.covers("CACHE-04")
    async def test_redis_cut_mid_flow_answered_from_memory_readiness_degraded(
        self, make_client: ClientFactory, redis_link: RedisLink, provider: FakeProvider
    ):
        """Losing Redis between requests degrades the service; it does not fail it.

        Integration scope: route → cache → Redis client whose connections are dropped and
        refused (a real partition on real tiers) → readiness and cache stats.
        Business impact: a Redis outage must not become an API outage.
        Test strategy: cache an answer, cut the link, then ask the cached question and a new
        one (twice).
        Success criteria: both answered 200 (the old one from memory, the new one by the
        provider and then from memory), readiness `degraded`, stats backend `memory-fallback`.
        """
        client = await make_client(redis=redis_link.for_app, model=provider.model)
        await process(client, summarize())

        await redis_link.cut()
        known = await process(client, summarize())
        new = await process(client, summarize(ORCHARD))
        new_again = await process(client, summarize(ORCHARD))

        assert (known["cached"], new["cached"], new_again["cached"]) == (True, False, True)
        assert provider.calls == 2
        assert await readiness(client) == {
            "overall": "degraded",
            "database": "ok",
            "cache": "degraded",
            "ai_provider": "ok",
        }
        assert (await cache_stats(client))["backend"] == "memory-fallback"

    @pytest.mark.covers("CACHE-05")
    async def test_redis_restored_after_retry_window_used_again(
        self,
        make_client: ClientFactory,
        redis_link: RedisLink,
        redis_inspector: Redis,
        provider: FakeProvider,
        clock: FakeClock,
    ):
        """Once Redis answers again and the retry window has passed, answers land in Redis.

        Integration scope: cache's retry window (driven by the fake clock) → Redis reconnect.
        Business impact: the service heals by itself; workers share answers again.
        Test strategy: cut the link and serve a request from memory; restore the link; move the
        clock past the 1 s retry window; send a new request; look into Redis from outside.
        Success criteria: the new answer's key is in Redis, stats say `redis`, readiness `ok`.
        """
        client = await make_client(redis=redis_link.for_app, model=provider.model)
        await redis_link.cut()
        await process(client, summarize(ORCHARD))
        await redis_link.restore()

        clock.advance(1.5)
        await process(client, summarize(VALLEY))

        assert len(await cache_keys(redis_inspector)) == 1
        assert (await cache_stats(client))["backend"] == "redis"
        assert (await readiness(client))["overall"] == "ok"

    @pytest.mark.covers("CACHE-11")
    async def test_invalidate_while_redis_down_says_memory_was_emptied_and_redis_was_not(
        self,
        make_client: ClientFactory,
        redis_link: RedisLink,
        redis_inspector: Redis,
        provider: FakeProvider,
        clock: FakeClock,
    ):
        """An invalidation that reached only memory says exactly that, and can be repeated.

        Integration scope: POST /internal/cache/invalidate → LRU emptied → Redis unreachable
        (a real partition on real tiers) → 503 error body; then Redis back → invalidate again.
        Business impact: the operator was told "not invalidated" although this worker's memory
        had been emptied; what happened decides what to do next (the answers in Redis, which
        every worker reads, are still there: invalidate again once Redis is back).
        Test strategy: cache two summaries, cut the link, invalidate `summarize`; restore the
        link and look into Redis; pass the retry window, invalidate again and look again.
        Success criteria: 503 `cache_unavailable` whose details say 2 removed from memory and
        Redis down, the message saying the same; the entries still in Redis; the second
        invalidation 200 and Redis empty of them.
        """
        client = await make_client(redis=redis_link.for_app, model=provider.model)
        await process(client, summarize())
        await process(client, summarize(ORCHARD))
        body = {"operation": "summarize"}

        await redis_link.cut()
        partial = await client.post("/internal/cache/invalidate", json=body, headers=OPERATOR)
        await redis_link.restore()
        keys_left_behind = await cache_keys(redis_inspector)
        clock.advance(1.5)
        again = await client.post("/internal/cache/invalidate", json=body, headers=OPERATOR)

        error = partial.json()["error"]
        assert (partial.status_code, error["code"]) == (503, "cache_unavailable")
        assert error["details"] == {"namespace": "summarize", "memory_removed": 2, "redis": "down"}
        assert "removed from this worker's memory" in error["message"]
        assert len(keys_left_behind) == 2
        assert (again.status_code, again.json()) == (200, {"removed": 2})
        assert await cache_keys(redis_inspector) == set()


class TestSingleFlight:
    """Seam: concurrent requests → TextProcessor's single-flight → one provider call.

    Paths: CACHE-06
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP; 20
    concurrent requests; the cache on every Redis tier.
    Faked: the AI provider (FakeProvider holding its answer until all 20 have missed).
    """

    @pytest.mark.covers("CACHE-06")
    async def test_twenty_concurrent_identical_misses_one_provider_call(
        self, make_client: ClientFactory, redis_backend: RedisBackend, provider: FakeProvider
    ):
        """Twenty identical requests arriving together cost one provider call.

        Integration scope: 20 in-flight HTTP requests → cache misses → single-flight → provider.
        Business impact: a burst (a page reload storm, a retrying client) cannot multiply cost.
        Test strategy: the provider holds its answer until all 20 requests have missed the cache
        (the cache's own miss count, from /internal/cache/stats), then answers.
        Success criteria: one provider call for the 20 misses; all 20 get the same result,
        exactly one of them marked `cached: false` (the one that called the provider).
        """
        client = await make_client(redis=redis_backend, model=provider.model)
        provider.hang()

        burst = [asyncio.create_task(process(client, summarize())) for _ in range(20)]
        await _until_all_missed(client, burst)
        provider.release.set()
        answers = await asyncio.gather(*burst)

        assert provider.calls == 1
        assert all(answer["result"] == answers[0]["result"] for answer in answers)
        assert [answer["cached"] for answer in answers].count(False) == 1


async def _until_all_missed(client: AsyncClient, burst: list[asyncio.Task[Any]]) -> None:
    """Until every request of `burst` has missed the cache, and so joined the flight.

    No event marks a request joining the flight; its miss, counted by the cache, does. A poll
    with a deadline: a request that ends first (refused, say) stops the wait, so gather()
    reports why.
    """

    async def still_waiting() -> bool:
        if any(task.done() for task in burst):
            return False
        misses: int = (await cache_stats(client))["misses"]
        return misses < len(burst)

    async with asyncio.timeout(10):
        while await still_waiting():  # noqa: ASYNC110
            await asyncio.sleep(0)


class TestCacheKey:
    """Seam: request fields and model id → cache key → shared Redis.

    Paths: CACHE-07
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    two apps with different models over one Redis, on every tier.
    Faked: the AI providers (FakeProviders with their own model names).
    """

    @pytest.mark.covers("CACHE-07")
    async def test_two_models_over_one_redis_do_not_share_answers(
        self, make_client: ClientFactory, redis_backend: RedisBackend
    ):
        """An answer from one model is never served as another model's answer.

        Integration scope: two apps with different models → cache keys → one Redis.
        Business impact: switching AI_MODEL must not return the old model's answers labelled
        as the new one's.
        Test strategy: two fake providers with different names behind two apps; same request.
        Success criteria: each provider called once, each answer labelled with its own model.
        """
        model_a, model_b = FakeProvider("model-a"), FakeProvider("model-b")
        app_a = await make_client(redis=redis_backend, model=model_a.model)
        app_b = await make_client(redis=redis_backend, model=model_b.model)

        from_a = await process(app_a, summarize())
        from_b = await process(app_b, summarize())

        assert (model_a.calls, model_b.calls) == (1, 1)
        assert from_b["cached"] is False
        assert (from_a["model"], from_b["model"]) == ("function:model-a", "function:model-b")

    @pytest.mark.covers("CACHE-07")
    async def test_options_that_change_the_answer_change_the_key_others_do_not(
        self, make_client: ClientFactory, redis_backend: RedisBackend, provider: FakeProvider
    ):
        """Options and text are in the key only as far as they change the answer.

        Integration scope: request normalization (default options, whitespace) → cache key.
        Business impact: no wrong answer for other options, and no paying twice for the same.
        Test strategy: ask with default options, then spelling the default out with extra
        whitespace in the text, then with a different summary length.
        Success criteria: the spelled-out request is a hit; the other length calls the provider.
        """
        client = await make_client(redis=redis_backend, model=provider.model)
        await process(client, summarize())

        same = await process(client, summarize("  " + HARBOUR.replace(" ", "\n "), max_sentences=3))
        shorter = await process(client, summarize(max_sentences=1))

        assert (same["cached"], shorter["cached"]) == (True, False)
        assert provider.calls == 2


class TestCachedValues:
    """Seam: ResponseCache's encoding ↔ the bytes stored in Redis.

    Paths: CACHE-08
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the bytes in Redis on every tier, read and planted by the test's own client.
    Faked: the AI provider (FakeProvider), time (FakeClock).
    """

    @pytest.mark.covers("CACHE-08")
    async def test_cached_value_in_redis_is_json_with_result_and_expiry(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        redis_inspector: Redis,
        provider: FakeProvider,
        clock: FakeClock,
    ):
        """What the cache stores is a JSON document any tool can read.

        Integration scope: cache set → Redis value, read back by a separate client.
        Business impact: no pickle in a shared store: a value planted in Redis cannot run code,
        and operators can inspect entries.
        Test strategy: process one request; GET the single cache key from outside the app.
        Success criteria: the value parses as JSON holding the returned result, the model and
        an expiry one summarize TTL (24 h) after the fake clock's now.
        """
        client = await make_client(redis=redis_backend, model=provider.model)
        answer = await process(client, summarize())

        (key,) = await cache_keys(redis_inspector)
        stored = await stored_json(redis_inspector, key)

        assert stored["v"] == {"result": answer["result"], "model": answer["model"]}
        assert stored["expires_at"] == clock.now + 24 * 3600

    @pytest.mark.covers("CACHE-08")
    async def test_pickled_value_planted_in_redis_ignored_and_replaced(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        redis_inspector: Redis,
        provider: FakeProvider,
    ):
        """A non-JSON value under a cache key is never decoded as an answer.

        Integration scope: Redis value written by someone else → cache read → provider.
        Business impact: a poisoned or legacy pickled entry can neither run code nor be served.
        Test strategy: worker A caches an answer; the test overwrites it with a pickle; worker
        B (empty LRU) asks the same question.
        Success criteria: B gets a fresh provider answer; the key holds JSON again.
        """
        worker_a = await make_client(redis=redis_backend, model=provider.model)
        worker_b = await make_client(redis=redis_backend, model=provider.model)
        answer = await process(worker_a, summarize())
        (key,) = await cache_keys(redis_inspector)
        await redis_inspector.set(key, pickle.dumps({"v": {"result": "planted"}}))

        from_b = await process(worker_b, summarize())

        assert from_b["cached"] is False
        assert from_b["result"] == answer["result"]
        assert (await stored_json(redis_inspector, key))["v"]["result"] == answer["result"]


class TestCacheControl:
    """Seam: Cache-Control request header → TextProcessor's cache read.

    Paths: CACHE-09
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the cache on every Redis tier.
    Faked: the AI provider (FakeProvider), time (FakeClock).
    """

    @pytest.mark.covers("CACHE-09")
    async def test_no_cache_header_skips_read_and_refreshes_entry(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        provider: FakeProvider,
        clock: FakeClock,
    ):
        """`Cache-Control: no-cache` forces a fresh answer, which then replaces the cached one.

        Integration scope: header parsing in the route → service read_cache → cache set.
        Business impact: a client can insist on a fresh answer without an operator's help.
        Test strategy: TTL 60 s; cache an answer; at 50 s ask with `no-cache`; at 70 s (past
        the first answer's expiry) ask without it.
        Success criteria: the no-cache request calls the provider (`cached: false`); the
        plain request at 70 s is a hit on the refreshed entry; two provider calls in all.
        """
        client = await make_client(
            redis=redis_backend, model=provider.model, cache_ttl_seconds={"summarize": 60}
        )
        await process(client, summarize())

        clock.advance(50)
        forced = await process(client, summarize(), **{"Cache-Control": "no-cache"})
        clock.advance(20)
        plain = await process(client, summarize())

        assert (forced["cached"], plain["cached"]) == (False, True)
        assert provider.calls == 2


class TestCacheStats:
    """Seam: GET /internal/cache/stats → ResponseCache.stats → Redis (or memory).

    Paths: CACHE-10
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the counters in Redis on every tier, or in memory without Redis.
    Faked: the AI provider (FakeProvider).
    """

    @pytest.mark.covers("CACHE-10")
    async def test_miss_then_hit_shown_in_stats(
        self, make_client: ClientFactory, redis_backend: RedisBackend, provider: FakeProvider
    ):
        """Stats report the lookups, the backend in use and the stored keys.

        Integration scope: /v1 requests → cache counters in Redis → operator stats endpoint.
        Business impact: operators can see whether the cache pays for itself.
        Test strategy: the same request twice, then another text.
        Success criteria: hits 1, misses 2, ratio 1/3, backend `redis`, two keys.
        """
        client = await make_client(redis=redis_backend, model=provider.model)
        await process(client, summarize())
        await process(client, summarize())
        await process(client, summarize(ORCHARD))

        stats = await cache_stats(client)

        assert (stats["hits"], stats["misses"], stats["key_count"]) == (1, 2, 2)
        assert stats["hit_ratio"] == pytest.approx(1 / 3)
        assert stats["backend"] == "redis"

    @pytest.mark.covers("CACHE-10")
    async def test_concurrent_misses_each_counted_once_in_the_shared_stats(
        self, make_client: ClientFactory, redis_backend: RedisBackend, provider: FakeProvider
    ):
        """Lookups counted while other requests' counts are on their way to Redis are sent once.

        Integration scope: concurrent /v1 requests on one app → its counts sent to Redis with
        the next Redis command of whichever request sends one → the shared stats another app
        (another worker) reads over the same Redis.
        Business impact: counts sent by two requests in flight at once were counted twice, and
        the sender took both back from what it had yet to send: the shared total was wrong
        until its next send, and under steady load the error grew with every round until
        HINCRBY overflowed 64 bits, from when every cache write failed and the process held
        Redis down (its rate limits and breakers local) a second at a time.
        Test strategy: 3 rounds of 20 concurrent requests on one app, each of a text of its
        own; then the stats as a second app over the same Redis sees them.
        Success criteria: the second app sees at most 60 misses (nothing counted twice); once
        the first app has sent what it holds (its own stats request), exactly 60.
        """
        busy = await make_client(redis=redis_backend, model=provider.model)
        other = await make_client(redis=redis_backend, model=provider.model)

        for round_ in range(3):
            texts = [f"{HARBOUR} Round {round_}, text {n}." for n in range(20)]
            await asyncio.gather(*(process(busy, summarize(text)) for text in texts))
        seen_meanwhile = await cache_stats(other)
        await cache_stats(busy)
        seen_after = await cache_stats(other)

        assert seen_meanwhile["misses"] <= 60
        assert (seen_after["hits"], seen_after["misses"], seen_after["key_count"]) == (0, 60, 60)

    @pytest.mark.covers("CACHE-10")
    async def test_without_redis_stats_report_memory_backend(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """Without REDIS_URL the cache still works and says where it lives.

        Integration scope: app without Redis → in-process cache → stats endpoint.
        Business impact: a fresh clone caches with no Redis, and the operator can tell.
        Test strategy: the default app (no Redis); a miss then a hit.
        Success criteria: backend `memory`, one hit, one miss, one key.
        """
        client = await make_client(model=provider.model)
        await process(client, summarize())
        await process(client, summarize())

        stats = await cache_stats(client)

        assert stats["backend"] == "memory"
        assert (stats["hits"], stats["misses"], stats["key_count"]) == (1, 1, 1)
