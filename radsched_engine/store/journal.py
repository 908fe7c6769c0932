"""The message journal row: identity, content hash and outcome of one exchange, as stored."""

from __future__ import annotations

import hashlib
from typing import Any

from ..ack import reply_code
from ..errors import Problem
from ..exchange import Exchange, Outcome
from ..hl7.msh import MshHeader, sniff_msh

INSERT = "SELECT radsched_journal(NULL, $1::jsonb, $2, $3)"


def header(exchange: Exchange) -> MshHeader | None:
    """The exchange's MSH, from the parsed message or sniffed from the raw bytes."""
    if exchange.message is not None:
        return exchange.message.header
    return sniff_msh(exchange.raw)


def content_hash(exchange: Exchange) -> bytes:
    """sha256 of the message with segment terminators normalised and MSH-7 blanked (memoised).

    A resend that differs only in CR/LF style, MLLP padding or a regenerated MSH-7 timestamp
    has the same hash; any other change gives a different one.
    """
    cached = exchange.data.get("content_hash")
    if cached is None:
        body = exchange.raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").strip(b"\r\x0b\x1c ")
        msh = header(exchange)
        if msh is not None and msh.get(7):
            start = body.find(b"MSH")
            end = body.find(b"\r", start)
            end = len(body) if end < 0 else end
            sep = msh.delimiters.field.encode("latin-1")
            fields = body[start:end].split(sep)
            if len(fields) > 6:
                fields[6] = b""
                body = body[:start] + sep.join(fields) + body[end:]
        cached = exchange.data["content_hash"] = hashlib.sha256(body).digest()
    return cached


def message_lock(channel: str, application: str, facility: str, control_id: str) -> int:
    """Advisory lock key (signed 64-bit) that serialises deliveries of one message id."""
    return lock_key(f"msg|{channel}|{application}|{facility}|{control_id}")


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name`` (blake2b, the same in every process)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def _problem_json(p: Problem) -> dict[str, Any]:
    return {"code": p.code, "text": p.text, "severity": p.severity,
            "location": str(p.location) if p.location is not None else None}


def meta(exchange: Exchange, outcome: Outcome) -> dict[str, Any]:
    """The journal columns for ``exchange`` (all but raw and content_hash) as a JSON object."""
    msh = header(exchange)
    problem = exchange.problem if not outcome.accepted else None
    return {
        "channel": exchange.channel,
        "received_at": exchange.received_at.isoformat(),
        "peer": exchange.peer,
        "control_id": msh.control_id if msh is not None else "",
        "sending_application": msh.sending_application if msh is not None else "",
        "sending_facility": msh.sending_facility if msh is not None else "",
        "message_type": exchange.message_type or (_type_of(msh) if msh is not None else ""),
        "outcome": outcome.value,
        "ack_code": reply_code(msh, outcome, problem.code if problem else None,
                               exchange.replay_ack_code, exchange.ack_mode),
        "error_code": problem.code if problem else None,
        "error_location": str(problem.location) if problem and problem.location else None,
        "error": problem.text if problem else None,
        "warnings": [_problem_json(w) for w in exchange.warnings] or None,
        "appointment_id": exchange.data.get("appointment_id"),
    }


def _type_of(msh: MshHeader) -> str:
    code, trigger = msh.message_code, msh.trigger
    return f"{code}^{trigger}" if trigger else code
