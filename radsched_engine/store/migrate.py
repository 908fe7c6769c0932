"""Schema migrations: numbered SQL files applied once, in order, under an advisory lock."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger("radsched.store")

# pg_advisory_lock key shared by every engine migrating this database ("radsched" in ASCII).
MIGRATION_LOCK = 0x72616473636865
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# The one table every other migration depends on; created here because it must exist before
# the list of applied migrations can be read.
_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The database's applied migrations do not match the files shipped with this engine."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str          # "0001"
    name: str             # "0001_schema.sql"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    """The migration files shipped in ``radsched_engine/store/migrations``, by version."""
    folder = resources.files("radsched_engine.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(match.group(1), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


async def migrate(url: str, *, timeout: float = 60.0) -> list[str]:
    """Apply pending migrations to the database at ``url``; returns the names applied.

    Holds a session advisory lock for the whole run, so engines starting together apply each
    migration exactly once (the others wait, then find nothing to do). Each migration runs in
    its own transaction with its ``schema_migrations`` row. A changed checksum of an applied
    migration, or an applied version this engine does not know, raises ``MigrationError``.
    """
    conn = await asyncpg.connect(url, timeout=timeout)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK, timeout=timeout)
        try:
            return await _apply(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()


async def _apply(conn: asyncpg.Connection) -> list[str]:
    await conn.execute(_BOOTSTRAP)
    applied = {r["version"]: r for r in await conn.fetch(
        "SELECT version, name, checksum FROM schema_migrations")}
    shipped = available()
    known = {m.version for m in shipped}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise MigrationError(f"database has migrations this engine does not know: {unknown} "
                             "(is a newer engine using it?)")
    done: list[str] = []
    for migration in shipped:
        row = applied.get(migration.version)
        if row is not None:
            if row["checksum"] != migration.checksum:
                raise MigrationError(f"migration {migration.name} changed after it was applied "
                                     "(write a new migration instead)")
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version, migration.name, migration.checksum)
        log.info("migration_applied", migration=migration.name)
        done.append(migration.name)
    return done
