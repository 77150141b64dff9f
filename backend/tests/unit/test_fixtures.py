"""The shared fixtures' own promises: a settings override that names no setting is an error.

`Settings` ignores unknown names (it reads a whole environment), so without the check a
misspelt override in a test would be dropped and the test would run, and maybe pass, on the
default value.
"""

import pytest
from conftest import ClientFactory, DatabaseBackend, make_settings


class TestSettingsOverrides:
    async def test_misspelt_setting_refused_with_the_name_it_resembles(
        self, make_client: ClientFactory
    ):
        with pytest.raises(TypeError) as refused:
            await make_client(breaker_failur_threshold=3)

        assert str(refused.value) == (
            "unknown setting 'breaker_failur_threshold' (did you mean "
            "'breaker_failure_threshold'?): see app/core/config.py"
        )

    def test_every_unknown_name_listed_even_without_a_resemblance(
        self, sqlite_backend: DatabaseBackend
    ):
        with pytest.raises(TypeError, match=r"unknown setting 'colour', 'zzz':"):
            make_settings(sqlite_backend, zzz=1, colour="blue")

    def test_known_setting_reaches_the_settings(self, sqlite_backend: DatabaseBackend):
        settings = make_settings(sqlite_backend, breaker_failure_threshold=3)

        assert settings.breaker_failure_threshold == 3
