"""``lint``: check engine and channel files (or directories of them) and report every problem at once."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..pipeline import StageSpec
from .engine import EngineConfig
from .hints import option_fields
from .loader import Loaded, address_clashes, channel_files, check_channel
from .problems import ConfigProblem, sort_problems
from .schema import walk
from .source import MappingNode, Node, ScalarNode, Source, compose, read_source

ENGINE_FILE_NAMES = ("engine.yaml", "engine.yml")
ENGINE_KEYS = frozenset(f.name for f, _ in option_fields(EngineConfig))


def looks_like_engine(path: Path, node: Node | None) -> bool:
    """``engine.yaml`` by name, or a mapping with engine settings and no channel-only keys."""
    if path.name in ENGINE_FILE_NAMES:
        return True
    if not isinstance(node, MappingNode):
        return False
    keys = {k.value for k, _ in node.value if isinstance(k, ScalarNode)}
    return bool(keys & ENGINE_KEYS) and not keys & {"listen", "pipeline", "accept"}


def lint_paths(paths: Sequence[Path], env: Mapping[str, str] | None = None, *,
               stages: Mapping[str, StageSpec] | None = None) -> list[ConfigProblem]:
    """Every problem in the given files and directories (an engine file also brings its channels).

    Channel files in the same directory belong to one engine, so their listen addresses must not
    clash; files in different directories are not compared.
    """
    env = os.environ if env is None else env
    problems: list[ConfigProblem] = []
    seen: set[Path] = set()
    groups: dict[Path, list[Loaded]] = {}
    queue = list(paths)
    while queue:
        path = queue.pop(0)
        if path.is_dir():
            files = channel_files(path)
            if not files:
                problems.append(ConfigProblem(str(path), 0, 0, "no config files (*.yaml) here"))
            queue[:0] = files
            continue
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        source = read_source(path)
        if not isinstance(source, Source):
            problems.append(source)
            continue
        node, syntax = compose(source)
        if syntax:
            problems += syntax
        elif looks_like_engine(path, node):
            engine, found = walk(EngineConfig, source, env, {"path": path}, node=node)
            problems += found
            if engine is not None:
                if engine.channels_dir.is_dir():
                    queue.append(engine.channels_dir)
                else:
                    problems.append(_at_key(source, node, "channels_dir",
                                            f"no such directory: {str(engine.channels_dir)!r}"))
        else:
            loaded = check_channel(source, node, path.stem, path, env, stages)
            problems += loaded.problems
            groups.setdefault(key.parent, []).append(loaded)
    for loaded_group in groups.values():
        problems += address_clashes(loaded_group)
    return sort_problems(problems)


def _at_key(source: Source, node: Node | None, key: str, message: str) -> ConfigProblem:
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key:
                return source.problem(v, f"{key}: {message}")
    return ConfigProblem(source.file, 0, 0, f"{key}: {message}")
