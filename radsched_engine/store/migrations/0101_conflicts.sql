-- Conflict check (the conflict_check stage and the AI review): one round trip that locks the
-- booking's slots, stops on a redelivery, and returns the stored appointment and its neighbours;
-- and the statement that keeps findings symmetric between two appointments.

-- Returns one row per appointment with its resources as [[kind, code, text, coding_system, role]]:
--   role 'duplicate' / 'reused' (and nothing else): p_claim names a message already accepted
--                 with the same / other content (persist then gives its answer)
--   role 'self'   the appointment stored under p_keys (best key first, then alt_key), if any
--   role 'other'  (only when p_kinds is not NULL) each active appointment, other than self,
--                 that holds one of the resources (p_kinds/p_codes) during [p_start, p_end)
--                 (radsched_booked: btree range scans) or belongs to p_patient and overlaps
--                 [p_from, p_to) (appointments_patient_active)
-- p_locks are taken first, in the order given (the caller sorts them: one global order, no
-- deadlocks), then p_claim's message lock (the one radsched_claim_message takes, so persist's
-- later claim is re-entrant); each later statement takes a fresh snapshot, so it sees what the
-- previous holder of those locks committed. p_claim: NULL or {lock, channel, application,
-- facility, control_id}.
-- On PL/pgSQL's cached generic plans: with custom plans the planner would plan the neighbour
-- search afresh on every call (about 0.5 ms, ten times its run time). Every statement here has
-- a plan that does not depend on the parameters' values; the redelivery check repeats the
-- partial index's predicate (control_id <> '') so that a generic plan can use that index.
CREATE FUNCTION radsched_conflict_context(
    p_locks bigint[], p_claim jsonb, p_hash bytea, p_keys text[],
    p_kinds text[], p_codes text[], p_start timestamptz, p_end timestamptz,
    p_patient text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (role text, id integer, appointment_key text, status text, urgency text,
               start_at timestamptz, end_at timestamptz, patient_key text,
               last_event_time timestamptz, last_message_id bigint, conflicts jsonb,
               resources jsonb)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    k bigint;
    v_hash bytea;
    v_self integer;
BEGIN
    IF p_locks IS NOT NULL THEN
        FOREACH k IN ARRAY p_locks LOOP
            PERFORM pg_advisory_xact_lock(k);
        END LOOP;
    END IF;
    IF p_claim IS NOT NULL AND coalesce(p_claim->>'control_id', '') <> '' THEN
        PERFORM pg_advisory_xact_lock((p_claim->>'lock')::bigint);
        SELECT m.content_hash INTO v_hash FROM hl7_messages AS m
         WHERE m.channel = p_claim->>'channel' AND m.sending_application = p_claim->>'application'
           AND m.sending_facility = p_claim->>'facility' AND m.control_id = p_claim->>'control_id'
           AND m.outcome = 'accepted' AND m.control_id <> '';
        IF FOUND THEN
            RETURN QUERY SELECT CASE WHEN v_hash = p_hash THEN 'duplicate' ELSE 'reused' END,
                                NULL::integer, NULL::text, NULL::text, NULL::text,
                                NULL::timestamptz, NULL::timestamptz, NULL::text,
                                NULL::timestamptz, NULL::bigint, NULL::jsonb, NULL::jsonb;
            RETURN;
        END IF;
    END IF;

    SELECT x.id INTO v_self FROM appointments AS x
     WHERE x.appointment_key = ANY (p_keys) OR x.alt_key = ANY (p_keys)
     ORDER BY x.appointment_key = p_keys[1] DESC, x.appointment_key = ANY (p_keys) DESC,
              x.active DESC, x.id DESC
     LIMIT 1;
    IF v_self IS NOT NULL THEN
        RETURN QUERY
        SELECT 'self'::text, a.id, a.appointment_key, a.status, a.urgency, a.datetime, a.end_at,
               a.patient_key, a.last_event_time, a.last_message_id, a.conflicts,
               (SELECT coalesce(jsonb_agg(jsonb_build_array(r.kind, r.code, r.text, r.coding_system,
                                                            r.role) ORDER BY r.id), '[]'::jsonb)
                  FROM appointment_resources AS r WHERE r.appointment_id = a.id)
          FROM appointments AS a WHERE a.id = v_self;
    END IF;
    IF p_kinds IS NULL THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH hits AS (
        SELECT b.appointment_id AS aid
          FROM radsched_booked(p_kinds, p_codes, p_start, p_end) AS b
        UNION
        SELECT x.id
          FROM appointments AS x
         WHERE p_patient <> '' AND x.patient_key = p_patient AND x.active AND x.patient_key <> ''
           AND x.datetime < p_to AND x.end_at > p_from
    )
    SELECT 'other'::text, a.id, a.appointment_key, a.status, a.urgency, a.datetime, a.end_at,
           a.patient_key, a.last_event_time, a.last_message_id, NULL::jsonb,
           (SELECT coalesce(jsonb_agg(jsonb_build_array(r.kind, r.code, r.text, r.coding_system,
                                                        r.role) ORDER BY r.id), '[]'::jsonb)
              FROM appointment_resources AS r WHERE r.appointment_id = a.id)
      FROM hits JOIN appointments AS a ON a.id = hits.aid
     WHERE a.active AND a.id IS DISTINCT FROM v_self
       AND a.appointment_key <> ALL (p_keys) AND coalesce(a.alt_key, '') <> ALL (p_keys)
     ORDER BY a.datetime, a.id;
END
$$;

-- Keep findings symmetric. On every appointment named in p_strip (by key) drop the findings
-- whose "other" is p_key (that appointment moved, changed or ended); on every appointment
-- named in p_add ({"<id>": [finding, ...]}) append those findings; the appointment p_clear
-- (an ended one) loses all its findings. A conflicts value that is not a JSON array (written
-- by someone else) is replaced. Returns the number of appointments changed.
CREATE FUNCTION radsched_conflict_links(p_key text, p_strip text[], p_add jsonb, p_clear integer)
RETURNS integer LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE appointments AS a SET
        conflicts = CASE WHEN a.id = p_clear THEN '[]'::jsonb ELSE
            (SELECT coalesce(jsonb_agg(t.e ORDER BY t.n), '[]'::jsonb)
               FROM jsonb_array_elements(CASE WHEN jsonb_typeof(a.conflicts) = 'array'
                                              THEN a.conflicts ELSE '[]'::jsonb END)
                    WITH ORDINALITY AS t(e, n)
              WHERE t.e->>'other' IS DISTINCT FROM p_key)
            || coalesce(p_add -> a.id::text, '[]'::jsonb) END,
        updated_at = now()
     WHERE a.appointment_key = ANY (coalesce(p_strip, '{}'))
        OR a.id = ANY (ARRAY(SELECT jsonb_object_keys(coalesce(p_add, '{}'::jsonb))::integer))
        OR a.id = p_clear;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
