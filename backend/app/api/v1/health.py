from importlib.metadata import version

from fastapi import APIRouter
from shared.health import LivenessResponse

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
async def liveness() -> LivenessResponse:
    return LivenessResponse(version=version("llm-starter-backend"))
