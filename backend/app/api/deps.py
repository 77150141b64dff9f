"""Dependencies both API surfaces share: the resources, the caller's API key, rate limits."""

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.core.exceptions import RateLimitedError, ValidationError
from app.core.logging import annotate_request
from app.infrastructure.rate_limit import RateLimitResult
from app.resources import Resources
from app.services.auth import Principal, Role

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <key>`")
BearerKey = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
HeaderKey = Annotated[str | None, Security(_api_key_header)]


# Dependencies are `async def` even when they do not await: FastAPI runs plain `def` ones in a
# thread pool, and those thread hops cost more than everything else on a cache hit. The graph is
# kept flat for the same reason: FastAPI resolves every node on every request (`make bench`
# measured its resolution at a third of a cache hit), so a dependency reads the resources off
# the app instead of depending on `get_resources`, and the rate limit is a call, not a node.
def resources_of(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


async def get_resources(request: Request) -> Resources:
    return resources_of(request)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_principal(request: Request, bearer: BearerKey, api_key: HeaderKey) -> Principal:
    return await _authenticate(request, bearer.credentials if bearer else api_key)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_caller(request: Request) -> Principal:
    """What `get_principal` gives, the key read by the same two schemes, called here instead of
    resolved as dependencies of their own: on the text routes, which run most, the two extra
    nodes cost about a tenth of a cache hit's CPU (README, Benchmarks). Its routes are
    documented with `openapi_extra=KEY_SECURITY`, as the schemes would document them."""
    bearer = await _bearer(request)
    presented = bearer.credentials if bearer else await _api_key_header(request)
    return await _authenticate(request, presented)


CallerDep = Annotated[Principal, Depends(get_caller)]
KEY_SECURITY: dict[str, Any] = {
    "security": [{_bearer.scheme_name: []}, {_api_key_header.scheme_name: []}]
}


async def _authenticate(request: Request, presented: str | None) -> Principal:
    principal = await resources_of(request).authenticator.authenticate(presented)
    annotate_request(key_id=principal.key_id)  # an id as history stores it, never the key
    return principal


async def charge_rate_limit(request: Request, principal: Principal, cost: int = 1) -> None:
    """Charges `cost` requests to the caller's per-minute limit, set by its tier; operators
    pass free. The outcome stays on the request (`limit_result`), for the X-RateLimit-*
    response headers."""
    if principal.role is Role.OPERATOR:
        return
    settings = resources_of(request).settings
    tier = principal.tier or settings.default_tier
    per_minute = settings.requests_per_minute(tier)
    if cost > per_minute:  # waiting would not help, so this is not a 429
        raise ValidationError(
            f"This request counts as {cost} requests; the {tier} tier allows {per_minute} "
            "per minute. Send fewer items at once.",
            details={"cost": cost, "requests_per_minute": per_minute},
        )
    await _charge(
        request,
        principal.key_id,
        tier,
        per_minute,
        cost,
        f"Rate limit reached: the {tier} tier allows {per_minute} requests per minute.",
        {"tier": tier, "requests_per_minute": per_minute},
    )


async def charge_registration(request: Request) -> None:
    """Registrations per minute from the client's address: signing up needs no key, so the
    address is the only identity there is to limit (behind a proxy, run uvicorn with
    --proxy-headers and --forwarded-allow-ips so that it is the caller's, not the proxy's)."""
    per_minute = resources_of(request).settings.registrations_per_minute
    address = request.client.host if request.client else "unknown"
    await _charge(
        request,
        f"register:{address}",
        "registration",
        per_minute,
        1,
        f"Too many registrations from this address: {per_minute} per minute are allowed.",
        {"registrations_per_minute": per_minute},
    )


async def _charge(
    request: Request,
    identity: str,
    limit: str,
    per_minute: int,
    cost: int,
    refusal: str,
    details: dict[str, object],
) -> None:
    resources = resources_of(request)
    result = await resources.rate_limiter.hit(identity, per_minute=per_minute, cost=cost)
    request.state.rate_limit = result
    if not result.allowed:
        resources.metrics.rate_limit_refusals.labels(limit).inc()
        raise RateLimitedError(
            refusal, details=details, retry_after_seconds=result.retry_after_seconds
        )


def limit_result(request: Request) -> RateLimitResult | None:
    """What the request was charged, if it was."""
    result: RateLimitResult | None = getattr(request.state, "rate_limit", None)
    return result
