"""Pipeline control signals: Reject (AE), Retry (AR), Drop (stop, answer AA) and HL7 error locations."""

from __future__ import annotations

from dataclasses import dataclass

# HL7 table 0357 (message error condition codes) — the ones this engine emits.
HL7_ERROR_TEXT: dict[int, str] = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}


@dataclass(frozen=True, slots=True)
class Location:
    """An HL7 error location (ERR-2 / ERL): segment, sequence, field, repetition, component, sub."""

    segment: str
    sequence: int = 1
    field: int | None = None
    repetition: int | None = None
    component: int | None = None
    subcomponent: int | None = None

    @classmethod
    def parse(cls, path: str, sequence: int = 1) -> Location:
        """Location from an HL7 path such as ``PID-3.1`` or ``SCH-11.4``."""
        seg, _, rest = path.partition("-")
        field = comp = sub = None
        if rest:
            parts = rest.split(".")
            field = int(parts[0]) if parts[0] else None
            comp = int(parts[1]) if len(parts) > 1 and parts[1] else None
            sub = int(parts[2]) if len(parts) > 2 and parts[2] else None
        return cls(seg, sequence, field, 1 if field else None, comp, sub)

    def __str__(self) -> str:
        text = self.segment
        if self.field is not None:
            text += f"-{self.field}"
            if self.component is not None:
                text += f".{self.component}"
                if self.subcomponent is not None:
                    text += f".{self.subcomponent}"
        return text


@dataclass(frozen=True, slots=True)
class Problem:
    """One HL7 finding: table 0357 code, location, severity (E/W/I), diagnostic text."""

    code: int
    text: str
    location: Location | None = None
    severity: str = "E"


class Signal(Exception):
    """Base of the expected pipeline outcomes; anything else is an internal error (AR 207)."""


class HL7Failure(Signal):
    """A failure with an HL7 error code, location and human-readable diagnostic text."""

    def __init__(
        self, code: int, text: str, location: Location | str | None = None, *,
        user_text: str | None = None,
    ) -> None:
        if isinstance(location, str):
            location = Location.parse(location)
        self.problem = Problem(code, text, location)
        self.user_text = user_text
        super().__init__(text)

    @property
    def code(self) -> int:
        return self.problem.code

    @property
    def location(self) -> Location | None:
        return self.problem.location


class Reject(HL7Failure):
    """The message content is wrong; the sender must fix it (AE, or AR for codes 200-203)."""


class Retry(HL7Failure):
    """The receiver cannot take the message now; the sender should resend it unchanged (AR)."""


class Drop(Signal):
    """Stop the pipeline and answer AA without further processing (filtered or already applied)."""

    def __init__(self, reason: str = "filtered") -> None:
        self.reason = reason
        super().__init__(reason)
