from importlib.metadata import version

from fastapi import APIRouter
from shared.health import LivenessResponse

router = APIRouter(prefix="/v1", tags=["health"])  # listed flat: see app.api.v1
VERSION = version("llm-starter-backend")  # read once: the metadata lookup costs ~250 µs


@router.get("/health", summary="Liveness: the process answers")
async def liveness() -> LivenessResponse:
    return LivenessResponse(version=VERSION)
