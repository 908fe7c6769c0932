-- Conflict check (the conflict_check stage and the AI review): one round trip that locks the
-- booking's slots, stops on a redelivery, and returns the stored appointment and its neighbours;
-- and the statement that keeps findings symmetric between two appointments.

-- Returns one row per appointment with its resources as [[kind, code, text, coding_system, role]]:
--   role 'duplicate' / 'reused' (and nothing else): p_claim names a message already accepted
--   role 'self'   the appointment stored under p_keys (best key first, then alt_key), if any
--   role 'other'  each active appointment, other than self, that holds one of the resources
--                 (p_kinds/p_codes) during [p_start, p_end) or belongs to p_patient and
--                 overlaps [p_from, p_to)  (only when p_kinds is not NULL)
-- p_locks are taken first, in the order given (the caller sorts them: one global order, no
-- deadlocks); each later statement takes a fresh snapshot, so it sees what the previous holder
-- of those locks committed. p_claim: NULL or {lock, channel, application, facility, control_id}.
CREATE FUNCTION radsched_conflict_context(
    p_locks bigint[], p_claim jsonb, p_hash bytea, p_keys text[],
    p_kinds text[], p_codes text[], p_start timestamptz, p_end timestamptz,
    p_patient text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (role text, id integer, appointment_key text, status text, urgency text,
               start_at timestamptz, end_at timestamptz, patient_key text,
               last_event_time timestamptz, last_message_id bigint, conflicts jsonb,
               resources jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    k bigint;
    v_state text;
    v_self integer;
BEGIN
    IF p_locks IS NOT NULL THEN
        FOREACH k IN ARRAY p_locks LOOP
            PERFORM pg_advisory_xact_lock(k);
        END LOOP;
    END IF;
    IF p_claim IS NOT NULL AND coalesce(p_claim->>'control_id', '') <> '' THEN
        SELECT c.state INTO v_state
          FROM radsched_claim_message((p_claim->>'lock')::bigint, p_claim->>'channel',
                                      p_claim->>'application', p_claim->>'facility',
                                      p_claim->>'control_id', p_hash) AS c;
        IF v_state <> 'new' THEN
            RETURN QUERY SELECT v_state, NULL::integer, NULL::text, NULL::text, NULL::text,
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
        SELECT r.appointment_id AS aid
          FROM unnest(p_kinds, p_codes) AS q(kind, code)
          JOIN appointment_resources AS r
            ON radsched_slot(r.kind, r.code, r.start_at, r.end_at)
               && radsched_slot(q.kind, q.code, p_start, p_end)
           AND r.active AND r.kind <> 'service'
           AND r.kind = q.kind AND r.code = q.code AND r.start_at < p_end AND r.end_at > p_start
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
RETURNS integer LANGUAGE plpgsql AS $$
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
