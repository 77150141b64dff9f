"""Authenticator: a presented key becomes a Principal (settings keys first, then keys issued to
accounts), or an AuthenticationError; and the key primitives it stands on.

Issued keys are registered through the real AccountService on a migrated SQLite copy: the
database is the boundary here, so it is the real one, not a fake.
"""

import hashlib
from collections.abc import AsyncIterator

import pytest
from app.core.config import Settings
from app.core.exceptions import AuthenticationError
from app.infrastructure.database.engine import Database
from app.infrastructure.security import generate_api_key, matches_any
from app.services.accounts import AccountService
from app.services.auth import Authenticator, Role
from conftest import OPERATOR_KEY, PUBLIC_KEY, DatabaseBackend, make_settings
from shared.accounts import RegisterRequest


@pytest.fixture
def settings(sqlite_backend: DatabaseBackend) -> Settings:
    return make_settings(sqlite_backend)


@pytest.fixture
async def accounts(settings: Settings) -> AsyncIterator[AccountService]:
    database = Database(settings.database_url)
    yield AccountService(database, settings)
    await database.dispose()


@pytest.fixture
def authenticator(settings: Settings, accounts: AccountService) -> Authenticator:
    return Authenticator(settings, accounts)


async def register(accounts: AccountService) -> tuple[int, str]:
    registered = await accounts.register(RegisterRequest(email="ada@example.com", display_name="A"))
    return registered.account.id, registered.api_key


def settings_key_id(key: str) -> str:
    return "settings:" + hashlib.sha256(key.encode()).hexdigest()[:16]


class TestSettingsKeys:
    async def test_operator_key_operator_without_tier(self, authenticator: Authenticator):
        principal = await authenticator.authenticate(OPERATOR_KEY)

        assert (principal.role, principal.tier, principal.account_id) == (Role.OPERATOR, None, None)
        assert principal.key_id == settings_key_id(OPERATOR_KEY)

    async def test_public_key_public_with_the_settings_tier(
        self, authenticator: Authenticator, settings: Settings
    ):
        principal = await authenticator.authenticate(PUBLIC_KEY)

        assert (principal.role, principal.tier) == (Role.PUBLIC, settings.api_keys_tier)
        assert principal.key_id == settings_key_id(PUBLIC_KEY)

    @pytest.mark.parametrize("presented", [None, ""])
    async def test_no_key_raises_saying_how_to_send_one(
        self, authenticator: Authenticator, presented: str | None
    ):
        with pytest.raises(AuthenticationError) as caught:
            await authenticator.authenticate(presented)

        assert "Authorization: Bearer <key>" in caught.value.message
        assert "X-API-Key: <key>" in caught.value.message


class TestIssuedKeys:
    async def test_registered_key_public_for_its_account_and_tier(
        self, authenticator: Authenticator, accounts: AccountService
    ):
        account_id, key = await register(accounts)

        principal = await authenticator.authenticate(key)

        assert (principal.role, principal.account_id, principal.tier) == (
            Role.PUBLIC,
            account_id,
            "free",
        )
        assert principal.key_id.startswith("key:")

    async def test_revoked_key_raises_revoked(
        self, authenticator: Authenticator, accounts: AccountService
    ):
        account_id, key = await register(accounts)
        await accounts.revoke(account_id)

        with pytest.raises(AuthenticationError, match="The API key was revoked"):
            await authenticator.authenticate(key)

    async def test_key_never_issued_raises_not_valid(self, authenticator: Authenticator):
        with pytest.raises(AuthenticationError, match="The API key is not valid"):
            await authenticator.authenticate(generate_api_key())

    async def test_issued_looking_key_without_accounts_raises_not_valid(self, settings: Settings):
        authenticator = Authenticator(settings)  # settings keys only

        with pytest.raises(AuthenticationError, match="The API key is not valid"):
            await authenticator.authenticate(generate_api_key())


class TestKeyPrimitives:
    def test_generated_keys_carry_256_bits_and_differ(self):
        first, second = generate_api_key(), generate_api_key()

        # 32 random bytes are 43 URL-safe base64 characters, after the `sk_` prefix.
        assert (first[:3], len(first)) == ("sk_", 3 + 43)
        assert first != second

    def test_matches_any_returns_the_match_or_none(self):
        known = ["alpha-key", "beta-key"]

        assert matches_any("beta-key", known) == "beta-key"
        assert matches_any("gamma-key", known) is None
