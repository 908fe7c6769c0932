"""The ``parse`` stage: raw bytes to the lazy message view, rejecting structurally broken messages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from .. import pipeline
from ..errors import Location, Problem, Reject
from ..exchange import Exchange
from ..hl7 import charset
from ..hl7.message import Message
from ..hl7.segment_ids import KNOWN_SEGMENTS, is_known


def _charset_check(name: str | None) -> str | None:
    if name is None or charset.lookup(name) is not None:
        return None
    return f"unknown character set {name!r} (use e.g. 8859/1, UNICODE UTF-8, cp1252)"


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """How bytes become a message and which structural faults are refused."""

    default_charset: str | None = field(default=None, metadata={
        "doc": "Character set assumed when MSH-18 is empty or unknown (table 0211 name such as "
               "`8859/1`, or a codec name); unset = try UTF-8, then `fallback_charset`.",
        "check": _charset_check})
    fallback_charset: str = field(default="cp1252", metadata={
        "doc": "Last resort when the bytes are not valid in any declared charset nor in UTF-8 "
               "(the message is flagged in the journal).", "check": _charset_check})
    broken_segments: Literal["reject", "rejoin"] = field(default="reject", metadata={
        "doc": "A line whose segment id is not three letters/digits (a line break inside a "
               "field): `reject` with AE 100, or `rejoin` it to the segment before it."})
    unknown_segments: Literal["warn", "ignore", "reject"] = field(default="warn", metadata={
        "doc": "A non-Z segment id that HL7 does not define: `warn` (AA with an ERR of severity "
               "W), `ignore`, or `reject` with AE 100."})
    control_characters: Literal["reject", "keep"] = field(default="reject", metadata={
        "doc": "Control characters other than CR, LF and TAB inside the message (0x0B, 0x1C and "
               "NUL are always stripped): `reject` with AE 102, or `keep` them."})


_CONTROL = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Pre-filter on the raw bytes (0x0B/0x1C/NUL are stripped anyway; ESC may belong to ISO 2022).
_CONTROL_BYTES = bytes([*range(1, 9), 0x0C, *range(0x0E, 0x1B), 0x1D, 0x1E, 0x1F, 0x7F])


class ParseStage:
    """Parses ``exchange.raw`` into ``exchange.message``; a broken structure is an AE 100."""

    def __init__(self, options: ParseOptions, resources: pipeline.Resources) -> None:
        self.options = options
        self.resources = resources
        self._default = options.default_charset
        self._fallback = options.fallback_charset
        self._glued: dict[str, re.Pattern[str]] = {}
        self._probes: dict[str, bytes] = {}

    async def __call__(self, exchange: Exchange) -> None:
        message = Message.parse(exchange.raw, default_charset=self._default,
                                fallback_charset=self._fallback)
        exchange.message = message       # set early: the ACK can echo MSH-10 even on a reject
        opts = self.options
        if message.malformed:
            if opts.broken_segments == "reject":
                raise _broken(message)
            message = exchange.message = message.rejoined()
            exchange.warnings.append(Problem(
                100, "a line break inside a field was re-joined to the segment before it", None, "W"))
        raw = exchange.raw
        probe = self._probes.get(message.delimiters.field) or self._probe(message.delimiters.field)
        if raw.find(probe) >= 0:
            self._check_glued(message)
        if opts.control_characters == "reject" and len(raw.translate(None, _CONTROL_BYTES)) != len(raw):
            self._check_control(message)
        if opts.unknown_segments != "ignore":
            self._check_unknown(message, exchange)

    def _probe(self, fs: str) -> bytes:
        probe = self._probes[fs] = f"{fs} ".encode("latin-1")
        return probe

    def _check_glued(self, message: Message) -> None:
        """Two segments on one line (a lost CR): a field that is a space-prefixed segment id."""
        fs = message.delimiters.field
        pattern = self._glued.get(fs)
        if pattern is None:
            e = re.escape(fs)
            pattern = self._glued[fs] = re.compile(rf"{e} [ \t]*([A-Z][A-Z0-9]{{2}})(?={e}|$)")
        for seg in message.segments:
            for m in pattern.finditer(seg.text):
                if is_known(m.group(1)):
                    raise Reject(
                        100, f"segment {seg.id} (#{seg.index + 1}) has a {m.group(1)} segment "
                             "glued onto it: a segment terminator (CR) is missing",
                        Location(seg.id, _sequence(message, seg.index)))

    @staticmethod
    def _check_control(message: Message) -> None:
        for seg in message.segments:
            m = _CONTROL.search(seg.text)
            if m is not None:
                fs = message.delimiters.field
                n = seg.text.count(fs, 0, m.start()) + (1 if seg.id == "MSH" else 0)
                raise Reject(102, f"control character 0x{ord(m.group()):02X} in {seg.id}-{n}",
                             Location(seg.id, _sequence(message, seg.index), n or None))

    def _check_unknown(self, message: Message, exchange: Exchange) -> None:
        present = message.present_ids
        if KNOWN_SEGMENTS.issuperset(present):
            return
        for seg_id in present:
            if is_known(seg_id):
                continue
            if self.options.unknown_segments == "reject":
                raise Reject(100, f"unknown segment {seg_id} (not an HL7 segment, not a Z segment)",
                             Location(seg_id))
            exchange.warnings.append(Problem(
                100, f"unknown segment {seg_id} ignored", Location(seg_id), "W"))


def _sequence(message: Message, index: int) -> int:
    """The 1-based occurrence of the segment at ``index`` among segments with its id."""
    ids = message.segment_ids
    return ids[: index + 1].count(ids[index])


def _broken(message: Message) -> Reject:
    """AE 100 for a line whose id is not a segment id; names the segment before it, not the data."""
    pos = message.malformed[0]
    ids = message.segment_ids
    prev = pos - 1
    while prev > 0 and prev in message.malformed:
        prev -= 1
    prev_id = ids[prev]
    return Reject(
        100, f"line {pos + 1} does not start with a segment id (a line break inside a field of "
             f"{prev_id} #{_sequence(message, prev)}?)",
        Location(prev_id, _sequence(message, prev)))


SPEC = pipeline.register(pipeline.StageSpec(
    name="parse",
    summary="Parse the raw message (delimiters from MSH, charset cascade, lazy fields); "
            "reject broken structure with AE 100.",
    options=ParseOptions,
    factory=ParseStage,
    example="""\
- parse:
    default_charset: 8859/1      # when MSH-18 is empty
    broken_segments: reject      # or rejoin
    unknown_segments: warn       # or ignore / reject
""",
))
