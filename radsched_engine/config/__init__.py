"""Configuration: YAML with file:line:col positions, ``${VAR}`` interpolation, schema walk and lint."""

from __future__ import annotations

from collections.abc import Mapping

from ..pipeline import StageSpec
from .channel import DEFAULT_ACCEPT, AckSettings, ChannelConfig, Limits, StageConfig, TlsSettings
from .engine import DatabaseSettings, EngineConfig, LogSettings, RetentionSettings, load_engine
from .lint import lint_paths
from .loader import load_all, load_channel_file, load_channel_text, load_channels
from .problems import ConfigError, ConfigProblem
from .schema import parse_options


def render_reference(stages: Mapping[str, StageSpec] | None = None) -> str:
    """Markdown reference of engine, channel and stage settings (see ``config.docs``)."""
    from .docs import render_reference as render
    return render(stages)


__all__ = [
    "DEFAULT_ACCEPT", "AckSettings", "ChannelConfig", "ConfigError", "ConfigProblem",
    "DatabaseSettings", "EngineConfig", "Limits", "LogSettings", "RetentionSettings",
    "StageConfig", "TlsSettings", "lint_paths", "load_all", "load_channel_file",
    "load_channel_text", "load_channels", "load_engine", "parse_options", "render_reference",
]
