"""Twilio status callbacks on the engine's HTTP port: signed ones recorded, forged ones refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from radsched_engine.http import HttpServer
from radsched_engine.integrations.sms import SmsSender, SmsSettings
from radsched_engine.notify.callback import StatusCallback, delivery_status
from radsched_engine.notify.sms_handler import SmsHandler
from radsched_engine.store import Store
from tests.fakes.fake_twilio import FakeTwilio
from tests.store.helpers import fetch

PUBLIC = "https://rad.example.org/twilio/status"
SID = "SM" + "a" * 32


async def _ready() -> tuple[bool, dict[str, str]]:
    return True, {}


@pytest.fixture
async def endpoint(store: Store, twilio_fake: FakeTwilio) -> AsyncIterator[tuple[str, StatusCallback]]:
    sender = SmsSender(SmsSettings.from_env(twilio_fake.env()))
    handler = SmsHandler(sender, store)
    callback = StatusCallback(sender, store, PUBLIC, opt_out=handler.opt_out)
    http = HttpServer("127.0.0.1", 0, _ready)
    callback.register_routes(http)
    await http.start()
    await callback.start()
    try:
        yield f"http://127.0.0.1:{http.port}/twilio/status", callback
    finally:
        await callback.stop()
        await http.stop()
        await sender.close()


def params(status: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": SID, "SmsSid": SID, "AccountSid": "AC" + "0" * 32, "From": "+15005550006",
            "To": "+16175550123", "ApiVersion": "2010-04-01", "MessageStatus": status,
            "SmsStatus": status, **extra}


async def post(url: str, data: dict[str, str], signature: str | None) -> int:
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    async with aiohttp.ClientSession() as session, session.post(url, data=data, headers=headers) as r:
        return r.status


async def status_of(store: Store) -> dict | None:
    async with store.connection() as conn:
        return await delivery_status(conn, SID)


async def test_signed_callbacks_update_the_status_and_never_go_back(
        endpoint, store: Store, twilio_fake: FakeTwilio) -> None:
    url, _ = endpoint
    for status in ("queued", "sent", "delivered"):
        form = params(status)
        # Signed over the public URL Twilio called (the proxy forwards to our port).
        assert await post(url, form, twilio_fake.sign(PUBLIC, form)) == 204
    late = params("sent")
    assert await post(url, late, twilio_fake.sign(PUBLIC, late)) == 204
    got = await status_of(store)
    assert got is not None and (got["status"], got["error_code"]) == ("delivered", None)


async def test_query_string_is_signed_too(endpoint, store: Store, twilio_fake: FakeTwilio) -> None:
    url, _ = endpoint
    form = params("undelivered", ErrorCode="30003")
    assert await post(url + "?row=7", form, twilio_fake.sign(PUBLIC + "?row=7", form)) == 204
    got = await status_of(store)
    assert got is not None and (got["status"], got["error_code"]) == ("undelivered", 30003)


@pytest.mark.parametrize("case", ["unsigned", "wrong_signature", "tampered", "other_url"])
async def test_forged_callbacks_are_refused_and_change_nothing(
        endpoint, store: Store, twilio_fake: FakeTwilio, case: str) -> None:
    url, _ = endpoint
    form = params("failed", ErrorCode="30008")
    signature = {
        "unsigned": None,
        "wrong_signature": "bm90IGEgc2lnbmF0dXJl",
        "tampered": twilio_fake.sign(PUBLIC, params("delivered")),
        "other_url": twilio_fake.sign("https://evil.example.org/twilio/status", form),
    }[case]
    assert await post(url, form, signature) == 403
    assert await status_of(store) is None


async def test_callback_with_21610_opts_the_number_out(endpoint, store: Store, db_url: str,
                                                        twilio_fake: FakeTwilio) -> None:
    url, _ = endpoint
    form = params("failed", ErrorCode="21610")
    assert await post(url, form, twilio_fake.sign(PUBLIC, form)) == 204
    assert [r["phone"] for r in await fetch(db_url, "SELECT phone FROM sms_opt_outs")] == ["+16175550123"]


async def test_a_signed_callback_without_a_sid_is_a_bad_request(endpoint, twilio_fake: FakeTwilio) -> None:
    url, _ = endpoint
    form = {"MessageStatus": "sent"}
    assert await post(url, form, twilio_fake.sign(PUBLIC, form)) == 400


def test_callback_url_must_be_absolute(store: Store) -> None:
    sender = SmsSender(SmsSettings())
    with pytest.raises(ValueError, match="absolute"):
        StatusCallback(sender, store, "/twilio/status")
