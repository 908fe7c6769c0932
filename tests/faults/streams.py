"""Numbered messages streamed over several MLLP connections, with every answer (or none) recorded."""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from dataclasses import dataclass, field

import asyncpg

from tests.mllp_client import AsyncMllpClient, err, msa

BROKEN = (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError)


@dataclass
class Tally:
    """What the senders saw: the answers per control id, and the ids sent but never answered."""

    answers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)   # id -> [(MSA-1, ERR-3)]
    unanswered: set[str] = field(default_factory=set)
    closed: int = 0                                    # connections the engine closed or reset

    def record(self, control_id: str, reply: bytes) -> None:
        fields = msa(reply)
        assert fields[2] == control_id, (control_id, reply)
        error = err(reply)
        code = error[3].split("^")[0] if error and len(error) > 3 else ""
        self.answers.setdefault(control_id, []).append((fields[1], code))
        self.unanswered.discard(control_id)

    def codes(self) -> Counter[str]:
        return Counter(code for answers in self.answers.values() for code, _ in answers)

    def accepted(self) -> set[str]:
        return {cid for cid, answers in self.answers.items() if any(c == "AA" for c, _ in answers)}

    @property
    def aa(self) -> int:
        return sum(1 for answers in self.answers.values() for c, _ in answers if c == "AA")


class Streamer:
    """Send ``messages`` (control id -> payload) over ``connections`` connections, one in flight each.

    Each connection takes every n-th message in order. When a connection breaks, the message in
    flight is ``unanswered``; with ``reconnect`` the sender connects again and goes on, else it
    stops there (the rest stay unsent). ``stop`` ends every sender after its current message.
    """

    def __init__(self, port: int, messages: dict[str, bytes], connections: int, *,
                 ssl_context: ssl.SSLContext | None = None, reconnect: bool = False,
                 reply_timeout: float = 30.0) -> None:
        self.port = port
        self.ids = list(messages)
        self.messages = messages
        self.connections = connections
        self.ssl_context = ssl_context
        self.reconnect = reconnect
        self.reply_timeout = reply_timeout
        self.tally = Tally()
        self.stop = asyncio.Event()
        self.sent: set[str] = set()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._sender(self.ids[i::self.connections]))
                      for i in range(self.connections)]

    async def finish(self, timeout: float = 120.0) -> Tally:
        async with asyncio.timeout(timeout):                  # a hang guard
            await asyncio.gather(*self.tasks)
        return self.tally

    async def _connect(self) -> AsyncMllpClient | None:
        while not self.stop.is_set():
            try:
                return await AsyncMllpClient.connect(
                    "127.0.0.1", self.port, ssl=self.ssl_context,
                    server_hostname="localhost" if self.ssl_context else None)
            except BROKEN:
                if not self.reconnect:
                    return None
                await asyncio.sleep(0.05)
        return None

    async def _sender(self, ids: list[str]) -> None:
        client = await self._connect()
        pending = list(ids)
        while pending and client is not None and not self.stop.is_set():
            cid = pending.pop(0)
            self.sent.add(cid)
            self.tally.unanswered.add(cid)
            try:
                reply = await client.request(self.messages[cid], timeout=self.reply_timeout)
            except BROKEN:
                reply = None
            if reply is not None:
                self.tally.record(cid, reply)
                continue
            self.tally.closed += 1
            await client.close()
            client = await self._connect() if self.reconnect else None
        if client is not None:
            await client.close()


async def resend(port: int, messages: dict[str, bytes], ids: list[str], *, connections: int = 3,
                 ssl_context: ssl.SSLContext | None = None) -> Tally:
    """Send ``ids`` again (the sender's retry of what was not acknowledged); every one answered."""
    streamer = Streamer(port, {cid: messages[cid] for cid in ids}, connections, ssl_context=ssl_context)
    streamer.start()
    tally = await streamer.finish()
    assert not tally.unanswered and tally.closed == 0, tally
    return tally


async def journal(url: str, ids: set[str] | list[str]) -> dict[str, Counter[str]]:
    """Per control id, the count of its journal rows by outcome."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT control_id, outcome FROM hl7_messages WHERE control_id = ANY($1)",
                                list(ids))
    finally:
        await conn.close()
    found: dict[str, Counter[str]] = {cid: Counter() for cid in ids}
    for row in rows:
        found[row["control_id"]][row["outcome"]] += 1
    return found


async def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True)
class Seen:
    """One answer (or a broken connection, ``code`` 'closed') as a sender saw it, in order."""

    connection: int
    control_id: str
    code: str                 # MSA-1, or 'closed'
    error: str                # ERR-3 identifier ('207', ...), '' without ERR
    phase: object             # what the test said was going on when the answer arrived


class RetryingSender:
    """Senders that behave like an HL7 interface: a message answered AR (or whose connection
    broke) is sent again, unchanged, until it is accepted; then the next one. Every answer is
    recorded in ``seen`` with the test's ``phase()`` at the time it arrived."""

    def __init__(self, port: int, messages: dict[str, bytes], connections: int, phase: object, *,
                 retry_delay: float = 0.05, pause: float = 0.0) -> None:
        self.port = port
        self.messages = messages
        self.ids = list(messages)
        self.connections = connections
        self.phase = phase
        self.retry_delay = retry_delay
        self.pause = pause
        self.seen: list[Seen] = []
        self.done: list[str] = []                         # accepted, in order of acceptance
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._sender(i, self.ids[i::self.connections]))
                      for i in range(self.connections)]

    async def finish(self, timeout: float = 120.0) -> None:
        self.stop.set()
        async with asyncio.timeout(timeout):
            await asyncio.gather(*self.tasks)

    def count(self, code: str, since: int = 0) -> int:
        return sum(1 for s in self.seen[since:] if s.code == code)

    async def _sender(self, number: int, ids: list[str]) -> None:
        client: AsyncMllpClient | None = None
        for cid in ids:
            if self.stop.is_set():
                break
            while True:                                   # this message until it is accepted
                if client is None:
                    try:
                        client = await AsyncMllpClient.connect("127.0.0.1", self.port)
                    except BROKEN:
                        await asyncio.sleep(self.retry_delay)
                        continue
                try:
                    reply = await client.request(self.messages[cid], timeout=60)
                except BROKEN:
                    reply = None
                if reply is None:
                    self.seen.append(Seen(number, cid, "closed", "", self.phase()))  # type: ignore[operator]
                    await client.close()
                    client = None
                    continue
                fields, error = msa(reply), err(reply)
                assert fields[2] == cid, (cid, reply)
                code = error[3].split("^")[0] if error and len(error) > 3 else ""
                self.seen.append(Seen(number, cid, fields[1], code, self.phase()))  # type: ignore[operator]
                if fields[1] == "AA":
                    self.done.append(cid)
                    break
                if fields[1] != "AR":
                    return                                # AE: a test failure, seen in ``seen``
                await asyncio.sleep(self.retry_delay)
            if self.pause:
                await asyncio.sleep(self.pause)
        if client is not None:
            await client.close()
