"""Channel files: the shipped ones, every setting, pipeline steps, and loading a directory."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from radsched_engine.config import (
    DEFAULT_ACCEPT,
    AckSettings,
    ConfigError,
    Limits,
    StageConfig,
    TlsSettings,
    load_channel_text,
    load_channels,
)
from radsched_engine.config.loader import load_channel_file
from radsched_engine.pipeline import STAGE_MODULES, registry

from .stand_ins import STAGES, ConflictOptions, NotifyOptions, ParseOptions, Rule, Sms, ValidateOptions

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CHANNEL = REPO / "channels" / "default.yaml"
ACK_ONLY = REPO / "bench" / "channels" / "ack-only" / "ack-only.yaml"
CORE_STAGES = [m.rsplit(".", 1)[1] for m in STAGE_MODULES]


def test_default_channel_file() -> None:
    loaded = load_channel_file(DEFAULT_CHANNEL, env={}, stages=STAGES)
    assert loaded.problems == []
    channel = loaded.config
    assert channel is not None
    assert (channel.name, channel.path, channel.listen) == ("default", DEFAULT_CHANNEL, "0.0.0.0:8661")
    assert (channel.host, channel.port) == ("0.0.0.0", 8661)
    assert channel.accept == DEFAULT_ACCEPT
    assert channel.tz == ZoneInfo("UTC")
    assert channel.ack == AckSettings() and channel.limits == Limits()
    assert channel.tls is None and channel.allow == ()
    assert [s.name for s in channel.pipeline] == CORE_STAGES


def test_default_channel_takes_listen_and_timezone_from_the_environment() -> None:
    loaded = load_channel_file(DEFAULT_CHANNEL, stages=STAGES, env={
        "RADSCHED_MLLP_LISTEN": "127.0.0.1:2575", "RADSCHED_TIMEZONE": "America/Chicago"})
    assert loaded.config is not None
    assert (loaded.config.port, loaded.config.timezone) == (2575, "America/Chicago")


def test_default_channel_with_the_real_stages() -> None:
    stages = registry()
    missing = [n for n in CORE_STAGES if n not in stages]
    if missing:
        pytest.skip(f"stages not written yet: {', '.join(missing)}")
    loaded = load_channel_file(DEFAULT_CHANNEL, env={})
    assert loaded.problems == []


def test_bench_ack_only_channel() -> None:
    loaded = load_channel_file(ACK_ONLY, env={}, stages=STAGES)
    assert loaded.problems == []
    assert loaded.config is not None
    assert loaded.config.name == "ack-only"
    assert [s.name for s in loaded.config.pipeline] == ["parse", "validate"]
    stages = registry()
    if {"parse", "validate"} <= stages.keys():
        assert load_channel_file(ACK_ONLY, env={}).problems == []


def test_every_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("cert.pem", "key.pem", "ca.pem"):
        Path(name).write_text("-----BEGIN-----\n")
    channel = load_channel_text("""
listen: '[::1]:2575'
accept: [SIU^S12, ORM^O01]
timezone: Europe/Berlin
ack: {sending_application: RS, sending_facility: RAD2, mode: original, multi_message: process}
limits: {max_frame_bytes: 2048, frame_timeout: 5, idle_timeout: 60, max_connections: 3, write_timeout: 2.5}
tls: {cert: cert.pem, key: key.pem, client_ca: ca.pem, min_version: '1.3'}
allow: [10.0.0.0/8, 192.0.2.7, '2001:db8::/32']
pipeline:
  - parse
  - validate:
  - conflict_check: {window: 30, rules: [{name: room, weight: 2}]}
  - persist: {}
  - notify: {sms: {template: reminder}, delays: {reminder: 60}}
""", name="scheduling", env={}, stages=STAGES)
    assert (channel.name, channel.path) == ("scheduling", Path("scheduling.yaml"))
    assert (channel.host, channel.port) == ("::1", 2575)
    assert channel.accept == ("SIU^S12", "ORM^O01")
    assert channel.tz == ZoneInfo("Europe/Berlin")
    assert channel.ack == AckSettings("RS", "RAD2", "original", "process")
    assert channel.limits == Limits(2048, 5.0, 60.0, 3, 2.5)
    assert channel.tls == TlsSettings("cert.pem", "key.pem", "ca.pem", "1.3")
    assert channel.pipeline == (
        StageConfig("parse", ParseOptions(), 10, 5),
        StageConfig("validate", ValidateOptions(), 11, 5),
        StageConfig("conflict_check", ConflictOptions(30, [Rule("room", 2.0)]), 12, 5),
        StageConfig("persist", STAGES["persist"].options(), 13, 5),
        StageConfig("notify", NotifyOptions(Sms("reminder"), {"reminder": 60}), 14, 5),
    )
    assert channel.stage("notify") is channel.pipeline[4] and channel.stage("nope") is None


def test_allow_list() -> None:
    text = "listen: 0.0.0.0:1\npipeline: [parse]\nallow: [10.0.0.0/8, 192.0.2.7, '2001:db8::/32']\n"
    channel = load_channel_text(text, env={}, stages=STAGES)
    assert channel.allows("10.20.30.40") and channel.allows("192.0.2.7")
    assert channel.allows("::ffff:10.1.1.1")          # IPv4-mapped peer on a dual-stack socket
    assert channel.allows("2001:db8::1") and channel.allows("fe80::1%eth0") is False
    assert not channel.allows("192.0.2.8") and not channel.allows("not-an-ip")
    everyone = load_channel_text("listen: 0.0.0.0:1\npipeline: [parse]\n", env={}, stages=STAGES)
    assert everyone.allows("203.0.113.9")


def test_listen_addresses() -> None:
    def listen(value: str) -> list[str]:
        try:
            load_channel_text(f"listen: '{value}'\npipeline: [parse]\n", env={}, stages=STAGES)
        except ConfigError as err:
            return [p.message for p in err.problems]
        return []

    assert listen("localhost:8661") == listen("[::]:0") == listen("mllp.example.org:2575") == []
    assert listen("::1:8661") == [
        "listen: write an IPv6 address in brackets, e.g. [::1]:8661, got '::1:8661'"]
    assert listen(":8661") == [
        "listen: expected host:port with a host (0.0.0.0 for all interfaces), got ':8661'"]
    assert listen("0.0.0.0:65536") == [
        "listen: invalid port '65536' in '0.0.0.0:65536' (0-65535; 0 = any free port)"]
    assert listen("300.1.1.1:1") == ["listen: invalid IPv4 address '300.1.1.1'"]
    assert listen("bad_host:1") == ["listen: invalid host 'bad_host' in 'bad_host:1'"]


def test_load_channels_reads_every_file_and_reports_all_problems(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("listen: 127.0.0.1:2\npipeline: [parse]\n")
    (tmp_path / "a.yml").write_text("listen: 127.0.0.1:1\npipeline: [parse]\n")
    (tmp_path / ".hidden.yaml").write_text("garbage: [")
    (tmp_path / "notes.txt").write_text("not a channel")
    channels = load_channels(tmp_path, env={}, stages=STAGES)
    assert [c.name for c in channels] == ["a", "b"]

    (tmp_path / "c.yaml").write_text("listen: 127.0.0.1:1\npipeline: [parse, parse]\n")
    (tmp_path / "d.yaml").write_text("listen: 127.0.0.1:x\npipeline: [pars]\n")
    with pytest.raises(ConfigError) as info:
        load_channels(tmp_path, env={}, stages=STAGES)
    assert [str(p).replace(str(tmp_path), "D") for p in info.value.problems] == [
        "D/c.yaml:2:19: pipeline: stage 'parse' is listed twice (first on line 2)",
        "D/d.yaml:1:9: listen: invalid port 'x' in '127.0.0.1:x' (0-65535; 0 = any free port)",
        "D/d.yaml:2:12: pipeline: unknown stage 'pars' (did you mean 'parse'? allowed: parse, validate, "
        "conflict_check, persist, notify)",
    ]


def test_clashing_addresses_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("listen: '[::]:9000'\npipeline: [parse]\n")
    (tmp_path / "b.yaml").write_text("listen: '[::1]:9000'\npipeline: [parse]\n")
    (tmp_path / "c.yaml").write_text("listen: 127.0.0.1:9001\npipeline: [parse]\n")
    (tmp_path / "d.yaml").write_text("listen: 127.0.0.2:9001\npipeline: [parse]\n")
    with pytest.raises(ConfigError) as info:
        load_channels(tmp_path, env={}, stages=STAGES)
    assert [(Path(p.file).name, p.line, p.column) for p in info.value.problems] == [("b.yaml", 1, 9)]
    assert "overlaps channel 'a' listening on [::]:9000" in info.value.problems[0].message


def test_load_channels_directory_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such directory"):
        load_channels(tmp_path / "missing", env={}, stages=STAGES)
    with pytest.raises(ConfigError, match=r"no channel files \(\*\.yaml\) here"):
        load_channels(tmp_path, env={}, stages=STAGES)


def test_unknown_stage_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_channel_text("listen: 0.0.0.0:1\npipeline: [prase]\n", env={}, stages=STAGES)
    assert str(info.value) == ("test.yaml:2:12: pipeline: unknown stage 'prase' (did you mean 'parse'? "
                               "allowed: parse, validate, conflict_check, persist, notify)")
