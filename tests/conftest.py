"""Shared database fixtures: one PostgreSQL per test session, a fresh migrated database per test.

- ``pg_server`` (session): an embedded PostgreSQL in a private temp dir, or the server of
  ``RADSCHED_TEST_DATABASE_URL`` (its role needs CREATEDB). Yields the admin URL.
- ``pg_template`` (session): a database migrated once, used as the template of every test db.
- ``db_url`` (function): URL of a new database created from the template (~0.1 s); dropped after.
- ``store`` (function): a ``Store`` opened on ``db_url`` (pool of 1-4), closed after.
- ``pg_data_dir`` (function): a data directory for a test that runs its own embedded server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from radsched_engine.store import EmbeddedPostgres, Store, migrate


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (unix-socket ``?host=`` URLs included)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _private_dir() -> Path:
    """A fresh directory for an embedded server's files, outside pytest's tmp dir.

    pytest resets ``/tmp/pytest-of-<user>`` to mode 0700 whenever another session starts; as
    root, pgserver runs PostgreSQL as the ``pgserver`` user, which would then lose access to its
    own data directory mid-run.
    """
    return Path(tempfile.mkdtemp(prefix="radsched-pg-"))


@pytest.fixture
def pg_data_dir() -> Iterator[Path]:
    """A data directory for a test's own embedded PostgreSQL (removed afterwards)."""
    path = _private_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    external = os.environ.get("RADSCHED_TEST_DATABASE_URL")
    if external:
        yield external
        return
    path = _private_dir()
    server = EmbeddedPostgres(path, database="postgres")
    try:
        server.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        shutil.rmtree(path, ignore_errors=True)
        pytest.skip(f"cannot start an embedded PostgreSQL (pgserver): {exc}")
    yield server.url
    server.stop()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> Iterator[str]:
    name = f"radsched_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def build() -> None:
        admin = await asyncpg.connect(pg_server)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        await migrate(with_database(pg_server, name))

    asyncio.run(build())
    yield name

    async def drop() -> None:
        admin = await asyncpg.connect(pg_server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(drop())


@pytest.fixture
async def db_url(pg_server: str, pg_template: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    finally:
        await admin.close()
    yield with_database(pg_server, name)
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await Store.open(db_url, pool_min=1, pool_max=4, connect_timeout=5.0, command_timeout=10.0)
    yield s
    await s.close()
