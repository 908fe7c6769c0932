-- The outbox's intake (notify issue: ACK latency with notify on).
--
-- A message's side effects were inserted into `outbox` itself inside its transaction: a heap
-- tuple, four index entries (primary key, dedupe key, due, order key) and ON CONFLICT's
-- speculative insertion, all on the path of the ACK; at one connection that row alone made the
-- ACK 7-10 % slower with no text sent at all (BENCHMARKS.md, notify notes). Now the message's
-- transaction appends the effect to `outbox_intake` (a heap tuple and one index entry, no
-- uniqueness check), still committed with the message. The outbox worker moves rows from the
-- intake into `outbox`, oldest first and one kind at a time, as it needs rows to deliver
-- (radsched_outbox_take): the dedupe key, the due time and the order key are applied there, in
-- the worker's own transaction, which deletes the intake rows it moved. A redelivered effect
-- (same dedupe key) is dropped when it is moved, as ON CONFLICT dropped it before.
--
-- Every reader of waiting rows also reads the intake: the worker's depth and oldest-age gauges
-- and `radsched-engine outbox` (status "intake"); deleting an appointment unlinks its intake
-- rows as it does its outbox rows (0302).
CREATE TABLE outbox_intake (
    id              bigint GENERATED ALWAYS AS IDENTITY,
    kind            text NOT NULL,
    dedupe_key      text NOT NULL,
    payload         json NOT NULL,            -- validated here, made jsonb when moved
    not_before      timestamptz,              -- first attempt not before (NULL: at once)
    appointment_id  integer,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_intake_queue ON outbox_intake (kind, id);

-- Stages' rows of a transaction (the unit of work's group commits and radsched_finish) now go
-- to the intake; the same argument as before: [{kind, dedupe_key, payload, not_before,
-- appointment_id}], in order. Returns the number of rows queued.
CREATE OR REPLACE FUNCTION radsched_enqueue(p_rows jsonb) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_count integer;
BEGIN
    INSERT INTO outbox_intake (kind, dedupe_key, payload, not_before, appointment_id)
    SELECT r.kind, r.dedupe_key, r.payload, r.not_before, r.appointment_id
      FROM jsonb_to_recordset(p_rows) AS r(kind text, dedupe_key text, payload json,
                                           not_before timestamptz, appointment_id integer);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- Move up to p_limit of the oldest intake rows of p_kind into the outbox (in intake order, so
-- the outbox ids keep a patient's texts in order); returns how many were taken from the intake
-- (a dropped duplicate counts). One mover per kind at a time (a transaction-level advisory
-- lock; a worker that does not get it moves nothing and claims what is there): two engines
-- moving at once would interleave their ids.
CREATE FUNCTION radsched_outbox_take(p_kind text, p_limit integer) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
SET enable_sort = off AS $$
DECLARE
    v_count integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(1919378803, hashtext(p_kind)) THEN
        RETURN 0;
    END IF;
    WITH taken AS (
        -- The rows by their tuple ids: a join on id would be planned for LIMIT's generic guess
        -- and read every waiting row of the kind (~10 ms at 100,000).
        DELETE FROM outbox_intake AS i
         WHERE i.ctid = ANY (ARRAY(SELECT q.ctid FROM outbox_intake AS q WHERE q.kind = p_kind
                                   ORDER BY q.id LIMIT p_limit))
        RETURNING i.*
    ), moved AS (
        INSERT INTO outbox (kind, dedupe_key, payload, next_attempt_at, appointment_id,
                            created_at, updated_at)
        SELECT t.kind, t.dedupe_key, t.payload::jsonb, coalesce(t.not_before, t.created_at),
               t.appointment_id, t.created_at, t.created_at
          FROM taken AS t
         ORDER BY t.id
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO v_count FROM taken;
    RETURN v_count;
END
$$;

CREATE OR REPLACE FUNCTION radsched_appointments_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM appointment_resources AS r USING gone AS g WHERE r.appointment_id = g.id;
    UPDATE outbox AS o SET appointment_id = NULL FROM gone AS g WHERE o.appointment_id = g.id;
    UPDATE outbox_intake AS i SET appointment_id = NULL FROM gone AS g WHERE i.appointment_id = g.id;
    RETURN NULL;
END
$$;
