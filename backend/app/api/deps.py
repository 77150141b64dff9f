"""Dependencies both API surfaces share: the resources, the caller's API key, rate limits."""

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.core.config import Settings
from app.core.exceptions import RateLimitedError, ValidationError
from app.infrastructure.rate_limit import RateLimitResult
from app.resources import Resources
from app.services.auth import Principal, Role

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <key>`")


# Dependencies are `async def` even when they do not await: FastAPI runs plain `def` ones in a
# thread pool, and those thread hops cost more than everything else on a cache hit.
async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings(resources: ResourcesDep) -> Settings:
    return resources.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_principal(
    resources: ResourcesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key_header)],
) -> Principal:
    presented = bearer.credentials if bearer else api_key
    return await resources.authenticator.authenticate(presented)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


class RateLimit:
    """Charges requests to the caller's per-minute limit, set by its tier; operators pass free.

    The outcome stays on the request (`limit_result`), for the X-RateLimit-* response headers.
    """

    def __init__(self, request: Request, principal: Principal, resources: Resources) -> None:
        self._request = request
        self._principal = principal
        self._resources = resources

    async def charge(self, cost: int = 1) -> None:
        if self._principal.role is Role.OPERATOR:
            return
        settings = self._resources.settings
        tier = self._principal.tier or settings.default_tier
        per_minute = settings.requests_per_minute(tier)
        if cost > per_minute:  # waiting would not help, so this is not a 429
            raise ValidationError(
                f"This request counts as {cost} requests; the {tier} tier allows {per_minute} "
                "per minute. Send fewer items at once.",
                details={"cost": cost, "requests_per_minute": per_minute},
            )
        result = await self._resources.rate_limiter.hit(
            self._principal.key_id, per_minute=per_minute, cost=cost
        )
        self._request.state.rate_limit = result
        if not result.allowed:
            raise RateLimitedError(
                f"Rate limit reached: the {tier} tier allows {per_minute} requests per minute.",
                details={"tier": tier, "requests_per_minute": per_minute},
                retry_after_seconds=result.retry_after_seconds,
            )


def limit_result(request: Request) -> RateLimitResult | None:
    """What the request was charged, if it was."""
    result: RateLimitResult | None = getattr(request.state, "rate_limit", None)
    return result


async def get_rate_limit(
    request: Request, principal: PrincipalDep, resources: ResourcesDep
) -> RateLimit:
    return RateLimit(request, principal, resources)


RateLimitDep = Annotated[RateLimit, Depends(get_rate_limit)]
