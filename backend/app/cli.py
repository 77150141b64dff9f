"""Command line of the backend (`python -m app.cli COMMAND`):

- `check`: validate the settings and AI_MODEL, and exit;
- `serve`: the same check, then uvicorn (`--reload` for development);
- `migrate`: apply the migrations to DATABASE_URL;
- `worker`: the same check, then a job worker (`app.worker`) until SIGTERM or SIGINT.

A bad setting ends each of them with one line naming the variable and exit status 1, not a
traceback. `serve` checks before uvicorn starts: with `--reload` the app is built in a worker
process, where a bad setting would print a traceback and leave the reloader running.
"""

import argparse
import asyncio

from app.core.config import load_settings
from app.core.exceptions import ConfigurationError

# The stack (pydantic-ai, SQLAlchemy, uvicorn: ~0.6 s of imports) is imported by the command
# that needs it, after the settings loaded: a bad setting is reported without waiting for it.


def _check() -> None:
    """Raise ConfigurationError for a bad setting, or an AI_MODEL that cannot be built."""
    settings = load_settings()
    from app.infrastructure.ai.provider import AIProvider, build_model

    asyncio.run(AIProvider(build_model(settings)).aclose())


async def _migrate() -> str | None:
    settings = load_settings()
    from app.infrastructure.database.engine import Database

    database = Database(settings.database_url)
    try:
        return await database.migrate()
    finally:
        await database.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="validate the settings and AI_MODEL, then exit")
    serve = commands.add_parser("serve", help="check, then serve the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--reload", action="store_true", help="restart on code changes")
    serve.add_argument("--reload-dir", action="append", dest="reload_dirs", metavar="DIR")
    serve.add_argument(
        "--log-config", metavar="FILE", help="uvicorn's logging configuration (JSON, YAML or INI)"
    )
    commands.add_parser("migrate", help="apply the migrations to DATABASE_URL")
    commands.add_parser("worker", help="check, then process job items from REDIS_URL")
    args = parser.parse_args(argv)
    try:
        if args.command == "migrate":
            print(f"database migrated to head ({asyncio.run(_migrate())})")
            return
        _check()
        if args.command == "worker":
            from app import worker  # the worker's imports are no other command's

            asyncio.run(worker.run(load_settings()))
            return
    except ConfigurationError as exc:
        raise SystemExit(str(exc)) from None
    if args.command == "serve":
        import uvicorn

        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            reload=args.reload,
            reload_dirs=args.reload_dirs,
            # uvicorn's default when none is given: its own handlers and formats.
            log_config=args.log_config or uvicorn.config.LOGGING_CONFIG,
        )


if __name__ == "__main__":
    main()
