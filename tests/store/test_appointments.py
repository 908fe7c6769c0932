"""Overlap queries (half-open bounds, exclusions, inactive rows) and advisory locks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from radsched_engine.domain.model import AppointmentEvent
from radsched_engine.store import Store
from radsched_engine.store.appointments import (
    appointment_keys,
    find_overlapping,
    lock_keys,
    patient_lock_name,
    slot_lock_names,
)

T = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)


async def book(conn: asyncpg.Connection, key: str, start: datetime, end: datetime, *,
               resources: tuple[tuple[str, str], ...] = (("location", "CT1"),),
               patient: str = "A|1", status: str = "SCHEDULED", alt_key: str | None = None) -> int:
    appointment_id = await conn.fetchval(
        "INSERT INTO appointments (appointment_key, alt_key, channel, datetime, end_at, status, "
        "patient_key) VALUES ($1, $2, 'c', $3, $4, $5, $6) RETURNING id",
        key, alt_key, start, end, status, patient)
    active = status not in ("CANCELLED", "DELETED", "NO_SHOW", "DISCONTINUED")
    for kind, code in resources:
        await conn.execute(
            "INSERT INTO appointment_resources (appointment_id, kind, code, start_at, end_at, active) "
            "VALUES ($1, $2, $3, $4, $5, $6)", appointment_id, kind, code, start, end, active)
    return appointment_id


@pytest.fixture
async def conn(store: Store):
    async with store.connection() as c:
        yield c


async def test_half_open_boundaries(conn: asyncpg.Connection) -> None:
    await book(conn, "c|F:A", T, T + H)
    for start, end, hits in [
        (T + H, T + 2 * H, 0),                    # starts when A ends: touching, no overlap
        (T - H, T, 0),                            # ends when A starts
        (T + H - timedelta(microseconds=1), T + 2 * H, 1),
        (T - H, T + timedelta(microseconds=1), 1),
        (T + timedelta(minutes=10), T + timedelta(minutes=20), 1),   # inside
        (T - H, T + 2 * H, 1),                    # around
    ]:
        found = await find_overlapping(conn, locations=["CT1"], start=start, end=end)
        assert len(found) == hits, (start, end)


async def test_only_the_named_resources_and_kinds(conn: asyncpg.Connection) -> None:
    await book(conn, "c|F:A", T, T + H, resources=(("location", "CT1"), ("personnel", "DrX"),
                                                  ("service", "CTHEAD"), ("general", "SCN1")))
    assert await find_overlapping(conn, locations=["CT2"], start=T, end=T + H) == []
    assert await find_overlapping(conn, personnel=["CT1"], start=T, end=T + H) == []
    found = await find_overlapping(conn, locations=["CT1"], personnel=["DrX"], general=["SCN1"],
                                   start=T, end=T + H)
    assert sorted((r["match"], r["code"]) for r in found) == [
        ("general", "SCN1"), ("location", "CT1"), ("personnel", "DrX")]
    row = found[0]
    assert (row["appointment_key"], row["status"], row["start_at"], row["end_at"]) == (
        "c|F:A", "SCHEDULED", T, T + H)


async def test_inactive_and_excluded_appointments_do_not_count(conn: asyncpg.Connection) -> None:
    await book(conn, "c|F:A", T, T + H, status="CANCELLED")
    await book(conn, "c|F:B", T, T + H, status="NO_SHOW")
    await book(conn, "c|F:C", T, T + H, alt_key="c|P:C")
    assert [r["appointment_key"] for r in await find_overlapping(
        conn, locations=["CT1"], start=T, end=T + H)] == ["c|F:C"]
    assert await find_overlapping(conn, locations=["CT1"], start=T, end=T + H,
                                  exclude_key="c|F:C") == []
    assert await find_overlapping(conn, locations=["CT1"], start=T, end=T + H,
                                  exclude_key=["c|P:C"]) == []


async def test_patient_overlaps(conn: asyncpg.Connection) -> None:
    await book(conn, "c|F:A", T, T + H, resources=(), patient="H|42")
    await book(conn, "c|F:B", T + H, T + 2 * H, resources=(), patient="H|42")
    await book(conn, "c|F:C", T, T + H, resources=(), patient="")
    found = await find_overlapping(conn, patient_key="H|42", start=T + timedelta(minutes=30),
                                   end=T + H + timedelta(minutes=1))
    assert sorted(r["appointment_key"] for r in found) == ["c|F:A", "c|F:B"]
    assert {r["match"] for r in found} == {"patient"}
    assert await find_overlapping(conn, patient_key="", start=T, end=T + H) == []
    assert await find_overlapping(conn, patient_key="H|42", start=T + 2 * H, end=T + 3 * H) == []


async def test_long_bookings_are_found_from_any_point(conn: asyncpg.Connection) -> None:
    await book(conn, "c|F:LONG", T, T + timedelta(days=3))
    found = await find_overlapping(conn, locations=["CT1"], start=T + timedelta(days=2),
                                   end=T + timedelta(days=2, minutes=5))
    assert [r["appointment_key"] for r in found] == ["c|F:LONG"]


async def test_bookings_of_every_length_are_found(conn: asyncpg.Connection) -> None:
    """Short (at most 2 h), day-long and multi-day bookings each have their own index and
    look-back; every one that overlaps is found, none that merely touches."""
    await book(conn, "c|F:SHORT", T - 2 * H + timedelta(minutes=1), T + timedelta(minutes=1))
    await book(conn, "c|F:TOUCH", T - 2 * H, T)                         # ends as the slot begins
    await book(conn, "c|F:DAY", T - 20 * H, T + timedelta(minutes=5))
    await book(conn, "c|F:DAYTOUCH", T - 24 * H, T)
    await book(conn, "c|F:MULTI", T - timedelta(days=3), T + timedelta(days=1))
    found = await find_overlapping(conn, locations=["CT1"], start=T, end=T + H)
    assert sorted(r["appointment_key"] for r in found) == ["c|F:DAY", "c|F:MULTI", "c|F:SHORT"]


async def test_overlap_query_uses_the_indexes(conn: asyncpg.Connection) -> None:
    """The statement inside radsched_overlapping, planned generically, uses the indexes."""
    source = await conn.fetchval("SELECT prosrc FROM pg_proc WHERE proname = 'radsched_overlapping'")
    query = source.split("RETURN QUERY", 1)[1].rsplit(";", 1)[0]
    for name, value in [("p_kinds", "$1"), ("p_codes", "$2"), ("p_start", "$3"), ("p_end", "$4"),
                        ("p_patient", "$5"), ("p_exclude", "$6")]:
        query = query.replace(name, value)
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute("PREPARE overlap(text[], text[], timestamptz, timestamptz, text, text[]) AS "
                       + query)
    plan = "\n".join(r[0] for r in await conn.fetch(
        "EXPLAIN EXECUTE overlap('{location}', '{CT1}', now(), now() + interval '1 hour', "
        "'H|1', '{}')"))
    await conn.execute("DEALLOCATE overlap")
    await conn.execute("RESET plan_cache_mode")
    assert all(f"appointment_resources_{name} " in plan for name in ("slot", "day", "booked_long"))
    assert "appointments_patient_active" in plan


def test_keys_and_lock_names() -> None:
    event = AppointmentEvent(trigger="S12", placer_id="P1", filler_id="F1", start=T, duration=H,
                             patient=None)
    assert appointment_keys("sched", event) == ("sched|F:F1", "sched|P:P1")
    assert slot_lock_names("location", "CT1", T, T + H) == ["res|location|CT1|2025-05-01"]
    assert slot_lock_names("location", "CT1", T + 13 * H, T + 15 * H) == [
        "res|location|CT1|2025-05-01", "res|location|CT1|2025-05-02"]
    assert patient_lock_name("H|1") == "pat|H|1"


async def test_lock_keys_serialise_transactions(store: Store) -> None:
    async with store.connection() as a, store.connection() as b:
        async with a.transaction():
            await lock_keys(a, ["res|location|CT1|2025-05-01", "pat|H|1"])
            async with b.transaction():
                await b.execute("SET LOCAL lock_timeout = '50ms'")
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await lock_keys(b, ["pat|H|1"])
            async with b.transaction():
                await lock_keys(b, ["pat|H|2"])              # other keys do not wait
        async with b.transaction():                          # released at commit
            await lock_keys(b, ["pat|H|1", "res|location|CT1|2025-05-01"])


async def test_booking_probe_is_keyed_by_resource_on_a_new_database(
        conn: asyncpg.Connection) -> None:
    """radsched_book's neighbour probe, planned generically on tables without statistics (a
    new database), looks up each resource's own bookings: kind and code are index conditions
    of every branch, not a filter over every resource busy in the same hours."""
    source = await conn.fetchval("SELECT prosrc FROM pg_proc WHERE proname = 'radsched_book'")
    start = source.index("SELECT array_agg(DISTINCT h.aid)")
    query = source[start:source.index(") AS h;", start) + len(") AS h")].replace(" INTO v_ids", "")
    for name, value in [("p_kinds", "$1"), ("p_codes", "$2"), ("p_start", "$3"), ("p_end", "$4"),
                        ("p_patient", "$5"), ("p_from", "$6"), ("p_to", "$7")]:
        query = query.replace(name, value)
    assert await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = "
                               "'appointment_resources'") < 0          # never analysed
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute("PREPARE probe(text[], text[], timestamptz, timestamptz, text, timestamptz, "
                       "timestamptz) AS " + query)
    lines = [r[0] for r in await conn.fetch(
        "EXPLAIN EXECUTE probe('{location}', '{CT1}', now(), now() + interval '1 hour', 'H|1', "
        "now(), now() + interval '1 hour')")]
    await conn.execute("DEALLOCATE probe")
    await conn.execute("RESET plan_cache_mode")
    for index in ("slot", "day", "booked_long"):
        at = next(i for i, line in enumerate(lines) if f"appointment_resources_{index} " in line)
        cond = next(line for line in lines[at + 1:] if "Index Cond" in line)
        assert "(kind = " in cond and "(code = " in cond, "\n".join(lines)
