"""The schema walk: frozen dataclasses built from YAML nodes by their type hints, every problem collected."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from .hints import expected, has_default, literal_text, option_fields, optional_of
from .problems import ConfigError, ConfigProblem, allowed_hint, did_you_mean, sort_problems
from .source import MappingNode, Node, ScalarNode, SequenceNode, Source, compose, interpolate, is_null

T = TypeVar("T")


class _Bad:
    """Marks a value that could not be built (its problem is already reported)."""

    def __repr__(self) -> str:
        return "BAD"


BAD: Any = _Bad()
Check = Callable[[Any], "str | None"]


def describe(node: Node) -> str:
    """A short picture of a node for 'got ...' in messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if is_null(node):
        return "null"
    text = str(node.value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}


class Walker:
    """Builds values from the nodes of one source, reporting problems instead of raising."""

    def __init__(self, source: Source, env: Mapping[str, str],
                 context: Mapping[str, Any] | None = None) -> None:
        self.source = source
        self.env = env
        self.context: Mapping[str, Any] = context or {}   # what custom ``build`` hooks need
        self.problems: list[ConfigProblem] = []
        self._texts: dict[int, tuple[Node, Any]] = {}

    def report(self, node: Node | None, label: str, message: str) -> Any:
        """Record a problem at ``node``; returns ``BAD`` so callers can ``return self.report(...)``."""
        self.problems.append(self.source.problem(node, f"{label}: {message}" if label else message))
        return BAD

    def text(self, node: ScalarNode, label: str) -> Any:
        """The scalar's text after interpolation (``BAD`` when a variable could not be resolved)."""
        if getattr(node, "literal", False):
            return node.value
        cached = self._texts.get(id(node))
        if cached is not None and cached[0] is node:
            return cached[1]
        sub = interpolate(node.value, self.env)
        for offset, token, message in sub.errors:
            where = f"{label}: " if label else ""
            occurrence = node.value[:offset].count(token)
            self.problems.append(self.source.problem_at(node, token, occurrence, where + message))
        text = BAD if sub.errors else sub.text
        self._texts[id(node)] = (node, text)
        return text

    def got(self, node: ScalarNode, text: str) -> str:
        """``'abc'`` or, for an interpolated value, ``'' (from '${PORT}')``."""
        shown = repr(text if len(text) <= 60 else text[:57] + "...")
        if text != node.value and not getattr(node, "literal", False):
            shown += f" (from {node.value!r})"
        return shown

    def build(self, tp: Any, node: Node, label: str) -> Any:
        """A value of type ``tp`` from ``node``, or ``BAD`` after reporting why not."""
        inner = optional_of(tp)
        if inner is not None:
            if is_null(node):
                return None
            if isinstance(node, ScalarNode):
                text = self.text(node, label)
                if text is BAD or text == "":
                    return None if text == "" else BAD
            return self.build(inner, node, label)
        origin = get_origin(tp)
        if origin in (tuple, list):
            return self._sequence(tp, node, label)
        if origin is dict:
            return self._dict(tp, node, label)
        if dataclasses.is_dataclass(tp):
            return self.build_dataclass(tp, node, label)
        if not isinstance(node, ScalarNode) or is_null(node):
            return self.report(node, label, f"expected {expected(tp)}, got {describe(node)}")
        text = self.text(node, label)
        if text is BAD:
            return BAD
        return self._scalar(tp, node, text, label)

    def _scalar(self, tp: Any, node: ScalarNode, text: str, label: str) -> Any:
        if get_origin(tp) is Literal:
            by_text = {literal_text(v): v for v in get_args(tp)}
            if text in by_text:
                return by_text[text]
            return self.report(node, label,
                               f"invalid value {self.got(node, text)} {allowed_hint(text, list(by_text))}")
        if tp is str:
            return text
        if tp is Path:
            if not text:
                return self.report(node, label, "expected a path, got ''")
            return Path(text)
        t = text.strip()
        if tp is bool:
            if t.lower() in _TRUE | _FALSE:
                return t.lower() in _TRUE
        elif tp is int:
            try:
                if t and t.lstrip("+-")[:1].isdigit():
                    return int(t)
            except ValueError:
                pass
        elif tp is float:
            try:
                value = float(t) if t and t.lower().lstrip("+-") not in ("nan", "inf", "infinity") else None
            except ValueError:
                value = None
            if value is not None:
                return value
        else:
            raise TypeError(f"unsupported option type {tp!r}")
        return self.report(node, label, f"expected {expected(tp)}, got {self.got(node, text)}")

    def _sequence(self, tp: Any, node: Node, label: str) -> Any:
        args = get_args(tp)
        if get_origin(tp) is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            raise TypeError(f"unsupported option type {tp!r} (use tuple[X, ...])")
        if not isinstance(node, SequenceNode):
            if is_null(node):
                return get_origin(tp)()
            return self.report(node, label, f"expected a list, got {describe(node)}")
        items = [self.build(args[0], item, f"{label}[{i}]") for i, item in enumerate(node.value)]
        if any(item is BAD for item in items):
            return BAD
        return tuple(items) if get_origin(tp) is tuple else items

    def _dict(self, tp: Any, node: Node, label: str) -> Any:
        key_tp, value_tp = get_args(tp)
        if key_tp is not str:
            raise TypeError(f"unsupported option type {tp!r} (keys must be str)")
        if not isinstance(node, MappingNode):
            if is_null(node):
                return {}
            return self.report(node, label, f"expected a mapping, got {describe(node)}")
        result: dict[str, Any] = {}
        for key, _key_node, value_node in self.entries(node, label):
            value = self.build(value_tp, value_node, f"{label}.{key}" if label else key)
            result[key] = value
        if any(v is BAD for v in result.values()) or len(result) != len(node.value):
            return BAD
        return result

    def entries(self, node: MappingNode, label: str) -> list[tuple[str, Node, Node]]:
        """(key, key node, value node) of a mapping; non-text, merge and duplicate keys are reported."""
        seen: dict[str, Node] = {}
        out: list[tuple[str, Node, Node]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or is_null(key_node):
                self.report(key_node, label, f"keys must be plain names, got {describe(key_node)}")
                continue
            key = str(key_node.value)
            if key == "<<" and key_node.tag == "tag:yaml.org,2002:merge":
                self.report(key_node, label, "YAML merge keys ('<<') are not supported; "
                                             "write the options out")
                continue
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.report(key_node, label, f"duplicate option {key!r} (first given on line {first})")
                continue
            seen[key] = key_node
            out.append((key, key_node, value_node))
        return out

    def build_dataclass(self, cls: type[T], node: Node | None, label: str,
                        extra: Mapping[str, Any] | None = None) -> Any:
        """An instance of dataclass ``cls`` from a mapping node (``None``/null = all defaults)."""
        fields = option_fields(cls)
        names = [f.name for f, _ in fields]
        given: dict[str, tuple[Node, Node]] = {}
        bad = False
        if node is not None and not is_null(node):
            if not isinstance(node, MappingNode):
                return self.report(node, label, f"expected a mapping, got {describe(node)}")
            for key, key_node, value_node in self.entries(node, label):
                if key in names:
                    given[key] = (key_node, value_node)
                else:
                    self.report(key_node, label, did_you_mean(key, names))
                    bad = True
            bad = bad or len(given) != len(node.value)
        kwargs: dict[str, Any] = dict(extra or {})
        for f, tp in fields:
            sub = f"{label}.{f.name}" if label else f.name
            if f.name in given:
                value_node = given[f.name][1]
            else:
                value_node = self._from_env(f, node)
                if value_node is None:
                    if dataclasses.is_dataclass(tp) and "build" not in f.metadata:
                        pass   # a section left out: built from nothing, so its env fallbacks apply
                    elif not has_default(f):
                        self.report(node, label, f"missing required option {f.name!r}")
                        bad = True
                        continue
                    else:
                        continue
                sub = f"{sub} (from ${f.metadata['env']})" if value_node is not None else sub
            builder = f.metadata.get("build")
            if builder is not None:
                value = builder(self, value_node, sub)
            elif value_node is None:
                value = self.build_dataclass(tp, None, sub)
            else:
                value = self.build(tp, value_node, sub)
            if value is not BAD and value_node is not None:
                value = self._check(f, value, value_node, sub)
            if value is BAD:
                bad = True
            else:
                kwargs[f.name] = value
        if bad:
            return BAD
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            return self.report(node, label, str(exc))

    def _from_env(self, f: dataclasses.Field[Any], mapping: Node | None) -> Node | None:
        """A stand-in node for an omitted option whose ``metadata["env"]`` variable is set."""
        name = f.metadata.get("env")
        if not name or not self.env.get(name):
            return None
        mark = mapping.start_mark if mapping is not None else yaml_start()
        node = ScalarNode("tag:yaml.org,2002:str", self.env[name], mark, mark, style="'")
        node.literal = True   # type: ignore[attr-defined]
        return node

    def _check(self, f: dataclasses.Field[Any], value: Any, node: Node, label: str) -> Any:
        """Apply ``metadata["each"]`` to every item and then ``metadata["check"]`` to the value."""
        check: Check | None = f.metadata.get("check")
        each: Check | None = f.metadata.get("each")
        if value is None:
            return value
        ok = True
        if each is not None:
            items = list(value.values()) if isinstance(value, dict) else list(value)
            if isinstance(node, MappingNode):
                nodes = [v for _, v in node.value]
            else:
                nodes = node.value if isinstance(node, SequenceNode) else [node] * len(items)
            for i, (item, item_node) in enumerate(zip(items, nodes, strict=False)):
                message = each(item)
                if message:
                    ok = False
                    where = f"{label}[{i}]" if isinstance(value, (list, tuple)) else label
                    self.report(item_node, where, message + self._origin(item_node))
        if check is not None and ok:
            message = check(value)
            if message:
                return self.report(node, label, message + self._origin(node))
        return value if ok else BAD

    @staticmethod
    def _origin(node: Node) -> str:
        """`` (from '${VAR}')`` when a scalar's value came through interpolation."""
        if isinstance(node, ScalarNode) and not getattr(node, "literal", False) and "${" in node.value:
            return f" (from {node.value!r})"
        return ""


def yaml_start() -> Any:
    from yaml.error import Mark
    return Mark("<environment>", 0, -1, -1, "", 0)   # reported without a line


def parse_options(cls: type[T], text: str, *, file: str = "<snippet>",
                  env: Mapping[str, str] | None = None) -> T:
    """Build an options dataclass from a YAML snippet (for tests); raises ``ConfigError``."""
    import os
    source = Source(file, text)
    node, problems = compose(source)
    if problems:
        raise ConfigError(problems)
    walker = Walker(source, os.environ if env is None else env)
    value = walker.build_dataclass(cls, node, "")
    if walker.problems or value is BAD:
        raise ConfigError(sort_problems(walker.problems))
    return value


def walk(cls: type[T], source: Source, env: Mapping[str, str],
         extra: Mapping[str, Any] | None = None, context: Mapping[str, Any] | None = None,
         node: Node | None = None) -> tuple[T | None, list[ConfigProblem]]:
    """Compose ``source`` (unless ``node`` is given) and build ``cls`` from its top-level mapping.

    Returns (value, []) or (None, problems).
    """
    if node is None:
        node, problems = compose(source)
        if problems:
            return None, problems
    walker = Walker(source, env, context)
    value = walker.build_dataclass(cls, node, "", extra)
    if value is BAD or walker.problems:
        return None, sort_problems(walker.problems)
    return value, []
