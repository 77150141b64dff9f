"""Usage per issued key: requests, cache hits and provider calls, for the account pages.

Counted where every text request ends, in the same transaction as its history row, with an
atomic `SET n = n + 1`, so concurrent requests never lose a count as read-modify-write would.
A request is counted whatever its outcome; a cache hit is an answer from the cache (or shared
from a concurrent identical request's provider call); a provider call is an answer the provider
gave this request. Settings keys belong to no account and are not counted here (history and
metrics still see them).
"""

from sqlalchemy import Update, update

from app.infrastructure.database.models import ApiKey
from app.services.accounts import parse_key_ref


def usage_update(caller: str, *, cached: bool, provider_call: bool) -> Update | None:
    """The counter update for an issued key, or None for a settings key."""
    key_id = parse_key_ref(caller)
    if key_id is None:
        return None
    return (
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(
            requests=ApiKey.requests + 1,
            cache_hits=ApiKey.cache_hits + int(cached),
            provider_calls=ApiKey.provider_calls + int(provider_call),
        )
    )
