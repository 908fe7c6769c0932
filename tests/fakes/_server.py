"""A stdlib HTTP server on 127.0.0.1 with an ephemeral port, run in a thread, for the fakes."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeServer:
    """Base of the fakes: ``start()`` returns the base URL, ``close()`` stops it quickly.

    Handlers that must stall wait on ``self.stopping`` so a closing fake never hangs a test.
    """

    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def start(self) -> str:
        fake = self

        class Handler(self.handler):  # type: ignore[name-defined,misc]
            server_fake: Any = fake

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        return self.base_url

    def stall(self, seconds: float) -> None:
        """Sleep in a handler, cut short when the fake closes."""
        if seconds > 0:
            self.stopping.wait(seconds)

    def close(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
