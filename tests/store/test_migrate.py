"""Migrations: applied once, idempotent, safe when two engines migrate at the same time."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from radsched_engine.store import migrate
from radsched_engine.store.migrate import MigrationError, available

from ..conftest import with_database


@pytest.fixture
async def empty_db(pg_server: str):
    name = "m_" + __import__("uuid").uuid4().hex[:12]
    admin = await asyncpg.connect(pg_server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield with_database(pg_server, name)
    admin = await asyncpg.connect(pg_server)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


def test_migration_files_are_numbered_and_unique() -> None:
    found = available()
    assert [m.version for m in found] == sorted(m.version for m in found)
    assert found[0].name.startswith("0001_")


async def test_migrate_applies_everything_once(empty_db: str) -> None:
    first = await migrate(empty_db)
    assert first == [m.name for m in available()]
    assert await migrate(empty_db) == []
    conn = await asyncpg.connect(empty_db)
    try:
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
        tables = {r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    finally:
        await conn.close()
    assert [r["version"] for r in rows] == [m.version for m in available()]
    assert [r["checksum"] for r in rows] == [m.checksum for m in available()]
    assert {"hl7_messages", "appointments", "appointment_resources", "orders", "outbox",
            "schema_migrations"} <= tables


async def test_two_migrators_at_once_apply_each_migration_once(empty_db: str) -> None:
    results = await asyncio.gather(*(migrate(empty_db) for _ in range(3)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(m.name for m in available())


async def test_a_changed_applied_migration_is_refused(empty_db: str) -> None:
    await migrate(empty_db)
    conn = await asyncpg.connect(empty_db)
    await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = '0001'")
    await conn.close()
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(empty_db)


async def test_an_unknown_applied_migration_is_refused(empty_db: str) -> None:
    await migrate(empty_db)
    conn = await asyncpg.connect(empty_db)
    await conn.execute("INSERT INTO schema_migrations VALUES ('9999', '9999_future.sql', 'x')")
    await conn.close()
    with pytest.raises(MigrationError, match="does not know"):
        await migrate(empty_db)
