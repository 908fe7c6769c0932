"""A queued text's facts → the number to text and the words to send (the worker's first claim does this).

The notify stage records, in the message's transaction, only what the text depends on
(``text_facts``: the raw phone repetitions, region, template, clinic, time format, facility zone,
start, exam, location, preparation); choosing the number (phonenumbers) and rendering the
template are left to the outbox worker, which stores their result in the row (``to``, ``skip``,
``body``) before it calls Twilio, so a resend after a crash is byte-identical and can be
matched at Twilio. ``compose`` is a pure function of the facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..domain.model import Phone
from ..integrations.phone import choose_sms_number
from .templates import TextFacts, render

FACTS = "facts"        # payload key of the facts while the text is not composed yet


def text_facts(phones: Sequence[Phone], *, region: str, template: str, clinic: str, time_format: str,
               tz: str, start: datetime | None, exam: str, location: str,
               prep: Sequence[str]) -> dict[str, Any]:
    """The JSON facts of one text (cheap: no parsing, no formatting beyond ISO 8601)."""
    return {"phones": [[p.number, p.use, p.equipment] for p in phones], "region": region,
            "template": template, "clinic": clinic, "time_format": time_format, "tz": tz,
            "start": start.isoformat() if start is not None else None, "exam": exam,
            "location": location, "prep": list(prep)}


def compose(facts: dict[str, Any]) -> dict[str, Any]:
    """``{"to": E.164 or None, "skip": why there is no number or None, "body": the text}``."""
    phones = [Phone(str(n), str(u), str(e)) for n, u, e in facts.get("phones") or ()]
    choice = choose_sms_number(phones, facts.get("region") or "US")
    start = facts.get("start")
    body = render(facts["template"], TextFacts(
        datetime.fromisoformat(start) if start else None, facts.get("exam") or "",
        facts.get("location") or "", tuple(facts.get("prep") or ())),
        tz=ZoneInfo(facts.get("tz") or "UTC"), clinic=facts.get("clinic") or "",
        time_format=facts.get("time_format") or "%a %d %b %H:%M")
    return {"to": choice.e164, "skip": None if choice.ok else choice.reason, "body": body}


def composed(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` as it reads once composed (facts replaced by ``to``/``skip``/``body``)."""
    if FACTS not in payload:
        return payload
    rest = {k: v for k, v in payload.items() if k != FACTS}
    return {**rest, **compose(payload[FACTS])}
