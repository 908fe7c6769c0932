"""The schema walk: types from hints, defaults, env fallbacks, checks, and every problem at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from radsched_engine.config import ConfigError, parse_options
from radsched_engine.config.hints import schema_issues, supported


@dataclass(frozen=True, slots=True)
class Inner:
    name: str = field(default="x", metadata={"doc": "a name"})
    level: Literal["low", "high"] = field(default="low", metadata={"doc": "a level"})


@dataclass(frozen=True, slots=True)
class Everything:
    text: str = field(default="", metadata={"doc": "text"})
    count: int = field(default=1, metadata={"doc": "count"})
    ratio: float = field(default=0.5, metadata={"doc": "ratio"})
    flag: bool = field(default=False, metadata={"doc": "flag"})
    where: Path = field(default=Path("."), metadata={"doc": "path"})
    tags: tuple[str, ...] = field(default=(), metadata={"doc": "tags"})
    numbers: list[int] = field(default_factory=list, metadata={"doc": "numbers"})
    weights: dict[str, float] = field(default_factory=dict, metadata={"doc": "weights"})
    maybe: int | None = field(default=None, metadata={"doc": "optional"})
    inner: Inner = field(default_factory=Inner, metadata={"doc": "inner"})
    inners: list[Inner] = field(default_factory=list, metadata={"doc": "inners"})
    optional_inner: Inner | None = field(default=None, metadata={"doc": "optional inner"})
    from_env: str = field(default="built-in", metadata={"doc": "env fallback", "env": "SCHEMA_TEST_VALUE"})
    checked: int = field(default=5, metadata={
        "doc": "checked", "check": lambda v: None if v < 10 else f"must be below 10, got {v}"})


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_options(Everything, text, file="t.yaml", env=env or {})
    return [str(p) for p in info.value.problems]


def test_every_type_is_built() -> None:
    value = parse_options(Everything, """
text: 123
count: 1_000
ratio: 2
flag: yes
where: /tmp/x
tags: [a, b]
numbers: [1, -2]
weights: {a: 1.5, b: 2}
maybe: 7
inner: {name: n, level: high}
inners: [{name: a}, {level: high}]
optional_inner: {}
""", env={})
    assert value == Everything(
        text="123", count=1000, ratio=2.0, flag=True, where=Path("/tmp/x"), tags=("a", "b"),
        numbers=[1, -2], weights={"a": 1.5, "b": 2.0}, maybe=7, inner=Inner("n", "high"),
        inners=[Inner("a"), Inner(level="high")], optional_inner=Inner())


def test_yaml_1_1_surprises_are_not_applied() -> None:
    """Text is converted by the declared type, so 'no' stays a string and 10:30 is not 630."""
    value = parse_options(Everything, "text: no\ntags: [10:30, on]\n", env={})
    assert value.text == "no" and value.tags == ("10:30", "on")


def test_empty_document_and_nulls_give_defaults() -> None:
    assert parse_options(Everything, "", env={}) == Everything()
    assert parse_options(Everything, "maybe: ~\ntags:\noptional_inner: null\n", env={}) == Everything()
    assert parse_options(Everything, "maybe: ${UNSET_INT:}\n", env={}).maybe is None


def test_interpolation_feeds_typed_values() -> None:
    value = parse_options(Everything, "count: ${N:3}\nflag: ${F}\ntags: ['${T}', b]\n",
                          env={"F": "true", "T": "tag"})
    assert (value.count, value.flag, value.tags) == (3, True, ("tag", "b"))


def test_env_fallback_applies_only_when_the_option_is_omitted() -> None:
    assert parse_options(Everything, "", env={"SCHEMA_TEST_VALUE": "env"}).from_env == "env"
    assert parse_options(Everything, "from_env: file\n", env={"SCHEMA_TEST_VALUE": "env"}).from_env == "file"
    assert parse_options(Everything, "", env={"SCHEMA_TEST_VALUE": ""}).from_env == "built-in"
    # An env value is taken literally (no interpolation inside it).
    assert parse_options(Everything, "", env={"SCHEMA_TEST_VALUE": "${X}"}).from_env == "${X}"


def test_all_problems_are_reported_at_once() -> None:
    assert problems_of("""
count: abc
ratio: fast
flag: maybe
tags: a
numbers: [1, two]
weights: {a: heavy}
inner: {name: n, levl: high, level: top}
inners: [{name: a}, 5]
checked: 12
extra: 1
text: {a: 1}
""") == [
        "t.yaml:2:8: count: expected an integer, got 'abc'",
        "t.yaml:3:8: ratio: expected a number, got 'fast'",
        "t.yaml:4:7: flag: expected true or false, got 'maybe'",
        "t.yaml:5:7: tags: expected a list, got 'a'",
        "t.yaml:6:14: numbers[1]: expected an integer, got 'two'",
        "t.yaml:7:14: weights.a: expected a number, got 'heavy'",
        "t.yaml:8:18: inner: unknown option 'levl' (did you mean 'level'? allowed: name, level)",
        "t.yaml:8:37: inner.level: invalid value 'top' (allowed: low, high)",
        "t.yaml:9:21: inners[1]: expected a mapping, got '5'",
        "t.yaml:10:10: checked: must be below 10, got 12",
        "t.yaml:11:1: unknown option 'extra' (did you mean 'text'? allowed: text, count, ratio, flag, "
        "where, tags, numbers, weights, maybe, inner, inners, optional_inner, from_env, checked)",
        "t.yaml:12:7: text: expected a string, got a mapping",
    ]


def test_null_for_a_required_value_and_duplicate_keys() -> None:
    assert problems_of("count:\ncount: 2\n") == [
        "t.yaml:1:7: count: expected an integer, got null",
        "t.yaml:2:1: duplicate option 'count' (first given on line 1)",
    ]


def test_env_fallback_problem_names_the_variable() -> None:
    @dataclass(frozen=True, slots=True)
    class Port:
        port: int = field(default=1, metadata={"doc": "port", "env": "SCHEMA_TEST_PORT"})

    with pytest.raises(ConfigError) as info:
        parse_options(Port, "{}", file="p.yaml", env={"SCHEMA_TEST_PORT": "x"})
    assert [p.message for p in info.value.problems] == [
        "port (from $SCHEMA_TEST_PORT): expected an integer, got 'x'"]


def test_schema_issues_for_stage_authors() -> None:
    assert schema_issues(Everything) == []

    @dataclass(slots=True)
    class Bad:
        a: int
        b: set[str] = field(default_factory=set, metadata={"doc": "x"})
        c: int | str = field(default=1, metadata={"doc": "x"})

    assert schema_issues(Bad) == [
        "Bad is not frozen",
        "Bad.a: no default", "Bad.a: no metadata doc",
        "Bad.b: unsupported type set[str]",
        "Bad.c: unsupported type int | str",
    ]
    assert supported(tuple[str, ...]) and not supported(tuple[str, int])
