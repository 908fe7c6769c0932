"""The benchmarks' CPU pinning still names the machine's cores after a bench pins its own process.

``bench/soak.py`` and ``bench/pg_floor.py`` narrow their own CPU mask first, and the notify
bench moves its process (where the fake Twilio runs) to the database's core; the engine and
PostgreSQL they start afterwards must still go to their own cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2 or shutil.which("taskset") is None,
    reason="pinning needs at least two cores and taskset")


def test_pin_names_each_core_after_the_process_pinned_itself() -> None:
    script = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from bench import harness\n"
        "first, second = harness.cores()[:2]\n"
        "os.sched_setaffinity(0, {second})\n"
        "print(harness.pin(0) == ['taskset', '-c', str(first)],"
        " harness.pin(1) == ['taskset', '-c', str(second)], len(harness.cores()) >= 2)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.split() == ["True", "True", "True"]
