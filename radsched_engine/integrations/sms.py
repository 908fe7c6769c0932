"""Patient SMS through Twilio: send with a bounded time, classify every failure, reconcile in-doubt sends."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp
import structlog
from twilio.base.exceptions import TwilioException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from .twilio_http import TwilioTransport

log = structlog.get_logger("radsched.sms")

SendStatus = Literal["sent", "retry", "permanent", "opted_out", "skipped_dry_run"]

MAX_BODY = 1600                 # Twilio's limit for one (concatenated) message body
FIND_SLACK = timedelta(minutes=5)   # clock skew allowance between us and Twilio
FIND_LIMIT = 200                # messages to one number examined by find_sent
TRIAL_PREFIX = "Sent from your Twilio trial account - "

# Twilio error codes → (status, what it means). Details never carry the number or the body.
KNOWN_CODES: dict[int, tuple[SendStatus, str]] = {
    21211: ("permanent", "invalid 'To' number"),
    21612: ("permanent", "'To' number not reachable by SMS"),
    21408: ("permanent", "no SMS permission for the number's region"),
    21614: ("permanent", "'To' number cannot receive SMS (not mobile)"),
    21610: ("opted_out", "recipient unsubscribed (replied STOP)"),
    21617: ("permanent", "body longer than 1600 characters"),
    21604: ("permanent", "no 'To' number"),
    20429: ("retry", "rate limited"),
    20003: ("retry", "authentication failed: check TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN"),
}


@dataclass(frozen=True, slots=True)
class SmsSettings:
    """Twilio account and sender; without credentials the sender runs dry (sends nothing)."""

    account_sid: str = field(default="", metadata={"doc": "Twilio Account SID (AC...)."})
    auth_token: str = field(default="", repr=False, metadata={"doc": "Twilio auth token (secret)."})
    from_number: str = field(default="", metadata={"doc": "Sender number in E.164."})
    messaging_service_sid: str = field(
        default="", metadata={"doc": "Messaging Service SID (MG...), used instead of from_number."})
    api_base_url: str = field(
        default="", metadata={"doc": "Twilio-compatible endpoint (scheme://host:port); empty = Twilio."})
    timeout: float = field(default=10.0, metadata={"doc": "Seconds allowed for one API call."})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, timeout: float | None = None) -> SmsSettings:
        """Read ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``, ``TWILIO_FROM_NUMBER`` or
        ``TWILIO_MESSAGING_SERVICE_SID``, ``TWILIO_API_BASE_URL`` and ``TWILIO_TIMEOUT`` (seconds)."""
        env = os.environ if env is None else env
        if timeout is None:
            timeout = float(env.get("TWILIO_TIMEOUT", "").strip() or 10.0)
        if not timeout > 0:
            raise ValueError("TWILIO_TIMEOUT must be a positive number of seconds")
        return cls(
            account_sid=env.get("TWILIO_ACCOUNT_SID", "").strip(),
            auth_token=env.get("TWILIO_AUTH_TOKEN", "").strip(),
            from_number=env.get("TWILIO_FROM_NUMBER", "").strip(),
            messaging_service_sid=env.get("TWILIO_MESSAGING_SERVICE_SID", "").strip(),
            api_base_url=env.get("TWILIO_API_BASE_URL", "").strip(),
            timeout=timeout,
        )

    def missing(self) -> tuple[str, ...]:
        """Names of the environment variables still needed to send for real."""
        needed = []
        if not self.account_sid:
            needed.append("TWILIO_ACCOUNT_SID")
        if not self.auth_token:
            needed.append("TWILIO_AUTH_TOKEN")
        if not (self.from_number or self.messaging_service_sid):
            needed.append("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
        return tuple(needed)

    @property
    def dry_run(self) -> bool:
        return bool(self.missing())


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one send; ``detail`` never contains the phone number or the body.

    ``in_doubt`` is true when Twilio may have accepted the message although we got no answer
    (timeout, connection lost mid-request): call ``find_sent`` before sending again.
    """

    status: SendStatus
    sid: str | None
    error_code: int | None
    detail: str
    in_doubt: bool = False


class SmsLookupFailed(Exception):
    """``find_sent`` could not ask Twilio; the caller must not assume the message was not sent."""


class SmsSender:
    """Async Twilio client: construct inside a running event loop, ``await close()`` when done."""

    def __init__(self, settings: SmsSettings) -> None:
        self.settings = settings
        self._validator = RequestValidator(settings.auth_token) if settings.auth_token else None
        self._transport: TwilioTransport | None = None
        self._client: Client | None = None
        if settings.dry_run:
            return
        asyncio.get_running_loop()      # aiohttp's session belongs to the running loop
        self._transport = TwilioTransport(settings.api_base_url or None, settings.timeout)
        # A non-empty environment keeps TWILIO_REGION/TWILIO_EDGE from rewriting hostnames.
        self._client = Client(settings.account_sid, settings.auth_token,
                              http_client=self._transport, environment={"RADSCHED": "1"})
        # The SDK imports its whole 2010 API (hundreds of modules, ~0.5 s of CPU) on the first
        # ``client.messages``: pay it at start-up, not on the event loop at the first text.
        self._client.messages  # noqa: B018

    @property
    def dry_run(self) -> bool:
        return self._client is None

    async def __aenter__(self) -> SmsSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()
            self._transport = None

    async def send(self, to: str, body: str, *, status_callback: str | None = None) -> SendResult:
        """Send one SMS; never raises for Twilio or network trouble (see ``SendResult``)."""
        if self._client is None:
            return SendResult("skipped_dry_run", None, None,
                              "dry run: missing " + ", ".join(self.settings.missing()))
        if not to.strip():
            return SendResult("permanent", None, 21604, KNOWN_CODES[21604][1])
        if len(body) > MAX_BODY:
            return SendResult("permanent", None, 21617, KNOWN_CODES[21617][1])
        kwargs: dict[str, Any] = {"to": to, "body": body}
        if self.settings.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.settings.messaging_service_sid
        else:
            kwargs["from_"] = self.settings.from_number
        if status_callback:
            kwargs["status_callback"] = status_callback
        try:
            async with asyncio.timeout(self.settings.timeout):
                message = await self._client.messages.create_async(**kwargs)
        except TimeoutError:
            result = SendResult("retry", None, None,
                                f"no answer within {self.settings.timeout:g} s", in_doubt=True)
        except aiohttp.ClientConnectorError as exc:
            result = SendResult("retry", None, None, f"cannot connect ({type(exc).__name__})")
        except aiohttp.ClientError as exc:
            result = SendResult("retry", None, None, f"connection lost ({type(exc).__name__})",
                                in_doubt=True)
        except TwilioException as exc:
            result = classify(getattr(exc, "status", None), getattr(exc, "code", None))
        else:
            result = SendResult("sent", message.sid, None, f"accepted ({message.status})")
        log.debug("sms.send", result=result.status, error_code=result.error_code)
        return result

    async def find_sent(self, to: str, body: str, since: datetime) -> str | None:
        """The SID of a message to ``to`` with this ``body`` created at or after ``since``, if any.

        Closes the window "Twilio accepted it but we died before recording it": asks the Messages
        list API (To + DateSent>=), then, for messages still queued (no DateSent yet), the newest
        messages to that number. Raises ``SmsLookupFailed`` when Twilio cannot be asked.
        """
        if self._client is None:
            return None
        since_utc = since.astimezone(UTC) - FIND_SLACK
        wanted = body.strip()
        try:
            async with asyncio.timeout(self.settings.timeout * 2):
                for filters in ({"date_sent_after": since_utc}, {}):
                    found = await self._client.messages.list_async(
                        to=to, limit=FIND_LIMIT, page_size=50, **filters)
                    for message in found:
                        created = message.date_created or message.date_sent
                        if _same_body(message.body, wanted) and (
                                created is None or created >= since_utc):
                            return message.sid
        except TimeoutError:
            raise SmsLookupFailed(f"no answer within {self.settings.timeout * 2:g} s") from None
        except aiohttp.ClientError as exc:
            raise SmsLookupFailed(f"connection error ({type(exc).__name__})") from None
        except TwilioException as exc:
            status, code = getattr(exc, "status", None), getattr(exc, "code", None)
            raise SmsLookupFailed(f"twilio http {status} code {code}") from None
        return None

    def validate_callback(self, url: str, params: Mapping[str, str], signature: str) -> bool:
        """True when ``X-Twilio-Signature`` matches: ``url`` must be exactly the URL Twilio called."""
        if self._validator is None or not signature:
            return False
        try:
            return bool(self._validator.validate(url, params, signature))
        except (ValueError, TypeError, AttributeError):
            return False


def _same_body(sent: str | None, wanted: str) -> bool:
    """Body equality, allowing the prefix Twilio adds on trial accounts."""
    text = (sent or "").strip()
    return text == wanted or text == TRIAL_PREFIX + wanted


def classify(status: int | None, code: int | None) -> SendResult:
    """Twilio's HTTP status and error code → a ``SendResult`` (retry, permanent or opted out).

    Rate limits, 5xx and 408 are retried (5xx in doubt). So are 401/403: bad credentials are a configuration
    alarm, and the messages should still go out once an operator fixes it. Other 4xx are
    permanent. The detail text comes from our table, never from Twilio's message (which can
    quote the number).
    """
    if code in KNOWN_CODES:
        verdict, text = KNOWN_CODES[code]
    elif status in (408, 429) or (status is not None and status >= 500):
        verdict, text = "retry", "twilio unavailable"
    elif status in (401, 403):
        verdict, text = "retry", "twilio refused our credentials"
    else:
        verdict, text = "permanent", "request refused"
    in_doubt = status is not None and status >= 500   # a gateway error may hide an accepted send
    return SendResult(verdict, None, code, f"twilio http {status} code {code}: {text}", in_doubt)
