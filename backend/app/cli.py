"""Command line: `python -m app.cli migrate` applies the migrations to DATABASE_URL."""

import argparse
import asyncio

from app.core.config import load_settings
from app.infrastructure.database.engine import Database


async def _migrate() -> None:
    database = Database(load_settings().database_url)
    try:
        await database.migrate()
    finally:
        await database.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.cli")
    parser.add_argument("command", choices=["migrate"])
    parser.parse_args(argv)
    asyncio.run(_migrate())
    print("database migrated to head")


if __name__ == "__main__":
    main()
