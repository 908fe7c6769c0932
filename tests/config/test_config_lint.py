"""``lint_paths``: files and directories, engine files recognised, every problem of every file at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from radsched_engine.config import lint_paths

from .stand_ins import STAGES

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_shipped_files_lint_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    paths = [Path("config/engine.yaml"), Path("channels"), Path("bench/channels/ack-only")]
    assert lint_paths(paths, env={}, stages=STAGES) == []


def test_engine_file_brings_its_channels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "config" / "engine.yaml", "channels_dir: ${CH:chans}\n")
    write(tmp_path / "chans" / "a.yaml", "listen: 0.0.0.0:1\npipeline: [parse, validat]\n")
    problems = [str(p) for p in lint_paths([Path("config/engine.yaml")], env={}, stages=STAGES)]
    assert problems == ["chans/a.yaml:2:19: pipeline: unknown stage 'validat' (did you mean 'validate'? "
                        "allowed: parse, validate, conflict_check, persist, notify)"]
    # Given twice (engine and directory), a file is still checked and reported once.
    assert [str(p) for p in lint_paths([Path("config/engine.yaml"), Path("chans")], env={},
                                       stages=STAGES)] == problems


def test_engine_channels_dir_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "engine.yaml", "data_dir: var\nchannels_dir: nowhere\n")
    assert [str(p) for p in lint_paths([Path("engine.yaml")], env={})] == [
        "engine.yaml:2:15: channels_dir: no such directory: 'nowhere'"]


def test_engine_settings_recognised_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "prod.yaml", "log: {level: chatty}\nchannels_dir: .\n")
    problems = [str(p) for p in lint_paths([Path("prod.yaml")], env={}, stages=STAGES)]
    assert problems[0] == (
        "prod.yaml:1:14: log.level: invalid value 'chatty' (allowed: debug, info, warning, error)")


def test_channels_in_different_directories_are_not_compared(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "one" / "a.yaml", "listen: 0.0.0.0:8661\npipeline: [parse]\n")
    write(tmp_path / "two" / "b.yaml", "listen: 0.0.0.0:8661\npipeline: [parse]\n")
    assert lint_paths([Path("one"), Path("two")], env={}, stages=STAGES) == []
    write(tmp_path / "one" / "c.yaml", "listen: 0.0.0.0:8661\npipeline: [parse]\n")
    assert [str(p) for p in lint_paths([Path("one/a.yaml"), Path("one/c.yaml")], env={}, stages=STAGES)] == [
        "one/c.yaml:1:9: listen: 0.0.0.0:8661 is already used by channel 'a' (one/a.yaml:1:9)"]


def test_every_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "c" / "a.yaml", "listen: x\npipeline: [parse]\n")
    write(tmp_path / "c" / "b.yaml", "listen: 0.0.0.0:2\npipeline: [parse]\nlimits: {max_connections: 0}\n")
    write(tmp_path / "c" / "c.yaml", "listen: [\n")
    (tmp_path / "empty").mkdir()
    problems = [str(p) for p in lint_paths([Path("c"), Path("missing.yaml"), Path("empty")], env={},
                                           stages=STAGES)]
    assert problems == [
        "c/a.yaml:1:9: listen: expected host:port (e.g. 0.0.0.0:8661), got 'x'",
        "c/b.yaml:3:27: limits.max_connections: must be greater than 0, got 0",
        "c/c.yaml:2:1: invalid YAML: expected a value, but found the end of the file "
        "(in the value at line 2, column 1)",
        "missing.yaml: no such file",
        "empty: no config files (*.yaml) here",
    ]


def test_real_registry_is_used_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.yaml", "listen: 0.0.0.0:1\npipeline: [no_such_stage]\n")
    [problem] = lint_paths([Path("a.yaml")], env={})
    assert problem.message.startswith("pipeline: unknown stage 'no_such_stage' (allowed: ")
