"""MSH sniffing straight from bytes: delimiters and header fields, even when the rest is broken."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_ENCODING = "^~\\&"
_FORBIDDEN = set("\r\n\x0b\x1c\x00 ")


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The five (or six, from v2.7) delimiter characters, read from MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @classmethod
    def from_msh(cls, field_sep: str, encoding: str) -> Delimiters:
        """Delimiters from MSH-1 and MSH-2; a missing character falls back to the default one.

        MSH-2 is positional (component, repetition, escape, subcomponent, truncation). A short
        MSH-2 of standard characters keeps each one's standard role; otherwise a missing or
        clashing character falls back to the default, if that one is still free.
        """
        if len(encoding) < 4 and all(c in DEFAULT_ENCODING for c in encoding):
            # A short MSH-2 made only of standard characters (``^\\&``, ``^~&``): each character
            # keeps its standard role and the roles not sent are absent (no such delimiter).
            comp, rep, esc, sub = (c if c in encoding else "" for c in DEFAULT_ENCODING)
            return cls(field_sep, comp, rep, esc, sub, "")
        chars: list[str] = []
        for i, default in enumerate(DEFAULT_ENCODING):
            ch = encoding[i] if i < len(encoding) else ""
            if not ch or ch in chars or ch == field_sep:
                ch = default if default not in chars and default != field_sep else ""
            chars.append(ch)
        trunc = encoding[4] if len(encoding) > 4 and encoding[4] not in chars else ""
        return cls(field_sep, chars[0], chars[1], chars[2], chars[3], trunc)

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation

    @property
    def all(self) -> str:
        return self.field + self.encoding_characters


STANDARD = Delimiters()


@dataclass(frozen=True, slots=True)
class MshHeader:
    """The MSH segment of a message as raw (still escaped) field strings; ``get(n)`` = MSH-n."""

    delimiters: Delimiters
    fields: tuple[str, ...]     # fields[0] = "MSH", fields[1] = MSH-1, fields[2] = MSH-2, ...
    offset: int                 # byte offset of "MSH" in the frame
    # Components already read (``message_code`` ... ``version``): each is asked for several
    # times per message (validate, the ACK, the journal), so it is split out once.
    _memo: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def get(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def _stripped(self, key: str, n: int, c: int) -> str:
        memo = self._memo
        value = memo.get(key)
        if value is None:
            value = memo[key] = self.component(n, c).strip()
        return value

    def component(self, n: int, c: int) -> str:
        """Component ``c`` (1-based) of the first repetition of MSH-``n``."""
        value = self.get(n)
        d = self.delimiters
        if d.repetition and d.repetition in value:
            value = value.split(d.repetition, 1)[0]
        parts = value.split(d.component) if d.component else [value]
        return parts[c - 1] if c <= len(parts) else ""

    @property
    def sending_application(self) -> str:
        return self.get(3)

    @property
    def sending_facility(self) -> str:
        return self.get(4)

    @property
    def receiving_application(self) -> str:
        return self.get(5)

    @property
    def receiving_facility(self) -> str:
        return self.get(6)

    @property
    def timestamp(self) -> str:
        return self.component(7, 1)

    @property
    def message_code(self) -> str:
        return self._stripped("message_code", 9, 1)

    @property
    def trigger(self) -> str:
        return self._stripped("trigger", 9, 2)

    @property
    def structure(self) -> str:
        return self._stripped("structure", 9, 3)

    @property
    def control_id(self) -> str:
        """MSH-10 verbatim: leading spaces are part of the id and are echoed in MSA-2."""
        return self.get(10)

    @property
    def processing_id(self) -> str:
        return self._stripped("processing_id", 11, 1)

    @property
    def version(self) -> str:
        return self._stripped("version", 12, 1)

    @property
    def accept_ack_type(self) -> str:
        return self.get(15).strip()

    @property
    def application_ack_type(self) -> str:
        return self.get(16).strip()

    @property
    def charset(self) -> str:
        value = self.get(18)
        if self.delimiters.repetition and self.delimiters.repetition in value:
            value = value.split(self.delimiters.repetition, 1)[0]
        return value.strip()


_DELIMITERS: dict[tuple[str, str], Delimiters | None] = {}


def _delimiters(field_sep: str, encoding: str) -> Delimiters | None:
    """``Delimiters.from_msh`` for a valid MSH-2, None for an invalid one (memoised: few distinct)."""
    key = (field_sep, encoding)
    try:
        return _DELIMITERS[key]
    except KeyError:
        pass
    result = None
    if len(encoding) <= 5 and not any(c.isalnum() or c in _FORBIDDEN for c in encoding):
        result = Delimiters.from_msh(field_sep, encoding)
    if len(_DELIMITERS) < 512:
        _DELIMITERS[key] = result
    return result


def find_msh(raw: bytes) -> int:
    """Byte offset of the first ``MSH`` that starts a segment, or -1."""
    pos = raw.find(b"MSH")
    while pos != -1:
        if pos == 0 or raw[pos - 1] in b"\r\n\x0b\x1c\t \xef\xbb\xbf":
            return pos
        pos = raw.find(b"MSH", pos + 3)
    return -1


def sniff_msh(raw: bytes) -> MshHeader | None:
    """Parse the MSH segment of ``raw`` without decoding the rest; None when there is no usable MSH.

    The MSH segment is ASCII by rule; it is decoded as latin-1 so that no byte can make this fail.
    """
    start = find_msh(raw)
    if start < 0 or len(raw) < start + 8:
        return None
    end = len(raw)
    for term in (b"\r", b"\n"):
        i = raw.find(term, start)
        if i != -1 and i < end:
            end = i
    line = raw[start:end].decode("latin-1")
    if len(line) < 4:                     # "MSH" then a segment terminator: no delimiters at all
        return None
    field_sep = line[3]
    if field_sep.isalnum() or field_sep in _FORBIDDEN:
        return None
    encoding = line[4:].partition(field_sep)[0]
    delimiters = _delimiters(field_sep, encoding)
    if delimiters is None:
        return None
    parts = line.split(field_sep)
    # parts[0] = "MSH", parts[1] = MSH-2 ...; shift so that fields[n] = MSH-n.
    fields = ("MSH", field_sep, *parts[1:])
    return MshHeader(delimiters, fields, start)
