"""YAML text to a position-keeping node tree, and ``${VAR}`` / ``${VAR:default}`` interpolation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .problems import ConfigProblem

__all__ = [
    "MappingNode", "Node", "ScalarNode", "SequenceNode", "Source", "compose", "interpolate",
    "read_source",
]

NULL_TAG = "tag:yaml.org,2002:null"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class Source:
    """The text of one config file and the name it is reported under."""

    file: str
    text: str

    def position(self, index: int) -> tuple[int, int]:
        """1-based (line, column) of a character index."""
        index = max(0, min(index, len(self.text)))
        line = self.text.count("\n", 0, index) + 1
        column = index - (self.text.rfind("\n", 0, index) + 1) + 1
        return line, column

    def problem(self, node: Node | None, message: str) -> ConfigProblem:
        """A problem at the start of ``node`` (or of the file when there is no node)."""
        if node is None:
            return ConfigProblem(self.file, 1, 1, message)
        mark = node.start_mark
        return ConfigProblem(self.file, mark.line + 1, mark.column + 1, message)

    def problem_at(self, node: Node, token: str, occurrence: int, message: str) -> ConfigProblem:
        """A problem at the ``occurrence``-th appearance of ``token`` inside ``node``'s source text."""
        start, end = node.start_mark.index, node.end_mark.index
        raw = self.text[start:end]
        at = -1
        for _ in range(occurrence + 1):
            at = raw.find(token, at + 1)
            if at < 0:
                return self.problem(node, message)
        line, column = self.position(start + at)
        return ConfigProblem(self.file, line, column, message)


def read_source(path: Path, display: str | None = None) -> Source | ConfigProblem:
    """Read a config file as UTF-8 text; an unreadable file is a problem, not an exception."""
    name = display if display is not None else str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ConfigProblem(name, 0, 0, "no such file")
    except OSError as exc:
        return ConfigProblem(name, 0, 0, f"cannot read file: {exc.strerror or exc}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ConfigProblem(name, 0, 0, f"not UTF-8 text (byte {exc.start})")
    return Source(name, text)


_PLAIN_WORDS = (   # PyYAML's parser vocabulary, in words a config author knows
    ("<block end>", "the end of the block (check the indentation)"),
    ("found '?'", "found another key"),
    ("found '<stream end>'", "found the end of the file"),
    ("expected the node content", "expected a value"),
    ("while parsing a flow node", "in the value"),
    ("found '<block mapping start>'", "found a mapping (check the indentation)"),
    ("while parsing a block collection", "in the list"),
    ("while parsing a block mapping", "in the mapping"),
    ("while parsing a flow sequence", "in the [...] list"),
    ("while parsing a flow mapping", "in the {...} mapping"),
    ("while scanning a quoted scalar", "in the quoted string"),
    ("while scanning a simple key", "in the key"),
)


def _plain(text: str) -> str:
    for jargon, words in _PLAIN_WORDS:
        text = text.replace(jargon, words)
    return text


def compose(source: Source) -> tuple[Node | None, list[ConfigProblem]]:
    """The YAML node tree of a single-document file (``None`` when empty), or the syntax problem."""
    try:
        return yaml.compose(source.text, Loader=yaml.SafeLoader), []
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context}"
        if exc.context and exc.problem and exc.context_mark is not None:
            cm = exc.context_mark
            message += f" ({exc.context} at line {cm.line + 1}, column {cm.column + 1})"
        message = _plain(message)
        if mark is None:
            return None, [ConfigProblem(source.file, 0, 0, message)]
        return None, [ConfigProblem(source.file, mark.line + 1, mark.column + 1, message)]
    except yaml.YAMLError as exc:
        return None, [ConfigProblem(source.file, 0, 0, f"invalid YAML: {exc}")]


def is_null(node: Node) -> bool:
    """A plain ``null``, ``~`` or empty value."""
    return isinstance(node, ScalarNode) and node.tag == NULL_TAG and node.style is None


@dataclass(frozen=True, slots=True)
class Substitution:
    """The result of interpolating one scalar: its text and what went wrong, by offset."""

    text: str
    interpolated: bool
    errors: tuple[tuple[int, str, str], ...]    # (offset in the text, the token as written, message)


def interpolate(text: str, env: Mapping[str, str]) -> Substitution:
    """Replace ``${NAME}`` and ``${NAME:default}``; ``$${`` stands for a literal ``${``.

    The default is used when the variable is unset or empty. An unset variable without a
    default, a malformed name or an unterminated ``${`` is reported, never silently kept.
    """
    if "$" not in text:
        return Substitution(text, False, ())
    out: list[str] = []
    errors: list[tuple[int, str, str]] = []
    used = False
    i = 0
    while True:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        if text.startswith("$${", j):
            out.append("${")
            i = j + 3
            continue
        if not text.startswith("${", j):
            out.append("$")
            i = j + 1
            continue
        used = True
        k = text.find("}", j + 2)
        if k < 0:
            errors.append((j, text[j:], "unterminated '${' (write '${NAME}' or '${NAME:default}')"))
            out.append(text[j:])
            break
        token = text[j:k + 1]
        name, colon, default = text[j + 2:k].partition(":")
        if not _NAME.match(name):
            errors.append((j, token, f"invalid variable name {name!r} in {token!r}"))
        elif env.get(name):
            out.append(env[name])
        elif colon:
            out.append(default)
        elif name in env:
            out.append("")
        else:
            errors.append((j, token, f"environment variable {name} is not set "
                                  f"(set it, or give a default: '${{{name}:default}}')"))
        i = k + 1
    return Substitution("".join(out), used, tuple(errors))
