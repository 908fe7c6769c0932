"""What a type hint means as a YAML option: which fields are options, optionality, names in messages."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

__all__ = ["expected", "has_default", "literal_text", "option_fields", "optional_of"]


@functools.cache
def option_fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    """The YAML options of a dataclass: (field, resolved type hint), in declaration order.

    Fields with ``metadata={"yaml": False}`` (or ``init=False``) are not options.
    """
    hints = typing.get_type_hints(cls)
    return tuple(
        (f, hints[f.name]) for f in dataclasses.fields(cls)
        if f.init and f.metadata.get("yaml", True)
    )


def has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def optional_of(tp: Any) -> Any | None:
    """``X`` for ``X | None``; ``None`` for any other type."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = get_args(tp)
        rest = [a for a in args if a is not type(None)]
        if len(args) == 2 and len(rest) == 1:
            return rest[0]
    return None


def expected(tp: Any) -> str:
    """How an error message names the kind of value a type wants."""
    inner = optional_of(tp)
    if inner is not None:
        return expected(inner)
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(literal_text(v) for v in get_args(tp))
    if origin in (tuple, list):
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            Path: "a path"}.get(tp, str(tp))


def literal_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def supported(tp: Any) -> bool:
    """Whether the schema walk can build this option type."""
    inner = optional_of(tp)
    if inner is not None:
        return supported(inner)
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return all(isinstance(a, (str, int, bool)) for a in args)
    if origin is tuple:
        return len(args) == 2 and args[1] is Ellipsis and supported(args[0])
    if origin is list:
        return supported(args[0])
    if origin is dict:
        return args[0] is str and supported(args[1])
    if dataclasses.is_dataclass(tp):
        return not schema_issues(tp)
    return tp in (str, int, float, bool, Path)


def schema_issues(cls: type) -> list[str]:
    """What keeps an options dataclass from being a good config schema (empty = fine).

    Every option needs a supported type, a default and ``metadata={"doc": ...}``; the class
    should be frozen.
    """
    issues: list[str] = []
    if not dataclasses.is_dataclass(cls):
        return [f"{cls.__name__} is not a dataclass"]
    params = getattr(cls, "__dataclass_params__", None)
    if params is not None and not params.frozen:
        issues.append(f"{cls.__name__} is not frozen")
    try:
        fields = option_fields(cls)
    except (NameError, TypeError) as exc:
        return [f"{cls.__name__}: type hints cannot be resolved ({exc})"]
    for f, tp in fields:
        where = f"{cls.__name__}.{f.name}"
        if not supported(tp):
            issues.append(f"{where}: unsupported type {tp!r}")
        if not has_default(f):
            issues.append(f"{where}: no default")
        if not str(f.metadata.get("doc", "")).strip():
            issues.append(f"{where}: no metadata doc")
    return issues
