"""Choosing the patient's SMS number from PID-13/PID-14 repetitions and normalizing it to E.164."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from ..domain.model import Phone

ChoiceReason = Literal["ok", "no_number", "invalid", "not_mobile"]

# Repetitions never texted: e-mail, beeper, fax, modem (XTN.2 table 0201 / XTN.3 table 0202), and
# numbers that belong to someone else or to a service (emergency contact, answering service).
SKIP_USES = frozenset({"NET", "BPN", "EMR", "ASN"})
SKIP_EQUIPMENT = frozenset({"INTERNET", "X.400", "FX", "BP", "MD", "TDD", "TTY"})
# XTN.3 "CP" is the one explicit mobile marker; some feeds put a word in XTN.2 or XTN.3 instead.
MOBILE_MARKERS = frozenset({"CP", "MOBILE", "CELL", "CELLULAR", "MOB", "SMS"})
# Personal numbers (primary/other residence, personal) come before work or vacation numbers.
PERSONAL_USES = frozenset({"PRN", "ORN", "PRS", ""})
# Types phonenumbers is sure cannot receive SMS; US/CA numbers come back FIXED_LINE_OR_MOBILE.
NOT_SMS_TYPES = frozenset({
    PhoneNumberType.FIXED_LINE, PhoneNumberType.TOLL_FREE, PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST, PhoneNumberType.PAGER, PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
})
# The dialable head of an XTN.1 value; the rest (X extension, B beeper code, C comment) is dropped.
_DIALABLE = re.compile(r"\s*\+?[\d\s().\-/]*\d")
MAX_RAW_LENGTH = 64


@dataclass(frozen=True, slots=True)
class PhoneChoice:
    """The number to text (E.164) or why there is none; never logged with the number."""

    e164: str | None
    reason: ChoiceReason
    use: str = ""            # XTN.2 of the chosen repetition
    equipment: str = ""      # XTN.3 of the chosen repetition

    @property
    def ok(self) -> bool:
        return self.e164 is not None


def normalize(raw: str, region: str = "US") -> tuple[str | None, ChoiceReason]:
    """One raw number to E.164: ``(e164, "ok")``, ``(None, "invalid")`` or ``(None, "not_mobile")``.

    The extension is kept out. An explicit ``+CC`` wins over ``region``.
    """
    parsed = _parse(raw, region)
    if parsed is None:
        return None, "invalid"
    if phonenumbers.number_type(parsed) in NOT_SMS_TYPES:
        return None, "not_mobile"
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164), "ok"


def choose_sms_number(phones: Sequence[Phone], region: str = "US") -> PhoneChoice:
    """Pick the best SMS target among PID-13/14 repetitions.

    Order: repetitions marked mobile (XTN.3 ``CP`` or a mobile word in XTN.2/3), then personal
    numbers (PRN/ORN/PRS or no use code), then the rest (work, vacation); within a rank, numbers
    phonenumbers knows to be mobile first, then the order sent. E-mail, fax, beeper, emergency
    contact and answering-service repetitions are never chosen.
    """
    ranked: list[tuple[int, int, int, str, Phone]] = []
    saw_number = saw_not_mobile = False
    for index, phone in enumerate(phones):
        use, equipment = phone.use.strip().upper(), phone.equipment.strip().upper()
        raw = phone.number.strip()
        if use in SKIP_USES or equipment in SKIP_EQUIPMENT or "@" in raw or not raw:
            continue
        saw_number = True
        parsed = _parse(raw, region)
        if parsed is None:
            continue
        number_type = phonenumbers.number_type(parsed)
        if number_type in NOT_SMS_TYPES:
            saw_not_mobile = True
            continue
        if MOBILE_MARKERS & {use, equipment}:
            rank = 0
        elif use in PERSONAL_USES:
            rank = 1
        else:
            rank = 2
        type_rank = 0 if number_type == PhoneNumberType.MOBILE else 1
        e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
        ranked.append((rank, type_rank, index, e164, phone))
    if ranked:
        _, _, _, e164, phone = min(ranked)
        return PhoneChoice(e164, "ok", phone.use.strip(), phone.equipment.strip())
    if saw_not_mobile:
        return PhoneChoice(None, "not_mobile")
    return PhoneChoice(None, "invalid" if saw_number else "no_number")


def _parse(raw: str, region: str) -> phonenumbers.PhoneNumber | None:
    """A valid parsed number, or None for garbage, impossible or invalid numbers."""
    if not raw or len(raw) > MAX_RAW_LENGTH:
        return None
    head = _DIALABLE.match(raw)
    candidates = [raw] if head is None or head.group(0) == raw else [raw, head.group(0)]
    for text in candidates:
        try:
            parsed = phonenumbers.parse(text, region.upper() or None)
        except NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return parsed
    return None
