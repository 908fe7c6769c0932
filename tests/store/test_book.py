"""``radsched_book`` through ``appointments.persist_call`` / ``send``: neighbours read, then the booking
written, one call."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from radsched_engine.store import Store
from radsched_engine.store.appointments import persist_call, send
from radsched_engine.store.conflicts import ContextRequest

from .test_appointments import book

T = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
M = timedelta(minutes=30)


@pytest.fixture
async def conn(store: Store):
    async with store.connection() as c:
        yield c


async def write(conn: asyncpg.Connection, key: str, start: datetime, *, patient: str = "A|9",
                rooms: tuple[str, ...] = ("CT1",), control_id: str | None = None,
                ) -> tuple[list[str], str, str | None]:
    """Book ``key`` at ``start`` (30 min) with a request: (neighbour keys, result, own key)."""
    cid = control_id or key
    resources = [("location", r) for r in rooms]
    request = ContextRequest((key,), ("lock-a", "lock-b"), None, tuple(resources), start,
                             start + M, patient, (start - timedelta(days=2), start + M + timedelta(days=2)))
    meta = {"channel": "c", "sending_application": "RIS", "sending_facility": "H",
            "control_id": cid, "message_type": "SIU^S12", "outcome": "accepted", "ack_code": "AA",
            "received_at": T.isoformat()}
    fields = {"datetime": start.isoformat(), "duration_seconds": 1800, "patient_key": patient,
              "status": "SCHEDULED"}
    rows = [{"kind": "location", "code": r} for r in rooms]
    found, done = await send(conn, persist_call(
        request, meta=meta, raw=cid.encode(), content_hash=hashlib.sha256(cid.encode()).digest(),
        message_lock=hash(cid) & 0x7FFFFFFF, keys=(key,), trigger="S12", event_time=None,
        fields=fields, resources=rows, merge=False))
    assert found is not None
    return ([o.key for o in found.others], done.result,
            found.own.key if found.own is not None else None)


async def test_neighbours_by_room_long_booking_and_patient_then_the_write(conn: asyncpg.Connection) -> None:
    await book(conn, "c|F:ROOM", T, T + M)                                   # same room, same time
    await book(conn, "c|F:LONG", T - timedelta(days=2), T + timedelta(days=2),
               resources=(("location", "CT1"),), patient="B|1")              # a multi-day booking
    await book(conn, "c|F:PAT", T + timedelta(hours=5), T + timedelta(hours=6),
               resources=(("location", "MR9"),), patient="A|9")              # the patient elsewhere
    await book(conn, "c|F:GONE", T, T + M, status="CANCELLED")               # inactive: never
    await book(conn, "c|F:OTHER", T, T + M, resources=(("location", "CT2"),), patient="C|1")
    others, result, own = await write(conn, "c|F:NEW", T)
    assert sorted(others) == ["c|F:LONG", "c|F:PAT", "c|F:ROOM"] and result == "applied" and own is None
    assert await conn.fetchval("SELECT count(*) FROM appointments WHERE appointment_key = 'c|F:NEW'") == 1


async def test_no_neighbour_and_an_active_booking_of_the_same_id(conn: asyncpg.Connection) -> None:
    assert await write(conn, "c|F:ALONE", T) == ([], "applied", None)
    await book(conn, "c|F:NEAR", T, T + M, patient="Z|1")
    # The id is booked and active: no neighbour is read, the write answers 'exists'.
    assert await write(conn, "c|F:ALONE", T, control_id="second") == ([], "exists", "c|F:ALONE")


async def test_an_inactive_booking_of_the_same_id_is_booked_again(conn: asyncpg.Connection) -> None:
    await book(conn, "c|F:BACK", T, T + M, status="CANCELLED")
    await book(conn, "c|F:NEAR", T, T + M, patient="Z|1")
    assert await write(conn, "c|F:BACK", T) == (["c|F:NEAR"], "applied", "c|F:BACK")


async def test_a_redelivery_is_answered_by_the_write(conn: asyncpg.Connection) -> None:
    assert (await write(conn, "c|F:ONCE", T))[1] == "applied"
    assert (await write(conn, "c|F:ONCE", T))[1] == "duplicate"
