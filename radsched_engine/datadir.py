"""The data directory: created and checked at start-up, and held by one engine at a time."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class StartupError(Exception):
    """A start-up problem with a plain explanation (no traceback needed)."""


class DataDirLock:
    """An exclusive lock on ``<data_dir>/engine.lock`` for the engine's lifetime.

    Two engines on one data directory would share its embedded PostgreSQL; the second one is
    refused with the first one's pid instead of failing somewhere inside the database start.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "engine.lock"
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise StartupError(_explain(self.data_dir, exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(f"data directory {self.data_dir} is in use by another radsched-engine "
                               f"(pid {other}); stop it or give this one its own RADSCHED_DATA_DIR") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise StartupError(_explain(self.data_dir, exc)) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _explain(data_dir: Path, exc: OSError) -> str:
    reason = {errno.EROFS: "the file system is read-only", errno.ENOSPC: "the disk is full",
              errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.ENOTDIR: "a path component is not a directory",
              errno.EEXIST: "a file is in the way"}.get(exc.errno or 0, exc.strerror or str(exc))
    return f"data directory {data_dir} cannot be used: {reason} ({exc.filename or data_dir})"
