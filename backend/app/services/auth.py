"""Who is calling: a presented API key becomes a Principal, or an AuthenticationError."""

from dataclasses import dataclass
from enum import StrEnum

from app.core.config import Settings
from app.core.exceptions import AuthenticationError
from app.infrastructure.security import fingerprint, matches_any


class Role(StrEnum):
    PUBLIC = "public"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: Role


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._public_keys = list(settings.api_keys)
        self._operator_keys = list(settings.internal_api_keys)

    async def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise AuthenticationError(
                "An API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`."
            )
        if key := matches_any(presented, self._operator_keys):
            return Principal(key_id=f"settings:{fingerprint(key)}", role=Role.OPERATOR)
        if key := matches_any(presented, self._public_keys):
            return Principal(key_id=f"settings:{fingerprint(key)}", role=Role.PUBLIC)
        raise AuthenticationError("The API key is not valid.")
