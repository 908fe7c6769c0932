"""Value checks for option fields (``metadata={"check": ...}`` / ``{"each": ...}``): message or None."""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from pathlib import Path

_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")
_MESSAGE_TYPE = re.compile(r"[A-Z][A-Z0-9]{2}\^[A-Z0-9]{3}\Z")
CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def split_host_port(text: str) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` to (host, port); raises ``ValueError`` with a readable reason."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text:
        raise ValueError(f"expected host:port (e.g. 0.0.0.0:8661), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid IPv6 address {host!r} in {text!r}")
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, e.g. [::1]:8661, got {text!r}")
    elif not host:
        raise ValueError(f"expected host:port with a host (0.0.0.0 for all interfaces), got {text!r}")
    elif not _is_ipv4(host) and not _HOSTNAME.match(host):
        raise ValueError(f"invalid host {host!r} in {text!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"invalid port {port_text!r} in {text!r} (0-65535; 0 = any free port)")
    return host, int(port_text)


def _is_ipv4(host: str) -> bool:
    if not all(part.isdigit() for part in host.split(".")):
        return False
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"invalid IPv4 address {host!r}")
    return True


def listen_address(text: str) -> str | None:
    try:
        split_host_port(text)
    except ValueError as exc:
        return str(exc)
    return None


def message_type(text: str) -> str | None:
    if _MESSAGE_TYPE.match(text):
        return None
    return f"expected TYPE^TRIGGER (e.g. SIU^S12), got {text!r}"


def network(text: str) -> str | None:
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        return f"invalid network: {exc} (write e.g. 10.0.0.0/8 or 192.0.2.7)"
    return None


def time_zone(text: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown time zone {text!r} (use an IANA name such as Europe/Berlin or UTC)"
    return None


def existing_file(text: str) -> str | None:
    path = Path(text)
    if path.is_file():
        return None
    return f"no such file: {text!r}" if not path.exists() else f"not a file: {text!r}"


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {value}"


def not_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be 0 or more, got {value}"


def no_duplicates(values: tuple[str, ...]) -> str | None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            return f"{v!r} is listed twice"
        seen.add(v)
    return None


def database_url(text: str) -> str | None:
    if text.startswith(("postgresql://", "postgres://")):
        return None
    return "expected a postgresql:// URL (or leave empty for the embedded PostgreSQL)"
