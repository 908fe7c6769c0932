"""``radsched-engine prune [--dry-run]``: one run now, against a real database, in a real process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from .helpers import add_journal, add_outbox, journal_state, outbox_ids


def engine_file(tmp_path: Path, db_url: str, retention: str) -> Path:
    (tmp_path / "channels").mkdir(exist_ok=True)
    (tmp_path / "channels" / "ret.yaml").write_text("listen: 127.0.0.1:0\npipeline: [parse, persist]\n")
    path = tmp_path / "engine.yaml"
    path.write_text(f"channels_dir: {tmp_path / 'channels'}\ndata_dir: {tmp_path / 'data'}\n"
                    f"database: {{url: '{db_url}', connect_timeout: 2}}\n{retention}")
    return path


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "radsched_engine.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


RETENTION = "retention: {raw_days: 30, journal_days: 90, outbox_days: 30, batch_size: 2}\n"


async def test_dry_run_prints_counts_and_changes_nothing_then_a_run_prunes(
        tmp_path: Path, db_url: str, store: Any) -> None:
    await add_journal(store, [120, 100, 60, 50, 40, 10])
    await add_outbox(store, [("sent", 40, 40), ("dead", 40, 40), ("pending", 40, 40)])
    config = engine_file(tmp_path, db_url, RETENTION)
    journal, outbox = await journal_state(store), await outbox_ids(store)

    code, out, err = await cli("prune", "--config", str(config), "--dry-run")

    assert (code, err) == (0, "")
    assert out.splitlines() == ["table          action       would be",
                                "hl7_messages   deleted      2",
                                "hl7_messages   raw_cleared  3",
                                "outbox         deleted      2"]
    assert await journal_state(store) == journal and await outbox_ids(store) == outbox

    code, out, err = await cli("prune", "--config", str(config))

    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == ["table", "action", "done"]
    assert out.splitlines()[1:] == ["hl7_messages   deleted      2",
                                    "hl7_messages   raw_cleared  3",
                                    "outbox         deleted      2"]
    state = await journal_state(store)
    assert len(state) == 4 and sorted(state.values())[:3] == [0, 0, 0]
    assert await outbox_ids(store) == outbox[2:]


async def test_nothing_configured(tmp_path: Path, db_url: str) -> None:
    code, out, _ = await cli("prune", "--config", str(engine_file(tmp_path, db_url, "")))
    assert code == 0 and out.startswith("prune: nothing to do: no retention period is configured")


async def test_database_unreachable_is_a_clear_error(tmp_path: Path) -> None:
    url = "postgresql://radsched@127.0.0.1:9/radsched"      # port 9 (discard): nothing listens
    code, out, err = await cli("prune", "--config", str(engine_file(tmp_path, url, RETENTION)))
    assert code == 1 and out == ""
    assert err.startswith("prune: database cannot be used: connection")
    assert "Traceback" not in err
