"""The per-message log line: the direct rendering writes what the generic path writes."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from radsched_engine import logs


@pytest.fixture
def stream():
    buffer = io.StringIO()
    logs.configure("json", "info", stream=buffer)
    yield buffer
    logs.configure("json", "info")


def _lines(buffer: io.StringIO) -> list[str]:
    logs.flush()
    return buffer.getvalue().splitlines()


@pytest.mark.parametrize(("control_id", "ms"), [
    ("CID-1", 0.123), ("", 0.0), ('quo"te\\back', 12.5), ("caf\u00e9 \u2603", 1e-05),
    ("x" * 300, 1234567.891),
])
def test_answered_line_is_the_info_line(stream: io.StringIO, control_id: str, ms: float) -> None:
    log = logs.MessageLog("test.channel")
    log.info("message", channel="sched", control_id=control_id, type="SIU^S12", ack="AA",
             outcome="accepted", ms=ms, peer="127.0.0.1:5000")
    log.answered("sched", control_id, "SIU^S12", "AA", "accepted", ms, "127.0.0.1:5000")
    generic, direct = _lines(stream)
    a, b = json.loads(generic), json.loads(direct)
    a.pop("timestamp"), b.pop("timestamp")
    assert a == b
    # Byte for byte apart from the timestamp's value.
    assert generic.rsplit('"timestamp": ', 1)[0] == direct.rsplit('"timestamp": ', 1)[0]
    assert direct.rsplit('"timestamp": ', 1)[1].endswith('Z"}')


def test_answered_with_info_off_writes_nothing() -> None:
    buffer = io.StringIO()
    logs.configure("json", "warning", stream=buffer)
    try:
        logs.MessageLog("test.channel").answered("sched", "C1", "SIU^S12", "AA", "accepted",
                                                 0.5, "127.0.0.1:1")
        assert _lines(buffer) == []
    finally:
        logs.configure("json", "info")


def test_answered_in_console_format_goes_through_structlog() -> None:
    buffer = io.StringIO()
    logs.configure("console", "info", stream=buffer)
    try:
        logs.MessageLog("test.channel").answered("sched", "C1", "SIU^S12", "AA", "accepted",
                                                 0.5, "127.0.0.1:1")
        text = "\n".join(_lines(buffer))
        assert "message" in text and "control_id=C1" in text and "ack=AA" in text
    finally:
        logs.configure("json", "info")


class _CountingStream(io.StringIO):
    """A stream that writes through: counts the ``write`` calls it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_message_lines_reach_the_stream_in_batches_and_other_lines_keep_their_order() -> None:
    stream = _CountingStream()
    logs.configure("json", "info", stream=stream)
    try:
        log = logs.MessageLog("test.channel")
        for i in range(300):
            log.answered("sched", f"C{i}", "SIU^S12", "AA", "accepted", 0.1, "127.0.0.1:1")
        assert stream.writes == 1                     # 256 lines in one write; 44 still held
        logging.getLogger("asyncpg").warning("library warning")
        lines = stream.getvalue().splitlines()
        assert len(lines) == 301 and stream.writes == 3
        assert json.loads(lines[299])["control_id"] == "C299"
        assert json.loads(lines[300])["event"] == "library warning"
        log.answered("sched", "HELD", "SIU^S12", "AA", "accepted", 0.1, "127.0.0.1:1")
        structlog.get_logger("test").info("engine_started")     # any other line: written at once
        tail = [json.loads(line) for line in stream.getvalue().splitlines()[-2:]]
        assert [t.get("control_id", t["event"]) for t in tail] == ["HELD", "engine_started"]
        log.answered("sched", "LAST", "SIU^S12", "AA", "accepted", 0.1, "127.0.0.1:1")
        logs.flush()
        assert json.loads(stream.getvalue().splitlines()[-1])["control_id"] == "LAST"
    finally:
        logs.configure("json", "info")
