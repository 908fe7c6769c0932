"""The configuration reference, generated from the option dataclasses; ``python -m`` rewrites README.md."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from ..pipeline import STAGE_MODULES, StageSpec, registry
from .channel import ChannelConfig
from .engine import EngineConfig
from .schema import literal_text, option_fields, optional_of

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
STAGE_HEADING = "#### Stage `"
README = Path(__file__).resolve().parents[2] / "README.md"

EXTRA_ENV = {   # variables read only through ${...} in the shipped files
    "RADSCHED_MLLP_LISTEN": ("0.0.0.0:8661", "`listen` of `channels/default.yaml` and the bench channel."),
    "RADSCHED_RETENTION_RAW_DAYS": ("30", "`retention.raw_days` of `config/engine.yaml`."),
    "RADSCHED_RETENTION_JOURNAL_DAYS": ("365", "`retention.journal_days` of `config/engine.yaml`."),
    "RADSCHED_RETENTION_OUTBOX_DAYS": ("30", "`retention.outbox_days` of `config/engine.yaml`."),
}

INTRO = """\
Every setting below is checked by `radsched-engine lint`, which reports every problem at once as
`file:line:col: message`; unknown options are errors. Any value may use `${NAME}` or
`${NAME:default}` to read an environment variable (the default applies when the variable is unset
or empty; `$${` writes a literal `${`). Relative paths are taken from the working directory."""


def type_name(tp: Any) -> str:
    """How the reference names an option type."""
    inner = optional_of(tp)
    if inner is not None:
        return f"{type_name(inner)}, optional"
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(f"`{literal_text(v)}`" for v in get_args(tp))
    if origin in (tuple, list):
        return f"list of {type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"map of {type_name(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "section"
    return {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and value == "":
        return '""'
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:_}"
    return str(value)


def default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if value is None:
        return "—"
    if dataclasses.is_dataclass(value):
        return ""
    return f"`{yaml_value(value)}`"


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def rows(cls: type, prefix: str = "") -> Iterator[str]:
    """One table row per option, nested sections flattened as ``section.option``."""
    for f, tp in option_fields(cls):
        name = prefix + f.name
        doc = f.metadata.get("doc", "")
        if f.metadata.get("env"):
            doc += f" If omitted: `${f.metadata['env']}` when set."
        kind = "list of steps" if "build" in f.metadata else type_name(tp)
        yield f"| `{name}` | {cell(kind)} | {cell(default_text(f))} | {cell(doc)} |"
        inner = optional_of(tp) or tp
        if "build" in f.metadata:
            continue
        if dataclasses.is_dataclass(inner):
            yield from rows(inner, name + ".")
        elif get_origin(inner) in (tuple, list) and dataclasses.is_dataclass(get_args(inner)[0]):
            yield from rows(get_args(inner)[0], name + "[].")


def table(cls: type) -> str:
    head = "| Option | Type | Default | Description |\n|---|---|---|---|\n"
    return head + "\n".join(rows(cls)) + "\n"


def env_table() -> str:
    found: dict[str, tuple[str, str]] = {}

    def walk(cls: type, prefix: str, suffix: str = "") -> None:
        for f, tp in option_fields(cls):
            inner = optional_of(tp) or tp
            if f.metadata.get("env"):
                found[f.metadata["env"]] = (default_text(f), f"`{prefix}{f.name}`{suffix}")
            if dataclasses.is_dataclass(inner):
                walk(inner, f"{prefix}{f.name}.", suffix)

    walk(EngineConfig, "")
    walk(ChannelConfig, "", " of every channel")
    lines = ["| Variable | Default | Sets |", "|---|---|---|"]
    for name, (default, where) in sorted(found.items()):
        lines.append(f"| `{name}` | {default} | {where} (when the option is omitted, and through "
                     "`${...}` in the shipped files) |")
    for name, (default, where) in sorted(EXTRA_ENV.items()):
        lines.append(f"| `{name}` | `{default}` | {where} |")
    return "\n".join(lines) + "\n"


def ordered_stages(stages: Mapping[str, StageSpec]) -> list[StageSpec]:
    """Stages in pipeline order (the core modules first), then any others by name."""
    core = [m.rsplit(".", 1)[1] for m in STAGE_MODULES]
    return [stages[n] for n in core if n in stages] + [
        stages[n] for n in sorted(stages) if n not in core]


def render_head() -> str:
    return (f"## Configuration reference\n\n<!-- generated by `python -m radsched_engine.config.docs`;"
            f" do not edit by hand -->\n\n{INTRO}\n\n"
            "### Engine settings (`config/engine.yaml`)\n\n"
            "Optional: without `--config`, `./config/engine.yaml` is used if it exists, else these "
            "defaults.\n\n" + table(EngineConfig) +
            "\n### Environment variables\n\n" + env_table() +
            "\n### Channel settings (`channels/<name>.yaml`)\n\n"
            "One file per channel; the file name (without `.yaml`) is the channel name and must match "
            "`[a-z0-9][a-z0-9_-]*`. No two channels may listen on the same address.\n\n"
            + table(ChannelConfig) +
            "\n### Stages\n\n"
            "A pipeline step is written `- name`, `- name: {}` or `- name: {options}`.\n")


def render_stage(spec: StageSpec) -> str:
    parts = [f"{STAGE_HEADING}{spec.name}`\n\n{spec.summary.strip()}\n"]
    notes = []
    if spec.after:
        notes.append("Comes after " + ", ".join(f"`{a}`" for a in spec.after) + ".")
    if spec.transactional:
        notes.append("Runs inside the database transaction.")
    if notes:
        parts.append(" ".join(notes) + "\n")
    parts.append(table(spec.options) if option_fields(spec.options) else "No options.\n")
    if spec.example.strip():
        parts.append(f"```yaml\n{spec.example.strip()}\n```\n")
    return "\n".join(parts)


def render_stages(stages: Mapping[str, StageSpec] | None = None) -> str:
    """Every registered stage's section (for ``radsched-engine stages``)."""
    stages = registry() if stages is None else stages
    if not stages:
        return "No stages are registered.\n"
    return "\n".join(render_stage(s) for s in ordered_stages(stages))


def render_reference(stages: Mapping[str, StageSpec] | None = None) -> str:
    """Markdown reference: engine settings, environment, channel settings, every stage's options."""
    stages = registry() if stages is None else stages
    return "\n".join([render_head(), *(render_stage(s) for s in ordered_stages(stages))])


def split_reference(text: str) -> tuple[str, dict[str, str]]:
    """(everything before the first stage, {stage name: its section}) of a rendered reference."""
    head, *chunks = text.split("\n" + STAGE_HEADING)
    stages = {}
    for chunk in chunks:
        name = chunk.split("`", 1)[0]
        stages[name] = STAGE_HEADING + chunk
    return head, stages


def readme_section(readme: str) -> str | None:
    """The text between the markers, without the blank lines around it (None without markers)."""
    if START not in readme or END not in readme:
        return None
    return readme.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def with_reference(readme: str, reference: str) -> str:
    """README text with the section between the markers replaced (markers appended if absent)."""
    block = f"{START}\n{reference.rstrip()}\n{END}"
    if START in readme and END in readme:
        before, rest = readme.split(START, 1)
        return before + block + rest.split(END, 1)[1]
    return readme.rstrip("\n") + "\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radsched_engine.config.docs",
                                     description="Regenerate the configuration reference in README.md.")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is out of date")
    args = parser.parse_args(argv)
    current = args.readme.read_text(encoding="utf-8") if args.readme.exists() else ""
    updated = with_reference(current, render_reference())
    if args.check:
        if updated != current:
            print(f"{args.readme}: configuration reference is out of date", file=sys.stderr)
            return 1
        return 0
    if updated != current:
        args.readme.write_text(updated, encoding="utf-8")
        print(f"{args.readme}: configuration reference updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
