"""The public API, under /v1."""

from fastapi import APIRouter

from app.api.responses import errors
from app.api.v1 import health, history, text

router = APIRouter(prefix="/v1")
router.include_router(health.router)
router.include_router(text.router, responses=errors(401))
router.include_router(history.router, responses=errors(401))
