"""`is_unavailable`: outage or bug, by the driver's SQLSTATE or result code, for the errors the
integration tests cannot provoke cheaply (a full server, a standby after failover, a busy pool).

The errors are the drivers' own classes, wrapped as SQLAlchemy wraps them.
"""

import sqlite3

import asyncpg  # type: ignore[import-untyped]
import pytest
from app.infrastructure.database.engine import is_unavailable
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError


def wrapped(error: Exception) -> DBAPIError:
    """As SQLAlchemy hands a driver error on: a DBAPIError whose `orig` is the driver's."""
    return DBAPIError("SELECT 1", {}, error)


def sqlite_error(code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("from sqlite")
    error.sqlite_errorcode = code  # set by the sqlite3 module itself on a real error
    return error


class TestPostgresSqlstate:
    @pytest.mark.parametrize(
        "error",
        [
            asyncpg.CannotConnectNowError("the database system is starting up"),  # 57P03
            asyncpg.AdminShutdownError("terminating connection"),  # 57P01
            asyncpg.CrashShutdownError("crash of another server process"),  # 57P02
            asyncpg.ConnectionDoesNotExistError("closed in the middle of operation"),  # 08003
            asyncpg.ConnectionFailureError("connection failure"),  # 08006
            asyncpg.TooManyConnectionsError("sorry, too many clients already"),  # 53300
            asyncpg.ReadOnlySQLTransactionError("read-only transaction"),  # 25006
        ],
        ids=lambda error: type(error).__name__,
    )
    def test_not_now_errors_are_unavailable(self, error: Exception):
        assert is_unavailable(wrapped(error)) is True

    @pytest.mark.parametrize(
        "error",
        [
            asyncpg.UniqueViolationError("duplicate key"),  # 23505
            asyncpg.PostgresSyntaxError("syntax error"),  # 42601
            asyncpg.UndefinedTableError("relation does not exist"),  # 42P01
            asyncpg.QueryCanceledError("statement timeout"),  # 57014: class 57, not 57P
        ],
        ids=lambda error: type(error).__name__,
    )
    def test_bugs_and_our_own_limits_are_not(self, error: Exception):
        assert is_unavailable(wrapped(error)) is False


class TestSqliteResultCode:
    @pytest.mark.parametrize(
        "code",
        [
            sqlite3.SQLITE_BUSY,
            sqlite3.SQLITE_LOCKED,
            sqlite3.SQLITE_CANTOPEN,
            517,
        ],  # 517: BUSY_SNAPSHOT
    )
    def test_lock_and_volume_codes_are_unavailable(self, code: int):
        assert is_unavailable(OperationalError("INSERT", {}, sqlite_error(code))) is True

    def test_sqlite_error_code_bad_sql_is_not(self):
        error = OperationalError("SELEC 1", {}, sqlite_error(sqlite3.SQLITE_ERROR))

        assert is_unavailable(error) is False


class TestConnectionLevel:
    def test_refused_connection_is_unavailable(self):
        assert is_unavailable(ConnectionRefusedError(111, "Connection refused")) is True

    def test_pool_timeout_is_unavailable(self):
        assert is_unavailable(PoolTimeoutError("QueuePool limit reached")) is True

    def test_invalidated_connection_is_unavailable(self):
        error = DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)

        assert is_unavailable(error) is True

    def test_other_errors_are_not(self):
        assert is_unavailable(ValueError("not a database error")) is False
