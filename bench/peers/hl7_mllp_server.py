"""python-hl7's own asyncio MLLP server answering each message with ``message.create_ack()``."""

from __future__ import annotations

import argparse
import asyncio

import hl7
from hl7.mllp import start_hl7_server


async def handle(reader, writer) -> None:
    try:
        while not writer.is_closing():
            message = await reader.readmessage()
            writer.writemessage(message.create_ack())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    async with await start_hl7_server(handle, host="127.0.0.1", port=port) as server:
        print(f"python-hl7 mllp server on {port} (hl7 {hl7.__version__})", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    asyncio.run(main(ap.parse_args().port))
