"""Twilio status callbacks on the engine's HTTP port: check ``X-Twilio-Signature``, record delivery status.

Twilio POSTs ``MessageSid``, ``MessageStatus`` (queued, sent, delivered, undelivered, failed, ...)
and ``ErrorCode`` to the ``StatusCallback`` URL given at send time. The URL configured
(``RADSCHED_SMS_STATUS_CALLBACK_URL``) is the *public* one Twilio calls, e.g. through a reverse
proxy: its scheme and host, with the path and query of the request received, are what the
signature is checked against. A forged or unsigned request gets 403 and changes nothing.

Statuses are kept per SID in ``sms_delivery_status`` (a callback may arrive before the worker has
stored the SID on the outbox row); they only move forward (a late "sent" never replaces
"delivered"). Error 21610 in a callback opts the number out, as it does at send time.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog
from aiohttp import web

from ..integrations.sms import SmsSender

log = structlog.get_logger("radsched.notify")

# How far along a message is; a status never replaces one further along.
_RANK = {"accepted": 0, "scheduled": 0, "queued": 0, "sending": 1, "sent": 2, "receiving": 2,
         "received": 2, "delivered": 3, "undelivered": 3, "failed": 3, "canceled": 3,
         "partially_delivered": 3, "read": 4}
_RANK_SQL = "CASE {col} " + " ".join(f"WHEN '{k}' THEN {v}" for k, v in _RANK.items()) + " ELSE 0 END"
_UPSERT = f"""
INSERT INTO sms_delivery_status AS s (sid, status, error_code) VALUES ($1, $2, $3)
ON CONFLICT (sid) DO UPDATE SET status = excluded.status, error_code = excluded.error_code,
                                updated_at = now()
WHERE {_RANK_SQL.format(col="excluded.status")} >= {_RANK_SQL.format(col="s.status")}
"""


class StatusCallback:
    """A background part with ``register_routes(http)``; ``stop`` closes the sender when it is
    the callback's own (``owns_sender``: the sending happens in another process)."""

    def __init__(self, sender: SmsSender, store: Any, public_url: str, *, opt_out: Any = None,
                 owns_sender: bool = False) -> None:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("RADSCHED_SMS_STATUS_CALLBACK_URL must be an absolute http(s) URL")
        self.sender = sender
        self.store = store
        self.public_url = public_url
        self.path = parts.path or "/"
        self._origin = (parts.scheme, parts.netloc)
        self._opt_out = opt_out          # async callable(number), e.g. SmsHandler.opt_out
        self.owns_sender = owns_sender

    def register_routes(self, http: Any) -> None:
        http.add_post(self.path, self.handle)

    async def start(self) -> None:
        log.info("sms_status_callback_ready", path=self.path)

    async def stop(self) -> None:
        if self.owns_sender:
            await self.sender.close()

    def signed_url(self, request: web.Request) -> str:
        """The URL Twilio signed: our public origin with the path and query received."""
        url = request.rel_url
        return urlunsplit((*self._origin, url.raw_path, url.raw_query_string, ""))

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not self.sender.validate_callback(self.signed_url(request), params, signature):
            log.warning("sms_callback_rejected", reason="bad signature")
            return web.Response(status=403, text="invalid signature")
        sid, status = params.get("MessageSid", ""), params.get("MessageStatus", "").lower()
        if not sid or not status:
            return web.Response(status=400, text="MessageSid and MessageStatus are required")
        code_text = params.get("ErrorCode", "").strip()
        code = int(code_text) if code_text.isdigit() else None
        async with self.store.connection() as conn:
            await conn.execute(_UPSERT, sid, status, code)
        if code == 21610 and self._opt_out is not None and params.get("To"):
            await self._opt_out(params["To"], "twilio-callback-21610")
        log.info("sms_status", status=status, code=code)
        return web.Response(status=204)


async def delivery_status(conn: Any, sid: str) -> dict[str, Any] | None:
    """The latest status Twilio reported for ``sid`` (``status``, ``error_code``, ``updated_at``)."""
    row = await conn.fetchrow("SELECT status, error_code, updated_at FROM sms_delivery_status "
                              "WHERE sid = $1", sid)
    return dict(row.items()) if row is not None else None
