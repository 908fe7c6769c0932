"""Start-up checks of the data directory: one engine at a time, clear errors when unusable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from radsched_engine.datadir import DataDirLock, StartupError


def test_second_engine_on_a_data_dir_is_refused_with_the_first_ones_pid(tmp_path):
    first = DataDirLock(tmp_path).acquire()
    try:
        # another process, as a second engine would be
        code = ("import sys; from radsched_engine.datadir import DataDirLock, StartupError\n"
                f"try: DataDirLock({str(tmp_path)!r}).acquire()\n"
                "except StartupError as e: print(e); sys.exit(3)\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert done.returncode == 3
        assert f"pid {os.getpid()}" in done.stdout and "in use by another radsched-engine" in done.stdout
    finally:
        first.release()
    DataDirLock(tmp_path).acquire().release()          # free again once the first one is gone


def test_a_file_where_the_data_dir_should_be_is_explained(tmp_path):
    blocker = tmp_path / "var"
    blocker.write_text("not a directory")
    with pytest.raises(StartupError) as err:
        DataDirLock(blocker / "data").acquire()
    assert "cannot be used" in str(err.value) and str(blocker) in str(err.value)
