"""A database outage in the engine's log: one warning when it starts, one info line when it ends.

The engine runs as a real process (JSON log at info, as an operator sees it) on a PostgreSQL
of the test's own, which the test stops (``pg_ctl -m fast``) and starts again. While it is
down the senders keep sending and each message is answered AR 207; the log must say so once
(``database_unreachable``, a warning), keep the per-failure detail at debug (no
``commit_failed`` error per message, no traceback), and say once that the database is back
(``database_recovered``, info) with the number of messages answered AR meanwhile. The
one-line-per-message log (``event: message``) is unchanged, and the outbox worker's own
once-per-outage line (``outbox_poll_failed``, when a poll falls in the outage) is its own.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from radsched_engine.store import EmbeddedPostgres, migrate
from tests.faults.engine_process import EngineProcess, free_port, until
from tests.faults.streams import resend
from tests.notify.messages import local_start, siu


def bookings(prefix: str, count: int, days: int) -> dict[str, bytes]:
    start = local_start(days=days, hour=7)
    return {f"{prefix}-{n:04d}": siu("S12", f"{prefix}-{n:04d}", filler=f"{prefix}F{n}",
                                     mrn=f"{prefix}M{n}",
                                     start=start + timedelta(minutes=30 * n))
            for n in range(count)}


async def test_outage_logs_one_warning_and_one_recovery(tmp_path: Path, pg_data_dir: Path) -> None:
    server = EmbeddedPostgres(pg_data_dir)
    url = await asyncio.to_thread(server.start)
    await migrate(url)
    port = free_port()
    engine = EngineProcess(tmp_path, {"scheduling": f"""
listen: 127.0.0.1:{port}
timezone: America/New_York
pipeline: [parse, validate, conflict_check, persist]
"""}, database_url=url)
    try:
        engine.start()
        await engine.ready()
        before = bookings("UP", 5, days=5)
        tally = await resend(port, before, sorted(before), connections=1)
        assert tally.codes() == {"AA": 5}

        await asyncio.to_thread(server.stop)
        down = bookings("DN", 12, days=6)
        refused = await resend(port, down, sorted(down), connections=1)
        assert set(refused.codes()) == {"AR"}, refused.answers
        answered_ar = refused.codes()["AR"]

        assert await asyncio.to_thread(server.start) == url

        async def accepted() -> bool:          # the same messages again, until all are taken
            nonlocal answered_ar
            tally = await resend(port, down, sorted(down), connections=1)
            answered_ar += tally.codes()["AR"]
            return tally.codes()["AR"] == 0
        await until(accepted, 60, 0.2)

        async def recovery_logged() -> bool:        # (the log is flushed on a short timer)
            return bool(engine.events("database_recovered"))
        await until(recovery_logged, 30, 0.1)
        events = engine.events()                    # before the shutdown's own lines
    finally:
        engine.terminate()
        await asyncio.to_thread(engine.wait, 60)
        engine.stop()
        await asyncio.to_thread(server.stop)

    loud = [e for e in events if e.get("level") in ("warning", "error", "critical")
            and e.get("event") != "message"]
    # (The outbox worker, when its poll runs during the outage, says so once itself.)
    assert [e["event"] for e in loud if e["event"] != "outbox_poll_failed"] == \
        ["database_unreachable"], loud
    assert len(loud) <= 2, loud
    assert not any("exception" in e or "Traceback" in str(e) for e in events)
    [recovered] = [e for e in events if e.get("event") == "database_recovered"]
    assert recovered["level"] == "info"
    assert recovered["refused"] == answered_ar        # every message answered AR while down
    unreachable = loud[0]
    assert unreachable["error"] and unreachable["detail"]      # the cause, as the driver said it
    assert events.index(unreachable) < events.index(recovered)


def test_what_counts_as_the_database_being_unreachable() -> None:
    import asyncpg

    from radsched_engine.store.db import Availability, unreachable

    for down in (FileNotFoundError(2, "no socket"), ConnectionRefusedError(),
                 asyncpg.CannotConnectNowError("the database system is starting up"),
                 asyncpg.AdminShutdownError("terminating connection"),
                 asyncpg.ConnectionDoesNotExistError("connection was closed in the middle"),
                 asyncpg.InterfaceError("connection is closed")):
        assert unreachable(down), down
    for up in (TimeoutError(), asyncpg.UniqueViolationError("duplicate key"),
               asyncpg.LockNotAvailableError("lock timeout"),
               asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
               ValueError("a bug")):
        assert not unreachable(up), up

    seen = Availability()
    assert not seen.failed(ValueError("a bug"), refused=1) and seen.down_since is None
    assert seen.failed(ConnectionRefusedError())                # the first: the warning
    assert seen.failed(ConnectionRefusedError(), refused=1)     # then counted
    assert seen.failed(ConnectionRefusedError(), refused=1)
    assert seen.refused == 2
    seen.ok()                                                   # the recovery line, once
    assert seen.down_since is None and seen.refused == 0
