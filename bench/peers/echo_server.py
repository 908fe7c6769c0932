"""The floor: a raw asyncio Protocol that answers each frame with MSA|AA|<MSH-10>, no parsing."""

from __future__ import annotations

import argparse
import asyncio


class Echo(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\x1c\r")
            if end < 0:
                return
            frame, self.buf = self.buf[1:end], self.buf[end + 2:]
            control_id = frame.split(b"\r", 1)[0].split(b"|")[9]
            self.transport.write(b"\x0bMSH|^~\\&|E|E|||||ACK|1|P|2.5\rMSA|AA|" + control_id + b"\r\x1c\r")


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
    print(f"echo server on {port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    asyncio.run(main(ap.parse_args().port))
