"""A PostgreSQL database of its own for each test process, copied from a migrated template.

TEST_DATABASE_URL names a database the tests may use as a base (`.../test`). Each process of the
run (a pytest-xdist worker `gw0`, `gw1`..., or `main` when the run is serial) gets
`<base>_<worker>` (`test_gw0`), created with `CREATE DATABASE ... TEMPLATE <base>_template`: a
file copy on the server, far cheaper than migrating every worker's database again.

The template is migrated once and kept between runs. Its comment holds a fingerprint of the
migration files, so a changed or added migration rebuilds it. The first worker to arrive builds
it under an advisory lock while the others wait for it. Only names starting with `<base>_` are
created or dropped; the base database itself is only connected to.
"""

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.infrastructure.database.engine import MIGRATIONS, Database
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

MAX_IDENTIFIER = 63  # PostgreSQL cuts longer names, which would make two of ours the same


def migrations_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.rglob("*.py")):
        digest.update(path.relative_to(MIGRATIONS).as_posix().encode())
        digest.update(path.read_bytes())
    return f"migrations sha256 {digest.hexdigest()}"


def database_url(base_url: str, name: str) -> str:
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def quoted(name: str) -> str:
    if len(name.encode()) > MAX_IDENTIFIER:
        raise ValueError(f"database name {name!r} is longer than PostgreSQL's 63 bytes")
    return '"' + name.replace('"', '""') + '"'


@asynccontextmanager
async def _admin(base_url: str, lock_name: str) -> AsyncIterator[AsyncConnection]:
    """A connection to the base database, holding an advisory lock for `lock_name`."""
    engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(
                text("SELECT pg_advisory_lock(hashtext(:n))"), {"n": lock_name}
            )
            yield connection  # the lock ends with the session
    finally:
        await engine.dispose()


async def _drop(connection: AsyncConnection, name: str) -> None:
    # Connections a crashed run left behind would block the DROP (WITH FORCE needs PostgreSQL 13).
    await connection.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = :n AND pid <> pg_backend_pid()"
        ),
        {"n": name},
    )
    await connection.execute(text(f"DROP DATABASE IF EXISTS {quoted(name)}"))


async def _comment(connection: AsyncConnection, name: str) -> str | None:
    comment: str | None = await connection.scalar(
        text("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :n"),
        {"n": name},
    )
    return comment


async def create_worker_database(base_url: str, worker: str) -> Database:
    """`<base>_<worker>`, fresh from the template (built first if missing or out of date)."""
    base = make_url(base_url).database
    if not base:
        raise ValueError(f"TEST_DATABASE_URL names no database: {base_url!r}")
    template, own = f"{base}_template", f"{base}_{worker}"
    fingerprint = migrations_fingerprint()
    async with _admin(base_url, template) as admin:
        if await _comment(admin, template) != fingerprint:
            await _drop(admin, template)
            await admin.execute(text(f"CREATE DATABASE {quoted(template)}"))
            migrated = Database(database_url(base_url, template))
            try:
                await migrated.migrate()
            finally:
                await migrated.dispose()
            await admin.execute(text(f"COMMENT ON DATABASE {quoted(template)} IS '{fingerprint}'"))
        await _drop(admin, own)
        await admin.execute(text(f"CREATE DATABASE {quoted(own)} TEMPLATE {quoted(template)}"))
    return Database(database_url(base_url, own))


async def drop_worker_database(base_url: str, database: Database) -> None:
    await database.dispose()
    name = make_url(database.url).database
    assert name is not None
    async with _admin(base_url, name) as admin:
        await _drop(admin, name)
