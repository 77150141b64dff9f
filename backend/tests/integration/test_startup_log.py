"""The log at start: what an operator reads first, from the handler the app installs itself.

The app replaces the root logger's handlers with its own stderr handler, so these tests read
stderr (capsys) rather than pytest's log capture: that is the text a user sees.
"""

import json

import pytest
from conftest import ClientFactory
from fakes.services import free_port


class TestStartupLog:
    """Seam: the app's lifespan → Database.migrate and the Redis client → the start-up log.

    Paths: DEV-05
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    Alembic migrating SQLite at start; the Redis client on a refused port; the log configuration
    writing to the captured output.
    Faked: nothing.
    """

    @pytest.mark.covers("DEV-05")
    async def test_migrations_at_start_log_one_line_and_no_alembic_chatter(
        self, make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
    ):
        """Applying the migrations says so in one line of ours.

        Integration scope: lifespan → Database.migrate → Alembic, with the app's logging.
        Business impact: a dozen Alembic INFO lines at every start bury the lines that matter
        (the development keys warning, an unreachable Redis).
        Test strategy: start the app with migrations at start and the INFO level, as
        `make run` does, and read what it wrote to stderr.
        Success criteria: no Alembic line, exactly one line about the database schema.
        """
        await make_client(database_auto_migrate=True, log_level="INFO")

        lines = capsys.readouterr().err.splitlines()

        assert [line for line in lines if "alembic" in line] == []
        assert len([line for line in lines if "database schema" in line]) == 1, lines

    @pytest.mark.covers("DEV-05")
    async def test_unreachable_redis_url_is_warned_at_start_without_its_password(
        self, make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
    ):
        """A REDIS_URL nobody answers at is reported at start, its credentials left out.

        Integration scope: lifespan → the Redis client built from REDIS_URL → a PING to a
        loopback port where nothing listens.
        Business impact: the app starts on its in-memory fallback either way; without a warning,
        an operator learns that Redis is not used only from readiness or from cache misses, and
        a password in a log line leaks to whoever reads the logs.
        Test strategy: start the app with a REDIS_URL carrying a user and password that points
        at a free port.
        Success criteria: exactly one warning naming REDIS_URL and the server's address; the
        password appears nowhere.
        """
        port = free_port()

        await make_client(
            redis_url=f"redis://operator:s3cret-pw@127.0.0.1:{port}/0", log_format="json"
        )

        output = capsys.readouterr().err
        records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        warnings = [record for record in records if "REDIS_URL" in record["event"]]
        assert len(warnings) == 1, output
        assert warnings[0]["level"] == "warning"
        assert f"redis://127.0.0.1:{port}/0" in warnings[0]["event"]
        assert "s3cret-pw" not in output
