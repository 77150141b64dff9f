"""Dependencies of the operator API: only operator keys pass."""

from typing import Annotated

from fastapi import Depends

from app.api.deps import PrincipalDep
from app.core.exceptions import PermissionDeniedError
from app.services.auth import Principal, Role


async def require_operator(principal: PrincipalDep) -> Principal:
    if principal.role is not Role.OPERATOR:
        raise PermissionDeniedError("This endpoint needs an operator key (INTERNAL_API_KEYS).")
    return principal


OperatorDep = Annotated[Principal, Depends(require_operator)]
