-- Hot path (throughput issue): statements of the per-message functions keep one cached plan per
-- session instead of being planned again on every call.
--
-- PL/pgSQL caches a statement's plan per session, but in the default plan_cache_mode it keeps
-- building a custom plan for every call whenever the generic plan looks costlier. The
-- redelivery lookup in radsched_claim_message was such a statement: without the partial
-- index's own predicate (control_id <> '') a generic plan cannot use the unique index on
-- accepted messages, so every message paid a fresh plan (about 0.1 ms of server CPU). Each
-- statement below has a plan that does not depend on its parameters' values, so all of them
-- are forced generic.

CREATE OR REPLACE FUNCTION radsched_claim_message(p_lock bigint, p_channel text, p_application text,
                                                  p_facility text, p_control_id text, p_hash bytea,
                                                  OUT state text, OUT ack_code text)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_hash bytea;
BEGIN
    state := 'new';
    IF p_control_id = '' THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(p_lock);
    SELECT m.content_hash, m.ack_code INTO v_hash, ack_code
      FROM hl7_messages AS m
     WHERE m.channel = p_channel AND m.sending_application = p_application
       AND m.sending_facility = p_facility
       AND m.control_id = p_control_id AND m.outcome = 'accepted' AND m.control_id <> '';
    IF FOUND THEN
        state := CASE WHEN v_hash = p_hash THEN 'duplicate' ELSE 'reused' END;
    END IF;
END
$$;

ALTER FUNCTION radsched_journal(bigint, jsonb, bytea, bytea)
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION radsched_apply_appointment(jsonb, bytea, bytea, bigint, text[], text, timestamptz,
                                          jsonb, jsonb, boolean)
    SET plan_cache_mode = force_generic_plan;

-- Outbox rows of a whole batch of messages in one statement (the unit of work writes the rows
-- its stages queued just before it commits). p_rows: [{kind, dedupe_key, payload,
-- not_before, appointment_id}]; a dedupe key already present keeps the first row.
CREATE FUNCTION radsched_enqueue(p_rows jsonb) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_count integer;
BEGIN
    INSERT INTO outbox (kind, dedupe_key, payload, next_attempt_at, appointment_id)
    SELECT r.kind, r.dedupe_key, r.payload, coalesce(r.not_before, now()), r.appointment_id
      FROM jsonb_to_recordset(p_rows) AS r(kind text, dedupe_key text, payload jsonb,
                                           not_before timestamptz, appointment_id integer)
    ON CONFLICT (dedupe_key) DO NOTHING;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
