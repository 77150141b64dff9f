"""Operator view of the accounts: list them with usage and limits, revoke one."""

from typing import Annotated

from fastapi import APIRouter, Path, Query
from shared.accounts import AccountInfo, AccountList

from app.api.deps import ResourcesDep
from app.api.responses import errors

router = APIRouter(prefix="/accounts", tags=["accounts"])

AccountId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The account's id.")]


@router.get(
    "", summary="Every account, oldest first, with usage and limits", responses=errors(422, 503)
)
async def list_accounts(
    resources: ResourcesDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 50,
) -> AccountList:
    return await resources.accounts.page(page=page, page_size=page_size)


@router.post(
    "/{account_id}/revoke",
    summary="Revoke an account and its key; its next request gets 401 (idempotent)",
    responses=errors(404, 422, 503),
)
async def revoke(account_id: AccountId, resources: ResourcesDep) -> AccountInfo:
    return await resources.accounts.revoke(account_id)
