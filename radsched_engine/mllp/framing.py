"""Sans-I/O MLLP frame codec: bytes in, frames (and framing problems) out; stdlib only."""

from __future__ import annotations

from dataclasses import dataclass

SB = 0x0B   # start block (VT)
EB = 0x1C   # end block (FS)
CR = 0x0D
_SB = b"\x0b"
_EB = b"\x1c"
_WHITESPACE = frozenset(b"\r\n\t \x00")


@dataclass(frozen=True, slots=True)
class Junk:
    """Bytes outside any frame, skipped. ``blank`` when they were only whitespace/keep-alives."""

    size: int
    preview: bytes
    blank: bool


@dataclass(frozen=True, slots=True)
class Abandoned:
    """A start block arrived while a frame was open: the partial frame was dropped."""

    size: int


@dataclass(frozen=True, slots=True)
class Oversize:
    """The open frame grew past the limit; the decoder refuses further input."""

    size: int
    head: bytes      # the first bytes of the frame (enough to sniff an MSH for the NAK)


Event = bytes | Junk | Abandoned | Oversize


def encode(payload: bytes) -> bytes:
    """Wrap one payload in an MLLP frame."""
    return b"\x0b" + payload + b"\x1c\r"


class FrameDecoder:
    """Incremental MLLP decoder. ``feed`` returns complete frames as ``bytes`` and problem events.

    Tolerant as senders need (HL7 notes 1.3): junk before a start block is skipped and reported;
    a start block inside an open frame abandons the partial frame; an end block without the CR
    that should follow it still ends the frame (a following CR is swallowed, even across feeds).
    Bounded: once an open frame exceeds ``max_frame`` bytes an ``Oversize`` event is returned and
    the decoder is ``failed``: the caller answers and closes the connection.
    """

    __slots__ = ("_buf", "_in_frame", "_swallow_cr", "failed", "max_frame")

    def __init__(self, max_frame: int = 1_048_576) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._in_frame = False
        self._swallow_cr = False
        self.failed = False

    @property
    def in_frame(self) -> bool:
        """True while a frame has started and not yet ended."""
        return self._in_frame

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        if self.failed:
            return []
        n = len(data)
        # The common case: this read is exactly one whole frame (SB payload EB CR) and nothing
        # is pending. The general loop below would return the same single payload.
        if (n > 2 and data[0] == SB and data[n - 2] == EB and data[n - 1] == CR
                and not (self._in_frame or self._swallow_cr)
                and n - 3 <= self.max_frame and data.find(_EB, 1) == n - 2
                and data.find(_SB, 1, n - 2) < 0):
            return [data[1:n - 2]]
        events: list[Event] = []
        i = 0
        if self._swallow_cr and n:
            self._swallow_cr = False
            if data[0] == CR:
                i = 1
        while i < n:
            if not self._in_frame:
                start = data.find(_SB, i)
                if start < 0:
                    events.append(_junk(data[i:]))
                    break
                if start > i:
                    events.append(_junk(data[i:start]))
                self._in_frame = True
                i = start + 1
            end = data.find(_EB, i)
            limit = end if end >= 0 else n
            restart = data.find(_SB, i, limit)
            if restart >= 0:
                events.append(Abandoned(len(self._buf) + restart - i))
                self._buf.clear()
                i = restart + 1
                continue
            if end < 0:
                self._buf += data[i:]
                if len(self._buf) > self.max_frame:
                    return self._oversize(events)
                break
            if self._buf:
                self._buf += data[i:end]
                payload = bytes(self._buf)
                self._buf.clear()
            else:
                payload = data[i:end]
            if len(payload) > self.max_frame:
                self._buf[:] = payload
                return self._oversize(events)
            events.append(payload)
            self._in_frame = False
            i = end + 1
            if i < n:
                if data[i] == CR:
                    i += 1
            else:
                self._swallow_cr = True
        return events

    def _oversize(self, events: list[Event]) -> list[Event]:
        events.append(Oversize(len(self._buf), bytes(self._buf[:4096])))
        self._buf = bytearray()
        self._in_frame = False
        self.failed = True
        return events


def _junk(chunk: bytes) -> Junk:
    return Junk(len(chunk), chunk[:32], all(b in _WHITESPACE for b in chunk[:256]))
