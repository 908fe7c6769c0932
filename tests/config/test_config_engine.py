"""Engine settings: the shipped file, built-in defaults, environment overrides, relative paths."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from radsched_engine.config import (
    ConfigError,
    DatabaseSettings,
    EngineConfig,
    LogSettings,
    RetentionSettings,
    load_all,
    load_engine,
)

from .stand_ins import STAGES

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "engine.yaml"


def test_without_a_file_the_defaults_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)        # no ./config/engine.yaml here
    config = load_engine(env={})
    assert config == EngineConfig(
        channels_dir=tmp_path / "channels", data_dir=tmp_path / "var", database=DatabaseSettings(),
        metrics_listen="0.0.0.0:9464", log=LogSettings(), shutdown_grace=30.0, path=None)
    assert config.database.url is None
    assert (config.metrics_host, config.metrics_port) == ("0.0.0.0", 9464)


def test_environment_overrides_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_engine(env={
        "RADSCHED_METRICS_LISTEN": "127.0.0.1:9999", "RADSCHED_CHANNELS_DIR": "/etc/radsched/channels",
        "RADSCHED_DATA_DIR": "state", "RADSCHED_DATABASE_URL": "postgresql://u@db:5432/radsched"})
    assert config.metrics_listen == "127.0.0.1:9999"
    assert config.channels_dir == Path("/etc/radsched/channels")
    assert config.data_dir == tmp_path / "state"
    assert config.database.url == "postgresql://u@db:5432/radsched"


SHIPPED_RETENTION = RetentionSettings(raw_days=30, journal_days=365, outbox_days=30)


def test_shipped_file_equals_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config/engine.yaml says nothing the built-in defaults don't, for any of the variables,
    except the retention periods (the defaults keep everything; the file sets this site's)."""
    monkeypatch.chdir(tmp_path)
    for env in ({}, {"RADSCHED_METRICS_LISTEN": "127.0.0.1:1", "RADSCHED_CHANNELS_DIR": "c",
                     "RADSCHED_DATA_DIR": "d", "RADSCHED_DATABASE_URL": "postgres://x/y"}):
        shipped = load_engine(SHIPPED, env=env)
        assert shipped.path == SHIPPED
        assert shipped.retention == SHIPPED_RETENTION
        assert replace(shipped, path=None, retention=RetentionSettings()) == load_engine(env=env)
    assert not RetentionSettings().enabled          # built in: nothing is ever pruned


def test_shipped_retention_periods_follow_the_environment(tmp_path: Path) -> None:
    shipped = load_engine(SHIPPED, env={"RADSCHED_RETENTION_RAW_DAYS": "7",
                                        "RADSCHED_RETENTION_JOURNAL_DAYS": "3650",
                                        "RADSCHED_RETENTION_OUTBOX_DAYS": "90"})
    assert shipped.retention == replace(SHIPPED_RETENTION, raw_days=7, journal_days=3650,
                                        outbox_days=90)


def test_retention_raw_days_beyond_the_shipped_journal_days(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_engine(SHIPPED, env={"RADSCHED_RETENTION_RAW_DAYS": "400"})
    [problem] = info.value.problems
    assert problem.file == str(SHIPPED) and problem.line > 1
    assert problem.message == ("retention: raw_days (400) is greater than journal_days (365): "
                               "a row cannot keep its bytes longer than itself")


def test_retention_section_alone(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("retention:\n  raw_days: 2\n  outbox_days: 1\n  interval: 0.5\n"
                    "  start_delay: 0\n  batch_size: 10\n")
    config = load_engine(path, env={})
    assert config.retention == RetentionSettings(raw_days=2, journal_days=None, outbox_days=1,
                                                 interval=0.5, start_delay=0.0, batch_size=10)
    assert config.retention.enabled


def test_config_engine_yaml_in_the_working_directory_is_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "engine.yaml").write_text("shutdown_grace: 2\nlog: {format: json}\n")
    monkeypatch.chdir(tmp_path)
    config = load_engine(env={})
    assert config.path == Path("config/engine.yaml")
    assert (config.shutdown_grace, config.log.format, config.log.level) == (2.0, "json", "info")


def test_problems_are_raised_together(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("database:\n  pool_max: 0\n  connect_timeout: soon\nlog: {level: loud}\n")
    with pytest.raises(ConfigError) as info:
        load_engine(path, env={})
    assert [(p.line, p.column, p.message) for p in info.value.problems] == [
        (2, 13, "database.pool_max: must be greater than 0, got 0"),
        (3, 20, "database.connect_timeout: expected a number, got 'soon'"),
        (4, 14, "log.level: invalid value 'loud' (allowed: debug, info, warning, error)"),
    ]


def test_missing_file_given_explicitly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_engine(tmp_path / "nope.yaml", env={})
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file"


def test_database_url_is_not_echoed_in_problems(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("database: {url: 'mysql://admin:s3cret@db/x'}\n")
    with pytest.raises(ConfigError) as info:
        load_engine(path, env={})
    assert "s3cret" not in str(info.value)
    config = load_engine(env={"RADSCHED_DATABASE_URL": "postgresql://admin:s3cret@db/x"})
    assert config.database.url == "postgresql://admin:s3cret@db/x"
    assert "s3cret" not in repr(config)


def test_load_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chans").mkdir()
    (tmp_path / "chans" / "a.yaml").write_text("listen: 127.0.0.1:0\npipeline: [parse]\n")
    engine, channels = load_all(env={"RADSCHED_CHANNELS_DIR": "chans"}, stages=STAGES)
    assert engine.channels_dir == tmp_path / "chans"
    assert [(c.name, c.path) for c in channels] == [("a", tmp_path / "chans" / "a.yaml")]
    with pytest.raises(ConfigError, match="no such directory"):
        load_all(env={}, stages=STAGES)
