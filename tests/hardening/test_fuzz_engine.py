"""Fuzzing a running engine over real sockets: random, mutated and truncated streams and frames.

Invariant, for any bytes a peer sends: every complete frame gets exactly one well-formed answer
(ACK/NAK, or an ACK batch), in order, or the connection is closed within its bound (an oversize
frame: a NAK then close; a frame that never ends: closed by ``frame_timeout``); no exception
escapes into the event loop from a connection; per-connection buffers stay within the limits.
The expected frames are those the sans-I/O decoder (``tests/mllp/test_framing.py`` proves it)
finds in the same bytes. Unit-level parser/decoder properties live in ``tests/hl7`` and
``tests/mllp``; these go through the listener, the channel and the pipeline.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radsched_engine.mllp.framing import FrameDecoder, Oversize, encode
from tests.e2e.harness import write_channel
from tests.mllp_client import AsyncMllpClient

from .corpus import SHARED_MISSING, check_reply, corpus, msa_fields, mutate, reply_due, shared_files
from .live import LiveEngine

MAX_FRAME = 8192
FRAME_TIMEOUT = 0.5
CHANNEL = f"""
listen: ${{RADSCHED_MLLP_LISTEN}}
accept: [SIU^S12, SIU^S13, SIU^S14, SIU^S15, SIU^S17, SIU^S26, ORM^O01, OMI^O23]
ack: {{mode: original}}
limits: {{max_frame_bytes: {MAX_FRAME}, frame_timeout: {FRAME_TIMEOUT}, idle_timeout: 30,
          max_connections: 50, write_timeout: 5}}
pipeline:
  - parse
  - validate
"""
CORPUS = corpus()
PROBE_ID = "PROBE-0001"
PROBE = (f"MSH|^~\\&|FUZZ|HOSP|RADS|RAD|20250101120000||SIU^S12|{PROBE_ID}|P|2.5\r"
         "SCH|PA1|PF1\rPID|1||PROBE\r").encode()
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEngine]:
    base: Path = tmp_path_factory.mktemp("fuzz")
    write_channel(base / "channels", "fuzz", CHANNEL)
    with LiveEngine(base / "channels", base / "data") as engine:
        yield engine


# -- stream pieces -----------------------------------------------------------------------------
samples = st.sampled_from(CORPUS)
seeds = st.integers(0, 2**32 - 1)
valid_frame = samples.map(encode)
mutated_frame = st.builds(lambda raw, seed, n: encode(mutate(raw, random.Random(seed), n)),
                          samples, seeds, st.integers(1, 12))
truncated_frame = st.builds(lambda raw, frac: encode(raw[:int(len(raw) * frac)]),
                            samples, st.floats(0, 1))
open_frame = st.builds(lambda raw, frac: b"\x0b" + raw[:int(len(raw) * frac)],
                       samples, st.floats(0, 1))           # no end block: abandoned by the next
garbage = st.binary(max_size=400)
framing_bytes = st.lists(st.sampled_from([b"\x0b", b"\x1c", b"\r", b"\n", b"\x1c\r", b"\x00"]),
                         max_size=6).map(b"".join)
random_frame = st.binary(max_size=300).map(lambda b: encode(b.replace(b"\x0b", b"").replace(b"\x1c", b"")))
oversize_frame = st.builds(lambda raw, extra: encode(raw + b"\rNTE|1||" + b"x" * (MAX_FRAME + extra)),
                           samples, st.integers(0, 3000))
piece = st.one_of(valid_frame, mutated_frame, truncated_frame, open_frame, garbage, framing_bytes,
                  random_frame)


def expected(stream: bytes) -> tuple[list[bytes], bool]:
    """The frames the engine will see in ``stream``, and whether one of them is oversize."""
    decoder = FrameDecoder(MAX_FRAME)
    frames: list[bytes] = []
    for event in decoder.feed(stream):
        if isinstance(event, bytes):
            frames.append(event)
        elif isinstance(event, Oversize):
            return frames, True
    return frames, False


async def exchange(port: int, chunks: list[bytes], probe: bool) -> tuple[list[bytes], bool]:
    """Send the chunks (then the probe frame), read answers until the probe's or the close."""
    client = await AsyncMllpClient.connect("127.0.0.1", port)
    replies: list[bytes] = []
    closed = False
    try:
        try:
            for chunk in chunks:
                await client.send_raw(chunk)
            if probe:
                await client.send_raw(encode(PROBE))
        except (ConnectionError, OSError):
            pass                                       # closed under us: read what came back
        while True:
            try:
                reply = await client.read_reply(timeout=FRAME_TIMEOUT * 4 + 10)
            except (ConnectionError, OSError):
                reply = None
            if reply is None:
                closed = True
                break
            replies.append(reply)
            if probe and msa_fields(reply)[2] == PROBE_ID:
                break
    finally:
        await client.close()
    return replies, closed


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(points)] or [b""]


def assert_answers(frames: list[bytes], oversize: bool, replies: list[bytes], closed: bool) -> None:
    due = [f for f in frames if reply_due(f)]
    for reply in replies:
        check_reply(reply)
    if oversize:
        # Frames before it are answered in order (those still queued may be dropped with the
        # connection: they were never acknowledged, so the sender resends them), then the NAK.
        assert closed, "the connection stays open after an oversize frame"
        assert replies and b"max_frame_bytes" in replies[-1], replies[-1:]
        assert len(replies) - 1 <= len(due)
        return
    assert not closed, f"closed after {len(replies)} of {len(due) + 1} answers"
    assert len(replies) == len(due) + 1, (len(replies), len(due))
    assert msa_fields(replies[-1])[1:3] == ["AA", PROBE_ID]


@SETTINGS
@given(st.lists(piece, min_size=1, max_size=10), st.lists(st.integers(0, 10**6), max_size=12))
def test_any_stream_gets_an_answer_per_frame_and_the_connection_survives(live, pieces, cuts):
    stream = b"".join(pieces)
    frames, oversize = expected(stream + encode(PROBE))
    replies, closed = live.call(exchange, live.port, split(stream, cuts), not oversize)
    assert_answers(frames[:-1] if not oversize else frames, oversize, replies, closed)
    live.check_healthy()


@settings(SETTINGS, max_examples=25)
@given(st.lists(piece, max_size=4), oversize_frame, st.lists(piece, max_size=3),
       st.lists(st.integers(0, 10**6), max_size=12))
def test_oversize_frame_is_refused_and_closed_whatever_came_before(live, before, big, after, cuts):
    stream = b"".join([*before, big, *after])
    frames, oversize = expected(stream)
    assert oversize
    replies, closed = live.call(exchange, live.port, split(stream, cuts), False)
    assert_answers(frames, True, replies, closed)
    live.check_healthy()


@settings(SETTINGS, max_examples=6)
@given(st.lists(st.one_of(valid_frame, mutated_frame), max_size=3), open_frame)
def test_frame_with_no_end_is_closed_by_frame_timeout(live, complete, stalled):
    """The sender stops in the middle of a frame: its complete frames are answered, then the
    listener closes the connection (``frame_timeout``) instead of waiting forever."""
    stream = b"".join([*complete, stalled])
    frames, _ = expected(stream)
    replies, closed = live.call(exchange, live.port, [stream], False)
    assert closed
    assert len(replies) == len([f for f in frames if reply_due(f)])
    for reply in replies:
        check_reply(reply)
    live.check_healthy()


async def one_by_one(port: int, messages: list[bytes]) -> list[bytes | None]:
    """Each message as its own frame on one connection, waiting for each answer (or none)."""
    client = await AsyncMllpClient.connect("127.0.0.1", port)
    out: list[bytes | None] = []
    try:
        for message in messages:
            await client.send_raw(encode(message))
            if reply_due(message):
                out.append(await client.read_reply())
            else:
                out.append(None)
        out.append(await client.request(PROBE))
    finally:
        await client.close()
    return out


def test_every_public_sample_mutated_and_truncated_gets_an_answer(live):
    """Every file of the corpus, 12 seeded mutations and 4 truncations each, one frame apiece."""
    files = shared_files()
    if not files:
        pytest.skip(SHARED_MISSING)
    rng = random.Random(20250601)
    for path in files:
        raw = path.read_bytes().replace(b"\x0b", b"").replace(b"\x1c", b"")
        messages = [mutate(raw, rng, rng.randint(1, 10)) for _ in range(12)]
        messages += [raw[:rng.randrange(len(raw) + 1)] for _ in range(4)]
        replies = live.call(one_by_one, live.port, messages)
        for message, reply in zip(messages, replies, strict=False):
            if reply_due(message):
                assert reply is not None, (path.name, message[:120])
                check_reply(reply)
        assert msa_fields(replies[-1])[1:3] == ["AA", PROBE_ID], path.name
    live.check_healthy()


def test_non_ascii_bytes_in_msh_fields_are_echoed_verbatim(live):
    """MSA-2 repeats MSH-10 byte for byte, and the MSH fields echoed in the ACK keep their bytes,
    whatever they are (latin-1, UTF-8, invalid UTF-8): the answer must still be sent."""
    ids = [b"\xe91", "é2".encode(), b"\xff\xfe3", b"\xc3\x284", "漢5".encode()]
    messages = [b"MSH|^~\\&|RIS\xe9|H\xc3\xb4P|RADS|RAD|20250101120000||SIU^S12|" + cid +
                b"|P|2.5\rSCH|A1|F1\rPID|1||M1\r" for cid in ids]
    replies = live.call(one_by_one, live.port, messages)
    for cid, reply in zip(ids, replies, strict=False):
        assert reply is not None
        check_reply(reply)
        assert reply.split(b"\rMSA|")[1].split(b"|")[1].split(b"\r")[0] == cid
        assert b"|RIS\xe9|H\xc3\xb4P|" in reply
    live.check_healthy()


def test_pipelined_garbage_never_outruns_the_queue_bound(live):
    """Thousands of tiny frames in one write: answered in order, queue and buffers bounded."""
    async def flood(port: int) -> int:
        client = await AsyncMllpClient.connect("127.0.0.1", port)
        try:
            await client.send_raw(b"\x0b\x1c\r" * 3000 + encode(PROBE))
            count = 0
            while True:
                reply = await client.read_reply(timeout=30)
                assert reply is not None
                count += 1
                if msa_fields(reply)[2] == PROBE_ID:
                    return count
        finally:
            await client.close()

    assert live.call(flood, live.port) == 3001
    live.check_healthy()
