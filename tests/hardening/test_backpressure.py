"""Back-pressure is the engine's doing, not the sender's: a pipelining sender behind a slow
pipeline must not be timed out while the listener itself has stopped reading.

The listener stops reading a connection when more than ``max_queued_frames`` complete frames wait
(so memory stays bounded). A frame that was half read at that moment cannot progress until
reading resumes; ``frame_timeout`` is meant for slow *senders* and must not count that time.
"""

from __future__ import annotations

import asyncio

from radsched_engine.channel import Channel
from radsched_engine.mllp.framing import encode
from radsched_engine.mllp.server import Limits, MllpServer
from radsched_engine.pipeline import Pipeline, StageSpec
from tests.mllp_client import AsyncMllpClient, msa, siu


class Slow:
    """A real stage that takes its time, like a pipeline waiting on a busy database."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __call__(self, ex) -> None:
        await asyncio.sleep(self.seconds)


async def test_pipelined_sender_behind_a_slow_pipeline_is_not_timed_out():
    spec = StageSpec("slow", "test stage", object, lambda o, r: Slow(0.1))
    channel = Channel("bp", Pipeline("bp", [(spec, Slow(0.1))]))
    limits = Limits(frame_timeout=0.5, idle_timeout=30, max_queued_frames=8)
    server = MllpServer("bp", "127.0.0.1", 0, channel, limits)
    await server.start()
    try:
        client = await AsyncMllpClient.connect("127.0.0.1", server.port)
        stream = b"".join(encode(siu(str(i))) for i in range(20))
        cut = stream.index(b"\x0b", len(b"".join(encode(siu(str(i))) for i in range(12)))) + 20
        # 12 frames and the start of the 13th in one segment: the listener queues 12 (> 8) and
        # stops reading with the 13th half read; working off the queue takes ~1.2 s (> 0.5 s).
        await client.send_raw(stream[:cut])
        await asyncio.sleep(0.05)
        await client.send_raw(stream[cut:])
        ids = []
        for _ in range(20):
            reply = await client.read_reply(timeout=15)
            assert reply is not None, f"closed after {len(ids)} answers"
            ids.append(msa(reply)[2])
        assert ids == [str(i) for i in range(20)]
        await client.close()
    finally:
        await server.drain(1)


async def test_sender_that_stalls_mid_frame_is_still_timed_out_after_reading_resumes():
    spec = StageSpec("slow", "test stage", object, lambda o, r: Slow(0.05))
    channel = Channel("bp", Pipeline("bp", [(spec, Slow(0.05))]))
    server = MllpServer("bp", "127.0.0.1", 0, channel, Limits(frame_timeout=0.5, idle_timeout=30))
    await server.start()
    try:
        client = await AsyncMllpClient.connect("127.0.0.1", server.port)
        stream = b"".join(encode(siu(str(i))) for i in range(12)) + b"\x0bMSH|^~\\&|never|ends"
        await client.send_raw(stream)
        for i in range(12):
            assert msa(await client.read_reply(timeout=10))[2] == str(i)
        assert await client.closed_by_server(timeout=10)
    finally:
        await server.drain(1)
