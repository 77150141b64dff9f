"""The async engine and its sessions; driver outages leave as DatabaseUnavailableError."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.exceptions import DatabaseUnavailableError

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# Connection-level failures: the database is down or unreachable, not a bug in our SQL.
UNAVAILABLE_ERRORS = (OperationalError, OSError, TimeoutError, ConnectionError)


def alembic_config(url: str) -> "Config":
    from alembic.config import Config  # imported here: only migrations need it, start-up does not

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


class Database:
    def __init__(self, url: str, *, connect_timeout_seconds: float = 5.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args: dict[str, Any] = (
            {"timeout": 30}  # wait for the write lock instead of failing under concurrency
            if self.is_sqlite
            else {"timeout": connect_timeout_seconds}
        )
        if self.is_sqlite:
            _ensure_sqlite_folder(url)
        self.engine: AsyncEngine = create_async_engine(
            url, connect_args=connect_args, pool_pre_ping=not self.is_sqlite
        )
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session committed on success, rolled back on error; outages become 503s."""
        try:
            async with self.sessions.begin() as session:
                yield session
        except UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailableError("The database is unavailable; try again.") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise DatabaseUnavailableError("The database connection was lost.") from exc
            raise

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # readiness must answer whatever the failure
            logger.warning("database ping failed", exc_info=True)
            return False
        return True

    async def migrate(self) -> str | None:
        """Upgrade the schema to the newest revision; say so in one line, and return it."""
        async with self.engine.begin() as connection:
            before, after = await connection.run_sync(_upgrade_to_head, self.url)
        if before == after:
            logger.info("database schema up to date (revision %s)", after)
        else:
            logger.info("database schema migrated from %s to %s", before or "empty", after)
        return after

    async def dispose(self) -> None:
        await self.engine.dispose()


def _upgrade_to_head(connection: Connection, url: str) -> tuple[str | None, str | None]:
    """The revisions before and after the upgrade (None: an empty database)."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    config = alembic_config(url)
    config.attributes["connection"] = connection
    before = MigrationContext.configure(connection).get_current_revision()
    command.upgrade(config, "head")
    return before, MigrationContext.configure(connection).get_current_revision()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Under WAL, NORMAL syncs at checkpoints rather than at every commit: a crash of the process
    # loses nothing, a power cut may lose the last commits but never corrupts the file.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _ensure_sqlite_folder(url: str) -> None:
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
