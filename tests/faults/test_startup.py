"""Start-up with an unusable data directory: a clear one-line reason naming the path, exit 1.

The engine runs as a real process with embedded storage. A file where the directory should be
works anywhere; the read-only and full-disk cases mount a read-only bind and tmpfs file systems
(root in this sandbox) and are skipped, saying so, where mounting is not allowed.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import with_database
from tests.e2e.harness import write_channel

from .engine_process import free_port


def run_engine(workdir: Path, data_dir: Path, database_url: str = "") -> subprocess.CompletedProcess[str]:
    """Run the engine until it gives up (a hang guard of 120 s); returns exit code and output."""
    channels = workdir / "channels"
    write_channel(channels, "scheduling",
                  f"listen: 127.0.0.1:{free_port()}\npipeline: [parse, validate, persist]\n")
    config = workdir / "engine.yaml"
    config.write_text("log: {format: json}\n")
    env = {"PATH": "/usr/bin:/bin", "RADSCHED_CHANNELS_DIR": str(channels),
           "RADSCHED_DATA_DIR": str(data_dir), "RADSCHED_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
           "RADSCHED_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "radsched_engine.cli", "run", "--config", str(config)],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=120)


def assert_refused(result: subprocess.CompletedProcess[str], *phrases: str) -> str:
    """Exit 1, and stderr says why in plain words (no traceback); returns the stderr line."""
    assert result.returncode == 1, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("radsched-engine: not started:")]
    assert len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    assert '"event": "start_failed"' in result.stdout
    return lines[0]


@contextlib.contextmanager
def mounted(target: Path, *args: str) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({' '.join(args)}): {done.stderr.strip() or done.returncode}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_a_file_where_the_data_directory_should_be(pg_data_dir: Path) -> None:
    in_the_way = pg_data_dir / "var"
    in_the_way.write_text("not a directory\n")
    line = assert_refused(run_engine(pg_data_dir, in_the_way), str(in_the_way), "a file is in the way")
    assert in_the_way.read_text() == "not a directory\n"           # left as it was
    # A path *under* a file: the parent is not a directory.
    assert_refused(run_engine(pg_data_dir, in_the_way / "data"), str(in_the_way / "data"))
    assert "cannot be used" in line


def test_a_read_only_data_directory(pg_data_dir: Path) -> None:
    source = pg_data_dir / "source"
    source.mkdir()
    with mounted(pg_data_dir / "ro", "--bind", "-o", "ro", str(source)) as ro:
        assert_refused(run_engine(pg_data_dir, ro), str(ro), "read-only")
        assert_refused(run_engine(pg_data_dir, ro / "var"), str(ro / "var"), "read-only")


def test_a_full_disk(pg_data_dir: Path) -> None:
    with mounted(pg_data_dir / "full", "-t", "tmpfs", "-o", "size=1m", "tmpfs") as full:
        with open(full / "filler", "wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        assert_refused(run_engine(pg_data_dir, full), str(full), "the disk is full")


def test_a_disk_too_small_for_the_database(pg_data_dir: Path) -> None:
    """Room for the lock file but not for PostgreSQL's files: initdb's own reason is reported."""
    with mounted(pg_data_dir / "small", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs") as small:
        line = assert_refused(run_engine(pg_data_dir, small), str(small / "pg"))
        assert "No space left on device" in line or "the disk is full" in line, line


def test_an_unreachable_database_url(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://radsched:s3cret@127.0.0.1:{port}/radsched"
    line = assert_refused(run_engine(tmp_path, tmp_path / "data", url),
                          f"database postgresql://radsched:***@127.0.0.1:{port}/radsched", "refused")
    assert "s3cret" not in line


def test_a_database_that_does_not_exist(tmp_path: Path, pg_server: str) -> None:
    url = with_database(pg_server, "radsched_no_such_db")
    line = assert_refused(run_engine(tmp_path, tmp_path / "data", url), "radsched_no_such_db",
                          "does not exist")
    assert line.startswith("radsched-engine: not started: database ")
