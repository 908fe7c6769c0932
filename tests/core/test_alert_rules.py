"""config/prometheus/radsched-alerts.yml uses metrics, labels and label values the engine exports.

The families and their types come from a running engine's ``/metrics``; label names from the
metric objects (a family without samples yet shows no labels); matched label values must be
values the engine's code writes. A renamed metric or label fails here instead of silently never
alerting. Where Prometheus's ``promtool`` is installed (Debian: ``apt install prometheus``), it
also checks the rules' PromQL and runs ``radsched-alerts.test.yml``: series fed in, which
alerts fire when, with which labels and texts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from radsched_engine import metrics
from tests.e2e.harness import running_engine, scrape, write_channel

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus" / "radsched-alerts.yml"
RULE_TESTS = Path(__file__).with_name("radsched-alerts.test.yml")
TARGET_LABELS = {"instance", "job"}           # added by Prometheus to every scraped series
SEVERITIES = {"page", "warn", "info"}

_SELECTOR = re.compile(r"\b(radsched_[a-z0-9_]+|up)\b(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _rules() -> list[dict]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _family(sample: str, types: dict[str, str]) -> str:
    """The exported family of a series name as written in a query (a histogram's _bucket,
    _count and _sum series, a counter's _total)."""
    for suffix, kind in (("_bucket", "histogram"), ("_count", "histogram"), ("_sum", "histogram"),
                         ("_total", "counter")):
        if sample.endswith(suffix) and types.get(sample[: -len(suffix)]) == kind:
            return sample[: -len(suffix)]
    return sample


def _label_names() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        name, labels = getattr(value, "_name", None), getattr(value, "_labelnames", None)
        if isinstance(name, str) and labels is not None:
            found[name.removesuffix("_total")] = set(labels)
    return found


def _source_literals() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "radsched_engine").rglob("*.py"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Family name → type, from the /metrics of an engine started for the purpose."""
    import asyncio

    work = tmp_path_factory.mktemp("alerts")
    write_channel(work / "channels", "scheduling", "listen: ${RADSCHED_MLLP_LISTEN}\npipeline: [parse]\n")

    async def go() -> str:
        async with running_engine(work / "channels", work / "data") as engine:
            status, text = await scrape(engine.http.port)
            assert status == 200
            return text

    text = asyncio.run(go())
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def test_rules_are_well_formed() -> None:
    rules = _rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)) >= 10
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


def test_every_metric_label_and_value_exists(exported: dict[str, str]) -> None:
    labels = _label_names()
    source = _source_literals()
    for rule in _rules():
        expr, alert = rule["expr"], rule["alert"]
        used: set[str] = set()
        for sample, selector in _SELECTOR.findall(expr):
            if sample == "up":
                continue
            family = _family(sample, exported)
            assert family in exported, f"{alert}: {sample} is not exported"
            key = family.removesuffix("_total")       # the object's name (counters: no _total)
            assert key in labels, f"{alert}: no metric object for {family}"
            allowed = labels[key] | ({"le"} if sample.endswith("_bucket") else set())
            used |= allowed
            for label, _op, value in _MATCHER.findall(selector):
                assert label in allowed, f"{alert}: {family} has no label {label}"
                for alternative in value.split("|"):
                    assert f'"{alternative}"' in source, (
                        f"{alert}: the engine never writes {label}={alternative!r}")
        for grouping in _GROUPING.findall(expr):
            for label in (n.strip() for n in grouping.split(",") if n.strip()):
                assert label in used | TARGET_LABELS, f"{alert}: groups by unknown label {label}"


def test_the_readme_points_at_the_rules() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "config/prometheus/radsched-alerts.yml" in readme
    for rule in _rules():
        assert rule["alert"] in readme, f"README's alert table misses {rule['alert']}"


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool (Prometheus's rule checker) is not installed")
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        done = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
