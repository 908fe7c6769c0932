"""HL7 ACK/NAK construction: the one table from outcome to MSA-1, plus MSH, MSA and ERR segments."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass

from .errors import HL7_ERROR_TEXT, Problem
from .exchange import Outcome
from .hl7.msh import STANDARD, Delimiters, MshHeader

# The one table: outcome -> (original-mode MSA-1, enhanced-mode commit MSA-1).
# REJECTED is a content error (AE/CE) except for routing/configuration errors 200-203, which
# HL7 answers with AR/CR ("fix the interface, not the message"); RETRY/ERROR mean "resend later".
ACK_CODES: dict[Outcome, tuple[str, str]] = {
    Outcome.ACCEPTED: ("AA", "CA"),
    Outcome.FILTERED: ("AA", "CA"),
    Outcome.DUPLICATE: ("AA", "CA"),
    Outcome.REJECTED: ("AE", "CE"),
    Outcome.RETRY: ("AR", "CE"),
    Outcome.ERROR: ("AR", "CE"),
}
REFUSED_CODES = frozenset({200, 201, 202, 203})
REFUSED = ("AR", "CR")
SUPPORTED_VERSIONS = frozenset({"2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7",
                                "2.7.1", "2.8", "2.8.1", "2.8.2"})
DEFAULT_VERSION = "2.5"


def ack_code_for(outcome: Outcome, problem_code: int | None = None, *, enhanced: bool = False) -> str:
    """MSA-1 for an outcome: AA/AE/AR in original mode, CA/CE/CR as an enhanced-mode commit ACK."""
    refused = outcome is Outcome.REJECTED and problem_code in REFUSED_CODES
    pair = REFUSED if refused else ACK_CODES[outcome]
    return pair[1] if enhanced else pair[0]


def wants_reply(header: MshHeader | None, success: bool, mode: str = "auto") -> tuple[bool, bool]:
    """(send a reply?, enhanced?) from MSH-15/MSH-16 (table 0155: AL, NE, ER, SU).

    Original mode (both empty, or ``mode: original``) always replies with AA/AE/AR. In enhanced
    mode the reply on this connection is the commit ACK (CA/CE/CR) when MSH-15 asks for one;
    otherwise it is the application ACK (AA/AE/AR) when MSH-16 asks for one, an empty MSH-16
    counting as AL. Only a sender that declines both (e.g. NE/NE) gets no reply.
    """
    if header is None or mode == "original":
        return True, False
    accept, application = header.accept_ack_type.upper(), header.application_ack_type.upper()
    if not accept and not application:
        return True, False
    if accept and _asked(accept, success):
        return True, True
    return _asked(application or "AL", success), False


def reply_code(header: MshHeader | None, outcome: Outcome, problem_code: int | None = None,
               replay: str | None = None, mode: str = "auto") -> str | None:
    """The MSA-1 a message is answered with, or None when no reply is due.

    The one decision both the channel (what it writes) and the journal (what it records) use:
    the outcome table, enhanced mode (MSH-15/16), AR/CR for a frame without a usable MSH, the
    first answer repeated for a redelivery, and no reply to an inbound ACK.
    """
    send, enhanced = wants_reply(header, outcome.accepted, mode)
    if not send or (header is not None and header.message_code == "ACK"):
        return None
    if header is None:
        return "CR" if enhanced else "AR"
    if outcome is Outcome.DUPLICATE and replay and not enhanced:
        return replay
    return ack_code_for(outcome, problem_code, enhanced=enhanced)


def _asked(rule: str, success: bool) -> bool:
    return {"NE": False, "ER": not success, "SU": success}.get(rule, True)


@dataclass(frozen=True, slots=True)
class AckIdentity:
    """Who the ACK says it comes from (MSH-3/MSH-4). Empty values mirror the inbound MSH-5/6."""

    sending_application: str = "RADSCHED"
    sending_facility: str = "RADIOLOGY"


class ControlIds:
    """New unique MSH-10 values for ACKs: a per-process prefix plus a counter."""

    def __init__(self) -> None:
        stamp = int(time.time() * 1000) ^ (os.getpid() << 20)
        self.prefix = "A" + _base36(stamp)[-8:].upper()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self._counter)}"


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


_ts_cache: list = [0, ""]


def _now_ts() -> str:
    now = int(time.time())
    if _ts_cache[0] != now:
        _ts_cache[0] = now
        _ts_cache[1] = time.strftime("%Y%m%d%H%M%S", time.gmtime(now)) + "+0000"
    return _ts_cache[1]


def escape_text(text: str, d: Delimiters) -> str:
    """Escape delimiter characters in free text for MSA-3 / ERR-7 / ERR-8 (ASCII only)."""
    text = text.encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")
    if d.escape:
        e = d.escape
        text = text.replace(e, f"{e}E{e}")
        for ch, code in ((d.field, "F"), (d.component, "S"), (d.subcomponent, "T"),
                         (d.repetition, "R"), (d.truncation, "P")):
            if ch:
                text = text.replace(ch, f"{e}{code}{e}")
        return text
    for ch in d.all:
        text = text.replace(ch, " ")
    return text


def to_wire(segments: list[str]) -> bytes:
    """ACK segments as the bytes to send. Our own text is ASCII (``escape_text``); the fields
    echoed from the inbound MSH were read from its bytes as latin-1, so they go back byte for
    byte (MSA-2 is the sender's MSH-10 verbatim, whatever its bytes). Never raises."""
    return ("\r".join(segments) + "\r").encode("latin-1", "replace")


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split(".")[:3])
    except ValueError:
        return (2, 5)


# An ACK's MSH before MSH-7, between MSH-7 and MSH-10, after MSH-10; delimiters; version tuple.
_Template = tuple[str, str, str, Delimiters, tuple[int, ...]]
_MAX_TEMPLATES = 1024       # distinct senders x message types; the cache starts over past it


class AckBuilder:
    """Builds ACK payloads (without MLLP framing) for one channel."""

    def __init__(self, identity: AckIdentity | None = None) -> None:
        self.identity = identity or AckIdentity()
        self.ids = ControlIds()
        self._templates: dict[tuple[str, ...], _Template] = {}
        self._headless = self._template(None, None)

    def build(
        self, header: MshHeader | None, code: str, problem: Problem | None = None,
        warnings: list[Problem] | tuple[Problem, ...] = (), user_text: str | None = None,
    ) -> bytes:
        """One ACK message: MSH, MSA and an ERR per problem (error first, then warnings)."""
        return to_wire(self.segments(header, code, problem, warnings, user_text))

    def segments(
        self, header: MshHeader | None, code: str, problem: Problem | None = None,
        warnings: list[Problem] | tuple[Problem, ...] = (), user_text: str | None = None,
    ) -> list[str]:
        if header is not None:
            f = header.fields
            # Everything in the ACK's MSH but MSH-7 and MSH-10 follows from these inbound fields
            # (delimiters, MSH-3..6, MSH-9, MSH-11, MSH-12): one template per sender and type.
            key = f[1:7] + f[9:10] + f[11:13]
            template = self._templates.get(key)
            if template is None:
                template = self._template(key, header)
            control_id = header.control_id
        else:
            template = self._headless
            control_id = ""
        head, middle, tail, d, v = template
        msh = f"{head}{_now_ts()}{middle}{self.ids.next()}{tail}"
        f = d.field
        msa = f"MSA{f}{code}{f}{control_id}"
        if problem is None and not warnings:
            return [msh, msa]
        if problem is not None:
            short = user_text or problem.text
            msa += f"{f}{escape_text(short[:80], d)}"
        out = [msh, msa]
        if problem is not None:
            out.append(self._err(problem, d, v, user_text))
        if v >= (2, 5):
            out.extend(self._err(w, d, v, None) for w in warnings)
        return out

    def _template(self, key: tuple[str, ...] | None, header: MshHeader | None) -> _Template:
        """The ACK's MSH around MSH-7 and MSH-10, its delimiters and version, for one sender."""
        d = header.delimiters if header is not None else STANDARD
        f = d.field
        if header is not None:
            inbound_version = header.version
            version = inbound_version if inbound_version in SUPPORTED_VERSIONS else DEFAULT_VERSION
            trigger = header.trigger
            processing = header.get(11) or "P"
            their_app, their_fac = header.sending_application, header.sending_facility
            our_app = self.identity.sending_application or header.receiving_application
            our_fac = self.identity.sending_facility or header.receiving_facility
        else:
            version, trigger, processing = DEFAULT_VERSION, "", "P"
            their_app = their_fac = ""
            our_app, our_fac = self.identity.sending_application, self.identity.sending_facility
        v = _version_tuple(version)
        c = d.component
        if v >= (2, 5):
            msg_type = f"ACK{c}{trigger}{c}ACK" if trigger else "ACK"
        else:
            msg_type = f"ACK{c}{trigger}" if trigger else "ACK"
        template = (f"MSH{f}{d.encoding_characters}{f}{our_app}{f}{our_fac}{f}{their_app}{f}"
                    f"{their_fac}{f}", f"{f}{f}{msg_type}{f}", f"{f}{processing}{f}{version}", d, v)
        if key is not None:
            if len(self._templates) >= _MAX_TEMPLATES:
                self._templates.clear()
            self._templates[key] = template
        return template

    @staticmethod
    def _err(p: Problem, d: Delimiters, v: tuple[int, ...], user_text: str | None) -> str:
        f, c, s = d.field, d.component, d.subcomponent or d.component
        name = HL7_ERROR_TEXT.get(p.code, "Application error")
        loc = p.location
        if v < (2, 5):
            # ERR-1 (ELD): segment ^ sequence ^ field ^ code&text&HL70357 — v2.3/2.4 senders.
            seg = loc.segment if loc else ""
            seq = str(loc.sequence) if loc else ""
            fld = str(loc.field) if loc and loc.field is not None else ""
            return f"ERR{f}{seg}{c}{seq}{c}{fld}{c}{p.code}{s}{name}{s}HL70357"
        parts = []
        if loc is not None:
            parts = [loc.segment, str(loc.sequence)]
            for value in (loc.field, loc.repetition, loc.component, loc.subcomponent):
                if value is None:
                    break
                parts.append(str(value))
        location = c.join(parts)
        diagnostic = escape_text(p.text, d)
        user = escape_text(user_text, d) if user_text else ""
        err = f"ERR{f}{f}{location}{f}{p.code}{c}{name}{c}HL70357{f}{p.severity}{f}{f}{f}{diagnostic}"
        return f"{err}{f}{user}" if user else err
