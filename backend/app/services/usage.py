"""Usage per issued key: requests, cache hits, provider calls and tokens, for the account pages.

Counted where every text request ends, in the same transaction as its history row, with an
atomic `SET n = n + k`, so concurrent requests never lose a count as read-modify-write would.
A request is counted whatever its outcome; a cache hit is an answer from the cache (or shared
from a concurrent identical request's provider call); a provider call is an answer the provider
gave this request. Settings keys belong to no account and are not counted here (history and
metrics still see them).
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Update, update

from app.infrastructure.database.models import ApiKey
from app.services.accounts import parse_key_ref


@dataclass(frozen=True, slots=True)
class Use:
    """One request, as usage counts it."""

    caller: str  # the principal's key id: `key:<id>` or a settings key
    cached: bool
    provider_call: bool
    input_tokens: int = 0
    output_tokens: int = 0


def usage_updates(uses: Iterable[Use]) -> list[Update]:
    """One counter update per issued key among `uses`, ordered by key id.

    A group commit carries many requests of one key: one UPDATE with the sums instead of one per
    request. The fixed order matters on PostgreSQL: two workers' transactions that lock the same
    key rows in the same order wait for each other instead of deadlocking.
    """
    requests: Counter[int] = Counter()
    cache_hits: Counter[int] = Counter()
    provider_calls: Counter[int] = Counter()
    input_tokens: Counter[int] = Counter()
    output_tokens: Counter[int] = Counter()
    for use in uses:
        key_id = parse_key_ref(use.caller)
        if key_id is None:
            continue
        requests[key_id] += 1
        cache_hits[key_id] += use.cached
        provider_calls[key_id] += use.provider_call
        input_tokens[key_id] += use.input_tokens
        output_tokens[key_id] += use.output_tokens
    return [
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(
            requests=ApiKey.requests + requests[key_id],
            cache_hits=ApiKey.cache_hits + cache_hits[key_id],
            provider_calls=ApiKey.provider_calls + provider_calls[key_id],
            input_tokens=ApiKey.input_tokens + input_tokens[key_id],
            output_tokens=ApiKey.output_tokens + output_tokens[key_id],
        )
        for key_id in sorted(requests)
    ]
