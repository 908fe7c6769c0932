"""The core path end to end: config files -> engine -> real MLLP clients -> ACKs, metrics, logs.

The channel here runs parse + validate only (the ack path). Every project sample and every
public sample gets an answer: AA, or a NAK whose ERR says why — never silence or a drop.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys

import hl7.client
import pytest

from radsched_engine import logs
from radsched_engine.cli import split_messages
from tests.e2e.harness import SAMPLES, SHARED_SAMPLES, running_engine, scrape, write_channel
from tests.mllp_client import err, msa

CHANNEL = """
listen: ${RADSCHED_MLLP_LISTEN}
accept: [SIU^S12, SIU^S13, SIU^S14, SIU^S15, SIU^S17, SIU^S26, ORM^O01]
pipeline:
  - parse
  - validate
"""

# What parse + validate alone answer for the project's samples (persistence adds 204 etc.).
EXPECTED = {
    "malformed/no_msh.hl7": ("AR", "100"),
    "malformed/siu_missing_sch.hl7": ("AE", "100"),
    "malformed/siu_no_appointment_ids.hl7": ("AE", "101"),
    "malformed/siu_bad_start_time.hl7": ("AE", "102"),
    "malformed/adt_wrong_type.hl7": ("AR", "200"),
    "malformed/siu_s23_unsupported_trigger.hl7": ("AR", "201"),
    "malformed/siu_bad_version.hl7": ("AR", "203"),
    "malformed/siu_missing_control_id.hl7": ("AE", "101"),
    "malformed/siu_missing_pid3.hl7": ("AE", "101"),
    "siu_s12_enhanced_ack_xr.hl7": ("CA", None),
}


ANSWERS = ("AA", "AE", "AR", "CA", "CE", "CR")


def send_with_python_hl7(port: int, messages: list[bytes]) -> list[bytes]:
    """python-hl7's own blocking MLLP client, as a sending system would use it."""
    replies = []
    with hl7.client.MLLPClient("127.0.0.1", port) as client:
        for message in messages:
            replies.append(client.send_message(message))
    return [r.strip(b"\x0b\x1c\r") + b"\r" for r in replies]


def err_code(reply: bytes) -> str | None:
    fields = err(reply)
    if fields is None:
        return None
    if len(fields) > 3 and fields[3]:
        return fields[3].split("^")[0]
    return fields[1].split("^")[3].split("&")[0]     # ERR-1 (v2.3/2.4 senders)


@pytest.fixture
def channels_dir(tmp_path):
    write_channel(tmp_path / "channels", "scheduling", CHANNEL)
    return tmp_path / "channels"


async def test_project_samples_get_the_documented_answers(channels_dir, tmp_path):
    async with running_engine(channels_dir, tmp_path / "data") as engine:
        port = engine.servers[0].port
        files = sorted(SAMPLES.rglob("*.hl7"))
        assert len(files) >= 20
        messages = [split_messages(f.read_bytes())[0] for f in files]
        replies = await asyncio.to_thread(send_with_python_hl7, port, messages)
        for path, message, reply in zip(files, messages, replies, strict=True):
            name = str(path.relative_to(SAMPLES))
            code, error = EXPECTED.get(name, ("AA", None))
            fields = msa(reply)
            assert fields[1] == code, (name, reply)
            assert err_code(reply) == error, (name, reply)
            control_id = message.split(b"\r")[0].split(b"|")[9].decode() if message.startswith(b"MSH") else ""
            assert fields[2] == control_id, name


@pytest.mark.skipif(not SHARED_SAMPLES.is_dir(), reason="../shared/hl7-samples is not present")
async def test_every_public_sample_gets_an_answer(channels_dir, tmp_path):
    async with running_engine(channels_dir, tmp_path / "data") as engine:
        port = engine.servers[0].port
        files = sorted(SHARED_SAMPLES.glob("*.hl7"))
        assert files
        for path in files:
            raw = path.read_bytes().replace(b"\x0b", b"").replace(b"\x1c", b"")
            # Each file travels as one frame, as it was stored (batches and multi-message files too).
            [reply] = await asyncio.to_thread(send_with_python_hl7, port, [raw])
            text = reply.decode("latin-1")
            if text.startswith("BHS"):
                # An ACK batch: one ACK per message, except messages that asked for none (MSH-15/16 NE).
                codes = [ln.split("|")[1] for ln in text.split("\r") if ln.startswith("MSA")]
                wanted = raw.count(b"MSH|") - raw.count(b"|NE|NE|")
                assert len(codes) == wanted and all(c in ANSWERS for c in codes), path.name
                assert f"BTS|{len(codes)}" in text
                continue
            assert "MSA" in text, path.name
            code = msa(reply)[1]
            assert code in ANSWERS, (path.name, text)        # CA/CE/CR: the file asked for enhanced mode
            if code not in ("AA", "CA"):
                assert err_code(reply), f"{path.name}: NAK without an ERR code: {text!r}"


async def test_metrics_health_and_logs(channels_dir, tmp_path):
    buffer = io.StringIO()
    logs.configure("json", "info", stream=buffer)
    try:
        async with running_engine(channels_dir, tmp_path / "data") as engine:
            port = engine.servers[0].port
            good = split_messages((SAMPLES / "siu_s12_new_ct.hl7").read_bytes())[0]
            bad = split_messages((SAMPLES / "malformed/adt_wrong_type.hl7").read_bytes())[0]
            await asyncio.to_thread(send_with_python_hl7, port, [good, bad])
            status, body = await scrape(engine.http.port)
            assert status == 200
            assert 'radsched_messages_total{ack="AA",channel="scheduling",type="SIU^S12"}' in body
            assert 'radsched_messages_total{ack="AR",channel="scheduling",type="ADT^A01"}' in body
            assert "radsched_ack_latency_seconds_bucket" in body
            assert 'radsched_stage_duration_seconds_count{channel="scheduling",stage="validate"}' in body
            assert "TESTPATIENT" not in body and "MRN100200300" not in body
            assert (await scrape(engine.http.port, "/healthz"))[0] == 200
            status, ready = await scrape(engine.http.port, "/readyz")
            assert status == 200 and json.loads(ready)["ready"] is True
        logs.flush()
        lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
        messages = [line for line in lines if line["event"] == "message"]
        assert [m["ack"] for m in messages[-2:]] == ["AA", "AR"]
        assert messages[-1]["code"] == 200 and messages[-2]["control_id"] == "RS-0001"
        text = buffer.getvalue()
        for phi in ("TESTPATIENT", "MRN100200300", "5550199", "19800415", "Example St"):
            assert phi not in text
    finally:
        logs.configure("json", "info")


async def test_radsched_engine_send_cli_prints_acks(channels_dir, tmp_path):
    async with running_engine(channels_dir, tmp_path / "data") as engine:
        port = engine.servers[0].port
        files = [SAMPLES / "siu_s12_new_ct.hl7", SAMPLES / "malformed/siu_missing_pid3.hl7"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "radsched_engine.cli", "send", f"127.0.0.1:{port}", *map(str, files),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, _ = await proc.communicate()
        text = out.decode()
        assert "MSA|AA|RS-0001" in text
        assert "MSA|AE|RS-0907" in text and "101^Required field missing^HL70357" in text
        assert proc.returncode == 2          # a NAK was among the answers


async def test_python_hl7_mllp_send_command_line(channels_dir, tmp_path):
    async with running_engine(channels_dir, tmp_path / "data") as engine:
        port = engine.servers[0].port
        mllp_send = [sys.executable, "-c",
                     "import sys; from hl7.client import mllp_send; sys.exit(mllp_send())"]
        proc = await asyncio.create_subprocess_exec(
            *mllp_send, "--loose", "--file", str(SAMPLES / "siu_s12_new_mri.hl7"), "-p", str(port),
            "127.0.0.1", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, errs = await proc.communicate()
        assert proc.returncode == 0, errs
        assert "MSA|AA|RS-0005" in out.decode().replace("\r", "\n")
