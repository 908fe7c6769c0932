-- Hot path (throughput issue 4): a new booking's conflict read and its write in one function.
--
-- radsched_check_and_apply (0303) called radsched_conflict_context and radsched_apply_appointment
-- and copied each one's rows into its own result: three PL/pgSQL calls and two extra tuplestores
-- per booking, and the slot locks taken one statement each. radsched_book does the same work in
-- one function: the locks in one statement (the caller sorts them), the stored appointment
-- under the keys, its neighbours (skipped when that appointment is active: the booking is
-- answered AE 205 and no rule runs), then radsched_apply_appointment (redelivery check, write,
-- journal row). The neighbour search (the same bookings radsched_booked and the patient index
-- find) collects ids in one plain statement and reads the rows only when there are any: the
-- inlined radsched_booked (lateral union per resource) and the join, sort and hashing around it
-- cost about as much executor work as the booking's own write, for the common answer "none". Same rows as radsched_check_and_apply: 'self' and 'other' rows, then 'apply'.
-- (No redelivery check before the neighbours: the write's own claim answers a redelivery and
-- the rules then never run; the locks come first, as in every other path, so that the slot
-- locks are always taken before a message lock.)
CREATE FUNCTION radsched_book(
    p_locks bigint[], p_kinds text[], p_codes text[], p_start timestamptz, p_end timestamptz,
    p_patient text, p_from timestamptz, p_to timestamptz,
    p_meta jsonb, p_raw bytea, p_hash bytea, p_lock bigint, p_keys text[], p_trigger text,
    p_event_time timestamptz, p_fields jsonb, p_resources jsonb, p_merge boolean)
RETURNS TABLE (role text, id integer, appointment_key text, status text, urgency text,
               start_at timestamptz, end_at timestamptz, patient_key text,
               last_event_time timestamptz, last_message_id bigint, conflicts jsonb,
               resources jsonb, result text, detail text, journal_id bigint,
               appointment appointments)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    v_self integer;
    v_active boolean;
    v_ids integer[];
BEGIN
    IF p_locks IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(k) FROM unnest(p_locks) AS k;
    END IF;

    SELECT x.id, x.active INTO v_self, v_active FROM appointments AS x
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
                  FROM appointment_resources AS r WHERE r.appointment_id = a.id),
               NULL::text, NULL::text, NULL::bigint, NULL::appointments
          FROM appointments AS a WHERE a.id = v_self;
    END IF;

    IF p_kinds IS NOT NULL AND NOT coalesce(v_active, false) THEN
        -- Ids first, in one plain statement (index probes, no join, sort or hashing): most
        -- bookings have no neighbour at all, and then nothing else is read.
        SELECT array_agg(DISTINCT h.aid) INTO v_ids FROM (
            SELECT s.appointment_id AS aid
              FROM unnest(p_kinds, p_codes) AS q(kind, code)
              JOIN appointment_resources AS s
                ON s.kind = q.kind AND s.code = q.code AND s.active AND NOT s.long_booking
               AND s.kind <> 'service' AND s.start_at > p_start - interval '1 day'
               AND s.start_at < p_end AND s.end_at > p_start
            UNION ALL
            SELECT l.appointment_id          -- (OFFSET 0: probed per resource, never a scan
              FROM unnest(p_kinds, p_codes) AS q(kind, code)   -- of every long booking)
             CROSS JOIN LATERAL (
                    SELECT b.appointment_id FROM appointment_resources AS b
                     WHERE b.kind = q.kind AND b.code = q.code AND b.active AND b.long_booking
                       AND b.kind <> 'service' AND b.start_at < p_end AND b.end_at > p_start
                    OFFSET 0) AS l
            UNION ALL
            SELECT x.id
              FROM appointments AS x
             WHERE p_patient <> '' AND x.patient_key = p_patient AND x.active
               AND x.patient_key <> '' AND x.datetime < p_to AND x.end_at > p_from) AS h;
        IF v_ids IS NOT NULL THEN
            RETURN QUERY
            SELECT 'other'::text, a.id, a.appointment_key, a.status, a.urgency, a.datetime,
                   a.end_at, a.patient_key, a.last_event_time, a.last_message_id, NULL::jsonb,
                   (SELECT coalesce(jsonb_agg(jsonb_build_array(r.kind, r.code, r.text,
                                                                r.coding_system, r.role)
                                              ORDER BY r.id), '[]'::jsonb)
                      FROM appointment_resources AS r WHERE r.appointment_id = a.id),
                   NULL::text, NULL::text, NULL::bigint, NULL::appointments
              FROM appointments AS a
             WHERE a.id = ANY (v_ids) AND a.active AND a.id IS DISTINCT FROM v_self
               AND a.appointment_key <> ALL (p_keys) AND coalesce(a.alt_key, '') <> ALL (p_keys)
             ORDER BY a.datetime, a.id;
        END IF;
    END IF;

    RETURN QUERY
    SELECT 'apply'::text, NULL::integer, NULL::text, NULL::text, NULL::text, NULL::timestamptz,
           NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::bigint, NULL::jsonb,
           NULL::jsonb, x.result, x.detail, x.journal_id, x.appointment
      FROM radsched_apply_appointment(p_meta, p_raw, p_hash, p_lock, p_keys, p_trigger,
                                      p_event_time, p_fields, p_resources, p_merge) AS x;
END
$$;
