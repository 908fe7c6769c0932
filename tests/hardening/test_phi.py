"""No PHI in logs, metrics or error text, over the whole sample corpus.

Every message of the public corpus and of ``sample_messages/`` is sent, as is and in variants
built to provoke error texts right next to patient data (a bad birth date, a control byte in the
patient id, a broken phone field), to a real engine process: debug-level JSON log, the durable
channel (parse → notify, real PostgreSQL), the outbox sending texts through the twilio SDK to
the local fake Twilio (which fails some with Twilio's own messages, which quote the number) and
the Claude review to the local fake Messages API. Then the names, ids/MRNs, phone numbers and
birth dates of those messages are searched for in the log, in ``/metrics`` and in every ACK's
texts (MSA-3, ERR-7/ERR-8).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import asyncpg

from radsched_engine.cli import split_messages
from tests.e2e.harness import write_channel
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_twilio import FakeTwilio
from tests.mllp_client import AsyncMllpClient

from .corpus import PROJECT, reply_due, shared_files

CHANNEL = """
listen: 127.0.0.1:{port}
accept: [SIU^S12, SIU^S13, SIU^S14, SIU^S15, SIU^S17, SIU^S26, ORM^O01, OMI^O23]
timezone: America/New_York
ack: {{mode: original, multi_message: process}}
pipeline:
  - parse
  - validate
  - conflict_check
  - persist
  - notify:
      skip_past: false
"""
ENGINE = """
channels_dir: {channels}
data_dir: {data}
metrics_listen: 127.0.0.1:{metrics}
database: {{url: "{url}"}}
log: {{format: json, level: debug}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fields(line: str, fs: str) -> list[str]:
    parts = line.split(fs)
    return ["MSH", fs, *parts[1:]] if parts[0] == "MSH" else parts


def _splitter(f: list[str], comp: str, rep: str):
    def values(n: int) -> list[list[str]]:
        """Field ``n``: its repetitions, each as its components."""
        return [r.split(comp) for r in f[n].split(rep)] if n < len(f) and f[n] else []
    return values


def phi_of(message: bytes) -> set[str]:
    """Names, ids, phone numbers and birth dates of the patient (PID) and next of kin (NK1)."""
    text = message.decode("latin-1")
    if not text.startswith("MSH") or len(text) < 8:
        return set()
    fs, comp, rep = text[3], text[4], text[5]
    found: set[str] = set()
    for line in re.split(r"[\r\n]+", text):
        seg = line[:3]
        if seg not in ("PID", "NK1"):
            continue
        f = _fields(line, fs)
        values = _splitter(f, comp, rep)
        ids = (2, 3, 4, 19) if seg == "PID" else (33,)
        names = (5, 6, 9) if seg == "PID" else (2,)
        phones = (13, 14) if seg == "PID" else (5, 6)
        for n in ids:                   # short numbers are everywhere (ids of rows, byte counts)
            found |= {v[0] for v in values(n) if len(v[0]) >= (5 if v[0].isdigit() else 4)}
        for n in names:
            found |= {c for v in values(n) for c in v[:2] if len(c) >= 3 and not c.isdigit()}
        for n in phones:
            for v in values(n):
                digits = "".join(ch for ch in "".join(v[5:7]) if ch.isdigit()) or \
                    "".join(ch for ch in v[0] if ch.isdigit())
                if len(digits) >= 7:
                    found |= {digits, digits[-7:]}
        if seg == "PID" and len(f) > 7 and len(f[7]) >= 8 and f[7][:8].isdigit():
            dob = f[7][:8]
            found |= {dob, f"{dob[:4]}-{dob[4:6]}-{dob[6:8]}"}
    return {t.strip() for t in found if t.strip()}


def variants(message: bytes) -> list[bytes]:
    """The message, and copies with errors next to the patient data (when it has a PID)."""
    out = [message]
    lines = message.split(b"\r")
    for i, line in enumerate(lines):
        if not line.startswith(b"PID") or len(line) < 4:
            continue
        fs = line[3:4]
        f = line.split(fs)
        f += [b""] * (14 - len(f))
        for n, bad in ((7, f[7] + b"99X"), (3, f[3] + b"\x07"), (13, f[13] + b"^^^^^(((")):
            g = list(f)
            g[n] = bad
            out.append(b"\r".join([*lines[:i], fs.join(g), *lines[i + 1:]]))
        break
    return out


def search(text: str, tokens: set[str]) -> list[str]:
    hits = []
    for token in tokens:              # whole tokens: not a part of a word or of a decimal number
        pattern = r"(?<![0-9A-Za-z.])" + re.escape(token) + r"(?![0-9A-Za-z]|\.[0-9])"
        if re.search(pattern, text, re.IGNORECASE if not token[0].isdigit() else 0):
            hits.append(token)
    return sorted(hits)


def ack_texts(reply: bytes) -> str:
    """The free-text parts of an ACK: MSA-3 and ERR-7/ERR-8 (ERR-1 names locations only)."""
    out = []
    for line in reply.decode("latin-1").split("\r"):
        if len(line) < 4:
            continue
        f = line.split(line[3])
        if line.startswith("MSA"):
            out += f[3:4]
        elif line.startswith("ERR"):
            out += f[7:9]
    return "\n".join(out)


async def test_no_patient_data_in_logs_metrics_or_error_texts(tmp_path: Path, db_url: str) -> None:
    messages: list[bytes] = []
    tokens: set[str] = set()
    for path in [*shared_files(), *sorted(PROJECT.rglob("*.hl7"))]:
        for raw in split_messages(path.read_bytes()):
            messages += variants(raw)
            tokens |= phi_of(raw)
    assert len(tokens) > 40, tokens              # the corpus does carry patient data
    some_phone = next(t for t in sorted(tokens) if t.isdigit() and len(t) >= 10)

    twilio, claude = FakeTwilio(), FakeAnthropic()
    twilio.start()
    claude.start()
    # Twilio's own error texts quote the number; the engine must not copy them into its log.
    for _ in range(3):
        twilio.force(400, 21211, message=f"The 'To' number +1{some_phone[-10:]} is not a valid "
                                         "phone number.")
    twilio.force(500, 20500, message=f"internal error sending to +1{some_phone[-10:]}")
    claude.reply(500, {"type": "error", "error": {"type": "api_error", "message": "overloaded"}})
    port, metrics = free_port(), free_port()
    channels = tmp_path / "channels"
    write_channel(channels, "scheduling", CHANNEL.format(port=port))
    config = tmp_path / "engine.yaml"
    config.write_text(ENGINE.format(channels=channels, data=tmp_path / "data", metrics=metrics,
                                    url=db_url))
    env = {**os.environ, **twilio.env(), **claude.env(), "RADSCHED_SMS_RATE": "1000",
           "RADSCHED_OUTBOX_POLL_SECONDS": "0.05", "RADSCHED_AI_MAX_ATTEMPTS": "2"}
    log = tmp_path / "engine.log"
    replies: list[bytes] = []
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "radsched_engine.cli", "run", "--config",
                                 str(config)], cwd=tmp_path, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            await until_listening(port, proc, log)
            client = await AsyncMllpClient.connect("127.0.0.1", port)
            try:
                for message in messages:
                    await client.send_raw(b"\x0b" + message + b"\x1c\r")
                    if reply_due(message):
                        reply = await client.read_reply(timeout=30)
                        assert reply is not None
                        replies.append(reply)
            finally:
                await client.close()
            await outbox_settled(db_url)
            body = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10)
                .read().decode())
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            twilio.close()
            claude.close()

    assert twilio.sent, "no text reached the fake Twilio: the outbox path was not exercised"
    text = log.read_text(errors="replace")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line.get("level") == "debug" for line in lines)
    assert any(line.get("event") == "message" for line in lines)
    # Ephemeral ports and timestamps are numbers too; they are not patient data.
    for line in lines:
        line.pop("peer", None)
        line.pop("timestamp", None)
    log_text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    assert not search(log_text, tokens), search(log_text, tokens)
    # Metric names and labels only: the sample values are counts and seconds.
    labels = "\n".join(ln.rsplit(" ", 1)[0] for ln in body.splitlines() if ln and ln[0] != "#")
    assert "radsched_messages_total" in labels
    assert not search(labels, tokens), search(labels, tokens)
    errors = "\n".join(ack_texts(r) for r in replies)
    assert errors.strip()                               # NAKs with texts were produced
    assert not search(errors, tokens), search(errors, tokens)


async def until_listening(port: int, proc: subprocess.Popen, log: Path) -> None:
    async with asyncio.timeout(60):
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return


async def outbox_settled(url: str) -> None:
    """Wait until no outbox row is still due now (texts sent, failed for good, or backing off)."""
    conn = await asyncpg.connect(url)
    try:
        async with asyncio.timeout(60):
            while await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE status IN ('pending', 'retry', 'sending') "
                    "AND next_attempt_at <= now()"):
                await asyncio.sleep(0.1)
    finally:
        await conn.close()
