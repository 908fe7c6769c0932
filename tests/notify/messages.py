"""Project-owned SIU messages for the notify tests, with appointment times relative to now."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

FACILITY = ZoneInfo("America/New_York")
CELL = "^PRN^CP^^1^617^5550123"          # → +16175550123
HOME = "^PRN^PH^^1^617^5550100"


def local_start(days: int = 10, hour: int = 9, minute: int = 30) -> datetime:
    """A facility-local start ``days`` from today at ``hour:minute``."""
    day = datetime.now(FACILITY).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=FACILITY)


def ts(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S%z")


def siu(trigger: str, control_id: str, *, filler: str = "F1", placer: str | None = None, mrn: str = "MRN1",
        start: datetime | None = None, phones: str = f"{HOME}~{CELL}", minutes: int = 30,
        sent: datetime | None = None, exam: str = "74177^CT ABDOMEN AND PELVIS WITH CONTRAST^CPT",
        room: str = "CT1^^^GENHOSP^^^MAIN^1^CT Scanner 1") -> bytes:
    """An SIU message; S15/S17/S26 carry no resource times."""
    start = start or local_start()
    placer = placer or f"P{filler}"
    sent = sent or datetime.now(FACILITY)
    status = {"S15": "Cancelled", "S17": "Deleted", "S26": "Noshow"}.get(trigger, "Booked")
    segments = [
        f"MSH|^~\\&|RIS|GENHOSP|RADSCHED|RADIOLOGY|{ts(sent)}||SIU^{trigger}^SIU_S12|{control_id}|P|2.5.1",
        f"SCH|{placer}^RIS|{filler}^RADSCHED||||Routine^Routine|ROUTINE|NORMAL|{minutes}|min|"
        f"^^{minutes}^{ts(start)}^^R||||||||||||||{status}",   # SCH-25
        f"PID|1||{mrn}^^^GENHOSP^MR||TESTPATIENT^JANE^Q||19800415|F|||12 Example St^^Springfield^MA^01101"
        f"||{phones}",
        "PV1|1|O|RAD^CT1^^GENHOSP||||1234^WELBY^MARCUS^^^DRRGS|1|A",
        f"AIS|1|A|{exam}|{ts(start)}|||{minutes}|min",
        f"AIL|1|A|{room}|CT||{ts(start)}|||{minutes}|min",
    ]
    return ("\r".join(segments) + "\r").encode()
