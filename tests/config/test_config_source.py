"""YAML composition with positions and ``${VAR}`` interpolation."""

from __future__ import annotations

from pathlib import Path

from radsched_engine.config.problems import ConfigError, ConfigProblem, did_you_mean, sort_problems
from radsched_engine.config.source import Source, compose, interpolate, read_source


def test_interpolation_forms() -> None:
    env = {"HOST": "10.1.2.3", "EMPTY": ""}
    assert interpolate("${HOST}:8661", env).text == "10.1.2.3:8661"
    assert interpolate("${PORT:8661}", env).text == "8661"
    assert interpolate("${LISTEN:0.0.0.0:8661}", env).text == "0.0.0.0:8661"   # default keeps colons
    assert interpolate("${EMPTY:fallback}", env).text == "fallback"            # empty counts as unset
    assert interpolate("${EMPTY}", env).text == ""
    assert interpolate("${NOPE:}", env).text == ""
    assert interpolate("cost $5 and $${HOST}", env).text == "cost $5 and ${HOST}"
    plain = interpolate("no variables", env)
    assert plain.text == "no variables" and not plain.interpolated and not plain.errors


def test_interpolation_problems_are_reported_with_offsets() -> None:
    sub = interpolate("a ${UNSET} b ${1BAD} c ${OPEN", {})
    assert [(offset, token) for offset, token, _ in sub.errors] == [
        (2, "${UNSET}"), (13, "${1BAD}"), (23, "${OPEN")]
    assert "UNSET is not set" in sub.errors[0][2]
    assert "invalid variable name '1BAD'" in sub.errors[1][2]
    assert "unterminated" in sub.errors[2][2]


def test_compose_keeps_positions() -> None:
    node, problems = compose(Source("x.yaml", "a: 1\nb:\n  - c: 2\n"))
    assert not problems
    assert node is not None
    b_key, b_value = node.value[1]
    assert (b_key.start_mark.line, b_key.start_mark.column) == (1, 0)
    item = b_value.value[0]
    assert (item.start_mark.line, item.start_mark.column) == (2, 4)


def test_syntax_error_is_a_problem_with_position() -> None:
    node, problems = compose(Source("x.yaml", "a: [1, 2\nb: 3\n"))
    assert node is None
    assert len(problems) == 1
    assert (problems[0].line, problems[0].column) == (2, 2)
    assert problems[0].message.startswith("invalid YAML: ")


def test_several_documents_are_refused() -> None:
    _, problems = compose(Source("x.yaml", "a: 1\n---\nb: 2\n"))
    assert problems and "single document" in problems[0].message


def test_problem_at_finds_the_token_in_the_source() -> None:
    source = Source("x.yaml", "key: 'a ${X} b ${X}'\n")
    node, _ = compose(source)
    assert node is not None
    value = node.value[0][1]
    assert source.problem_at(value, "${X}", 1, "m") == ConfigProblem("x.yaml", 1, 16, "m")
    assert source.problem_at(value, "${Y}", 0, "m") == ConfigProblem("x.yaml", 1, 6, "m")


def test_read_source_problems(tmp_path: Path) -> None:
    assert read_source(tmp_path / "nope.yaml") == ConfigProblem(str(tmp_path / "nope.yaml"), 0, 0,
                                                                "no such file")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: M\xfcller\n")
    problem = read_source(latin)
    assert isinstance(problem, ConfigProblem) and "not UTF-8" in problem.message


def test_problem_rendering_and_error() -> None:
    p = ConfigProblem("channels/a.yaml", 9, 7, "conflict_check: bad")
    assert str(p) == "channels/a.yaml:9:7: conflict_check: bad"
    assert str(ConfigProblem("channels", 0, 0, "no such directory")) == "channels: no such directory"
    err = ConfigError([p, ConfigProblem("b.yaml", 1, 1, "x")])
    assert err.problems[0] is p
    assert str(err) == "channels/a.yaml:9:7: conflict_check: bad\nb.yaml:1:1: x"


def test_did_you_mean() -> None:
    assert did_you_mean("windw", ["window", "rules"]) == (
        "unknown option 'windw' (did you mean 'window'? allowed: window, rules)")
    assert did_you_mean("zzz", ["window", "rules"]) == "unknown option 'zzz' (allowed: window, rules)"
    assert "did you mean 'json'" in did_you_mean("JSON", ["auto", "json", "console"], "value")


def test_sort_problems_orders_by_file_then_position_and_drops_repeats() -> None:
    a1, a2 = ConfigProblem("a", 3, 1, "x"), ConfigProblem("a", 1, 5, "y")
    b = ConfigProblem("b", 1, 1, "z")
    assert sort_problems([a1, b, a2, a1]) == [a2, a1, b]
