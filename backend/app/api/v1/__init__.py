"""The public API, under /v1: `routes`, listed flat ahead of every included router, and `router`.

FastAPI (0.165) matches an included router's routes anew on each request, walking every level of
inclusion twice: once to match the path, once more to dispatch it. Under two levels, that walk
was a sixth of a cache hit's CPU in-process (README, Benchmarks). The routes most requests go to are
therefore declared with their full paths and listed as they are, and only the others are
included. The order is the one inclusion gave, so the OpenAPI document is unchanged.
"""

from fastapi import APIRouter

from app.api.responses import errors
from app.api.v1 import auth, health, history, jobs, text

routes = (*health.router.routes, *text.router.routes)

router = APIRouter(prefix="/v1")
# 503: issued keys are checked against the database, which may be down.
router.include_router(history.router, responses=errors(401, 503))
router.include_router(jobs.router, responses=errors(401, 503))
router.include_router(auth.router)
