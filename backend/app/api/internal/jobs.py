from fastapi import APIRouter
from shared.jobs import JobsOverview

from app.api.deps import ResourcesDep

router = APIRouter(tags=["jobs"])


@router.get("/jobs", summary="The job queue: depth, items waiting and running, workers, stuck jobs")
async def overview(resources: ResourcesDep) -> JobsOverview:
    return await resources.jobs.overview()
