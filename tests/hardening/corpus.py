"""Inputs and answers for the hardening tests: the sample corpus, mutations, and reply checks."""

from __future__ import annotations

import random
from pathlib import Path

from radsched_engine.channel import plan_frame
from radsched_engine.hl7.msh import sniff_msh

ROOT = Path(__file__).resolve().parents[2]
SHARED = (ROOT / ".." / "shared" / "hl7-samples").resolve()
PROJECT = ROOT / "sample_messages"
ANSWERS = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
SHARED_MISSING = f"public HL7 sample corpus not found at {SHARED} (it lives next to the repo)"


def _payload(path: Path) -> bytes:
    """A file as one frame's payload: MLLP bytes dropped, line ends as stored."""
    return path.read_bytes().replace(b"\x0b", b"").replace(b"\x1c", b"")


def shared_files() -> list[Path]:
    return sorted(SHARED.glob("*.hl7")) if SHARED.is_dir() else []


def corpus() -> list[bytes]:
    """Every shared sample (when present) and every project sample, each as one payload."""
    return [_payload(p) for p in [*shared_files(), *sorted(PROJECT.rglob("*.hl7"))]]


def mutate(raw: bytes, rng: random.Random, rounds: int) -> bytes:
    """``rounds`` random edits: byte flips, inserts (non-UTF-8 and delimiters too), deletions,
    a duplicated or truncated range."""
    buf = bytearray(raw)
    for _ in range(rounds):
        if not buf:
            buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            continue
        pos = rng.randrange(len(buf))
        kind = rng.choice(("flip", "insert", "delete", "delimiter", "non_utf8", "duplicate", "cut"))
        if kind == "flip":
            buf[pos] = rng.randrange(256)
        elif kind == "insert":
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == "delete":
            del buf[pos:pos + rng.randint(1, 32)]
        elif kind == "delimiter":
            buf[pos] = rng.choice(b"|^~\\&\r\n#\x00 ")
        elif kind == "non_utf8":
            buf[pos:pos] = rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe9", b"\x80\x81",
                                       b"\xf0\x28\x8c\x28", b"\xef\xbb\xbf"))
        elif kind == "duplicate":
            end = min(len(buf), pos + rng.randint(1, 200))
            buf[end:end] = buf[pos:end]
        else:
            del buf[pos:]
    return bytes(buf)


def reply_due(frame: bytes) -> bool:
    """Whether the engine owes this frame a reply on a channel with ``ack.mode: original``.

    Every frame gets one, except a message that is itself an acknowledgement (never answered);
    a batch is always answered with an ACK batch.
    """
    if plan_frame(frame).kind == "batch":
        return True
    for candidate in (frame.translate(None, b"\x00"), frame):
        header = sniff_msh(candidate)
        if header is not None and header.message_code == "ACK":
            return False
    return True


def check_reply(reply: bytes) -> list[str]:
    """A well-formed answer: an ACK (MSH, MSA with a table 0008 code) or an ACK batch.

    Returns the MSA-1 codes it carries; raises AssertionError on anything else.
    """
    text = reply.decode("latin-1")
    lines = [ln for ln in text.split("\r") if ln]
    assert lines and lines[0][:3] in ("MSH", "BHS"), reply[:200]
    codes = []
    for line in lines:
        if line.startswith("MSA"):
            fields = line.split(line[3]) if len(line) > 3 else []
            assert len(fields) >= 2 and fields[1] in ANSWERS, line
            codes.append(fields[1])
    if lines[0].startswith("MSH"):
        assert len(codes) == 1, reply[:300]
    else:
        assert lines[-1].startswith("BTS"), reply[-100:]
    return codes


def msa_fields(reply: bytes) -> list[str]:
    for line in reply.decode("latin-1").split("\r"):
        if line.startswith("MSA") and len(line) > 3:
            return line.split(line[3])
    raise AssertionError(f"no MSA in {reply[:200]!r}")


def err_codes(reply: bytes) -> list[str]:
    """HL7 error codes (table 0357) of the ERR segments: ERR-3.1, or ERR-1.4.1 for v2.3/2.4."""
    codes = []
    comp, sub = "^", "&"
    for line in reply.decode("latin-1").split("\r"):
        if line.startswith("MSH") and len(line) > 5:
            comp, sub = line[4], (line[7] if len(line) > 7 and line[7] != line[3] else line[4])
        if line.startswith("ERR") and len(line) > 3:
            f = line.split(line[3])
            if len(f) > 3 and f[3]:
                codes.append(f[3].split(comp)[0])
            elif len(f) > 1:
                parts = f[1].split(comp)
                codes.append(parts[3].split(sub)[0] if len(parts) > 3 else "")
    return codes
