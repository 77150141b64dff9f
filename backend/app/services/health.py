"""Readiness: each dependency as ok, degraded or down, and the worst of them overall."""

from shared.health import DependencyHealth, HealthState, ReadinessResponse

from app.infrastructure.ai.resilient import ResilientProvider
from app.infrastructure.cache import ResponseCache
from app.infrastructure.database.engine import Database
from app.infrastructure.resilience.breaker import BreakerState

_ORDER: dict[HealthState, int] = {"ok": 0, "degraded": 1, "down": 2}


async def database_health(database: Database) -> DependencyHealth:
    if await database.ping():
        return DependencyHealth(name="database", status="ok")
    return DependencyHealth(name="database", status="down", detail="the database does not answer")


async def cache_health(cache: ResponseCache) -> DependencyHealth:
    if cache.backend == "memory":
        return DependencyHealth(name="cache", status="ok", detail="in-memory (no REDIS_URL)")
    if await cache.ping():
        return DependencyHealth(name="cache", status="ok", detail="redis")
    # Answers still flow from the in-process cache, so this is degraded rather than down.
    return DependencyHealth(
        name="cache", status="degraded", detail="redis unreachable; serving from memory"
    )


def readiness(dependencies: list[DependencyHealth]) -> ReadinessResponse:
    worst = max((dep.status for dep in dependencies), key=_ORDER.__getitem__, default="ok")
    return ReadinessResponse(status=worst, dependencies=dependencies)


async def provider_health(provider: ResilientProvider) -> DependencyHealth:
    """Degraded while the circuit is not closed, after recent failed calls, or when the
    provider's own check (a model listing, no tokens) fails: the service still answers from the
    cache, so never down."""
    model_id = provider.model_id
    snapshot = await provider.breaker.snapshot()
    if snapshot.state is not BreakerState.CLOSED:
        problem: str | None = f"circuit {snapshot.state.value}; cached answers only"
    elif snapshot.failure_count:
        window = provider.breaker.policy.window_seconds
        problem = f"{snapshot.failure_count} failed call(s) in the last {window:g} s"
    else:
        problem = provider.check_problem()
    if problem is None:
        return DependencyHealth(name="ai_provider", status="ok", detail=model_id)
    return DependencyHealth(name="ai_provider", status="degraded", detail=f"{model_id}: {problem}")


async def check_readiness(
    database: Database, cache: ResponseCache, provider: ResilientProvider
) -> ReadinessResponse:
    return readiness(
        [
            await database_health(database),
            await cache_health(cache),
            await provider_health(provider),
        ]
    )
