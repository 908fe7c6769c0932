"""Abuse against a running engine on the durable channel, while a well-behaved sender works.

Each scenario runs one of ``bench/run_abuse_bench.py``'s abusers (scaled down) against a real
engine (listener, channel, parse → notify, real PostgreSQL) and, on another connection at the
same time, a well-behaved sender that keeps booking appointments until the abuse is over; the
test asserts every one of its messages got its AA, in order, and that the abuse met its bound
(closed by ``frame_timeout``, refused at ``max_frame_bytes``, dropped by ``write_timeout``, ...).
Throughput under abuse is measured by the benchmark, never here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import resource
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest

from bench import run_abuse_bench as abuse
from bench.loadgen import Template
from tests.e2e.harness import running_engine, scrape, write_channel
from tests.mllp_client import AsyncMllpClient, msa

from .corpus import ANSWERS, err_codes

FRAME_TIMEOUT = 2.0
WRITE_TIMEOUT = 2.0
CHANNEL = f"""
listen: ${{RADSCHED_MLLP_LISTEN}}
timezone: UTC
limits: {{max_frame_bytes: 1048576, frame_timeout: {FRAME_TIMEOUT}, idle_timeout: 60,
          max_connections: 1100, write_timeout: {WRITE_TIMEOUT}}}
pipeline:
  - parse
  - validate
  - conflict_check
  - persist
  - notify
"""
TEMPLATE = (Path(abuse.__file__).parent / "messages" / "siu_s12.hl7").read_text()
_runs = itertools.count(1)


@contextlib.asynccontextmanager
async def engine_under_test(tmp_path: Path, db_url: str) -> AsyncIterator[Any]:
    """The engine, with every exception that reaches the event loop collected and asserted."""
    # A channel name of its own: metrics are per process, and other tests' channels share it.
    write_channel(tmp_path / "channels", f"abuse{next(_runs)}", CHANNEL)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        async with running_engine(tmp_path / "channels", tmp_path / "data", database_url=db_url) as eng:
            yield eng
    finally:
        loop.set_exception_handler(previous)
    assert not errors, [f"{c.get('message')}: {c.get('exception')!r}" for c in errors]


async def well_behaved(port: int, abuse_task: Awaitable[Any], minimum: int = 30) -> int:
    """Book appointments one at a time (each a new slot) until the abuse is over and at least
    ``minimum`` were sent; every answer must be the AA for that message."""
    template = Template(TEMPLATE, f"GOOD{next(_runs)}")
    client = await AsyncMllpClient.connect("127.0.0.1", port)
    task = asyncio.ensure_future(abuse_task)
    sent = 0
    try:
        while sent < minimum or not task.done():
            sent += 1
            message, cid = template.render(0, sent, sent)
            reply = await client.request(message, timeout=30)
            assert reply is not None, f"the well-behaved sender's connection closed after {sent - 1}"
            assert msa(reply)[1:3] == ["AA", cid.decode()], reply
    finally:
        await client.close()
    await task
    return sent


async def counter(engine: Any, reason: str) -> float:
    """This engine's channel's ``radsched_frame_errors_total`` for ``reason``, from /metrics."""
    _, body = await scrape(engine.http.port)
    channel = f'channel="{engine.servers[0].name}"'
    total = 0.0
    for line in body.splitlines():
        if line.startswith("radsched_frame_errors_total{") and f'reason="{reason}"' in line \
                and channel in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_slowloris_is_closed_by_frame_timeout(tmp_path, db_url):
    stop = asyncio.Event()
    async with engine_under_test(tmp_path, db_url) as engine:
        port = engine.servers[0].port
        run = abuse.slowloris("127.0.0.1", port, stop, connections=5, interval=0.5, once=True)
        stats: dict[str, Any] = {}

        async def slow() -> None:
            stats.update(await asyncio.wait_for(run, FRAME_TIMEOUT * 10))

        assert await well_behaved(port, slow()) >= 30
        # one byte every half second never finishes a frame: each was closed, by frame_timeout
        assert stats["closed_by_server"] == 5
        assert stats["bytes"] <= 5 * (FRAME_TIMEOUT / 0.5 + 2)
        assert await counter(engine, "frame_timeout") == 5


async def test_frame_with_no_end_is_closed_by_frame_timeout(tmp_path, db_url):
    stop = asyncio.Event()
    async with engine_under_test(tmp_path, db_url) as engine:
        port = engine.servers[0].port
        stats: dict[str, Any] = {}

        async def stalled() -> None:
            stats.update(await asyncio.wait_for(
                abuse.no_end("127.0.0.1", port, stop, connections=20, once=True), FRAME_TIMEOUT * 10))

        assert await well_behaved(port, stalled()) >= 30
        assert stats == {"connections": 20, "closed_by_server": 20}


async def test_huge_frame_is_refused_at_the_limit_and_not_read_further(tmp_path, db_url):
    """A 100 MiB frame: the engine answers AE at 1 MiB and closes; it does not read the rest."""
    stop = asyncio.Event()
    async with engine_under_test(tmp_path, db_url) as engine:
        port = engine.servers[0].port
        stats: dict[str, Any] = {}

        async def huge() -> None:
            for _ in range(3):
                stats.update(await abuse.huge_frame("127.0.0.1", port, stop, once=True))
                assert stats["refused"] == 1, stats
                # 1 MiB read, then the socket buffers: far from the 100 MiB offered
                assert stats["max_sent_per_frame"] < 24 * abuse.MIB, stats

        assert await well_behaved(port, huge()) >= 30
        assert await counter(engine, "oversize") == 3


async def test_thousand_idle_connections_are_held_and_cost_the_sender_nothing(tmp_path, db_url):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if abuse.raise_fd_limit(4096) < 2600:
        pytest.skip(f"RLIMIT_NOFILE soft {soft} / hard {hard}: 1,000 connections with both ends "
                    "in this process need about 2,600 descriptors")
    stop = asyncio.Event()
    async with engine_under_test(tmp_path, db_url) as engine:
        port = engine.servers[0].port
        server = engine.servers[0]
        ready = asyncio.Event()
        held = asyncio.ensure_future(abuse.idle("127.0.0.1", port, stop, count=1000, ready=ready))
        await asyncio.wait_for(ready.wait(), 60)

        async def while_held() -> None:
            await asyncio.sleep(0.5)
            assert len(server.connections) == 1001          # 1,000 idle + the sender
            stop.set()

        assert await well_behaved(port, while_held(), minimum=100) >= 100
        stats = await held
        assert stats == {"open": 1000, "refused": 0, "closed_by_server": 0}


async def test_client_that_never_reads_is_dropped_by_write_timeout(tmp_path, db_url):
    stop = asyncio.Event()
    async with engine_under_test(tmp_path, db_url) as engine:
        port = engine.servers[0].port
        stats: dict[str, Any] = {}

        async def deaf() -> None:
            stats.update(await asyncio.wait_for(
                abuse.never_reads("127.0.0.1", port, stop, once=True), 120))

        assert await well_behaved(port, deaf()) >= 30
        assert stats["dropped_by_server"] == 1, stats
        assert await counter(engine, "write_timeout") == 1


async def test_binary_garbage_is_answered_or_skipped_and_the_sender_is_unaffected(tmp_path, db_url):
    stop = asyncio.Event()
    async with engine_under_test(tmp_path, db_url) as engine:
        port = engine.servers[0].port
        stats: dict[str, Any] = {}

        async def noise() -> None:
            stats.update(await asyncio.wait_for(
                abuse.garbage("127.0.0.1", port, stop, rate=abuse.MIB, total=abuse.MIB // 2), 60))

        assert await well_behaved(port, noise()) >= 30
        # random bytes hold a start block every ~256 bytes: thousands of frames, each answered
        assert stats["bytes"] >= abuse.MIB // 2 and stats["frames"] > 500, stats
        assert stats["replies"] == stats["frames"] and stats["connections"] == 1, stats


async def test_invalid_utf8_in_every_field_is_answered_without_an_internal_error(tmp_path, db_url):
    stop = asyncio.Event()
    async with engine_under_test(tmp_path, db_url) as engine:
        port = engine.servers[0].port
        stats: dict[str, Any] = {}
        fields = len(abuse.field_positions(abuse.fresh("T")))
        assert fields > 80

        async def bad_bytes() -> None:
            stats.update(await asyncio.wait_for(
                abuse.non_utf8("127.0.0.1", port, stop, rate=1000, once=True), 120))

        assert await well_behaved(port, bad_bytes()) >= 30
        assert stats["sent"] == fields and stats["unanswered"] == 0, stats
        assert stats["error_207"] == 0, stats
        assert set(stats["answers"]) <= ANSWERS, stats


async def test_each_invalid_utf8_field_gets_a_precise_answer(tmp_path, db_url):
    """Per field: the answer is AA or a NAK naming a known HL7 error, never AR 207."""
    async with engine_under_test(tmp_path, db_url) as engine:
        client = await AsyncMllpClient.connect("127.0.0.1", engine.servers[0].port)
        try:
            for position in abuse.field_positions(abuse.fresh("T")):
                message = abuse.corrupt(abuse.fresh("U8"), position)
                reply = await client.request(message)
                assert reply is not None, message
                code = msa(reply)[1]
                assert code in ANSWERS, reply
                codes = err_codes(reply)
                assert "207" not in codes, (message, reply)
                if code != "AA":
                    assert codes, reply
        finally:
            await client.close()
