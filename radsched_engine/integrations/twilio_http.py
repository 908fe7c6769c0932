"""The aiohttp transport under the twilio SDK: base-URL redirect, a real timeout, and no PHI logging."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from twilio.http import AsyncHttpClient
from twilio.http.response import Response

# The SDK's own request logging writes query strings (To=+1617...) at INFO: ours never logs.
_SILENT = logging.getLogger("radsched.integrations.twilio_http")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


class TwilioTransport(AsyncHttpClient):
    """An ``AsyncHttpClient`` for ``twilio.rest.Client``; build it inside a running event loop.

    ``base_url`` (``scheme://host[:port][/prefix]``) replaces scheme and host of every URL the SDK
    builds, keeping path and query, so every Twilio domain can point at a compatible endpoint.
    The timeout is handed to aiohttp (the stock async client ignores its own); callers still
    wrap calls in ``asyncio.timeout`` as the outer bound.
    """

    def __init__(self, base_url: str | None = None, timeout: float = 10.0) -> None:
        super().__init__(_SILENT, True, timeout)
        self._base = urlsplit(base_url.rstrip("/")) if base_url else None
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    def rewrite(self, url: str) -> str:
        """The URL the request really goes to."""
        if self._base is None:
            return url
        parts = urlsplit(url)
        return urlunsplit((self._base.scheme, self._base.netloc, self._base.path + parts.path,
                           parts.query, parts.fragment))

    async def request(
        self,
        method: str,
        uri: str,
        params: Mapping[str, object] | None = None,
        data: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        send_headers = dict(headers or {})
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            send_headers["Authorization"] = f"Basic {token}"
        kwargs: dict[str, Any] = {"headers": send_headers, "allow_redirects": allow_redirects}
        query = _clean(params)
        if query:
            kwargs["params"] = query
        form = _clean(data)
        if form:
            kwargs["data"] = form
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
        async with self._session.request(method.upper(), self.rewrite(uri), **kwargs) as response:
            text = await response.text()
            return Response(response.status, text, response.headers)

    def log_request(self, kwargs: dict[str, Any]) -> None:
        """Never log: the query string and form carry phone numbers and message bodies."""

    def log_response(self, status_code: int, response: Any) -> None:
        """Never log (see ``log_request``)."""

    async def close(self) -> None:
        await self._session.close()


def _clean(values: Mapping[str, object] | None) -> list[tuple[str, str]]:
    """Form or query pairs as strings, without None; list values repeat their key."""
    pairs: list[tuple[str, str]] = []
    for key, value in (values or {}).items():
        items = value if isinstance(value, list | tuple) else [value]
        pairs.extend((key, _text(item)) for item in items if item is not None)
    return pairs


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
