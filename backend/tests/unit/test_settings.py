"""Settings: bad configuration stops the start with a message that names the variable."""

import pytest
from app.core.config import DEV_API_KEY, load_settings
from app.core.exceptions import ConfigurationError


@pytest.fixture(autouse=True)
def _no_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path):
    # Settings read `.env` from the working directory; tests must not see a developer's file.
    monkeypatch.chdir(tmp_path)


class TestSettingsValidation:
    @pytest.mark.covers("CONF-01")
    @pytest.mark.parametrize(
        ("variable", "value", "message"),
        [
            ("DATABASE_URL", "nonsense", "DATABASE_URL"),
            ("REDIS_URL", "http://localhost", "REDIS_URL"),
            ("RATE_LIMIT_TIERS", "nonsense", "RATE_LIMIT_TIERS: not valid JSON"),
            ("JOB_EMBEDDED_WORKER", "false", "JOB_EMBEDDED_WORKER: false needs REDIS_URL"),
            ("BREAKER_FAILURE_THRESHOLD", "0", "BREAKER_FAILURE_THRESHOLD"),
        ],
    )
    def test_bad_value_names_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
    ):
        monkeypatch.setenv(variable, value)

        with pytest.raises(ConfigurationError, match=message):
            load_settings()

    @pytest.mark.covers("CONF-02")
    def test_production_without_keys_is_refused(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("ENVIRONMENT", "production")

        with pytest.raises(ConfigurationError, match="API_KEYS"):
            load_settings()

    @pytest.mark.covers("CONF-02")
    def test_production_with_dev_placeholder_key_is_refused(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("ENVIRONMENT", "production")
        monkeypatch.setenv("API_KEYS", DEV_API_KEY)
        monkeypatch.setenv("INTERNAL_API_KEYS", "op-" + "x" * 40)
        monkeypatch.setenv("KEY_HASH_SECRET", "s" * 40)

        with pytest.raises(ConfigurationError, match="API_KEYS"):
            load_settings()

    @pytest.mark.covers("CONF-02")
    def test_production_with_real_keys_starts(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("ENVIRONMENT", "production")
        monkeypatch.setenv("API_KEYS", "pub-1, pub-2")
        monkeypatch.setenv("INTERNAL_API_KEYS", "op-1")
        monkeypatch.setenv("KEY_HASH_SECRET", "s" * 40)
        monkeypatch.setenv("AI_MODEL", "openai-chat:gpt-4o-mini")

        settings = load_settings()

        assert settings.api_keys == ["pub-1", "pub-2"]
        assert settings.auto_migrate is False

    @pytest.mark.covers("CONF-02")
    def test_production_with_the_local_model_is_refused(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("ENVIRONMENT", "production")
        monkeypatch.setenv("API_KEYS", "pub-1")
        monkeypatch.setenv("INTERNAL_API_KEYS", "op-1")
        monkeypatch.setenv("KEY_HASH_SECRET", "s" * 40)
        monkeypatch.setenv("AI_MODEL", "local")

        with pytest.raises(ConfigurationError, match=r"AI_MODEL: .* ALLOW_LOCAL_MODEL=true"):
            load_settings()

    @pytest.mark.covers("CONF-02")
    def test_production_with_the_local_model_explicitly_allowed_starts(
        self, monkeypatch: pytest.MonkeyPatch
    ):
        monkeypatch.setenv("ENVIRONMENT", "production")
        monkeypatch.setenv("API_KEYS", "pub-1")
        monkeypatch.setenv("INTERNAL_API_KEYS", "op-1")
        monkeypatch.setenv("KEY_HASH_SECRET", "s" * 40)
        monkeypatch.setenv("ALLOW_LOCAL_MODEL", "true")

        assert load_settings().ai_model == "local"

    @pytest.mark.covers("CONF-01")
    @pytest.mark.parametrize(
        "origin", ["*", "https://app.example.com/", "app.example.com", "https://x.io/path"]
    )
    def test_cors_origin_that_no_browser_sends_names_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, origin: str
    ):
        monkeypatch.setenv("CORS_ALLOW_ORIGINS", f"https://ok.example.com,{origin}")

        with pytest.raises(ConfigurationError, match="CORS_ALLOW_ORIGINS"):
            load_settings()

    @pytest.mark.covers("CONF-03")
    def test_comma_separated_origins_and_hosts_are_split(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("CORS_ALLOW_ORIGINS", "https://a.example.com, http://localhost:8501")
        monkeypatch.setenv("ALLOWED_HOSTS", "api.example.com,localhost")

        settings = load_settings()

        assert settings.cors_allow_origins == ["https://a.example.com", "http://localhost:8501"]
        assert settings.allowed_hosts == ["api.example.com", "localhost"]

    @pytest.mark.covers("CONF-03")
    def test_development_defaults_give_dev_keys_and_sqlite(self):
        settings = load_settings()

        assert settings.api_keys == [DEV_API_KEY]
        assert settings.database_url.startswith("sqlite+aiosqlite:///")
        assert settings.redis_url is None
        assert settings.ai_model == "local"

    @pytest.mark.covers("CONF-03")
    def test_plain_postgres_url_is_given_the_async_driver(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")

        assert load_settings().database_url == "postgresql+asyncpg://u@h/db"
