"""Settings from the environment (and `.env`), validated once at start.

Every field has a description: `.env.example` and the README's table are the human-facing copy.
`load_settings()` turns pydantic's validation error into a `ConfigurationError` that names the
environment variable, so a bad deployment stops at start with a message an operator can act on.
"""

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError
from shared.text import Operation

from app.core.exceptions import ConfigurationError
from app.core.logging import LogFormat

DEFAULT_SQLITE_URL = f"sqlite+aiosqlite:///{Path('data') / 'app.db'}"
# Well-known keys for a fresh clone; refused outside development.
DEV_API_KEY = "dev-public-key"
DEV_INTERNAL_API_KEY = "dev-operator-key"
DEV_KEY_HASH_SECRET = "dev-key-hash-secret"  # noqa: S105 - a development placeholder, refused in production

# The offline heuristic engine (app.infrastructure.ai.local_engine): refused in production
# unless ALLOW_LOCAL_MODEL says a demo means it.
LOCAL_MODEL = "local"
_ORIGIN = re.compile(r"https?://[^/\s*]+")

CommaList = Annotated[list[str], NoDecode]


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", validate_default=True
    )

    environment: Environment = Field(
        Environment.DEVELOPMENT,
        description="development (dev keys, migrations at start), test, or production (strict).",
    )
    log_level: str = Field("INFO", description="Python logging level: DEBUG, INFO, WARNING...")
    log_format: LogFormat | None = Field(
        None,
        description="json (one object per line) or console; default: json in production.",
    )
    database_url: str = Field(
        DEFAULT_SQLITE_URL,
        description="sqlite+aiosqlite:///path or postgresql+asyncpg://user:pass@host/db.",
    )
    database_auto_migrate: bool | None = Field(
        None, description="Apply migrations at start; default: yes except in production."
    )
    # A one-row transaction on a kept connection costs about half the CPU of one on a connection
    # checked out for it (KeptConnection); keep it below a proxy's idle timeout (PgBouncer's
    # server_idle_timeout, a cloud load balancer's) so the proxy does not close it first.
    database_keep_connection_seconds: float = Field(
        0.5,
        gt=0,
        description="Idle time after which the history and job writers give their kept "
        "database connection back to the pool.",
    )
    redis_url: str | None = Field(
        None, description="redis://host:port/db; unset means an in-memory cache per process."
    )
    # What one request pays, once, when Redis hangs (RedisAvailability). Measured with
    # `make bench-faults` on a 2-core machine loaded five times over: Redis round trips from
    # outside p50 0.15 ms, p99.9 12-20 ms, worst 69 ms; no false timeout at 0.05 s and up, 19
    # to 52 per 2,500 requests at 5-25 ms. 0.25 s leaves 3x that worst case, and outlasts one
    # TCP retransmission (Linux waits at least 200 ms), so a lost packet on a same-zone network
    # does not put a whole worker on its memory fallback.
    redis_timeout_seconds: float = Field(
        0.25, gt=0, description="Socket timeout for Redis calls (what a hung Redis costs)."
    )
    api_keys: CommaList = Field(
        default_factory=list, description="Comma-separated public API keys for /v1."
    )
    internal_api_keys: CommaList = Field(
        default_factory=list, description="Comma-separated operator keys for /internal (and /v1)."
    )
    key_hash_secret: SecretStr = Field(
        SecretStr(""), description="Server-side secret for hashing database-issued API keys."
    )
    ai_model: str = Field(
        LOCAL_MODEL,
        description="`local` (offline) or a pydantic-ai model string: openai-chat:gpt-4o-mini.",
    )
    allow_local_model: bool = Field(
        False,
        description="Let production run the offline `local` model (a demo); refused otherwise.",
    )
    ai_base_url: str | None = Field(
        None, description="Base URL of an OpenAI-compatible server (Ollama, vLLM, LM Studio)."
    )
    ai_api_key: SecretStr | None = Field(
        None, description="Provider API key; else the provider's usual variable is used."
    )
    local_stream_delay_seconds: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Pause between the words the `local` model streams, so streaming shows.",
    )
    ai_attempt_timeout_seconds: float = Field(
        20.0,
        gt=0,
        description="Timeout of one attempt; streamed, also of each silence after the first token.",
    )
    ai_request_deadline_seconds: float = Field(
        45.0,
        gt=0,
        description="Total time one request may spend on the provider, retries included.",
    )
    ai_check_interval_seconds: float = Field(
        60.0,
        ge=0,
        description="How often readiness asks the provider whether it accepts the key (a model "
        "listing, no tokens; OpenAI-compatible providers); 0: never.",
    )
    ai_max_attempts: int = Field(3, ge=1, le=10, description="Attempts per request (1 = no retry).")
    ai_retry_initial_seconds: float = Field(0.5, ge=0, description="First retry backoff.")
    cache_ttl_seconds: dict[Operation, int] = Field(
        default_factory=dict,
        description='Per-operation TTL overrides as JSON, e.g. {"qa": 600}.',
    )
    cache_stale_grace_seconds: int = Field(
        86400,
        ge=0,
        description="How long past expiry a stale answer may serve a degraded response.",
    )
    cache_lru_size: int = Field(1024, ge=1, description="Entries in the in-process LRU.")
    auth_cache_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="How long a worker reuses an issued key's lookup: a revocation or rotation "
        "made on another worker takes effect on this one within this delay (at once on the "
        "worker that made it); 0 looks the key up on every request.",
    )
    breaker_failure_threshold: int = Field(5, ge=1, description="Failures that open the breaker.")
    breaker_window_seconds: float = Field(60.0, gt=0, description="Window failures are counted in.")
    breaker_recovery_seconds: float = Field(30.0, gt=0, description="Open time before a trial.")
    breaker_half_open_max_calls: int = Field(1, ge=1, description="Concurrent trial calls.")
    stream_ping_seconds: float = Field(
        15.0,
        gt=0,
        description="Heartbeat comment sent on a silent stream, so that proxies keep it open.",
    )
    stream_send_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="A stream whose client reads nothing this long is cut, with its provider call.",
    )
    batch_max_items: int = Field(20, ge=1, le=200, description="Items accepted in one batch.")
    batch_concurrency: int = Field(4, ge=1, le=32, description="Items of a batch run at once.")
    max_body_bytes: int = Field(
        256 * 1024, ge=1024, description="Request bodies above this size get 413."
    )
    job_max_items: int = Field(
        10_000, ge=1, le=100_000, description="Items accepted in one job (POST /v1/jobs)."
    )
    job_max_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Body limit of POST /v1/jobs (413 above): room for JOB_MAX_ITEMS texts of a "
        "few kilobytes each.",
    )
    job_concurrency: int = Field(
        4, ge=1, le=256, description="Items one worker process handles at once."
    )
    job_redelivery_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="An item whose worker stopped answering (killed, frozen) is handed to "
        "another worker after this long (with REDIS_URL).",
    )
    job_max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="Deliveries of an item (a worker died each time) before it fails as poison.",
    )
    job_stuck_seconds: float = Field(
        300.0,
        gt=0,
        description="/internal/jobs reports an unfinished job as stuck when no item of it "
        "finished for this long.",
    )
    job_embedded_worker: bool | None = Field(
        None,
        description="Run a job worker inside the API process; default: yes without REDIS_URL "
        "(jobs then live in this process's memory), no with it (run `make worker`).",
    )
    job_queue_name: str = Field(
        "llm:jobs", min_length=1, description="Redis stream (and key prefix) of the job queue."
    )
    rate_limit_tiers: dict[str, int] = Field(
        default_factory=lambda: {"free": 60, "pro": 600},
        description='Text requests per minute per tier, as JSON: {"free": 60, "pro": 600}.',
    )
    default_tier: str = Field("free", description="Tier of newly registered accounts.")
    rate_limit_reserve_seconds: float = Field(
        0.05,
        ge=0,
        le=1,
        description="How long a worker keeps the part of a busy key's limit it charged ahead in "
        "one round trip to Redis before giving back what it did not use; 0 charges every request "
        "on its own.",
    )
    registrations_per_minute: int = Field(
        10, ge=1, description="Registrations per minute from one client address (429 beyond)."
    )
    api_keys_tier: str = Field(
        "pro", description="Tier of the API_KEYS keys (operator keys are never rate limited)."
    )
    cors_allow_origins: CommaList = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (CORS), comma-separated, each "
        "scheme://host[:port]; empty: none.",
    )
    allowed_hosts: CommaList = Field(
        default_factory=lambda: ["*"],
        description="Host headers answered, comma-separated (api.example.com, *.example.com); "
        "others get 400. Keep localhost: the image's health check uses it.",
    )
    hsts_max_age_seconds: int = Field(
        31_536_000,
        ge=0,
        description="Strict-Transport-Security max-age on responses over HTTPS; 0: no header.",
    )

    @field_validator("cache_ttl_seconds")
    @classmethod
    def _check_ttls(cls, value: dict[Operation, int]) -> dict[Operation, int]:
        if any(ttl < 1 for ttl in value.values()):
            raise ValueError("every TTL must be at least 1 second")
        return value

    @field_validator("rate_limit_tiers")
    @classmethod
    def _check_tiers(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            raise ValueError("name at least one tier")
        if any(not 1 <= len(name) <= 32 for name in value):
            raise ValueError("tier names are 1 to 32 characters")
        if any(limit < 1 for limit in value.values()):
            raise ValueError("every tier allows at least 1 request per minute")
        return value

    @field_validator(
        "api_keys", "internal_api_keys", "cors_allow_origins", "allowed_hosts", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("cors_allow_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        # Browsers send `Origin: https://app.example.com` exactly: a path, a trailing slash or
        # a wildcard would never match, or match everyone.
        if bad := [origin for origin in value if not _ORIGIN.fullmatch(origin)]:
            raise ValueError(f"{bad[0]!r} is not an origin like https://app.example.com[:8443]")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one host, or * for any")
        return value

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        # Accept the URLs people paste from their provider's console.
        for plain, async_scheme in (
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if value.startswith(plain):
                value = async_scheme + value.removeprefix(plain)
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @model_validator(mode="after")
    def _apply_environment_rules(self) -> "Settings":
        if self.environment is Environment.PRODUCTION:
            placeholders = {DEV_API_KEY, DEV_INTERNAL_API_KEY}
            if not self.api_keys or placeholders & set(self.api_keys):
                raise ValueError("API_KEYS: production needs real public keys")
            if not self.internal_api_keys or placeholders & set(self.internal_api_keys):
                raise ValueError("INTERNAL_API_KEYS: production needs real operator keys")
            secret = self.key_hash_secret.get_secret_value()
            if len(secret) < 32 or secret == DEV_KEY_HASH_SECRET:
                raise ValueError("KEY_HASH_SECRET: production needs a random secret of 32+ chars")
            if self.ai_model == LOCAL_MODEL and not self.allow_local_model:
                raise ValueError(
                    "AI_MODEL: production refuses the offline `local` model (its confidence and "
                    "score fields are heuristics): name a real model, or set "
                    "ALLOW_LOCAL_MODEL=true for a demo"
                )
        else:
            if not self.api_keys:
                self.api_keys = [DEV_API_KEY]
            if not self.internal_api_keys:
                self.internal_api_keys = [DEV_INTERNAL_API_KEY]
            if not self.key_hash_secret.get_secret_value():
                self.key_hash_secret = SecretStr(DEV_KEY_HASH_SECRET)
        for variable, tier in (
            ("DEFAULT_TIER", self.default_tier),
            ("API_KEYS_TIER", self.api_keys_tier),
        ):
            if tier not in self.rate_limit_tiers:
                raise ValueError(f"{variable}: {tier!r} is not a tier of RATE_LIMIT_TIERS")
        if self.job_embedded_worker is False and self.redis_url is None:
            raise ValueError(
                "JOB_EMBEDDED_WORKER: false needs REDIS_URL (without Redis, jobs can only run "
                "in the API process)"
            )
        if overlap := set(self.api_keys) & set(self.internal_api_keys):
            raise ValueError(f"API_KEYS and INTERNAL_API_KEYS share {len(overlap)} key(s)")
        return self

    @property
    def auto_migrate(self) -> bool:
        if self.database_auto_migrate is not None:
            return self.database_auto_migrate
        return self.environment is not Environment.PRODUCTION

    @property
    def log_renderer(self) -> LogFormat:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.environment is Environment.PRODUCTION else "console"

    @property
    def runs_embedded_worker(self) -> bool:
        if self.job_embedded_worker is not None:
            return self.job_embedded_worker
        return self.redis_url is None

    @property
    def uses_dev_keys(self) -> bool:
        return DEV_API_KEY in self.api_keys or DEV_INTERNAL_API_KEY in self.internal_api_keys

    def requests_per_minute(self, tier: str) -> int:
        """The tier's limit; a tier since removed from the settings gets the default tier's."""
        return self.rate_limit_tiers.get(tier, self.rate_limit_tiers[self.default_tier])


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, naming the offending environment variable when one is invalid."""
    try:
        return Settings(**overrides)
    except PydanticValidationError as exc:
        problems = []
        for error in exc.errors():
            location = [str(part) for part in error["loc"]]
            message = error["msg"].removeprefix("Value error, ")
            variable = location[0].upper() if location else message.split(":", 1)[0]
            problems.append(f"{variable}: {message}" if location else message)
        raise ConfigurationError(
            "Invalid configuration: " + "; ".join(problems), details=problems
        ) from None
    except SettingsError as exc:
        # Raised before validation, for a complex value (a list, a mapping) that is not JSON;
        # its message names the field, which is the variable in lower case.
        field = re.search(r'field "(\w+)"', str(exc))
        variable = field.group(1).upper() if field else "a setting"
        raise ConfigurationError(
            f"Invalid configuration: {variable}: not valid JSON (a list or a mapping is "
            'written as JSON, e.g. ["a", "b"] or {"free": 60})'
        ) from None
