"""A canonical text of everything extraction and persist mapping produce for one message, for golden tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from radsched_engine.domain import extract
from radsched_engine.domain.model import AppointmentEvent
from radsched_engine.errors import HL7Failure
from radsched_engine.exchange import Exchange
from radsched_engine.hl7.message import Message
from radsched_engine.store import mapping

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / ".." / "shared" / "hl7-samples"
GOLDEN = Path(__file__).resolve().parent / "golden_extract.json"
GOLDEN_SHARED = Path(__file__).resolve().parent / "golden_extract_shared.json"
ZONES: tuple[tzinfo, ...] = (ZoneInfo("America/New_York"), ZoneInfo("Europe/London"), UTC)
SCHEDULING = ("siu_", "orm_", "omi_", "multi_message_siu", "batch_fhs_bhs_orm")
_DEFAULT = timedelta(minutes=20)


def split(raw: bytes) -> list[bytes]:
    """The messages of a file: a new one at every line starting with MSH (batch headers dropped)."""
    lines = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
    out: list[list[bytes]] = []
    for line in lines:
        bare = line.lstrip(b"\x0b\x1c")
        if bare.startswith(b"MSH"):
            out.append([bare])
        elif out and not bare.startswith((b"BTS", b"FTS")):
            out[-1].append(line)
    return [b"\r".join(m) + b"\r" for m in out] or [raw]


def bench_message() -> bytes:
    text = (ROOT / "bench" / "messages" / "siu_s12.hl7").read_text()
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    for key, value in (("{cid}", "BENCH-1-1"), ("{n}", "1041"), ("{start}", "20270104090000+0000"),
                       ("{room}", "ROOM01")):
        text = text.replace(key, value)
    return text.encode()


def own_messages() -> dict[str, bytes]:
    """The project's own messages: the bench booking and every ``sample_messages/*.hl7``."""
    found = {"bench/siu_s12": bench_message()}
    for path in sorted((ROOT / "sample_messages").rglob("*.hl7")):
        for i, raw in enumerate(split(path.read_bytes()), 1):
            found[f"{path.relative_to(ROOT)}#{i}"] = raw
    return found


def shared_messages() -> dict[str, bytes]:
    """The scheduling messages of the shared public corpus ({} when it is absent)."""
    found: dict[str, bytes] = {}
    if SAMPLES.is_dir():
        for path in sorted(SAMPLES.glob("*.hl7")):
            if path.name.startswith(SCHEDULING):
                for i, raw in enumerate(split(path.read_bytes()), 1):
                    found[f"{path.name}#{i}"] = raw
    return found


def _zone(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


def _plain(value: Any) -> Any:
    """JSON-able form that keeps what equality would blur (time zone objects, types)."""
    if isinstance(value, datetime):
        return f"{value.isoformat()} [{value.tzinfo!r}]"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def canonical(raw: bytes, tz: tzinfo) -> str:
    """Event repr, warnings (code, text, location), persist patch and resource rows, or the refusal."""
    try:
        message = Message.parse(raw)
    except HL7Failure as exc:
        return f"unparsed {exc.code}"
    ex = Exchange(raw, "golden", "127.0.0.1:1", datetime(2026, 1, 1, tzinfo=UTC))
    ex.message = message
    try:
        event = extract.event_for(ex, tz)
    except HL7Failure as exc:
        p = exc.problem if hasattr(exc, "problem") else None
        return json.dumps({"refused": [exc.code, str(exc), repr(p), getattr(exc, "user_text", None)]})
    out: dict[str, Any] = {"event": repr(event),
                           "warnings": [repr(w) for w in ex.warnings]}
    if isinstance(event, AppointmentEvent):
        out["patch"] = _plain(mapping.appointment_patch(event, default_duration=_DEFAULT))
        out["patch_conflicts"] = _plain(mapping.appointment_patch(
            event, default_duration=_DEFAULT, conflicts=[{"at": event.start, "n": (1, 2)}]))
        out["rows"] = _plain(mapping.resource_rows(event.resources))
        out["modality"] = mapping.modality_of(event)
    return json.dumps(out, sort_keys=True, ensure_ascii=False)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def outputs(messages: dict[str, bytes], form: Callable[[str], str] = lambda s: s) -> dict[str, str]:
    return {f"{name}|{_zone(tz)}": form(canonical(raw, tz))
            for name, raw in messages.items() for tz in ZONES}


if __name__ == "__main__":     # python -m tests.domain.golden: (re)write the golden files
    GOLDEN.write_text(json.dumps(outputs(own_messages()), indent=1, ensure_ascii=False) + "\n")
    GOLDEN_SHARED.write_text(json.dumps(outputs(shared_messages(), digest), indent=1) + "\n")
    print(f"wrote {GOLDEN} and {GOLDEN_SHARED}")
