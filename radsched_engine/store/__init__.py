"""PostgreSQL storage: opening the store (embedded or external), migrations, the database URL."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import asyncpg

from ..datadir import StartupError
from .db import Store, UnitOfWork
from .embedded import EmbeddedPostgres, database_url, mask_url
from .migrate import MigrationError, migrate

__all__ = [
    "EmbeddedPostgres", "MigrationError", "Store", "UnitOfWork", "database_url",
    "database_url_for_config", "mask_url", "migrate", "migrate_for_config", "open_store",
]


async def open_store(config: Any) -> tuple[Store, EmbeddedPostgres | None]:
    """Open the engine's store from its settings (``config.database``, ``config.data_dir``).

    Without ``database.url`` an embedded PostgreSQL is started under ``<data_dir>/pg`` (in a
    thread; the caller stops it with ``embedded.stop`` after closing the store). Pending
    migrations are applied before the pool opens.
    """
    db = config.database
    embedded = None
    url = db.url
    if not url:
        embedded = EmbeddedPostgres(config.data_dir)
        url = await asyncio.to_thread(embedded.start)
    try:
        await migrate(url, timeout=max(db.connect_timeout, 30.0))
        store = await Store.open(url, pool_min=db.pool_min, pool_max=db.pool_max,
                                 connect_timeout=db.connect_timeout,
                                 command_timeout=db.command_timeout)
    except BaseException as exc:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        if isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)):
            raise StartupError(f"database {mask_url(url)} cannot be used: {_reason(exc)}") from None
        raise
    return store, embedded


async def migrate_for_config(config: Any) -> list[str]:
    """``radsched-engine migrate``: apply pending migrations; returns the names applied."""
    url = config.database.url
    if url:
        return await migrate(url)
    embedded = EmbeddedPostgres(config.data_dir)
    url = await asyncio.to_thread(embedded.start)
    try:
        return await migrate(url)
    finally:
        await asyncio.to_thread(embedded.stop)


def database_url_for_config(config: Any, *, show_password: bool = False) -> str:
    """``radsched-engine dburl``: the configured URL (password masked) or the embedded server's."""
    url = config.database.url
    if url:
        return url if show_password else mask_url(url)
    return database_url(config.data_dir)


def _reason(exc: BaseException) -> str:
    """Why a database could not be used, in the same words however the failure surfaced
    (asyncio reports a refused connection as ConnectionRefusedError or as an OSError with
    ECONNREFUSED and 'Connect call failed', depending on the path taken)."""
    code = getattr(exc, "errno", None)
    if code == errno.ECONNREFUSED:
        return "connection refused (nothing listens at that address)"
    if isinstance(exc, TimeoutError):
        return "no answer within the connect timeout"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
