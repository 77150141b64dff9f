"""The operator API, under /internal, with its own OpenAPI document at /internal/docs."""

from fastapi import APIRouter, Depends

from app.api.internal import accounts, cache, health, jobs, metrics, resilience
from app.api.internal.deps import require_operator
from app.api.responses import AUTH_ERRORS, errors

# 503: a key that is not an operator's may be looked up in the database, which may be down.
router = APIRouter(
    prefix="/internal",
    dependencies=[Depends(require_operator)],
    responses={**AUTH_ERRORS, **errors(503)},
)
router.include_router(health.router)
router.include_router(cache.router)
router.include_router(resilience.router)
router.include_router(metrics.router)
router.include_router(accounts.router)
router.include_router(jobs.router)
