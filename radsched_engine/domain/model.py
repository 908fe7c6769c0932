"""The scheduling events extracted from SIU and ORM messages, as plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

# Explicit HL7 null (``""``) on an update means "clear the stored value"; an empty field means
# "leave it unchanged". Extracted text fields carry NULL for the former and None for the latter.
NULL = "\x00NULL"


@dataclass(frozen=True, slots=True)
class Phone:
    """One PID-13/PID-14 repetition: the number as sent, its use code and equipment type."""

    number: str
    use: str = ""          # PRN, ORN, WPN, NET, ... (XTN.2)
    equipment: str = ""    # PH, CP, FX, Internet, ... (XTN.3)


@dataclass(frozen=True, slots=True)
class Patient:
    mrn: str                       # chosen PID-3 identifier (CX.1), trimmed
    authority: str = ""            # its assigning authority (CX.4.1)
    family_name: str = ""
    given_name: str = ""
    birth_date: date | None = None
    sex: str = ""
    phones: tuple[Phone, ...] = ()

    @property
    def key(self) -> str:
        """Stable patient key for conflict checks: ``authority|mrn``."""
        return f"{self.authority}|{self.mrn}"

    @property
    def display_name(self) -> str:
        return " ".join(p for p in (self.given_name, self.family_name) if p)


@dataclass(frozen=True, slots=True)
class Resource:
    """A scheduled resource from AIS (service), AIL (location), AIP (personnel) or AIG (general)."""

    kind: str                      # "service" | "location" | "personnel" | "general"
    code: str                      # AIS-3.1 / AIL-3.1 (point of care, or room) / AIP-3.1 / AIG-3.1
    text: str = ""                 # description (AIS-3.2, AIP-3 name, AIL-3 room/facility)
    coding_system: str = ""        # AIS-3.3
    role: str = ""                 # AIP-4 / AIL-4 / AIG-4 (first component)
    action: str = ""               # segment action code (A/U/D/...)
    start: datetime | None = None
    duration: timedelta | None = None

    @property
    def end(self) -> datetime | None:
        if self.start is None or self.duration is None:
            return None
        return self.start + self.duration


@dataclass(frozen=True, slots=True)
class AppointmentEvent:
    """One SIU message as a scheduling event (S12 book, S13 reschedule, S14 modify, ...)."""

    trigger: str                           # "S12", "S13", ...
    placer_id: str | None                  # SCH-1.1 (trimmed), None when absent
    filler_id: str | None                  # SCH-2.1 (trimmed), None when absent
    start: datetime | None                 # aware datetime (facility zone when no offset)
    duration: timedelta | None
    patient: Patient | None
    status_raw: str = ""                   # SCH-25 as sent
    priority: str = "R"                    # table 0027: S, A, R, P, T
    reason: str = ""                       # SCH-6/7 text (event/appointment reason)
    notes: str = ""                        # NTE text under SCH
    referring_physician: str = ""          # PV1-8 / SCH-12 name, display form
    placer_order_numbers: tuple[str, ...] = ()   # SCH-26
    filler_order_numbers: tuple[str, ...] = ()   # SCH-27
    services: tuple[Resource, ...] = ()
    locations: tuple[Resource, ...] = ()
    personnel: tuple[Resource, ...] = ()
    general: tuple[Resource, ...] = ()
    event_time: datetime | None = None     # MSH-7 (ordering of out-of-order updates)
    warnings: tuple[str, ...] = ()         # non-fatal oddities found while extracting

    @property
    def key(self) -> str:
        """The appointment's identity: filler id when present, else placer id (prefixed)."""
        if self.filler_id:
            return f"F:{self.filler_id}"
        return f"P:{self.placer_id}"

    @property
    def end(self) -> datetime | None:
        if self.start is None or self.duration is None:
            return None
        return self.start + self.duration

    @property
    def resources(self) -> tuple[Resource, ...]:
        return self.services + self.locations + self.personnel + self.general


@dataclass(frozen=True, slots=True)
class Order:
    """One ORC/OBR pair of an ORM^O01 (or OMI^O23) message."""

    control: str                           # ORC-1
    placer_order_number: str | None        # ORC-2.1 (or OBR-2.1)
    filler_order_number: str | None        # ORC-3.1 (or OBR-3.1)
    status: str = ""                       # ORC-5
    procedure_code: str = ""               # OBR-4.1
    procedure_text: str = ""               # OBR-4.2
    coding_system: str = ""                # OBR-4.3
    modality: str = ""                     # OBR-24 (or IPC-5 for OMI)
    accession: str = ""                    # OBR-18 / IPC-1
    priority: str = "R"
    requested_at: datetime | None = None   # OBR-7 / OBR-36 / TQ start
    ordering_provider: str = ""            # ORC-12 / OBR-16 name
    reason: str = ""                       # OBR-31 / OBR-13
    transaction_time: datetime | None = None  # ORC-9


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One ORM^O01 message: the patient and its orders."""

    patient: Patient | None
    orders: tuple[Order, ...] = field(default_factory=tuple)
    event_time: datetime | None = None
    warnings: tuple[str, ...] = ()
