"""Channel settings (``channels/<name>.yaml``): listener, accepted messages, ACK, limits, TLS, pipeline."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from . import checks
from .pipeline_steps import StageConfig, build_pipeline

DEFAULT_ACCEPT = ("SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "SIU^S17", "SIU^S26", "ORM^O01")

__all__ = ["DEFAULT_ACCEPT", "AckSettings", "ChannelConfig", "Limits", "StageConfig", "TlsSettings"]


@dataclass(frozen=True, slots=True)
class AckSettings:
    """How the channel answers (MSH of the ACK, acknowledgement mode, several messages per frame)."""

    sending_application: str = field(default="RADSCHED", metadata={
        "doc": "MSH-3 of every ACK we send."})
    sending_facility: str = field(default="RADIOLOGY", metadata={
        "doc": "MSH-4 of every ACK we send."})
    mode: Literal["auto", "original"] = field(default="auto", metadata={
        "doc": "`auto` answers in enhanced mode when the message asks for it (MSH-15/MSH-16), "
               "else in original mode; `original` always answers in original mode."})
    multi_message: Literal["reject", "process"] = field(default="reject", metadata={
        "doc": "A frame holding more than one message: `reject` the frame, or `process` each "
               "message in it."})


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits, so a slow or hostile peer can't tie the listener up."""

    max_frame_bytes: int = field(default=1_048_576, metadata={
        "doc": "Largest frame accepted, in bytes.",
        "check": checks.positive})
    frame_timeout: float = field(default=30.0, metadata={
        "doc": "Seconds a started frame may take to arrive completely.", "check": checks.positive})
    idle_timeout: float = field(default=600.0, metadata={
        "doc": "Seconds a connection may stay silent between frames before it is closed.",
        "check": checks.positive})
    max_connections: int = field(default=100, metadata={
        "doc": "Most connections open at once on this channel.",
        "check": checks.positive})
    write_timeout: float = field(default=30.0, metadata={
        "doc": "Seconds an ACK may take to be written before the connection is dropped.",
        "check": checks.positive})


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """MLLP over TLS; relative file names are taken from the current working directory."""

    cert: str = field(metadata={
        "doc": "PEM certificate chain of this server.", "check": checks.existing_file})
    key: str = field(metadata={
        "doc": "PEM private key of the certificate.", "check": checks.existing_file})
    client_ca: str | None = field(default=None, metadata={
        "doc": "PEM bundle of CAs for client certificates; when set, clients must present one.",
        "check": checks.existing_file})
    min_version: Literal["1.2", "1.3"] = field(default="1.2", metadata={
        "doc": "Lowest TLS version accepted."})


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelConfig:
    """One MLLP listener and the pipeline its messages run through."""

    name: str = field(metadata={"yaml": False, "doc": "Channel name: the file name without `.yaml`."})
    path: Path = field(metadata={"yaml": False, "doc": "The file this channel was loaded from."})
    listen: str = field(metadata={
        "doc": "`host:port` to listen on (`0.0.0.0` = all IPv4 interfaces, `[::]` = all IPv6; "
               "port 0 = any free port).", "check": checks.listen_address})
    accept: tuple[str, ...] = field(default=DEFAULT_ACCEPT, metadata={
        "doc": "Message types taken (`TYPE^TRIGGER`); any other type is answered with a NAK.",
        "each": checks.message_type, "check": checks.no_duplicates})
    timezone: str = field(default="UTC", metadata={
        "doc": "IANA time zone of the sending facility, for HL7 times without an offset.",
        "env": "RADSCHED_TIMEZONE", "check": checks.time_zone})
    ack: AckSettings = field(default_factory=AckSettings, metadata={"doc": "ACK settings."})
    limits: Limits = field(default_factory=Limits, metadata={"doc": "Connection limits."})
    tls: TlsSettings | None = field(default=None, metadata={
        "doc": "Serve MLLP over TLS (absent = plain TCP)."})
    allow: tuple[str, ...] = field(default=(), metadata={
        "doc": "Client networks allowed to connect (CIDR or single address); empty = everyone.",
        "each": checks.network})
    pipeline: tuple[StageConfig, ...] = field(metadata={
        "doc": "The stages every message runs through, in order: a list of single-key "
               "mappings `- stage_name: {options}` (see Stages below).",
        "build": build_pipeline})

    @property
    def host(self) -> str:
        return checks.split_host_port(self.listen)[0]

    @property
    def port(self) -> int:
        return checks.split_host_port(self.listen)[1]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n) for n in self.allow)

    def allows(self, address: str) -> bool:
        """Whether a peer address may connect (``allow`` empty = everyone; bad addresses never)."""
        if not self.allow:
            return True
        try:
            ip: Any = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)

    def stage(self, name: str) -> StageConfig | None:
        """The configured step of a stage, if the pipeline has it."""
        return next((s for s in self.pipeline if s.name == name), None)
