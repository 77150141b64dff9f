"""Self-service accounts: register for a key, see your account, rotate your key."""

from typing import Annotated

from fastapi import APIRouter, Body, Request, status
from shared.accounts import AccountInfo, RegisterRequest, RegisterResponse, RotateResponse

from app.api import examples
from app.api.deps import PrincipalDep, ResourcesDep, charge_registration
from app.api.responses import BODY_ERRORS, errors
from app.core.exceptions import NotFoundError
from app.services.accounts import parse_key_ref
from app.services.auth import Principal

router = APIRouter(prefix="/auth", tags=["accounts"])


def _issued_key(principal: Principal) -> tuple[int, int]:
    """The caller's account and key ids; keys from the settings belong to no account."""
    key_id = parse_key_ref(principal.key_id)
    if principal.account_id is None or key_id is None:
        raise NotFoundError("This key comes from the server settings and has no account.")
    return principal.account_id, key_id


@router.post(
    "/register",
    summary="Create an account and its API key (shown once)",
    status_code=status.HTTP_201_CREATED,
    description="Each client address may register `REGISTRATIONS_PER_MINUTE` times a minute.",
    responses={**BODY_ERRORS, **errors(409, 429, 503)},
)
async def register(
    request: Request,
    body: Annotated[RegisterRequest, Body(openapi_examples=examples.REGISTER)],
    resources: ResourcesDep,
) -> RegisterResponse:
    await charge_registration(request)
    return await resources.accounts.register(body)


@router.get(
    "/me",
    summary="The caller's account: key prefix, usage and limits",
    responses=errors(401, 404, 503),
)
async def me(principal: PrincipalDep, resources: ResourcesDep) -> AccountInfo:
    account_id, _ = _issued_key(principal)
    return await resources.accounts.account(account_id)


@router.post(
    "/keys/rotate",
    summary="Replace the caller's key: the new one is shown once, the old one stops working",
    responses=errors(401, 404, 409, 503),
)
async def rotate(principal: PrincipalDep, resources: ResourcesDep) -> RotateResponse:
    account_id, key_id = _issued_key(principal)
    return await resources.accounts.rotate_key(account_id, key_id)
