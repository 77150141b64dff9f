from datetime import UTC, datetime

from fastapi import APIRouter
from shared.operator import BreakersResponse, BreakerView

from app.api.deps import ResourcesDep
from app.api.responses import errors
from app.core.exceptions import NotFoundError
from app.infrastructure.resilience.breaker import BreakerSnapshot, CircuitBreaker

router = APIRouter(prefix="/resilience", tags=["resilience"])


def _view(snapshot: BreakerSnapshot) -> BreakerView:
    def when(timestamp: float | None) -> datetime | None:
        return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)

    return BreakerView(
        name=snapshot.name,
        state=snapshot.state.value,
        failure_count=snapshot.failure_count,
        opened_at=when(snapshot.opened_at),
        next_trial_at=when(snapshot.next_trial_at),
    )


def _breakers(resources: ResourcesDep) -> dict[str, CircuitBreaker]:
    breaker = resources.provider.breaker
    return {breaker.name: breaker}


@router.get("/breakers", summary="Every circuit breaker's state")
async def breakers(resources: ResourcesDep) -> BreakersResponse:
    return BreakersResponse(
        breakers=[_view(await b.snapshot()) for b in _breakers(resources).values()]
    )


@router.post(
    "/breakers/{name}/reset",
    summary="Close a breaker and clear its failures",
    # 422 too: FastAPI documents one for every route with parameters, in a shape ours is not.
    responses=errors(404, 422),
)
async def reset(name: str, resources: ResourcesDep) -> BreakerView:
    breaker = _breakers(resources).get(name)
    if breaker is None:
        raise NotFoundError(f"No circuit breaker named {name!r}.")
    await breaker.reset()
    return _view(await breaker.snapshot())
