"""Builders for conflict tests: SIU messages with rooms, staff, patients and procedures; channels in YAML."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from radsched_engine.config.loader import load_channel_text
from radsched_engine.exchange import Exchange
from radsched_engine.pipeline import Pipeline, Resources, registry
from radsched_engine.store import Store
from tests.store.helpers import fetch

ACCEPT = "[SIU^S12, SIU^S13, SIU^S14, SIU^S15, SIU^S17, SIU^S26, ORM^O01]"
PATIENT_NAME = ("ZZYZXOVA", "QUENTINA")
PHONE = "4135550147"


def siu(trigger: str = "S12", control: str = "C1", filler: str = "A1", *, start: str = "20260310090000",
        minutes: int | None = 30, mrn: str = "MRN9001", code: str = "74177",
        text: str = "CT ABDOMEN AND PELVIS WITH CONTRAST", room: str | None = "CT1",
        staff: tuple[str, str] | None = None, status: str = "Booked", sent: str = "20260301120000",
        priority: str = "R", dob: str = "19700101", sex: str = "F", resources: bool = True) -> bytes:
    """One SIU message; ``sent`` is MSH-7 (later updates need a later one), times have no offset."""
    family, given = PATIENT_NAME
    tq = f"^^{minutes}^{start}^^{priority}" if minutes is not None else f"^^^{start}^^{priority}"
    segments = [
        f"MSH|^~\\&|RIS|HOSP|RADSCHED|RAD|{sent}||SIU^{trigger}^SIU_S12|{control}|P|2.5",
        f"SCH|P{filler}|{filler}||||Routine|ROUTINE|NORMAL|{minutes or ''}|min|{tq}|||||||||||||{status}",
        f"PID|1||{mrn}^^^HOSP^MR||{family}^{given}||{dob}|{sex}|||1 Main St^^Town||"
        f"^PRN^CP^^1^413^5550147",
    ]
    if resources:
        segments.append("RGS|1|A")
        if code:
            segments.append(f"AIS|1|A|{code}^{text}^CPT|{start}|||{minutes or ''}|min")
        if room:
            segments.append(f"AIL|1|A|{room}^^^HOSP|{room[:2]}|||{start}|||{minutes or ''}|min")
        if staff:
            segments.append(f"AIP|1|A|{staff[0]}^TECH^TOM|{staff[1]}|||{start}|||{minutes or ''}|min")
    return ("\r".join(segments) + "\r").encode()


def channel_text(steps: str = "  - parse\n  - validate\n  - conflict_check\n  - persist\n",
                 timezone: str = "UTC") -> str:
    return (f"listen: ${{RADSCHED_MLLP_LISTEN}}\ntimezone: {timezone}\naccept: {ACCEPT}\n"
            f"pipeline:\n{steps}")


class Channel:
    """A channel's real pipeline (built from YAML) on a real store, without sockets."""

    def __init__(self, store: Store, steps: str | None = None, *, services: dict[str, Any] | None = None,
                 timezone: str = "UTC", name: str = "scheduling") -> None:
        text = channel_text(steps, timezone) if steps else channel_text(timezone=timezone)
        config = load_channel_text(text, name, env={"RADSCHED_MLLP_LISTEN": "127.0.0.1:0"})
        specs = registry()
        resources = Resources(channel=name, settings=config, store=store, services=services or {})
        stages = [(specs[s.name], specs[s.name].factory(s.options, resources)) for s in config.pipeline]
        self.pipeline = Pipeline(name, stages, store.unit_of_work(name))
        self.name = name

    async def send(self, raw: bytes) -> Exchange:
        ex = Exchange(raw, self.name, "127.0.0.1:5000", datetime.now(UTC))
        await self.pipeline.run(ex)
        return ex


async def findings(url: str, filler: str, channel: str = "scheduling", *,
                   prep: bool = False) -> list[dict[str, Any]]:
    """The stored findings of appointment ``filler`` (``[]`` when none were stored), without the
    PREP-INSTRUCTIONS advice unless ``prep``."""
    [row] = await fetch(url, "SELECT conflicts FROM appointments WHERE appointment_key = $1",
                        f"{channel}|F:{filler}")
    value = row["conflicts"]
    entries = json.loads(value) if isinstance(value, str) else (value or [])
    return [e for e in entries if prep or e.get("rule") != "PREP-INSTRUCTIONS"]


async def appointment_id(url: str, filler: str, channel: str = "scheduling") -> int:
    [row] = await fetch(url, "SELECT id FROM appointments WHERE appointment_key = $1",
                        f"{channel}|F:{filler}")
    return row["id"]


def rules_of(entries: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """(rule, severity, other) of each stored finding."""
    return [(e["rule"], e["severity"], e.get("other")) for e in entries]


def settings(tz: Any = UTC) -> SimpleNamespace:
    return SimpleNamespace(name="scheduling", tz=tz)
