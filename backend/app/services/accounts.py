"""Accounts and their API keys: registration, the owner's view, rotation, revocation, key lookup.

A key is shown once; the database keeps its keyed hash (HMAC-SHA256 with KEY_HASH_SECRET) and a
display prefix. Keys carry 256 bits of entropy, so a slow password hash would add nothing: no one
can guess a key to test against a leaked hash, and without the secret the hash cannot even be
computed. An account has at most one active key (a partial unique index guards it).

A key's lookup is reused for AUTH_CACHE_SECONDS by the process that made it: without it every
request with an issued key cost a database query. A revocation or rotation forgets the account's
lookups at once in the process that made it; the other workers see it when theirs expire.

Write transactions start with their write, never with a read: SQLite (WAL) refuses to upgrade a
read transaction to a write one after another writer committed, instead of waiting for it.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from shared.accounts import (
    AccountInfo,
    AccountList,
    Limits,
    RegisterRequest,
    RegisterResponse,
    RotateResponse,
    Usage,
)
from sqlalchemy import ColumnElement, CursorResult, Result, and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.core.config import Settings
from app.core.exceptions import ConflictError, NotFoundError
from app.infrastructure.database.engine import Database
from app.infrastructure.database.models import Account, ApiKey, utcnow
from app.infrastructure.security import display_prefix, generate_api_key, hash_api_key

_KEY_REF_PREFIX = "key:"


def key_ref(key_id: int) -> str:
    """How an issued key is named in history, usage and rate limits: `key:<id>`."""
    return f"{_KEY_REF_PREFIX}{key_id}"


def parse_key_ref(ref: str) -> int | None:
    """The key id in a `key:<id>` reference; None for a settings key (`settings:...`)."""
    number = ref.removeprefix(_KEY_REF_PREFIX)
    return int(number) if number != ref and number.isdigit() else None


@dataclass(frozen=True, slots=True)
class KeyOwner:
    key_id: int
    account_id: int
    tier: str
    revoked: bool  # the key, or its whole account


# Lookups kept at most, oldest dropped first: enough for every key in use in a second or so.
_LOOKUPS_KEPT = 10_000


class AccountService:
    def __init__(
        self, database: Database, settings: Settings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._database = database
        self._settings = settings
        self._secret = settings.key_hash_secret.get_secret_value()
        self._clock = clock
        self._lookup_seconds = settings.auth_cache_seconds
        # Keyed hash → the key's owner and until when that answer is reused.
        self._lookups: dict[str, tuple[KeyOwner, float]] = {}
        # Bumped by every change of keys here: a lookup that overlapped one is not kept, as it
        # may have read the rows from before it.
        self._key_changes = 0

    async def register(self, request: RegisterRequest) -> RegisterResponse:
        api_key = generate_api_key()
        try:
            async with self._database.session() as session:
                account = Account(
                    email=request.email.lower(),
                    display_name=request.display_name,
                    tier=self._settings.default_tier,
                )
                session.add(account)
                await session.flush()  # the unique email index answers here, before the key
                session.add(self._new_key(account.id, api_key))
        except IntegrityError as exc:
            # The whole transaction rolled back: no account, no orphan key row.
            raise ConflictError("An account with this email already exists.") from exc
        unused = Usage(requests=0, cache_hits=0, provider_calls=0)
        info = self._info(account, display_prefix(api_key), unused)
        return RegisterResponse(account=info, api_key=api_key)

    async def account(self, account_id: int) -> AccountInfo:
        async with self._database.session() as session:
            found = await self._infos(session, Account.id == account_id)
        if not found:
            raise NotFoundError(f"Account {account_id} does not exist.")
        return found[0]

    async def page(self, *, page: int, page_size: int) -> AccountList:
        async with self._database.session() as session:
            total = await session.scalar(select(func.count()).select_from(Account)) or 0
            items = await self._infos(session, None, offset=(page - 1) * page_size, limit=page_size)
        return AccountList(items=items, total=total)

    async def rotate_key(self, account_id: int, current_key_id: int) -> RotateResponse:
        """A new key for the account; the key presented (`current_key_id`) stops working."""
        api_key = generate_api_key()
        try:
            async with self._database.session() as session:
                revoked = await session.execute(
                    update(ApiKey)
                    .where(ApiKey.id == current_key_id, ApiKey.revoked_at.is_(None))
                    .values(revoked_at=utcnow())
                )
                if _rowcount(revoked) == 0:
                    # A concurrent rotation with the same key won; two new keys must not exist.
                    raise ConflictError("This key was rotated or revoked meanwhile.")
                session.add(self._new_key(account_id, api_key))
        except IntegrityError as exc:  # the one-active-key index, should anything slip past
            raise ConflictError("The account's key changed meanwhile; try again.") from exc
        finally:
            self._forget(account_id)
        return RotateResponse(api_key=api_key, key_prefix=display_prefix(api_key))

    async def revoke(self, account_id: int) -> AccountInfo:
        """Revoke the account and its active key; revoking again changes nothing."""
        now = utcnow()
        async with self._database.session() as session:
            await session.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(revoked_at=func.coalesce(Account.revoked_at, now))
            )
            await session.execute(
                update(ApiKey)
                .where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            found = await self._infos(session, Account.id == account_id)
        self._forget(account_id)
        if not found:  # the updates matched no row either
            raise NotFoundError(f"Account {account_id} does not exist.")
        return found[0]

    async def find_key(self, presented: str) -> KeyOwner | None:
        """The owner of an issued key, found by its keyed hash (an indexed equality lookup), or
        as this process found it less than AUTH_CACHE_SECONDS ago. Unknown keys are not kept:
        each is looked up again, as a key registered meanwhile must work at once."""
        digest = hash_api_key(presented, self._secret)
        now = self._clock()
        kept = self._lookups.get(digest)
        if kept is not None and now < kept[1]:
            return kept[0]
        changes = self._key_changes
        owner = await self._lookup(digest)
        if owner is not None and self._lookup_seconds > 0 and changes == self._key_changes:
            self._lookups.pop(digest, None)  # re-inserted last: the dict's order is by age
            self._lookups[digest] = (owner, now + self._lookup_seconds)
            if len(self._lookups) > _LOOKUPS_KEPT:
                del self._lookups[next(iter(self._lookups))]
        return owner

    def _forget(self, account_id: int) -> None:
        """Drop the account's kept lookups: its keys changed, here, now."""
        self._key_changes += 1
        stale = [d for d, (owner, _) in self._lookups.items() if owner.account_id == account_id]
        for digest in stale:
            del self._lookups[digest]

    async def _lookup(self, digest: str) -> KeyOwner | None:
        async with self._database.session() as session:
            row = (
                await session.execute(
                    select(ApiKey.id, ApiKey.account_id, ApiKey.revoked_at, Account)
                    .join(Account, Account.id == ApiKey.account_id)
                    .where(ApiKey.key_hash == digest)
                )
            ).one_or_none()
        if row is None:
            return None
        key_id, account_id, key_revoked_at, account = row
        revoked = key_revoked_at is not None or account.revoked_at is not None
        return KeyOwner(key_id, account_id, account.tier, revoked)

    def _new_key(self, account_id: int, api_key: str) -> ApiKey:
        return ApiKey(
            account_id=account_id,
            key_hash=hash_api_key(api_key, self._secret),
            prefix=display_prefix(api_key),
        )

    async def _infos(
        self,
        session: AsyncSession,
        where: ColumnElement[bool] | None,
        *,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[AccountInfo]:
        # Usage sums every key the account ever had, so a rotation does not reset it.
        usage = (
            select(
                ApiKey.account_id,
                func.sum(ApiKey.requests).label("requests"),
                func.sum(ApiKey.cache_hits).label("cache_hits"),
                func.sum(ApiKey.provider_calls).label("provider_calls"),
                func.sum(ApiKey.input_tokens).label("input_tokens"),
                func.sum(ApiKey.output_tokens).label("output_tokens"),
            )
            .group_by(ApiKey.account_id)
            .subquery()
        )
        active = aliased(ApiKey)
        query = (
            select(
                Account,
                active.prefix,
                func.coalesce(usage.c.requests, 0),
                func.coalesce(usage.c.cache_hits, 0),
                func.coalesce(usage.c.provider_calls, 0),
                func.coalesce(usage.c.input_tokens, 0),
                func.coalesce(usage.c.output_tokens, 0),
            )
            .outerjoin(usage, usage.c.account_id == Account.id)
            .outerjoin(active, and_(active.account_id == Account.id, active.revoked_at.is_(None)))
            .order_by(Account.id)
            .offset(offset)
            .limit(limit)
        )
        if where is not None:
            query = query.where(where)
        rows = await session.execute(query)
        return [
            self._info(
                account,
                prefix,
                Usage(requests=r, cache_hits=h, provider_calls=p, input_tokens=i, output_tokens=o),
            )
            for account, prefix, r, h, p, i, o in rows
        ]

    def _info(self, account: Account, prefix: str | None, usage: Usage) -> AccountInfo:
        return AccountInfo(
            id=account.id,
            email=account.email,
            display_name=account.display_name,
            tier=account.tier,
            active=account.revoked_at is None,
            key_prefix=prefix,
            created_at=account.created_at,
            usage=usage,
            limits=Limits(
                tier=account.tier,
                requests_per_minute=self._settings.requests_per_minute(account.tier),
            ),
        )


def _rowcount(result: Result[Any]) -> int:
    # An UPDATE's result is a CursorResult; the session's execute() is typed for any statement.
    return cast(CursorResult[Any], result).rowcount
