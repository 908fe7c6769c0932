"""A channel's ``pipeline:`` list: single-key steps, looked up in the stage registry, checked for order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..pipeline import StageSpec, registry
from .problems import did_you_mean
from .schema import BAD, Walker, describe
from .source import MappingNode, Node, ScalarNode, SequenceNode, is_null

STAGES_KEY = "stages"   # Walker.context key: the stage registry to use (default: the real one)


@dataclass(frozen=True, slots=True)
class StageConfig:
    """One configured step: the stage's name, its built options and where it was written."""

    name: str
    options: object
    line: int
    column: int


def stages_of(walker: Walker) -> Mapping[str, StageSpec]:
    stages = walker.context.get(STAGES_KEY)
    return registry() if stages is None else stages


def build_pipeline(walker: Walker, node: Node | None, label: str) -> Any:
    """Steps from ``- name``, ``- name: {}`` or ``- name: {options}`` items; every problem reported."""
    if node is None or not isinstance(node, SequenceNode):
        got = "nothing" if node is None else describe(node)
        return walker.report(node, label, f"expected a list of stages (e.g. '- parse: {{}}'), got {got}")
    if not node.value:
        return walker.report(node, label, "a channel needs at least one stage (e.g. '- parse: {}')")
    stages = stages_of(walker)
    steps: list[StageConfig] = []
    nodes: dict[str, Node] = {}
    bad = False
    for item in node.value:
        name_node: Node
        options_node: Node | None = None
        if isinstance(item, ScalarNode) and not is_null(item):
            name_node = item
        elif isinstance(item, MappingNode) and len(item.value) == 1:
            name_node, options_node = item.value[0]
        else:
            walker.report(item, label, "a step is a single-key mapping such as '- validate: {...}', "
                                       f"got {describe(item)}")
            bad = True
            continue
        name = str(name_node.value) if isinstance(name_node, ScalarNode) else ""
        spec = stages.get(name)
        if spec is None:
            walker.report(name_node, label, did_you_mean(name, list(stages), "stage"))
            bad = True
            continue
        if name in nodes:
            first = nodes[name].start_mark.line + 1
            walker.report(name_node, label, f"stage {name!r} is listed twice (first on line {first})")
            bad = True
            continue
        nodes[name] = name_node
        options = walker.build_dataclass(spec.options, options_node, name)
        if options is BAD:
            bad = True
            continue
        mark = name_node.start_mark
        steps.append(StageConfig(name, options, mark.line + 1, mark.column + 1))
    order = list(nodes)
    for position, name in enumerate(order):
        for earlier in stages[name].after:
            if earlier not in nodes:
                walker.report(nodes[name], name, f"must come after stage {earlier!r}, "
                                                 "which is not in this pipeline")
                bad = True
            elif order.index(earlier) > position:
                line = nodes[earlier].start_mark.line + 1
                walker.report(nodes[name], name, f"must come after stage {earlier!r} (line {line})")
                bad = True
    return BAD if bad else tuple(steps)


def lint_example(spec: StageSpec, stages: Mapping[str, StageSpec] | None = None,
                 env: Mapping[str, str] | None = None) -> list[str]:
    """Problems in a stage's YAML example, written as pipeline steps (``- name: {...}``) or as a
    mapping (``name: {...}``); every step's options are built like a channel's would be."""
    from .source import Source, compose

    stages = registry() if stages is None else stages
    source = Source(f"<example of {spec.name}>", spec.example)
    node, problems = compose(source)
    if problems:
        return [str(p) for p in problems]
    walker = Walker(source, env or {})
    items: list[tuple[Node, Node | None]] = []
    if isinstance(node, SequenceNode):
        for item in node.value:
            if isinstance(item, MappingNode) and len(item.value) == 1:
                items.append(item.value[0])
            elif isinstance(item, ScalarNode):
                items.append((item, None))
            else:
                walker.report(item, "", f"a step is a single-key mapping, got {describe(item)}")
    elif isinstance(node, MappingNode):
        items = list(node.value)
    elif node is not None:
        walker.report(node, "", "an example is a list of steps such as '- validate: {...}'")
    for name_node, options_node in items:
        name = str(name_node.value) if isinstance(name_node, ScalarNode) else ""
        if name not in stages:
            walker.report(name_node, "", did_you_mean(name, list(stages), "stage"))
            continue
        walker.build_dataclass(stages[name].options, options_node, name)
    return [str(p) for p in walker.problems]
