"""The MLLP listener over real sockets: answers, limits, timeouts, concurrency and drain."""

from __future__ import annotations

import asyncio

import pytest

from radsched_engine.channel import Channel
from radsched_engine.errors import Reject
from radsched_engine.hl7.msh import sniff_msh
from radsched_engine.mllp.framing import encode
from radsched_engine.mllp.server import Limits, MllpServer
from radsched_engine.pipeline import Pipeline, StageSpec
from tests.mllp_client import AsyncMllpClient, msa, siu


class SniffStage:
    """A minimal real stage: rejects frames without MSH; can be told to take its time."""

    delay = 0.0

    async def __call__(self, ex):
        if sniff_msh(ex.raw) is None:
            raise Reject(100, "no MSH segment", "MSH")
        if b"SLOW" in ex.raw:
            await asyncio.sleep(self.delay or 0.5)


SPEC = StageSpec("sniff", "test stage", object, lambda o, r: SniffStage())


async def start(limits: Limits | None = None, stage=None) -> MllpServer:
    stage = stage or SniffStage()
    channel = Channel("test", Pipeline("test", [(SPEC, stage)]))
    server = MllpServer("test", "127.0.0.1", 0, channel, limits or Limits())
    await server.start()
    return server


async def test_ack_per_message_in_order_on_one_connection():
    server = await start()
    try:
        c = await AsyncMllpClient.connect("127.0.0.1", server.port)
        for i in range(20):
            assert msa(await c.request(siu(str(i))))[1:3] == ["AA", str(i)]
        await c.close()
    finally:
        await server.drain(1)


async def test_pipelined_frames_are_answered_in_order():
    server = await start()
    try:
        c = await AsyncMllpClient.connect("127.0.0.1", server.port)
        await c.send_raw(b"".join(encode(siu(str(i))) for i in range(30)))
        ids = [msa(await c.read_reply())[2] for _ in range(30)]
        assert ids == [str(i) for i in range(30)]
        await c.close()
    finally:
        await server.drain(1)


async def test_frame_without_msh_gets_ar_and_connection_stays_open():
    server = await start()
    try:
        c = await AsyncMllpClient.connect("127.0.0.1", server.port)
        assert msa(await c.request(b"this is not hl7"))[1:3] == ["AR", ""]
        assert msa(await c.request(siu("2")))[1] == "AA"
        await c.close()
    finally:
        await server.drain(1)


async def test_junk_between_frames_is_skipped():
    server = await start()
    try:
        c = await AsyncMllpClient.connect("127.0.0.1", server.port)
        await c.send_raw(b"\r\n\x00garbage" + encode(siu("1")) + b"\n\n" + encode(siu("2")))
        assert msa(await c.read_reply())[2] == "1"
        assert msa(await c.read_reply())[2] == "2"
        await c.close()
    finally:
        await server.drain(1)


async def test_oversize_frame_is_answered_then_closed():
    server = await start(Limits(max_frame_bytes=2048))
    try:
        c = await AsyncMllpClient.connect("127.0.0.1", server.port)
        await c.send_raw(b"\x0b" + siu("big") + b"NTE|1||" + b"x" * 5000)
        reply = await c.read_reply()
        assert msa(reply)[1:3] == ["AE", "big"]
        assert b"max_frame_bytes" in reply
        assert await c.closed_by_server()
        # other senders are unaffected
        c2 = await AsyncMllpClient.connect("127.0.0.1", server.port)
        assert msa(await c2.request(siu("3")))[1] == "AA"
        await c2.close()
    finally:
        await server.drain(1)


async def test_frame_timeout_closes_a_slow_frame():
    server = await start(Limits(frame_timeout=0.3))
    try:
        c = await AsyncMllpClient.connect("127.0.0.1", server.port)
        await c.send_raw(b"\x0bMSH|^~\\&|slow")
        assert await c.closed_by_server(timeout=3)
    finally:
        await server.drain(1)


async def test_slowloris_is_closed_by_the_frame_timeout_not_kept_alive_by_bytes():
    server = await start(Limits(frame_timeout=0.5, idle_timeout=5))
    try:
        c = await AsyncMllpClient.connect("127.0.0.1", server.port)
        await c.send_raw(b"\x0b")
        closed = False
        for ch in siu("s"):
            await asyncio.sleep(0.05)
            try:
                await c.send_raw(bytes([ch]))
            except (ConnectionError, OSError):
                closed = True
                break
            if c.reader.at_eof():
                closed = True
                break
        assert closed or await c.closed_by_server(timeout=3)
    finally:
        await server.drain(1)


async def test_idle_timeout_closes_quiet_connection():
    server = await start(Limits(idle_timeout=0.3))
    try:
        c = await AsyncMllpClient.connect("127.0.0.1", server.port)
        assert msa(await c.request(siu("1")))[1] == "AA"
        assert await c.closed_by_server(timeout=3)
    finally:
        await server.drain(1)


async def test_max_connections_refuses_extra_peers():
    server = await start(Limits(max_connections=2))
    try:
        a = await AsyncMllpClient.connect("127.0.0.1", server.port)
        b = await AsyncMllpClient.connect("127.0.0.1", server.port)
        assert msa(await a.request(siu("a")))[1] == "AA"
        assert msa(await b.request(siu("b")))[1] == "AA"
        c = await AsyncMllpClient.connect("127.0.0.1", server.port)
        with pytest.raises((ConnectionError, OSError, AssertionError)):
            reply = await c.request(siu("c"), timeout=3)
            assert reply is not None
        await a.close()
        await b.close()
    finally:
        await server.drain(1)


async def test_allowlist_refuses_other_addresses():
    channel = Channel("test", Pipeline("test", [(SPEC, SniffStage())]))
    server = MllpServer("test", "127.0.0.1", 0, channel, Limits(), allow=("10.0.0.0/8",))
    await server.start()
    try:
        c = await AsyncMllpClient.connect("127.0.0.1", server.port)
        with pytest.raises((ConnectionError, OSError, AssertionError)):
            assert await c.request(siu("x"), timeout=3) is not None
    finally:
        await server.drain(1)


async def test_hundred_concurrent_connections():
    server = await start(Limits(max_connections=150))
    try:
        async def one(i: int) -> list[str]:
            c = await AsyncMllpClient.connect("127.0.0.1", server.port)
            got = [msa(await c.request(siu(f"{i}-{k}")))[2] for k in range(5)]
            await c.close()
            return got

        results = await asyncio.gather(*(one(i) for i in range(100)))
        assert all(r == [f"{i}-{k}" for k in range(5)] for i, r in enumerate(results))
    finally:
        await server.drain(1)


async def test_drain_finishes_the_message_in_flight():
    server = await start()
    c = await AsyncMllpClient.connect("127.0.0.1", server.port)
    await c.send_raw(encode(siu("inflight", extra="NTE|1||SLOW\r")))
    await asyncio.sleep(0.1)                # the message is now inside the pipeline
    drain = asyncio.create_task(server.drain(5))
    reply = await c.read_reply(timeout=5)
    assert msa(reply)[1:3] == ["AA", "inflight"]
    await drain
    assert await c.closed_by_server(timeout=3)
    with pytest.raises(OSError):
        await AsyncMllpClient.connect("127.0.0.1", server.port)


async def test_peer_that_never_reads_is_dropped_without_stalling_others():
    server = await start(Limits(write_timeout=0.5, max_queued_frames=4))
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        big = encode(siu("x", extra="NTE|1||" + "y" * 2000 + "\r"))
        try:
            for _ in range(3000):                 # never read a single ACK
                writer.write(big)
            await asyncio.wait_for(writer.drain(), 10)
        except (ConnectionError, OSError, TimeoutError):
            pass
        c = await AsyncMllpClient.connect("127.0.0.1", server.port)
        assert msa(await c.request(siu("ok")))[1] == "AA"
        await c.close()
        writer.close()
    finally:
        await server.drain(1)


class CountingStage:
    """Counts the frames that reached the pipeline."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, ex):
        self.calls += 1


async def test_peer_that_never_reads_gets_no_more_work_done_until_dropped():
    """Above the write high-water mark the listener stops reading that peer: no frame of it is
    decoded or run while its ACKs are not read, and write_timeout then drops it."""
    import socket

    stage = CountingStage()
    server = await start(Limits(write_timeout=3.0), stage)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        pad = b"P" * 16384                     # MSH-3, echoed in each ACK's MSH-5
        frame = encode(b"MSH|^~\\&|" + pad + b"|F|R|F|20260101||SIU^S12|nr|P|2.5\rSCH|1\r")
        sent = 0
        deadline = loop.time() + 2.0
        while loop.time() < deadline:           # never read a single ACK
            try:
                sent += sock.send(frame)
            except BlockingIOError:
                await asyncio.sleep(0.01)
        (conn,) = server.connections
        assert conn.write_blocked and conn.read_stopped
        handled = stage.calls
        assert handled * len(frame) < sent     # the peer sent more than was ever read and run
        await asyncio.sleep(0.5)
        assert stage.calls == handled          # nothing more is read from it while it stalls
        assert len(conn.queue) <= conn.limits.max_queued_frames + 1
        for _ in range(100):                   # write_timeout (3 s) drops it
            if not server.connections:
                break
            await asyncio.sleep(0.1)
        assert not server.connections
        # The listener still serves everyone else.
        c = await AsyncMllpClient.connect("127.0.0.1", server.port)
        assert msa(await c.request(siu("ok")))[1] == "AA"
        await c.close()
    finally:
        sock.close()
        await server.drain(1)
