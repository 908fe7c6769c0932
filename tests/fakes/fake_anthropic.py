"""A fake of Anthropic's ``POST /v1/messages`` on 127.0.0.1: scripted answers, recorded request bodies.

With an empty script it answers 200 with a well-formed ``tool_use`` message calling the tool the
request forced (``tool_choice``), with ``default_input`` as the tool input. ``reply()`` queues the
next answers: a status, a JSON body (or raw text), extra headers and a delay. Error answers get
``retry-after-ms: 1`` unless the test sets headers, so SDK retries do not slow the suite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from ._server import FakeServer

API_KEY = "test-anthropic-key"
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}


def error_body(status: int, message: str = "forced by the test") -> dict[str, Any]:
    """Anthropic's error envelope for ``status``."""
    return {"type": "error", "request_id": "req_fake",
            "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def message_body(content: list[dict[str, Any]], *, stop_reason: str = "end_turn",
                 model: str = "claude-fake") -> dict[str, Any]:
    return {"id": "msg_fake_01", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": 120, "output_tokens": 45}}


def tool_use_body(tool_input: Any, tool_name: str = "report_findings", *,
                  text: str | None = "Checked the schedule.") -> dict[str, Any]:
    """A complete answer calling ``tool_name`` with ``tool_input`` (any JSON, valid or not)."""
    content = [{"type": "text", "text": text}] if text else []
    content.append({"type": "tool_use", "id": "toolu_fake_01", "name": tool_name,
                    "input": tool_input})
    return message_body(content, stop_reason="tool_use")


def text_body(text: str) -> dict[str, Any]:
    """A text-only answer (no tool call)."""
    return message_body([{"type": "text", "text": text}])


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: Any = None                 # JSON-able; None → the default tool_use answer (or error body)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: str | None = None           # send this text as the body instead


@dataclass(slots=True)
class Request:
    path: str
    headers: dict[str, str]
    body: Any                        # the decoded JSON body
    raw: bytes


class FakeAnthropic(FakeServer):
    """One fake: ``requests`` (path, headers, body of each), ``script``, ``default_input``."""

    def __init__(self) -> None:
        super().__init__()
        self.script: list[Reply] = []
        self.requests: list[Request] = []
        self.default_input: Any = {"findings": []}
        self.handler = _Handler

    def env(self) -> dict[str, str]:
        """Environment variables that point ``ClaudeSettings.from_env`` at this fake."""
        return {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": self.base_url}

    def reply(self, status: int = 200, body: Any = None, *, headers: dict[str, str] | None = None,
              delay: float = 0.0, raw: str | None = None, times: int = 1) -> None:
        """Queue ``times`` identical answers."""
        if headers is None:
            headers = {} if status < 400 else {"retry-after-ms": "1"}
        with self.lock:
            self.script.extend([Reply(status, body, headers, delay, raw)] * times)

    @property
    def bodies(self) -> list[Any]:
        return [r.body for r in self.requests]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeAnthropic

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        fake = self.server_fake
        length = int(self.headers.get("Content-Length", 0) or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        with fake.lock:
            fake.requests.append(Request(self.path, dict(self.headers), body, raw))
            reply = fake.script.pop(0) if fake.script else Reply()
        fake.stall(reply.delay)
        if self.path.split("?")[0] != "/v1/messages":
            status, payload, raw_text = 404, error_body(404, "no such endpoint"), None
        else:
            status, payload, raw_text = reply.status, reply.body, reply.raw
            if payload is None and raw_text is None:
                payload = self._default(body) if status < 400 else error_body(status)
        data = (raw_text if raw_text is not None else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("request-id", "req_fake")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass          # the client gave up (timeout tests)

    def _default(self, request: Any) -> dict[str, Any]:
        name = "report_findings"
        if isinstance(request, dict):
            choice = request.get("tool_choice") or {}
            tools = request.get("tools") or [{}]
            name = choice.get("name") or tools[0].get("name") or name
        return tool_use_body(self.server_fake.default_input, name)
