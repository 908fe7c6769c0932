-- Hot path (throughput issues 3 and 4): the neighbour search reads a booking's hours, not its day.
--
-- "Active bookings of resource R overlapping [t1, t2)" was one btree range scan over the
-- bookings of at most a day that start after t1 - 1 day (appointment_resources_booked): every
-- booking of that room or technologist in the previous 24 hours, each a heap visit while the
-- row is newer than the last vacuum, to keep the one or two that overlap. A CT room booked
-- every 30 minutes made that 47 index entries and 47 heap visits per resource (about half a
-- millisecond of server time per booking with a room and a technologist). Bookings are now
-- indexed by length: at most 2 hours (nearly all exams; look back 2 hours), 2 hours to a day
-- (look back a day; rare), longer than a day (their own index, as before). A row is in exactly
-- one of the three, so a booking costs no more index insertions than before; a probe reads
-- about 2 hours of the resource's bookings. Both functions that search (radsched_booked, and
-- radsched_book from 0310) are replaced with the three-way search; statements repeat each
-- index's predicate so that the generic plans PL/pgSQL caches can use it.

CREATE INDEX appointment_resources_slot ON appointment_resources (kind, code, start_at)
    INCLUDE (end_at, appointment_id)
    WHERE active AND kind <> 'service' AND end_at - start_at <= interval '2 hours';
CREATE INDEX appointment_resources_day ON appointment_resources (kind, code, start_at)
    INCLUDE (end_at, appointment_id)
    WHERE active AND kind <> 'service' AND end_at - start_at > interval '2 hours'
      AND NOT long_booking;
DROP INDEX appointment_resources_booked;

CREATE OR REPLACE FUNCTION radsched_booked(p_kinds text[], p_codes text[], p_start timestamptz,
                                           p_end timestamptz)
RETURNS TABLE (appointment_id integer, kind text, code text, start_at timestamptz,
               end_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT r.appointment_id, r.kind, r.code, r.start_at, r.end_at
      FROM unnest(p_kinds, p_codes) AS q(kind, code)
     CROSS JOIN LATERAL (
            SELECT s.appointment_id, s.kind, s.code, s.start_at, s.end_at
              FROM appointment_resources AS s
             WHERE s.kind = q.kind AND s.code = q.code AND s.active AND s.kind <> 'service'
               AND s.end_at - s.start_at <= interval '2 hours'
               AND s.start_at > p_start - interval '2 hours'
               AND s.start_at < p_end AND s.end_at > p_start
            UNION ALL
            SELECT d.appointment_id, d.kind, d.code, d.start_at, d.end_at
              FROM appointment_resources AS d
             WHERE d.kind = q.kind AND d.code = q.code AND d.active AND d.kind <> 'service'
               AND d.end_at - d.start_at > interval '2 hours' AND NOT d.long_booking
               AND d.start_at > p_start - interval '1 day'
               AND d.start_at < p_end AND d.end_at > p_start
            UNION ALL
            SELECT l.appointment_id, l.kind, l.code, l.start_at, l.end_at
              FROM appointment_resources AS l
             WHERE l.kind = q.kind AND l.code = q.code AND l.active AND l.long_booking
               AND l.kind <> 'service' AND l.start_at < p_end AND l.end_at > p_start) AS r
$$;

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
        -- Ids first, in one plain statement (index probes, no join, sort or hashing): most
        -- bookings have no neighbour at all, and then nothing else is read.
        SELECT array_agg(DISTINCT h.aid) INTO v_ids FROM (
            SELECT s.appointment_id AS aid
              FROM unnest(p_kinds, p_codes) AS q(kind, code)
              JOIN appointment_resources AS s
                ON s.kind = q.kind AND s.code = q.code AND s.active AND s.kind <> 'service'
               AND s.end_at - s.start_at <= interval '2 hours'
               AND s.start_at > p_start - interval '2 hours'
               AND s.start_at < p_end AND s.end_at > p_start
            UNION ALL
            SELECT d.appointment_id
              FROM unnest(p_kinds, p_codes) AS q(kind, code)
              JOIN appointment_resources AS d
                ON d.kind = q.kind AND d.code = q.code AND d.active AND d.kind <> 'service'
               AND d.end_at - d.start_at > interval '2 hours' AND NOT d.long_booking
               AND d.start_at > p_start - interval '1 day'
               AND d.start_at < p_end AND d.end_at > p_start
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
