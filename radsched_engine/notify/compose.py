"""A queued text's facts → the number to text and the words to send (the worker's first claim does this).

The notify stage records, in the message's transaction, only what the text depends on
(``text_facts``: the raw phone repetitions, region, template, clinic, time format, facility zone,
start, exam, location, preparation); choosing the number (phonenumbers) and rendering the
template are left to the outbox worker, which stores their result in the row (``to``, ``skip``,
``body``) before it calls Twilio, so a resend after a crash is byte-identical and can be
matched at Twilio. ``compose`` is a pure function of the facts.

A started stage keeps its channel's settings (``SETTINGS``: region, templates by event,
clinic, time format, zone, quiet hours) out of its rows: they are stored once as a profile
(``notify_profiles``, migration 0405) and the row names it (payload ``"profile"``) beside the
text's own facts. ``composed`` takes that profile's settings to put the two back together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from ..domain.model import Phone
from ..integrations.phone import choose_sms_number
from .templates import TextFacts, render

FACTS = "facts"        # payload key of the facts while the text is not composed yet
PROFILE = "profile"    # payload key of the profile id when the settings are stored apart
# The facts that are the channel's settings, not the text's own (a profile holds them, with
# "templates" by event in place of one "template", and "quiet").
SETTINGS = ("region", "clinic", "time_format", "tz")


def text_facts(phones: Sequence[Phone], *, region: str, template: str, clinic: str, time_format: str,
               tz: str, start: datetime | None, exam: str, location: str,
               prep: Sequence[str]) -> dict[str, Any]:
    """The JSON facts of one text (cheap: no parsing, no formatting beyond ISO 8601)."""
    return {**own_facts(phones, start=start, exam=exam, location=location, prep=prep),
            "region": region, "template": template, "clinic": clinic, "time_format": time_format,
            "tz": tz}


def own_facts(phones: Sequence[Phone], *, start: datetime | None, exam: str, location: str,
              prep: Sequence[str]) -> dict[str, Any]:
    """The facts of one text that are its own (those of ``text_facts`` that a profile does not hold)."""
    return {"phones": [[p.number, p.use, p.equipment] for p in phones],
            "start": start.isoformat() if start is not None else None, "exam": exam,
            "location": location, "prep": list(prep)}


def profile_settings(*, region: str, templates: Mapping[str, str], clinic: str, time_format: str,
                     tz: str, quiet: Mapping[str, str] | None, channel: str) -> dict[str, Any]:
    """A channel's settings as a profile stores them (``composed`` reads them back)."""
    return {"region": region, "clinic": clinic, "time_format": time_format, "tz": tz,
            "quiet": quiet, "templates": dict(templates), "channel": channel}


def profile_id(settings: Mapping[str, Any]) -> str:
    """The id a profile's ``settings`` are stored under: the same settings, the same id."""
    return hashlib.sha256(orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


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


def composed(payload: dict[str, Any], settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``payload`` as it reads once composed (facts replaced by ``to``/``skip``/``body``).

    A payload that names a profile needs that profile's ``settings``; its quiet hours are kept
    in the composed payload (``"quiet"``), which later attempts read."""
    if FACTS not in payload:
        return payload
    rest = {k: v for k, v in payload.items() if k != FACTS}
    facts = payload[FACTS]
    if PROFILE in payload:
        if settings is None:
            raise ValueError(f"the text's settings (profile {payload[PROFILE]}) are needed to compose it")
        facts = {**facts, **{k: settings[k] for k in SETTINGS},
                 "template": settings["templates"][payload["event"]]}
        rest["quiet"] = settings["quiet"]
    return {**rest, **compose(facts)}
