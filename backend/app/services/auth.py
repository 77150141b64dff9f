"""Who is calling: a presented API key becomes a Principal, or an AuthenticationError.

Keys from the settings are compared first, in constant time, without touching the database.
Anything else that looks like an issued key (`sk_...`) is looked up by its keyed hash; an
indexed lookup of an HMAC leaks nothing useful through timing, since no one can choose hashes.
"""

from dataclasses import dataclass
from enum import StrEnum

from app.core.config import Settings
from app.core.exceptions import AuthenticationError
from app.infrastructure.security import KEY_PREFIX, fingerprint, matches_any
from app.services.accounts import AccountService, key_ref


class Role(StrEnum):
    PUBLIC = "public"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: Role
    account_id: int | None = None  # None for keys from the settings
    tier: str | None = None  # None for operators: they are not rate limited


class Authenticator:
    def __init__(self, settings: Settings, accounts: AccountService | None = None) -> None:
        self._public_keys = list(settings.api_keys)
        self._operator_keys = list(settings.internal_api_keys)
        self._public_tier = settings.api_keys_tier
        self._accounts = accounts

    async def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise AuthenticationError(
                "An API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`."
            )
        if key := matches_any(presented, self._operator_keys):
            return Principal(key_id=f"settings:{fingerprint(key)}", role=Role.OPERATOR)
        if key := matches_any(presented, self._public_keys):
            return Principal(
                key_id=f"settings:{fingerprint(key)}", role=Role.PUBLIC, tier=self._public_tier
            )
        if self._accounts is not None and presented.startswith(KEY_PREFIX):
            owner = await self._accounts.find_key(presented)
            if owner is not None and owner.revoked:
                raise AuthenticationError("The API key was revoked.")
            if owner is not None:
                return Principal(
                    key_id=key_ref(owner.key_id),
                    role=Role.PUBLIC,
                    account_id=owner.account_id,
                    tier=owner.tier,
                )
        raise AuthenticationError("The API key is not valid.")
