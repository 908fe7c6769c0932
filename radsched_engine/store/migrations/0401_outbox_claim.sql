-- Outbox claims whose cost does not grow with the backlog (notify issue: ACK latency).
--
-- The worker's claim asked for the oldest few due rows of a kind that no earlier open row of the
-- same order key holds back. Its plan read every due row of every kind (bitmap scan of
-- outbox_due), ran the order-key check for each, sorted them all and only then kept its LIMIT:
-- with texts sent at the provider's rate and bookings arriving faster, the backlog grew and
-- each claim cost ~4 µs per waiting row (20 ms at 5,000), on the core the engine's own
-- transactions need. Now the due index is ordered as the claim reads it (kind, then due time,
-- then id), and the claim walks it in that order and stops at its LIMIT; the check "an earlier
-- open row has this order key" reads outbox_order_key alone (order keys are one namespace for
-- every kind, producers prefix theirs with their kind: with "same kind" in it as well, a plan
-- made before the table had statistics could answer it from outbox_due, reading every row).
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (kind, next_attempt_at, id)
    WHERE status IN ('pending', 'retry', 'sending');

-- Only the appointment-delete trigger (0302) looked outbox rows up by appointment: one hash
-- join per DELETE statement does that without an index every enqueue has to maintain.
DROP INDEX outbox_appointment;

-- Claim up to p_limit due rows of p_kind (see radsched_engine/outbox.py): mark them 'sending'
-- with a lease until p_until, count the attempt; 'previous' is the status they had ('sending'
-- = a lease that expired: the worker reconciles before delivering again).
CREATE FUNCTION radsched_outbox_claim(p_kind text, p_now timestamptz, p_limit integer,
                                      p_until timestamptz)
RETURNS TABLE (id bigint, kind text, dedupe_key text, payload jsonb, attempts integer,
               created_at timestamptz, appointment_id integer, previous text)
LANGUAGE plpgsql
SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH due AS (
        SELECT o.id, o.status FROM outbox o
        WHERE o.kind = p_kind AND o.status IN ('pending', 'retry', 'sending')
          AND o.next_attempt_at <= p_now
          AND NOT EXISTS (
              SELECT 1 FROM outbox p
              WHERE o.order_key IS NOT NULL AND p.order_key = o.order_key AND p.id < o.id
                AND p.status IN ('pending', 'retry', 'sending'))
        ORDER BY o.next_attempt_at, o.id
        LIMIT p_limit
        FOR UPDATE OF o SKIP LOCKED
    )
    UPDATE outbox t SET status = 'sending', attempts = t.attempts + 1, locked_until = p_until,
                        next_attempt_at = p_until, updated_at = now()
    FROM due WHERE t.id = due.id
    RETURNING t.id, t.kind, t.dedupe_key, t.payload, t.attempts, t.created_at, t.appointment_id,
              due.status;
END
$$;
