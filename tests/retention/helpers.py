"""Rows of a given age in the journal and the outbox, written straight into a test database."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

NOW = datetime.now(UTC)


def raw_message(n: int) -> bytes:
    """A small project-owned SIU frame body (no real patient)."""
    return (f"MSH|^~\\&|RIS|HOSP|RADSCHED|RAD|20260101120000||SIU^S12|RET-{n:06d}|P|2.5\r"
            f"SCH||F{n}\rPID|||MRN{n:06d}||TESTPATIENT^ANNA\r").encode()


async def add_journal(store: Any, ages_days: list[float], *, channel: str = "ret",
                      outcome: str = "accepted", start: int = 0) -> list[int]:
    """One journal row per age (days before NOW), ids in the order given; returns the ids."""
    raws = [raw_message(start + i) for i in range(len(ages_days))]
    async with store.connection() as conn:
        rows = await conn.fetch(
            """INSERT INTO hl7_messages (channel, received_at, control_id, sending_application,
                                         sending_facility, message_type, raw, content_hash, outcome,
                                         ack_code)
               SELECT $1, r, c, 'RIS', 'HOSP', 'SIU^S12', b, sha256(b), $5, 'AA'
                 FROM unnest($2::timestamptz[], $3::text[], $4::bytea[]) WITH ORDINALITY
                      AS u(r, c, b, n)
                ORDER BY n
               RETURNING id""",
            channel, [NOW - timedelta(days=d) for d in ages_days],
            [f"RET-{start + i:06d}" for i in range(len(ages_days))], raws, outcome)
    return [r["id"] for r in rows]


async def add_outbox(store: Any, rows: list[tuple[str, float, float]], *, start: int = 0) -> list[int]:
    """Outbox rows (status, created days ago, last changed days ago); returns their ids."""
    ids = []
    async with store.connection() as conn:
        for i, (status, created, updated) in enumerate(rows):
            ids.append(await conn.fetchval(
                """INSERT INTO outbox (kind, dedupe_key, payload, status, created_at, updated_at)
                   VALUES ('sms', $1, $2::jsonb, $3, $4, $5) RETURNING id""",
                f"ret-{start + i}", {"to": "+15550100123", "body": "See you tomorrow"}, status,
                NOW - timedelta(days=created), NOW - timedelta(days=updated)))
    return ids


async def journal_state(store: Any) -> dict[int, int]:
    """id -> length of the stored raw bytes (0 = cleared), for every journal row."""
    async with store.connection() as conn:
        rows = await conn.fetch("SELECT id, octet_length(raw) AS n FROM hl7_messages ORDER BY id")
    return {r["id"]: r["n"] for r in rows}


async def outbox_ids(store: Any) -> list[int]:
    async with store.connection() as conn:
        return [r["id"] for r in await conn.fetch("SELECT id FROM outbox ORDER BY id")]


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
