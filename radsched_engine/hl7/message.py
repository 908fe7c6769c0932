"""The lazy message view: decode once, split segments once, split fields and unescape only when asked."""

from __future__ import annotations

import re
from collections.abc import KeysView

from ..errors import Reject
from .charset import decode
from .msh import Delimiters, MshHeader, sniff_msh
from .path import _PATHS, Path, parse_path
from .segment import Segment, _Context, _pick

__all__ = ["Message", "Path", "Segment", "parse_path"]

_STRIP = b"\x0b\x1c\x00"          # leftover MLLP framing bytes and NULs: removed before anything else
_BLANK = " \t\n\x0c"
_GOOD_IDS: set[str] = set()        # segment ids already checked (at most 26*36*36 entries)
_VALID_ID = re.compile(r"[A-Z][A-Z0-9]{2}")


def _split_lines(text: str, fs: str) -> list[str]:
    """Segment texts: CR-terminated; CRLF is one terminator; LF alone only when there is no CR."""
    if "\r" not in text:
        return text.split("\n")
    if "\n" not in text:
        return text.split("\r")
    lines: list[str] = []
    lf_break = re.compile(r"\n+(?=[A-Z][A-Z0-9]{2}" + re.escape(fs) + ")")
    for line in text.replace("\r\n", "\r").split("\r"):
        if "\n" in line:
            lines.extend(part.strip("\n") for part in lf_break.split(line))
        else:
            lines.append(line)
    return lines


class Message:
    """A parsed HL7 v2 message: segments indexed by id; fields split and unescaped on demand."""

    __slots__ = ("_ctx", "_index", "_odd", "_segs", "_texts", "_type", "charset", "charset_note",
                 "delimiters", "header", "malformed", "raw")

    raw: bytes
    header: MshHeader
    delimiters: Delimiters
    charset: str
    charset_note: str
    malformed: tuple[int, ...]     # positions of segments whose id is not three alphanumerics

    @classmethod
    def parse(cls, raw: bytes, *, default_charset: str | None = None,
              fallback_charset: str = "cp1252") -> Message:
        """Parse one message; raises ``Reject(100, location MSH)`` when there is no usable MSH."""
        body = raw
        if b"\x0b" in body or b"\x1c" in body or b"\x00" in body:
            body = body.translate(None, _STRIP)
        header = sniff_msh(body)
        if header is None:
            raise Reject(100, "no usable MSH segment (the message must start with MSH and its "
                         "delimiters)", "MSH")
        if header.offset:
            body = body[header.offset:]
        text, charset, note = decode(body, header.charset, default_charset, fallback_charset)
        return cls._build(raw, header, charset, note, _split_lines(text, header.delimiters.field))

    @classmethod
    def _build(cls, raw: bytes, header: MshHeader, charset: str, note: str, lines: list[str]) -> Message:
        self = cls.__new__(cls)
        self.raw = raw
        self.header = header
        self.delimiters = d = header.delimiters
        self.charset = charset
        self.charset_note = note
        fs = d.field
        texts: list[str] = []
        index: dict[str, list[int]] = {}
        odd: dict[int, str] = {}          # ids of malformed segments, by position
        good = _GOOD_IDS
        for line in lines:
            sid = line[:3]
            if sid in good and line[3:4] == fs:          # the common case, kept cheap
                pos = index.get(sid)
                if pos is None:
                    index[sid] = [len(texts)]
                else:
                    pos.append(len(texts))
            elif not line:
                continue
            elif (line[3:4] == fs or len(line) == 3) and _check_id(sid):
                index.setdefault(sid, []).append(len(texts))
            elif not line.strip(_BLANK + fs):
                continue                   # a junk line: only blanks and field separators
            else:
                odd[len(texts)] = line.split(fs, 1)[0]
            texts.append(line)
        self._texts = texts
        self._odd = odd
        self._index = index
        self._segs = [None] * len(texts)
        self.malformed = tuple(odd)
        self._type = None
        self._ctx = _Context.of(d, charset)
        return self

    def rejoined(self) -> Message:
        """A copy where each malformed segment is appended to the one before it (a broken line)."""
        if not self.malformed:
            return self
        lines: list[str] = []
        bad = set(self.malformed)
        for i, text in enumerate(self._texts):
            if i in bad and lines:
                lines[-1] += text
            else:
                lines.append(text)
        return Message._build(self.raw, self.header, self.charset, self.charset_note, lines)

    # -- header facts (from MSH, read from the raw bytes) ----------------------------------------
    @property
    def control_id(self) -> str:
        return self.header.control_id

    def _type_parts(self) -> tuple[str, str, str, str]:
        parts = self._type
        if parts is None:
            value = _pick(self.header.get(9), self._ctx.repetition, 1)
            comps = [c.strip() for c in value.split(self._ctx.component)] + ["", ""]
            code, trigger = comps[0], comps[1]
            parts = self._type = (code, trigger, comps[2], f"{code}^{trigger}" if trigger else code)
        return parts

    @property
    def message_code(self) -> str:
        return self._type_parts()[0]

    @property
    def trigger(self) -> str:
        return self._type_parts()[1]

    @property
    def structure(self) -> str:
        return self._type_parts()[2]

    @property
    def type_trigger(self) -> str:
        """``CODE^TRIGGER`` (``SIU^S12``), or the code alone when there is no trigger."""
        return self._type_parts()[3]

    @property
    def version(self) -> str:
        return self.header.version

    @property
    def processing_id(self) -> str:
        return self.header.processing_id

    # -- segments --------------------------------------------------------------------------------
    def at(self, i: int) -> Segment:
        """The segment at position ``i`` (0 = MSH); raises IndexError past the end."""
        if not 0 <= i < len(self._texts):
            raise IndexError(i)
        return self._segment_at(i)

    def _segment_at(self, i: int) -> Segment:
        seg = self._segs[i]
        if seg is None:
            text = self._texts[i]
            sid = self._odd.get(i, text[:3]) if self._odd else text[:3]
            seg = self._segs[i] = Segment(sid, i, text, self._ctx)
        return seg

    @property
    def segments(self) -> list[Segment]:
        """All segments in order (including malformed ones)."""
        return [self._segment_at(i) for i in range(len(self._texts))]

    @property
    def segment_ids(self) -> list[str]:
        """The id of every segment, in order (cheap: no Segment objects are made)."""
        odd = self._odd
        return [odd.get(i, t[:3]) for i, t in enumerate(self._texts)] if odd else [t[:3] for t in self._texts]

    @property
    def present_ids(self) -> KeysView[str]:
        """The distinct well-formed segment ids present, in order of first appearance (a live view)."""
        return self._index.keys()

    def __len__(self) -> int:
        return len(self._texts)

    def has(self, seg_id: str) -> bool:
        return seg_id in self._index

    def count(self, seg_id: str) -> int:
        pos = self._index.get(seg_id)
        return len(pos) if pos else 0

    def segment(self, seg_id: str, occurrence: int = 1) -> Segment | None:
        """The ``occurrence``-th (1-based) segment with this id, or None."""
        pos = self._index.get(seg_id)
        if pos is None or not 0 < occurrence <= len(pos):
            return None
        return self._segment_at(pos[occurrence - 1])

    def all(self, seg_id: str) -> list[Segment]:
        """Every segment with this id, in order."""
        return [self._segment_at(i) for i in self._index.get(seg_id, ())]

    def split_fields(self, seg_id: str, upto: int = -1) -> list[list[str]]:
        """Raw (escaped) fields of every ``seg_id`` segment (not MSH): ``[i][n]`` is field n.

        With ``upto`` only fields 0..``upto`` are split out; the rest of the segment stays in
        one last item (for a reader that needs only the first few fields of a long segment).
        """
        pos = self._index.get(seg_id)
        if not pos:
            return []
        fs = self.delimiters.field
        segs, texts = self._segs, self._texts
        out = []
        for i in pos:
            seg = segs[i]
            if seg is not None and seg._fields is not None:
                out.append(seg._fields)
            else:
                out.append(texts[i].split(fs, upto))
        return out

    def values(self, seg_id: str, n: int, component: int | None = None,
               repetition: int | None = None) -> list[str]:
        """Raw (escaped) field ``n`` — or one repetition/component of it — of every ``seg_id`` segment.

        A cheap read for checks over many segments: no Segment objects are made for it.
        """
        pos = self._index.get(seg_id)
        if not pos:
            return []
        if seg_id == "MSH" and n <= 2:
            return [self._segment_at(i).field(n) for i in pos]
        k = n - 1 if seg_id == "MSH" else n
        fs = self.delimiters.field
        ctx = self._ctx
        segs = self._segs
        out: list[str] = []
        for i in pos:
            seg = segs[i]
            if seg is not None and seg._fields is not None:
                f = seg._fields
            else:
                f = self._texts[i].split(fs, k + 1)
            value = f[k] if 0 < k < len(f) else ""
            if value:
                if repetition is not None or component is not None:
                    value = _pick(value, ctx.repetition, repetition or 1)
                if component is not None:
                    value = _pick(value, ctx.component, component)
            out.append(value)
        return out

    # -- paths -----------------------------------------------------------------------------------
    def get(self, path: str, default: str = "") -> str:
        """Unescaped leaf text at an HL7 path (``PID-5.1``, ``PID-3[2].4.1``, ``OBR[2]-4``)."""
        p = _PATHS.get(path) or parse_path(path)
        seg = self.segment(p.segment, p.occurrence)
        if seg is None:
            return default
        return seg.get(p.field, p.component, p.subcomponent, p.repetition) or default

    def raw_field(self, path: str) -> str:
        """The escaped text at a path, as on the wire (a whole field when no component is named)."""
        p = _PATHS.get(path) or parse_path(path)
        seg = self.segment(p.segment, p.occurrence)
        if seg is None:
            return ""
        if p.depth == 1:
            return seg.raw(p.field, None, None, p.repetition) if p.explicit_rep else seg.field(p.field)
        return seg.raw(p.field, p.component, p.subcomponent if p.depth == 3 else None, p.repetition)

    def is_null(self, path: str) -> bool:
        """True when the value at ``path`` was sent as ``""`` (explicit HL7 null: clear it)."""
        return self.raw_field(path).strip() == '""'


def _check_id(sid: str) -> bool:
    if _VALID_ID.fullmatch(sid) is None:
        return False
    _GOOD_IDS.add(sid)
    return True
