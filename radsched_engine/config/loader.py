"""Loading channel files: one file per channel, names from file stems, no two on one address."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..pipeline import StageSpec
from . import checks
from .channel import ChannelConfig
from .engine import EngineConfig, load_engine
from .pipeline_steps import STAGES_KEY
from .problems import ConfigError, ConfigProblem, sort_problems
from .schema import walk
from .source import MappingNode, Node, ScalarNode, Source, compose, read_source

CHANNEL_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Loaded:
    """The outcome of one channel file: the config (None when broken), its problems, listen position."""

    config: ChannelConfig | None
    problems: list[ConfigProblem]
    listen_at: tuple[str, int, int] | None = None     # (file, line, column)


def channel_files(directory: Path) -> list[Path]:
    """The channel files of a directory (``*.yaml`` / ``*.yml``, not hidden), sorted by name."""
    return sorted(p for p in directory.iterdir()
                  if p.suffix in CHANNEL_SUFFIXES and not p.name.startswith(".") and p.is_file())


def check_channel(source: Source, node: Node | None, name: str, path: Path,
                  env: Mapping[str, str], stages: Mapping[str, StageSpec] | None = None) -> Loaded:
    """Build one channel from an already composed file."""
    problems: list[ConfigProblem] = []
    if not checks.CHANNEL_NAME.match(name):
        problems.append(ConfigProblem(source.file, 0, 0, f"channel name {name!r} (the file name) must "
                                      "match [a-z0-9][a-z0-9_-]*: lower-case letters, digits, '_', '-'"))
    context = {STAGES_KEY: stages} if stages is not None else None
    if node is None:
        problems.append(ConfigProblem(source.file, 0, 0, "empty channel file: a channel needs at "
                                      "least 'listen' and 'pipeline'"))
        return Loaded(None, problems)
    config, walk_problems = walk(ChannelConfig, source, env, {"name": name, "path": path}, context, node)
    listen_at = None
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == "listen":
                listen_at = (source.file, value.start_mark.line + 1, value.start_mark.column + 1)
    problems = sort_problems(problems + walk_problems)
    return Loaded(None if problems else config, problems, listen_at)


def load_channel_file(path: Path, env: Mapping[str, str] | None = None, *,
                      stages: Mapping[str, StageSpec] | None = None) -> Loaded:
    """One channel file, named after its stem; problems are returned, not raised."""
    env = os.environ if env is None else env
    read = read_source(path)
    if not isinstance(read, Source):
        return Loaded(None, [read])
    node, problems = compose(read)
    if problems:
        return Loaded(None, problems)
    return check_channel(read, node, path.stem, path, env, stages)


def load_channel_text(text: str, name: str = "test", env: Mapping[str, str] | None = None, *,
                      path: Path | None = None, stages: Mapping[str, StageSpec] | None = None,
                      ) -> ChannelConfig:
    """A channel from YAML text (for tests and tools); raises ``ConfigError``."""
    path = path or Path(f"{name}.yaml")
    source = Source(str(path), text)
    node, problems = compose(source)
    if problems:
        raise ConfigError(problems)
    loaded = check_channel(source, node, name, path, os.environ if env is None else env, stages)
    if loaded.config is None:
        raise ConfigError(loaded.problems)
    return loaded.config


def address_clashes(loaded: Iterable[Loaded]) -> list[ConfigProblem]:
    """A problem for every channel that listens where an earlier one already does."""
    taken: list[tuple[str, int, Loaded]] = []
    problems: list[ConfigProblem] = []
    for item in loaded:
        if item.config is None or item.listen_at is None:
            continue
        host, port = item.config.host, item.config.port
        if port == 0:
            continue
        for other_host, other_port, other in taken:
            if port == other_port and (host == other_host or {host, other_host} & checks.WILDCARD_HOSTS):
                assert other.config is not None and other.listen_at is not None
                file, line, column = item.listen_at
                where = f"{other.listen_at[0]}:{other.listen_at[1]}:{other.listen_at[2]}"
                if item.config.listen == other.config.listen:
                    message = (f"listen: {item.config.listen} is already used by channel "
                               f"{other.config.name!r} ({where})")
                else:
                    message = (f"listen: {item.config.listen} overlaps channel {other.config.name!r} "
                               f"listening on {other.config.listen} ({where})")
                problems.append(ConfigProblem(file, line, column, message))
                break
        else:
            taken.append((host, port, item))
    return problems


def check_channels(files: Sequence[Path], env: Mapping[str, str] | None = None, *,
                   stages: Mapping[str, StageSpec] | None = None) -> tuple[list[Loaded], list[ConfigProblem]]:
    """Several channel files of one engine: each file's problems plus address clashes between them."""
    loaded = [load_channel_file(p, env, stages=stages) for p in files]
    problems = [p for item in loaded for p in item.problems] + address_clashes(loaded)
    return loaded, sort_problems(problems)


def load_channels(directory: Path, env: Mapping[str, str] | None = None, *,
                  stages: Mapping[str, StageSpec] | None = None) -> list[ChannelConfig]:
    """Every channel of a directory, sorted by name; raises ``ConfigError`` with all problems of all files."""
    if not directory.is_dir():
        what = "not a directory" if directory.exists() else "no such directory"
        raise ConfigError([ConfigProblem(str(directory), 0, 0, f"channels: {what}")])
    files = channel_files(directory)
    if not files:
        raise ConfigError([ConfigProblem(str(directory), 0, 0, "no channel files (*.yaml) here")])
    loaded, problems = check_channels(files, env, stages=stages)
    if problems:
        raise ConfigError(problems)
    return [item.config for item in loaded if item.config is not None]


def load_all(path: Path | None = None, env: Mapping[str, str] | None = None, *,
             stages: Mapping[str, StageSpec] | None = None) -> tuple[EngineConfig, list[ChannelConfig]]:
    """Engine settings and all their channels; raises ``ConfigError`` with every problem found."""
    engine = load_engine(path, env)
    return engine, load_channels(engine.channels_dir, env, stages=stages)
