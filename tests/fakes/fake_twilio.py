"""A fake of Twilio's Messages API (create + list) on 127.0.0.1, with magic numbers and forced answers.

``POST /2010-04-01/Accounts/{sid}/Messages.json`` creates a message (form ``To``, ``From`` or
``MessagingServiceSid``, ``Body``, ``StatusCallback``); ``GET`` on the same path lists them with the
``To``, ``DateSent``, ``DateSent>`` (on or after) and ``DateSent<`` (on or before) filters. HTTP Basic
auth ``ACCOUNT_SID:AUTH_TOKEN``; a wrong one answers 401/20003. ``To`` magic numbers as in Twilio's
test credentials: +15005550001 → 21211, +15005550002 → 21612, +15005550003 → 21408,
+15005550004 → 21610, +15005550009 → 21614. ``force()`` queues answers for the next requests.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twilio.request_validator import RequestValidator

from ._server import FakeServer

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test_auth_token"
FROM_NUMBER = "+15005550006"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"

MAGIC_TO: dict[str, tuple[int, int, str]] = {
    "+15005550001": (400, 21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (400, 21612, "The 'To' phone number is not currently reachable via SMS."),
    "+15005550003": (400, 21408, "Permission to send an SMS has not been enabled for the region"),
    "+15005550004": (400, 21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (400, 21614, "'To' number is not a valid mobile number"),
}


@dataclass(frozen=True, slots=True)
class Forced:
    """One forced answer: after ``delay`` s, an error ``status``/``code``, or go on normally (2xx)."""

    status: int
    code: int | None = None
    message: str = "forced by the test"
    delay: float = 0.0
    raw_body: str | None = None      # send this text instead of Twilio's JSON error body


@dataclass(slots=True)
class Seen:
    """One request as received: method, path, query, form and headers."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


class FakeTwilio(FakeServer):
    """One fake: ``requests`` (every request), ``sent`` (accepted forms), ``messages`` (listable)."""

    account_sid = ACCOUNT_SID
    auth_token = AUTH_TOKEN
    from_number = FROM_NUMBER

    def __init__(self) -> None:
        super().__init__()
        self.script: list[Forced] = []
        self.requests: list[Seen] = []
        self.messages: list[dict[str, Any]] = []
        self.sent: list[dict[str, str]] = []      # the form of every accepted create request
        self.handler = _Handler

    def env(self) -> dict[str, str]:
        """Environment variables that point ``SmsSettings.from_env`` at this fake."""
        return {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_FROM_NUMBER": FROM_NUMBER, "TWILIO_API_BASE_URL": self.base_url}

    def force(self, status: int, code: int | None = None, *, delay: float = 0.0,
              message: str = "forced by the test", raw_body: str | None = None) -> None:
        with self.lock:
            self.script.append(Forced(status, code, message, delay, raw_body))

    def creates(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "POST"]

    def lists(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "GET"]

    def add_message(self, to: str, body: str, *, created: datetime | None = None,
                    date_sent: datetime | str | None = "same", status: str = "delivered") -> str:
        """Seed a message as if sent earlier; ``date_sent=None`` models one still queued."""
        created = created or datetime.now(UTC)
        sent_at = created if date_sent == "same" else date_sent
        resource = _resource(to, body, FROM_NUMBER, None, created)
        resource.update(status=status, _date_sent=sent_at,
                        date_sent=format_datetime(sent_at) if isinstance(sent_at, datetime) else None)
        with self.lock:
            self.messages.append(resource)
        return resource["sid"]

    def sign(self, url: str, params: dict[str, str]) -> str:
        """The ``X-Twilio-Signature`` Twilio would send for this callback."""
        return RequestValidator(AUTH_TOKEN).compute_signature(url, params)


def _resource(to: str, body: str, from_: str | None, service: str | None,
              created: datetime) -> dict[str, Any]:
    sid = "SM" + uuid.uuid4().hex
    stamp = format_datetime(created.astimezone(UTC))
    return {
        "account_sid": ACCOUNT_SID, "api_version": "2010-04-01", "body": body,
        "date_created": stamp, "date_sent": None, "date_updated": stamp,
        "direction": "outbound-api", "error_code": None, "error_message": None, "from": from_,
        "messaging_service_sid": service, "num_media": "0", "num_segments": "1", "price": None,
        "price_unit": "USD", "sid": sid, "status": "queued" if not service else "accepted",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json"},
        "to": to, "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
        "_created": created, "_date_sent": None,
    }


def _public(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if not k.startswith("_")}


def _parse_when(text: str) -> datetime:
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeTwilio

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, payload: Any, raw: str | None = None) -> None:
        data = (raw if raw is not None else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if raw is None else "text/plain")
        self.send_header("Twilio-Request-Id", "RQ" + uuid.uuid4().hex)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass          # the client gave up (timeout tests)

    def _error(self, status: int, code: int, message: str, raw: str | None = None) -> None:
        self._send(status, {"code": code, "message": message, "status": status,
                            "more_info": f"https://www.twilio.com/docs/errors/{code}"}, raw)

    def _record(self) -> Seen:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length", 0) or 0)
        raw = self.rfile.read(length).decode() if length else ""
        seen = Seen(self.command, url.path,
                    {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()},
                    {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()},
                    dict(self.headers))
        with self.server_fake.lock:
            self.server_fake.requests.append(seen)
        return seen

    def _prelude(self) -> Seen | None:
        """Record, authenticate, route and apply a forced answer; None when already answered."""
        fake = self.server_fake
        seen = self._record()
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if self.headers.get("Authorization", "") != expected:
            self._error(401, 20003, "Authenticate")
            return None
        if seen.path != MESSAGES_PATH:
            self._error(404, 20404, "The requested resource was not found")
            return None
        with fake.lock:
            forced = fake.script.pop(0) if fake.script else None
        if forced is not None:
            fake.stall(forced.delay)
            if not 200 <= forced.status < 300:
                self._error(forced.status, forced.code or forced.status, forced.message,
                            forced.raw_body)
                return None
        return seen

    def do_POST(self) -> None:
        seen = self._prelude()
        if seen is None:
            return
        form = seen.form
        to = form.get("To", "")
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return self._error(400, 21603, "A 'From' phone number is required.")
        if to in MAGIC_TO:
            return self._error(*MAGIC_TO[to])
        resource = _resource(to, form.get("Body", ""), form.get("From"),
                             form.get("MessagingServiceSid"), datetime.now(UTC))
        answer = _public(resource)
        # Listed later as sent: the fake "delivers" at once (tests can seed queued ones).
        resource.update(status="sent", _date_sent=resource["_created"],
                        date_sent=resource["date_created"])
        with self.server_fake.lock:
            self.server_fake.sent.append(form)
            self.server_fake.messages.append(resource)
        self._send(201, answer)

    def do_GET(self) -> None:
        seen = self._prelude()
        if seen is None:
            return
        q = seen.query
        try:
            on = _parse_when(q["DateSent"]).date() if "DateSent" in q else None
            after = _parse_when(q["DateSent>"]) if "DateSent>" in q else None
            before = _parse_when(q["DateSent<"]) if "DateSent<" in q else None
            size = int(q.get("PageSize", "50"))
        except ValueError:
            return self._error(400, 20001, "Invalid filter")
        with self.server_fake.lock:
            found = list(self.server_fake.messages)
        if "To" in q:
            found = [m for m in found if m["to"] == q["To"]]
        if on or after or before:
            found = [m for m in found if m["_date_sent"] is not None
                     and (on is None or m["_date_sent"].date() == on)
                     and (after is None or m["_date_sent"] >= after)
                     and (before is None or m["_date_sent"] <= before)]
        found.sort(key=lambda m: m["_created"], reverse=True)
        self._send(200, {
            "messages": [_public(m) for m in found[:size]], "end": min(len(found), size) - 1,
            "first_page_uri": MESSAGES_PATH, "next_page_uri": None, "page": 0, "page_size": size,
            "previous_page_uri": None, "start": 0, "uri": MESSAGES_PATH,
        })
