"""structlog set-up: JSON or console lines, and the processor that keeps PHI out of every line."""

from __future__ import annotations

import atexit
import json
import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog

# Keys whose values are patient data by definition: always replaced, whatever they hold.
PHI_KEYS = frozenset({
    "patient", "patient_id", "patient_name", "patient_phone", "name", "family_name",
    "given_name", "mrn", "phone", "phones", "to", "birth_date", "dob", "address", "body",
    "raw", "payload", "message_text", "segment", "value", "email", "sms_body",
})
# Keys that are known not to carry PHI and are too hot to scan on every line.
SAFE_KEYS = frozenset({
    "event", "level", "timestamp", "logger", "channel", "control_id", "type", "ack", "outcome",
    "ms", "peer", "stage", "code", "location", "journal_id", "listen", "count", "bytes",
    "reason", "severity", "rule", "kind", "attempt", "status", "version", "path",
})
_HL7_SEGMENT = re.compile(r"(?:^|[\r\n])?(?:MSH|PID|NK1|PV1|SCH|AIS|AIL|AIP|AIG|ORC|OBR|NTE|IN1|GT1)"
                          r"[|#][^\r\n]*")
_PHONE = re.compile(r"\+?\(?\d{3}\)?[\s.\-]?\d{3}[\s.\-]?\d{4}\b|\+\d{8,15}\b")
_DATE = re.compile(r"\b(?:19|20)\d{2}[-/]?(?:0[1-9]|1[0-2])[-/]?(?:0[1-9]|[12]\d|3[01])\b")
_LONG_NUMBER = re.compile(r"\b\d{6,}\b")
REDACTED = "[redacted]"


def scrub_text(text: str) -> str:
    """Mask what looks like HL7 content, phone numbers, dates and long identifiers in free text."""
    if not text:
        return text
    text = _HL7_SEGMENT.sub("[hl7]", text)
    text = _PHONE.sub("[phone]", text)
    text = _DATE.sub("[date]", text)
    return _LONG_NUMBER.sub("[number]", text)


def redact_phi(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: PHI keys are replaced; other free-text values are scrubbed."""
    for key, value in event.items():
        if key in SAFE_KEYS:
            continue
        if key in PHI_KEYS:
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = scrub_text(value)
        elif isinstance(value, (list, tuple)):
            event[key] = [scrub_text(v) if isinstance(v, str) else v for v in value]
    return event


def _scrub_exception(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    exc = event.get("exception")
    if isinstance(exc, str):
        event["exception"] = scrub_text(exc)
    return event


def _scrub_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """For lines from other libraries: their message text is free text, so scrub it too."""
    if isinstance(event.get("event"), str):
        event["event"] = scrub_text(event["event"])
    return event


class BufferedLogger:
    """Writes rendered lines; info and below are flushed in batches (``flush()`` on a timer),
    warnings and errors at once. The journal, not the log, is the durable record of messages.

    The per-message line (``line``) is gathered here and handed to the stream as one string per
    batch: a stream that writes through (stdout under ``PYTHONUNBUFFERED=1``, usual in
    containers) would otherwise make one ``write`` system call per message, as costly as the
    ACK's own. Any other line first hands over the gathered ones, so the order is kept.
    """

    __slots__ = ("_file", "_lines", "_pending")

    BATCH = 256

    def __init__(self, file: Any) -> None:
        self._file = file
        self._lines: list[str] = []
        self._pending = 0

    def line(self, message: str) -> None:
        """The per-message line: gathered, written with the next batch."""
        lines = self._lines
        lines.append(message)
        if len(lines) >= self.BATCH:
            self.flush()

    def msg(self, message: str) -> None:
        if self._lines:
            self._hand_over()
        self._file.write(message + "\n")
        self._pending += 1
        if self._pending >= self.BATCH:
            self.flush()

    def urgent(self, message: str) -> None:
        if self._lines:
            self._hand_over()
        self._file.write(message + "\n")
        self.flush()

    def write(self, text: str) -> None:
        """The stdlib logging handler's lines (they end in a newline), after the gathered ones."""
        if self._lines:
            self._hand_over()
        self._file.write(text)

    def _hand_over(self) -> None:
        lines, self._lines = self._lines, []
        lines.append("")
        self._file.write("\n".join(lines))

    def flush(self) -> None:
        self._pending = 0
        try:
            if self._lines:
                self._hand_over()
            self._file.flush()
        except (OSError, ValueError):
            pass

    debug = info = msg
    warning = warn = error = err = critical = exception = fatal = failure = urgent


_LOGGERS: list[BufferedLogger] = []


def flush() -> None:
    """Flush buffered log lines (the app calls this on a short timer and at shutdown)."""
    for logger in _LOGGERS:
        logger.flush()


def relay(text: str) -> None:
    """Write lines rendered elsewhere (the outbox worker process's) in order with this process's."""
    for logger in _LOGGERS:
        logger.write(text)


def settings() -> tuple[str, str]:
    """(format, level) as last configured (``json`` / ``console``; a level name)."""
    return _STATE.format, _STATE.level


atexit.register(flush)     # lines still gathered when the process ends (sys.exit, an error)


class _Factory:
    def __init__(self, file: Any) -> None:
        self.logger = BufferedLogger(file)
        _LOGGERS[:] = [self.logger]

    def __call__(self, *_args: Any) -> BufferedLogger:
        return self.logger


class MessageLog:
    """The one-line-per-message log, rendered without structlog's generic chain (the ACK hot path).

    Same shape as every other JSON line (``event``, ``level``, ``timestamp`` plus fields), same
    redaction, same destination; with the console format it simply goes through structlog.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._fallback = structlog.get_logger(name)

    def info(self, event: str, **fields: Any) -> None:
        if _STATE.fast and _STATE.info_enabled:
            self._emit("info", event, fields)
        else:
            self._fallback.info(event, **fields)

    def answered(self, channel: str, control_id: str, mtype: str, ack: str, outcome: str,
                 ms: float, peer: str) -> None:
        """``info("message", channel=..., control_id=..., type=..., ack=..., outcome=..., ms=...,
        peer=...)``, the line of every message answered without a problem, written straight.

        Byte for byte the line ``info`` writes: these keys are all ``SAFE_KEYS`` (redaction
        leaves them as they are) and the values are strings and a float, encoded as ``json``
        encodes them.
        """
        if not (_STATE.fast and _STATE.info_enabled and type(ms) is float and -1e308 < ms < 1e308):
            self.info("message", channel=channel, control_id=control_id, type=mtype, ack=ack,
                      outcome=outcome, ms=ms, peer=peer)
            return
        _STATE.logger.line(
            f'{{"channel": {_str(channel)}, "control_id": {_str(control_id)}, "type": {_str(mtype)}, '
            f'"ack": {_str(ack)}, "outcome": {_str(outcome)}, "ms": {ms!r}, '
            f'"peer": {_str(peer)}, "event": "message", "level": "info", '
            f'"timestamp": "{_iso_now()}"}}')

    def warning(self, event: str, **fields: Any) -> None:
        if _STATE.fast:
            self._emit("warning", event, fields)
        else:
            self._fallback.warning(event, **fields)

    @staticmethod
    def _emit(level: str, event: str, fields: dict[str, Any]) -> None:
        redact_phi(None, level, fields)
        fields["event"] = event
        fields["level"] = level
        fields["timestamp"] = _iso_now()
        line = _dumps(fields)
        if level == "info":
            _STATE.logger.msg(line)
        else:
            _STATE.logger.urgent(line)


class _State:
    fast = False
    info_enabled = True
    format = "json"
    level = "info"
    logger: BufferedLogger


_STATE = _State()
_dumps = json.JSONEncoder(ensure_ascii=True, separators=(", ", ": ")).encode
_str = json.encoder.encode_basestring_ascii      # how _dumps writes a string (the C encoder)
_iso_cache: list[Any] = [0.0, ""]


def _iso_now() -> str:
    """ISO-8601 UTC with microseconds, as structlog's TimeStamper writes it."""
    now = time.time()
    second = int(now)
    if _iso_cache[0] != second:
        _iso_cache[0] = second
        _iso_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_iso_cache[1]}.{int((now - second) * 1_000_000):06d}Z"


def configure(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """Configure structlog once: ``json`` (default off a terminal) or ``console`` (a terminal)."""
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer: Any
    factory = _Factory(stream)
    _STATE.fast = fmt == "json"
    _STATE.format, _STATE.level = fmt, level
    _STATE.info_enabled = getattr(logging, level.upper()) <= logging.INFO
    _STATE.logger = factory.logger
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_phi,
        structlog.processors.format_exc_info,
        _scrub_exception,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    # Libraries that log through stdlib logging (asyncpg, aiohttp, twilio) go through the same
    # redaction, at warning level and above.
    handler = logging.StreamHandler(factory.logger)   # through the same buffer, in order
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=renderer,
        foreign_pre_chain=[structlog.processors.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True), redact_phi,
                           _scrub_event, structlog.processors.format_exc_info, _scrub_exception],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
