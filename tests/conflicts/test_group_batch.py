"""Conflict checks inside one group-commit batch: findings an S12 leaves for the commit are written
before a later message of the same transaction reads them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from radsched_engine.conflicts.bookings import lock_names
from radsched_engine.exchange import Outcome
from radsched_engine.rules import Booking
from radsched_engine.store import Store
from radsched_engine.store.conflicts import lock_ids
from radsched_engine.store.group import GroupUnitOfWork
from tests.conflicts.helpers import Channel, findings, siu


async def test_an_update_after_a_booking_in_the_same_batch_sees_its_findings(
        store: Store, db_url: str) -> None:
    channel = Channel(store)
    uow = GroupUnitOfWork(store, "scheduling", writers=1)
    channel.pipeline.unit_of_work = uow
    assert (await channel.send(siu(control="C0", filler="B", mrn="MB"))).outcome is Outcome.ACCEPTED

    # Hold the only writer: a booking of another room waits for that room's slot lock.
    holder = await asyncpg.connect(db_url)
    tx = holder.transaction()
    await tx.start()
    day = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    other = Booking("x", "|", day, day + timedelta(minutes=30), locations=("OTHER",))
    await holder.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k",
                         lock_ids(lock_names(other)))
    first = asyncio.create_task(channel.send(siu(control="C1", filler="Z", mrn="MZ", room="OTHER",
                                                 start="20260312090000")))
    await asyncio.sleep(0.2)
    # Behind it, in one batch: A booked on B's slot (flagged, mirrored on B), then A moved away
    # (its findings and B's mirror must go).
    book = asyncio.create_task(channel.send(siu(control="C2", filler="A", mrn="MA")))
    await asyncio.sleep(0.05)
    move = asyncio.create_task(channel.send(siu("S13", control="C3", filler="A", mrn="MA",
                                                start="20260310140000",
                                                sent="20260301130000")))
    await asyncio.sleep(0.05)
    assert len(uow._queue) == 2
    await tx.rollback()
    await holder.close()
    results = await asyncio.gather(first, book, move)
    assert [ex.outcome for ex in results] == [Outcome.ACCEPTED] * 3
    assert results[1].data["conflicts"]                     # A was flagged when booked
    assert await findings(db_url, "A") == []                # ... and clean once moved
    assert await findings(db_url, "B") == []                # B's mirror of A is gone
