from typing import Annotated

from fastapi import APIRouter, Query
from shared.text import HistoryPage

from app.api.deps import PrincipalDep, ResourcesDep
from app.api.responses import errors

router = APIRouter(tags=["history"])


@router.get(
    "/history", summary="The caller's processed requests, newest first", responses=errors(422, 503)
)
async def history(
    principal: PrincipalDep,
    resources: ResourcesDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> HistoryPage:
    return await resources.history.page(principal.key_id, page=page, page_size=page_size)
