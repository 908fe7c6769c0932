"""SIGHUP hot reload: bad files are rejected and serving goes on; changed channels restart
their listeners without dropping the messages in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from dataclasses import dataclass

import pytest

from radsched_engine import pipeline
from radsched_engine.mllp.framing import encode
from tests.e2e.harness import running_engine, write_channel
from tests.mllp_client import AsyncMllpClient, msa, siu


class _Hold:
    """A real stage for this test: holds a message marked HOLD until released."""

    release: asyncio.Event | None = None

    def __init__(self, options, resources) -> None:
        pass

    async def __call__(self, exchange) -> None:
        if b"HOLD" in exchange.raw and _Hold.release is not None:
            await _Hold.release.wait()


@dataclass(frozen=True, slots=True)
class _HoldOptions:
    """No options."""


HOLD = pipeline.StageSpec("test_hold", "holds marked messages (tests)", _HoldOptions, _Hold)


@pytest.fixture
def hold_stage():
    """The test stage is known to the registry only while a test uses it."""
    pipeline.register(HOLD)
    _Hold.release = asyncio.Event()
    try:
        yield _Hold.release
    finally:
        _Hold.release = None
        pipeline._REGISTRY.pop("test_hold", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def channel(port: int, app: str, extra: str = "") -> str:
    return (f"listen: 127.0.0.1:{port}\naccept: [SIU^S12]\nack:\n  sending_application: {app}\n"
            f"pipeline:\n  - parse\n  - validate\n{extra}")


def sender(reply: bytes) -> str:
    return reply.decode().split("\r")[0].split("|")[2]


async def test_bad_file_is_rejected_and_running_channels_keep_serving(tmp_path):
    port = free_port()
    chdir = tmp_path / "channels"
    write_channel(chdir, "sched", channel(port, "FIRST"))
    async with running_engine(chdir, tmp_path / "data") as engine:
        c = await AsyncMllpClient.connect("127.0.0.1", port)
        assert sender(await c.request(siu("1"))) == "FIRST"
        write_channel(chdir, "sched", channel(port, "SECOND") + "  - no_such_stage\n")
        problems = await engine.reload()
        assert problems and "no_such_stage" in problems[0] and "sched.yaml" in problems[0]
        assert msa(await c.request(siu("2")))[1] == "AA"            # same connection, still served
        c2 = await AsyncMllpClient.connect("127.0.0.1", port)
        assert sender(await c2.request(siu("3"))) == "FIRST"        # old config still in force
        await c.close()
        await c2.close()


async def test_changed_channel_restarts_without_dropping_in_flight(tmp_path, hold_stage):
    port = free_port()
    chdir = tmp_path / "channels"
    write_channel(chdir, "sched", channel(port, "FIRST", "  - test_hold\n"))
    async with running_engine(chdir, tmp_path / "data") as engine:
        c = await AsyncMllpClient.connect("127.0.0.1", port)
        await c.send_raw(encode(siu("inflight", extra="NTE|1||HOLD\r")))
        await asyncio.sleep(0.2)                       # now held inside the pipeline
        write_channel(chdir, "sched", channel(port, "SECOND", "  - test_hold\n"))
        assert await engine.reload() == []
        c2 = await AsyncMllpClient.connect("127.0.0.1", port)
        assert sender(await c2.request(siu("new"))) == "SECOND"   # the new listener
        hold_stage.set()
        reply = await c.read_reply()
        assert msa(reply)[1:3] == ["AA", "inflight"]              # answered by the old one
        assert sender(reply) == "FIRST"
        assert await c.closed_by_server()                          # then the old one closes
        await c2.close()


async def test_added_and_removed_channels(tmp_path):
    p1, p2 = free_port(), free_port()
    chdir = tmp_path / "channels"
    write_channel(chdir, "one", channel(p1, "ONE"))
    async with running_engine(chdir, tmp_path / "data") as engine:
        write_channel(chdir, "two", channel(p2, "TWO"))
        (chdir / "one.yaml").unlink()
        assert await engine.reload() == []
        c = await AsyncMllpClient.connect("127.0.0.1", p2)
        assert sender(await c.request(siu("1"))) == "TWO"
        await c.close()
        await asyncio.sleep(0.1)
        try:
            c1 = await AsyncMllpClient.connect("127.0.0.1", p1)
        except OSError:
            pass
        else:
            assert await c1.closed_by_server(timeout=3)


async def test_real_sighup_reaches_reload(tmp_path):
    port = free_port()
    chdir = tmp_path / "channels"
    write_channel(chdir, "sched", channel(port, "FIRST"))
    async with running_engine(chdir, tmp_path / "data"):
        write_channel(chdir, "sched", channel(port, "SIGNALLED"))
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(50):
            await asyncio.sleep(0.1)
            try:
                c = await AsyncMllpClient.connect("127.0.0.1", port)
            except OSError:
                continue
            name = sender(await c.request(siu("x")))
            await c.close()
            if name == "SIGNALLED":
                break
        assert name == "SIGNALLED"
