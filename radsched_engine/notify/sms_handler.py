"""The outbox handler of kind ``sms``: send one queued patient text through Twilio, at most once.

Per row (payload written by the notify stage: the text's ``facts``, ``quiet``): at the first claim
the facts become ``to``, ``skip`` and ``body`` (``notify.compose``), stored in the row before
anything is sent, in the statement that also asks whether the number opted out (a row written
with ``to``/``skip``/``body`` already is taken as it is); when nothing is sent (no number, quiet
hours, running dry) they are stored with the verdict instead, in the same statement (one
transaction per row less: the default install runs dry until Twilio credentials are set); then

- no usable number → ``skipped`` (``skipped_no_phone``); inside quiet hours → ``held`` until the
  window ends (not an attempt); number opted out → ``skipped`` (``opted_out``);
- no Twilio credentials → ``skipped`` (``skipped_dry_run``): nothing sent, the text stays in the
  row, the log line carries only its length;
- sent → ``done`` with the SID; 429, 5xx, timeouts and connection trouble → ``retry`` (backoff in
  the worker), marked in doubt when Twilio may have accepted it; 21211/21614/other permanent
  refusals → ``dead`` with the reason; 21610 (the patient replied STOP) → the number is added to
  ``sms_opt_outs`` and the row is ``skipped`` (``opted_out``).

Never twice: before anything is re-sent after a crash (row found ``sending`` with an expired
lease) or after an in-doubt attempt, ``reconcile`` asks Twilio (``SmsSender.find_sent``: same
number, same body, created since the row was queued). Found → ``done`` without sending; Twilio
cannot be asked → still in doubt, try again later; not found → send. A row still holding its facts
was never sent (the text is stored before any send). That is also why results are recorded
without waiting for the disk (``async_record``): one lost with a database crash leaves the row
``sending``, and it is reconciled like the others.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from ..integrations.sms import SendResult, SmsLookupFailed, SmsSender
from ..outbox import Delivery, OutboxRow
from .compose import FACTS, PROFILE, composed
from .quiet import held_until

log = structlog.get_logger("radsched.notify")

# The composed text is stored once: a row composed already (by another worker that held the
# lease before) keeps its text, and the caller reads that back (the statement's snapshot is
# from before its update). In the same round trip: whether the number it goes to opted out.
_COMPOSE = """
WITH stored AS (
    UPDATE outbox SET payload = (payload - 'facts') || $2::jsonb, updated_at = now()
    WHERE id = $1 AND payload ? 'facts'
    RETURNING payload
), current AS (
    SELECT coalesce((SELECT payload FROM stored), (SELECT payload FROM outbox WHERE id = $1)) AS payload
)
SELECT payload, EXISTS (SELECT 1 FROM sms_opt_outs WHERE phone = payload->>'to') AS opted_out
FROM current
"""
_PROFILE = "SELECT settings FROM notify_profiles WHERE id = $1"
_OPTED_OUT = "SELECT EXISTS (SELECT 1 FROM sms_opt_outs WHERE phone = $1)"
_OPT_OUT = """
INSERT INTO sms_opt_outs (phone, source) VALUES ($1, $2) ON CONFLICT (phone) DO NOTHING
"""


_COMPOSED = ("to", "skip", "body", "quiet")     # stored in the row when composed


def masked(number: str | None) -> str:
    """A number as logs may show it: country code and length only."""
    if not number:
        return ""
    return f"{number[:2]}…({len(number) - 1} digits)"


class SmsHandler:
    """``OutboxHandler`` for ``sms`` rows; ``store`` holds the opt-out list (the worker's store)."""

    kind = "sms"
    # A result lost with a database crash leaves the row "sending": reconcile asks Twilio.
    async_record = True

    def __init__(self, sender: SmsSender, store: Any, *, concurrency: int = 4, max_attempts: int = 10,
                 rate: float | None = None, status_callback: str | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.sender = sender
        self.store = store
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.rate = rate                  # texts started per second (None = as fast as allowed)
        self.status_callback = status_callback or None
        self.clock = clock or (lambda: datetime.now(UTC))
        self._profiles: dict[str, Any] = {}    # profile id -> settings (never changed once stored)

    async def deliver(self, row: OutboxRow) -> Delivery:
        fresh = FACTS in row.payload            # not composed yet: compose, store before sending
        payload = composed(row.payload, await self._settings(row.payload)) if fresh else row.payload
        keep = payload if fresh else None       # stored with a verdict that sends nothing
        to, body = payload.get("to"), payload.get("body") or ""
        if not to:
            return Delivery("skipped", {"reason": "no_phone", "detail": payload.get("skip") or "no_number"},
                            label="skipped_no_phone", payload=keep)
        until = held_until(self.clock(), payload.get("quiet"))
        if until is not None:
            wait = (until - self.clock()).total_seconds()
            return Delivery("held", {"reason": "quiet_hours", "until": until.isoformat()},
                            retry_after=max(1.0, wait), payload=keep)
        if fresh and not self.sender.dry_run:   # the text goes out as the row holds it
            payload, opted_out = await self._store(row, payload)
            to, body = payload.get("to") or "", payload.get("body") or ""
            keep = None                         # stored already
        else:
            opted_out = await self._opted_out(to)
        if opted_out:
            return Delivery("skipped", {"reason": "opted_out"}, label="opted_out", payload=keep)
        if self.sender.dry_run:
            log.info("sms_dry_run", row=row.id, dest=masked(to), chars=len(body),
                     missing=list(self.sender.settings.missing()))
            return Delivery("skipped", {"reason": "dry_run"}, label="skipped_dry_run", payload=keep)
        result = await self.sender.send(to, body, status_callback=self.status_callback)
        return await self._verdict(row, to, result)

    async def reconcile(self, row: OutboxRow) -> Delivery | None:
        to, body = row.payload.get("to"), row.payload.get("body") or ""
        if not to or self.sender.dry_run:
            return None                       # nothing can have been sent
        try:
            sid = await self.sender.find_sent(to, body, row.created_at)
        except SmsLookupFailed as exc:
            return Delivery("retry", {"reason": "lookup_failed"},
                            error=f"cannot tell whether an earlier attempt was sent: {exc}", in_doubt=True)
        if sid is None:
            return None
        log.info("sms_reconciled", row=row.id, result="already_sent")
        return Delivery("done", {"sid": sid, "reconciled": True})

    async def close(self) -> None:
        await self.sender.close()

    async def compose(self, row: OutboxRow, text: dict[str, Any] | None = None) -> dict[str, Any]:
        """Choose the number and render the text from the row's facts (or take ``text``, the
        row's payload ``composed`` already); store them, then return the payload as stored
        (sending only ever uses what the row holds)."""
        return (await self._store(row, text))[0]

    async def _store(self, row: OutboxRow, text: dict[str, Any] | None = None
                     ) -> tuple[dict[str, Any], bool]:
        """``compose``, and whether the number the stored text goes to has opted out."""
        text = text or composed(row.payload, await self._settings(row.payload))
        update = {k: text[k] for k in _COMPOSED if k in text}
        async with self.store.connection() as conn:
            found = await conn.fetchrow(_COMPOSE, row.id, update)
        stored = found["payload"] if found is not None else None
        if not isinstance(stored, dict) or FACTS in stored:
            raise RuntimeError("the composed text could not be stored")
        return stored, bool(found["opted_out"])

    async def _verdict(self, row: OutboxRow, to: str, result: SendResult) -> Delivery:
        base: dict[str, Any] = {"error_code": result.error_code} if result.error_code else {}
        if result.status == "sent":
            return Delivery("done", {"sid": result.sid, "detail": result.detail})
        if result.status == "retry":
            return Delivery("retry", base, error=result.detail, in_doubt=result.in_doubt)
        if result.status == "opted_out":
            await self.opt_out(to)
            return Delivery("skipped", {**base, "reason": "opted_out"}, error=result.detail,
                            label="opted_out")
        if result.status == "skipped_dry_run":
            return Delivery("skipped", {"reason": "dry_run"}, label="skipped_dry_run")
        return Delivery("dead", base, error=result.detail)

    async def _settings(self, payload: dict[str, Any]) -> Any:
        """The settings of the profile ``payload`` names (None when it names none)."""
        key = payload.get(PROFILE)
        if key is None:
            return None
        settings = self._profiles.get(key)
        if settings is None:
            async with self.store.connection() as conn:
                settings = await conn.fetchval(_PROFILE, key)
            if settings is None:
                raise RuntimeError(f"notify profile {key} is not stored")
            self._profiles[key] = settings
        return settings

    async def _opted_out(self, to: str) -> bool:
        async with self.store.connection() as conn:
            return bool(await conn.fetchval(_OPTED_OUT, to))

    async def opt_out(self, to: str, source: str = "twilio-21610") -> None:
        """Never text this number again (Twilio refused it: the patient replied STOP)."""
        async with self.store.connection() as conn:
            await conn.execute(_OPT_OUT, to, source)
        log.info("sms_opted_out", dest=masked(to))
