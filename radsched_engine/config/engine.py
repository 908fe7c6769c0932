"""Engine settings (``config/engine.yaml``): channels and data dirs, database, metrics, logs, retention."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from . import checks
from .problems import ConfigError
from .schema import walk
from .source import Source, read_source

DEFAULT_PATH = Path("config/engine.yaml")


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """The PostgreSQL connection pool."""

    url: str | None = field(default=None, repr=False, metadata={   # may hold a password
        "doc": "PostgreSQL URL (postgresql://user:pass@host:5432/db); empty = an embedded PostgreSQL "
               "server kept under `data_dir`.",
        "env": "RADSCHED_DATABASE_URL", "check": checks.database_url})
    pool_min: int = field(default=2, metadata={
        "doc": "Connections opened at start-up.", "check": checks.positive})
    pool_max: int = field(default=16, metadata={
        "doc": "Most connections open at once.", "check": checks.positive})
    connect_timeout: float = field(default=5.0, metadata={
        "doc": "Seconds to wait for a new connection.", "check": checks.positive})
    command_timeout: float = field(default=10.0, metadata={
        "doc": "Seconds a single statement may run.", "check": checks.positive})

    def __post_init__(self) -> None:
        if self.pool_min > self.pool_max:
            raise ValueError(f"pool_min ({self.pool_min}) is greater than pool_max ({self.pool_max})")


@dataclass(frozen=True, slots=True)
class LogSettings:
    """Structured logging (never with patient data)."""

    format: Literal["auto", "json", "console"] = field(default="auto", metadata={
        "doc": "`json` lines, human `console` output, or `auto` (console on a terminal, else json)."})
    level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata={
        "doc": "Lowest level written."})


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How long the journal and the outbox keep rows (patient data); empty = keep forever."""

    raw_days: int | None = field(default=None, metadata={
        "doc": "Days a journal row keeps the message's raw bytes; after that `raw` is emptied and "
               "the row's metadata (ids, outcome, ACK, hash) kept, like Mirth's \"prune content "
               "only\". Empty = forever. At most `journal_days`.", "check": checks.positive})
    journal_days: int | None = field(default=None, metadata={
        "doc": "Days a journal row is kept at all. Redelivery is detected only while the first "
               "delivery's row exists: a resend older than this is handled as a new message. "
               "Empty = forever.", "check": checks.positive})
    outbox_days: int | None = field(default=None, metadata={
        "doc": "Days a finished outbox row (sent, skipped, dead, cancelled) is kept after its last "
               "change; rows still pending, retrying or sending are never pruned. Empty = forever.",
        "check": checks.positive})
    interval: float = field(default=3600.0, metadata={
        "doc": "Seconds between two runs of the pruner (the first runs `start_delay` seconds "
               "after start).", "check": checks.positive})
    start_delay: float = field(default=60.0, metadata={
        "doc": "Seconds from engine start to the first run.", "check": checks.not_negative})
    batch_size: int = field(default=1000, metadata={
        "doc": "Rows looked at per short transaction.", "check": checks.positive})

    def __post_init__(self) -> None:
        if self.raw_days is not None and self.journal_days is not None \
                and self.raw_days > self.journal_days:
            raise ValueError(f"raw_days ({self.raw_days}) is greater than journal_days "
                             f"({self.journal_days}): a row cannot keep its bytes longer than "
                             "itself")

    @property
    def enabled(self) -> bool:
        """True when anything is ever pruned."""
        return any(d is not None for d in (self.raw_days, self.journal_days, self.outbox_days))


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Process-wide settings; relative paths are taken from the current working directory."""

    channels_dir: Path = field(default=Path("channels"), metadata={
        "doc": "Directory of channel files, one `<name>.yaml` per channel.",
        "env": "RADSCHED_CHANNELS_DIR"})
    data_dir: Path = field(default=Path("var"), metadata={
        "doc": "Directory for local state, such as the embedded PostgreSQL's files.",
        "env": "RADSCHED_DATA_DIR"})
    database: DatabaseSettings = field(default_factory=DatabaseSettings, metadata={
        "doc": "Database connection pool."})
    metrics_listen: str = field(default="0.0.0.0:9464", metadata={
        "doc": "`host:port` of the Prometheus `/metrics` endpoint.",
        "env": "RADSCHED_METRICS_LISTEN", "check": checks.listen_address})
    log: LogSettings = field(default_factory=LogSettings, metadata={"doc": "Logging."})
    shutdown_grace: float = field(default=30.0, metadata={
        "doc": "Seconds to let messages in flight finish after a stop signal.",
        "check": checks.not_negative})
    retention: RetentionSettings = field(default_factory=RetentionSettings, metadata={
        "doc": "Data pruner: how long journal rows, their raw bytes and finished outbox rows "
               "are kept."})
    path: Path | None = field(default=None, metadata={
        "yaml": False, "doc": "The file these settings were loaded from (None = built-in defaults)."})

    @property
    def metrics_host(self) -> str:
        return checks.split_host_port(self.metrics_listen)[0]

    @property
    def metrics_port(self) -> int:
        return checks.split_host_port(self.metrics_listen)[1]


def load_engine(path: Path | None = None, env: Mapping[str, str] | None = None) -> EngineConfig:
    """Engine settings from ``path``; without a path from ``./config/engine.yaml`` if it exists,
    else the built-in defaults (the ``RADSCHED_*`` variables apply either way). Relative
    ``channels_dir`` / ``data_dir`` are made absolute against the current directory.
    Raises ``ConfigError`` with every problem.
    """
    env = os.environ if env is None else env
    if path is None and DEFAULT_PATH.is_file():
        path = DEFAULT_PATH
    if path is None:
        source: Source = Source("<defaults>", "")
    else:
        read = read_source(path)
        if not isinstance(read, Source):
            raise ConfigError([read])
        source = read
    config, problems = walk(EngineConfig, source, env, {"path": path})
    if config is None:
        raise ConfigError(problems)
    return replace(config, channels_dir=_absolute(config.channels_dir), data_dir=_absolute(config.data_dir))


def _absolute(path: Path) -> Path:
    return path if path.is_absolute() else Path.cwd() / path
