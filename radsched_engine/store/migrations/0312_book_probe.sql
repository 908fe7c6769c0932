-- Hot path (issues 3 and 4): radsched_book's neighbour probe keyed by resource whatever the statistics.
--
-- PL/pgSQL plans radsched_book's statements once per connection, generically (0310), and on a
-- table without statistics (a new database, or one that grew since autovacuum's last ANALYZE)
-- the planner chose, for the "at most 2 hours" and "up to a day" branches of 0311, an index
-- scan on start_at alone with kind and code checked by a join filter: every booking of every
-- room and person in the window was read to find those of the booking's own resources
-- (measured: about 375 buffer reads and 440 us of server time per booking once ~9,000
-- bookings were stored, growing with the number of resources busy in the same hours).
-- As the long-booking branch already did, each branch is now a LATERAL subquery over one
-- (kind, code) with OFFSET 0, so its only plans are index probes with kind, code and the time
-- window as index conditions. Results are unchanged.

CREATE OR REPLACE FUNCTION radsched_book(
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
        -- Ids first, in one plain statement: most bookings have no neighbour at all, and then
        -- nothing else is read. Each branch is probed per resource (LATERAL ... OFFSET 0).
        SELECT array_agg(DISTINCT h.aid) INTO v_ids FROM (
            SELECT s.appointment_id AS aid
              FROM unnest(p_kinds, p_codes) AS q(kind, code)
             CROSS JOIN LATERAL (
                    SELECT s.appointment_id FROM appointment_resources AS s
                     WHERE s.kind = q.kind AND s.code = q.code AND s.active
                       AND s.kind <> 'service' AND s.end_at - s.start_at <= interval '2 hours'
                       AND s.start_at > p_start - interval '2 hours'
                       AND s.start_at < p_end AND s.end_at > p_start
                    OFFSET 0) AS s
            UNION ALL
            SELECT d.appointment_id
              FROM unnest(p_kinds, p_codes) AS q(kind, code)
             CROSS JOIN LATERAL (
                    SELECT b.appointment_id FROM appointment_resources AS b
                     WHERE b.kind = q.kind AND b.code = q.code AND b.active
                       AND b.kind <> 'service' AND b.end_at - b.start_at > interval '2 hours'
                       AND NOT b.long_booking AND b.start_at > p_start - interval '1 day'
                       AND b.start_at < p_end AND b.end_at > p_start
                    OFFSET 0) AS d
            UNION ALL
            SELECT l.appointment_id
              FROM unnest(p_kinds, p_codes) AS q(kind, code)
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
