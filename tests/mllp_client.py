"""Test-side MLLP clients: an asyncio one for concurrency and bounds, python-hl7's for realism."""

from __future__ import annotations

import asyncio

from radsched_engine.mllp.framing import FrameDecoder, encode


class AsyncMllpClient:
    """A minimal asyncio MLLP client: send a message, read one framed reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder(64 * 1024 * 1024)
        self.pending: list[bytes] = []

    @classmethod
    async def connect(cls, host: str, port: int, ssl=None, server_hostname=None) -> AsyncMllpClient:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl, server_hostname=server_hostname)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_reply(self, timeout: float = 10.0) -> bytes | None:
        """The next framed reply, or None when the server closed the connection."""
        async with asyncio.timeout(timeout):
            while not self.pending:
                data = await self.reader.read(65536)
                if not data:
                    return None
                self.pending.extend(e for e in self.decoder.feed(data) if isinstance(e, bytes))
        return self.pending.pop(0)

    async def request(self, message: bytes, timeout: float = 10.0) -> bytes | None:
        await self.send_raw(encode(message))
        return await self.read_reply(timeout)

    async def closed_by_server(self, timeout: float = 10.0) -> bool:
        async with asyncio.timeout(timeout):
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def msa(reply: bytes) -> list[str]:
    """The MSA segment's fields of a reply."""
    for seg in reply.decode("latin-1").split("\r"):
        if seg.startswith("MSA"):
            return seg.split(seg[3])
    raise AssertionError(f"no MSA in {reply!r}")


def err(reply: bytes) -> list[str] | None:
    for seg in reply.decode("latin-1").split("\r"):
        if seg.startswith("ERR"):
            return seg.split(seg[3])
    return None


def siu(control_id: str = "1", trigger: str = "S12", extra: str = "") -> bytes:
    return (f"MSH|^~\\&|RIS|HOSP|RADS|RAD|20250101120000||SIU^{trigger}|{control_id}|P|2.5\r"
            f"SCH|A{control_id}|F{control_id}\rPID|1||MRN{control_id}\r{extra}").encode()
