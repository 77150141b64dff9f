"""The public API, under /v1."""

from fastapi import APIRouter

from app.api.responses import errors
from app.api.v1 import auth, health, history, jobs, text

router = APIRouter(prefix="/v1")
router.include_router(health.router)
# 503: issued keys are checked against the database, which may be down.
router.include_router(text.router, responses=errors(401, 503))
router.include_router(history.router, responses=errors(401, 503))
router.include_router(jobs.router, responses=errors(401, 503))
router.include_router(auth.router)
