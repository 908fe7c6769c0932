"""Embedded PostgreSQL: a private server under ``<data_dir>/pg``, started through pgserver."""

from __future__ import annotations

import logging
import re
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

from ..datadir import StartupError

log = structlog.get_logger("radsched.store")

DATABASE = "radsched"


def _pgserver() -> tuple[Any, Any]:
    """The pgserver module and its PostmasterInfo, imported only when a server is needed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # platformdirs: XDG_RUNTIME_DIR not set
        import pgserver
        from pgserver.utils import PostmasterInfo
    return pgserver, PostmasterInfo


class EmbeddedPostgres:
    """The engine's own PostgreSQL server when no database URL is configured.

    ``start()`` initialises ``<data_dir>/pg`` on first use (``initdb``, trust auth, a unix
    socket in the data directory, no TCP port), starts the server unless it already runs and
    creates the ``radsched`` database. ``stop()`` stops the server only if this object started
    it. Both block (subprocesses): call them through ``asyncio.to_thread``. ``fsync`` is left
    on. When run as root, pgserver runs the server as the system user ``pgserver``.
    """

    def __init__(self, data_dir: Path | str, database: str = DATABASE) -> None:
        self.pgdata = Path(data_dir).expanduser().resolve() / "pg"
        self.database = database
        self.url = ""
        self.started_here = False
        self._server: Any = None

    def start(self) -> str:
        """Start (or find) the server; a failure is a StartupError naming ``pgdata`` and the cause."""
        pgserver, postmaster = _pgserver()
        with _pgserver_errors() as reported:
            try:
                self.pgdata.parent.mkdir(parents=True, exist_ok=True)
                running = _running(postmaster, self.pgdata)
                self._server = pgserver.get_server(self.pgdata, cleanup_mode=None)
                if not running and not _running(postmaster, self.pgdata):
                    # pgserver caches one handle per data directory and does not restart a server
                    # that was stopped after the handle was made; bring it back up ourselves.
                    self._server.ensure_postgres_running()
                self.started_here = not running
                self._ensure_database()
            except (OSError, subprocess.SubprocessError, AssertionError) as exc:
                raise StartupError(f"embedded PostgreSQL in {self.pgdata} could not be started: "
                                   f"{_cause(exc, reported)}") from None
        self.url = self._server.get_uri(self.database)
        log.info("embedded_postgres_started" if self.started_here else "embedded_postgres_found",
                 pgdata=str(self.pgdata))
        return self.url

    def _ensure_database(self) -> None:
        pgserver, _ = _pgserver()
        assert self._server is not None
        admin = self._server.get_uri()
        exists = f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"
        if pgserver.psql([admin, "-tAc", exists]).strip() == "1":
            return
        try:
            pgserver.psql([admin, "-tAc", f'CREATE DATABASE "{self.database}"'])
        except subprocess.CalledProcessError:
            # Another engine starting on the same data directory may have just created it.
            if pgserver.psql([admin, "-tAc", exists]).strip() != "1":
                raise

    def stop(self) -> None:
        """Stop the server (fast shutdown) if ``start()`` started it; otherwise do nothing."""
        if self._server is None or not self.started_here:
            return
        pgserver, _ = _pgserver()
        try:
            pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata,
                            user=self._server.system_user, timeout=60)
        except subprocess.CalledProcessError:
            log.warning("embedded_postgres_stop_failed", pgdata=str(self.pgdata))
        self.started_here = False
        log.info("embedded_postgres_stopped", pgdata=str(self.pgdata))


_CAUSE = re.compile(r"(?:FATAL|PANIC|ERROR|error):\s*(.+)")


@contextmanager
def _pgserver_errors() -> Iterator[list[str]]:
    """Collect what pgserver logs at error level (the failed command's stderr, the server log):
    its exceptions carry only the exit status."""
    seen: list[str] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("pgserver")
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def _cause(exc: BaseException, reported: list[str]) -> str:
    """The first FATAL/ERROR line PostgreSQL wrote, else the exception itself."""
    for text in reported:
        for line in text.splitlines():
            found = _CAUSE.search(line)
            if found and not line.startswith("Command "):
                return found.group(1).strip()[:300]
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"[:300]


def _running(postmaster: Any, pgdata: Path) -> bool:
    info = postmaster.read_from_pgdata(pgdata) if pgdata.exists() else None
    return info is not None and info.is_running()


def database_url(data_dir: Path | str, database: str = DATABASE) -> str:
    """URL of the embedded server running under ``<data_dir>/pg``; RuntimeError if it is not running."""
    _, postmaster = _pgserver()
    pgdata = Path(data_dir).expanduser().resolve() / "pg"
    info = postmaster.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        raise RuntimeError(f"no embedded PostgreSQL is running under {pgdata}")
    return info.get_uri(database=database)


def mask_url(url: str) -> str:
    """``url`` with its password (user info or ``password=`` parameter) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, password = userinfo.partition(":")
        if sep and password:
            netloc = f"{user}:***@{hostport}"
    query = parts.query
    if query:
        pairs = [(k, "***" if k.lower() == "password" and v else v)
                 for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="/*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
