-- Group commit (issue 3): the new bookings of a whole batch written set-wise.
--
-- A group-commit batch ran one statement per message (radsched_book, or radsched_apply_appointment
-- when the channel has no conflict check), each a PL/pgSQL call of some twenty statements for one
-- row per table. The engine sends a batch's calls here together, as arrays (member i's arguments
-- at index i; every member's lock keys in p_locks, every probed resource in p_kinds / p_codes
-- with its member in p_res_member; p_key2[i] NULL when the message has one id; p_book[i] false =
-- a call without conflict check, no neighbour probe), when it has
-- checked that they cannot see each other (``appointments.set_wise``): every call an S12 with
-- resources and no order references, no two with a common appointment key, message or lock
-- name (so no two are neighbours: two bookings that overlap on a resource share that
-- resource-day's lock, two of one patient the patient's). Then the calls' effects do not depend
-- on their order, and one statement per table does what one call per message did: the locks,
-- one look for redeliveries and appointments stored under the keys (if any is found the batch
-- needs the per-call path: one row with role 'fallback' comes back, nothing written, the locks
-- stay, and the engine sends the calls one by one, as before), one for the stored neighbours,
-- then the writes. Each member's rows come back as radsched_book's would: its neighbours
-- ('other'), then one 'apply' row as radsched_apply_appointment answers ('applied', or
-- 'exists' when a concurrent transaction stored the key meanwhile).

CREATE FUNCTION radsched_book_set(
    p_book boolean[], p_locks bigint[], p_res_member integer[], p_kinds text[], p_codes text[],
    p_start timestamptz[], p_end timestamptz[], p_patient text[], p_from timestamptz[],
    p_to timestamptz[], p_meta jsonb[], p_raw bytea[], p_hash bytea[], p_lock bigint[],
    p_key1 text[], p_key2 text[], p_trigger text[], p_event_time timestamptz[],
    p_fields jsonb[], p_resources jsonb[])
RETURNS TABLE (member integer, role text, id integer, appointment_key text, status text,
               urgency text, start_at timestamptz, end_at timestamptz, patient_key text,
               last_event_time timestamptz, last_message_id bigint, conflicts jsonb,
               resources jsonb, result text, detail text, journal_id bigint,
               appointment appointments)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    v_journal bigint[];
    v_rows appointments[];
    v_member_of integer[];
    v_neighbour integer[];
BEGIN
    PERFORM pg_advisory_xact_lock(s.k)
       FROM (SELECT DISTINCT k FROM unnest(p_locks) AS k) AS s ORDER BY s.k;
    PERFORM pg_advisory_xact_lock(s.k)
       FROM (SELECT DISTINCT p_lock[i] AS k FROM generate_subscripts(p_book, 1) AS i
              WHERE coalesce(p_meta[i]->>'control_id', '') <> '') AS s ORDER BY s.k;

    IF EXISTS (SELECT 1 FROM generate_subscripts(p_book, 1) AS i
                CROSS JOIN LATERAL (
                       SELECT 1 FROM hl7_messages AS m
                        WHERE m.channel = p_meta[i]->>'channel'
                          AND m.sending_application = p_meta[i]->>'sending_application'
                          AND m.sending_facility = p_meta[i]->>'sending_facility'
                          AND m.control_id = p_meta[i]->>'control_id'
                          AND m.outcome = 'accepted' AND m.control_id <> ''
                       OFFSET 0) AS c)
       OR EXISTS (SELECT 1 FROM appointments AS x
                   WHERE x.appointment_key = ANY (p_key1 || p_key2)
                      OR x.alt_key = ANY (p_key1 || p_key2))
    THEN
        RETURN QUERY SELECT 0, 'fallback'::text, NULL::integer, NULL::text, NULL::text,
            NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::timestamptz,
            NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text, NULL::text, NULL::bigint,
            NULL::appointments;
        RETURN;
    END IF;

    -- The stored neighbours of each booking (no other member of the batch can be one: see
    -- above), read before anything is written, as radsched_book reads them (same branches).
    SELECT array_agg(h.i ORDER BY h.i, h.aid), array_agg(h.aid ORDER BY h.i, h.aid)
      INTO v_member_of, v_neighbour
      FROM (SELECT DISTINCT u.i, u.aid FROM (
                SELECT q.i, s.aid FROM unnest(p_res_member, p_kinds, p_codes) AS q(i, kind, code)
                 CROSS JOIN LATERAL (
                        SELECT s.appointment_id AS aid FROM appointment_resources AS s
                         WHERE s.kind = q.kind AND s.code = q.code AND s.active
                           AND s.kind <> 'service' AND s.end_at - s.start_at <= interval '2 hours'
                           AND s.start_at > p_start[q.i] - interval '2 hours'
                           AND s.start_at < p_end[q.i] AND s.end_at > p_start[q.i]
                        OFFSET 0) AS s
                UNION ALL
                SELECT q.i, d.aid FROM unnest(p_res_member, p_kinds, p_codes) AS q(i, kind, code)
                 CROSS JOIN LATERAL (
                        SELECT b.appointment_id AS aid FROM appointment_resources AS b
                         WHERE b.kind = q.kind AND b.code = q.code AND b.active
                           AND b.kind <> 'service' AND b.end_at - b.start_at > interval '2 hours'
                           AND NOT b.long_booking AND b.start_at > p_start[q.i] - interval '1 day'
                           AND b.start_at < p_end[q.i] AND b.end_at > p_start[q.i]
                        OFFSET 0) AS d
                UNION ALL
                SELECT q.i, l.aid FROM unnest(p_res_member, p_kinds, p_codes) AS q(i, kind, code)
                 CROSS JOIN LATERAL (
                        SELECT b.appointment_id AS aid FROM appointment_resources AS b
                         WHERE b.kind = q.kind AND b.code = q.code AND b.active AND b.long_booking
                           AND b.kind <> 'service' AND b.start_at < p_end[q.i]
                           AND b.end_at > p_start[q.i]
                        OFFSET 0) AS l
                UNION ALL
                SELECT i, p.aid FROM generate_subscripts(p_book, 1) AS i
                 CROSS JOIN LATERAL (
                        SELECT x.id AS aid FROM appointments AS x
                         WHERE p_book[i] AND p_patient[i] <> '' AND x.patient_key = p_patient[i]
                           AND x.active AND x.patient_key <> '' AND x.datetime < p_to[i]
                           AND x.end_at > p_from[i]
                        OFFSET 0) AS p
            ) AS u) AS h;

    v_journal := ARRAY(SELECT nextval('hl7_messages_id_seq') FROM generate_subscripts(p_book, 1));
    WITH ins AS (
        INSERT INTO appointments AS x (
            appointment_key, alt_key, channel, sending_application, sending_facility,
            patient_id, patient_name, patient_phone, patient_key, modality, study_type,
            datetime, duration, end_at, status, status_raw, referring_physician, urgency, notes,
            reason, conflicts, placer_id, filler_id, order_refs, last_trigger, last_event_time,
            last_message_id)
        SELECT p_key1[i], p_key2[i], p_meta[i]->>'channel',
               coalesce(p_meta[i]->>'sending_application', ''),
               coalesce(p_meta[i]->>'sending_facility', ''),
               coalesce(r.patient_id, ''), coalesce(r.patient_name, ''), r.patient_phone,
               coalesce(r.patient_key, ''), coalesce(r.modality, ''), coalesce(r.study_type, ''),
               r.datetime, ceil(extract(epoch FROM (r.datetime + d.d) - r.datetime) / 60)::integer,
               r.datetime + d.d, coalesce(r.status, 'SCHEDULED'), r.status_raw,
               r.referring_physician, coalesce(r.urgency, 'routine'), r.notes, r.reason,
               r.conflicts, r.placer_id, r.filler_id, coalesce(r.order_refs, '{}'),
               p_trigger[i], p_event_time[i], v_journal[i]
          FROM generate_subscripts(p_book, 1) AS i
         CROSS JOIN LATERAL jsonb_populate_record(NULL::appointments, p_fields[i]) AS r
         CROSS JOIN LATERAL (SELECT make_interval(
                    secs => (p_fields[i]->>'duration_seconds')::float8) AS d) AS d
         ORDER BY i
        ON CONFLICT (appointment_key) DO NOTHING
        RETURNING x.*)
    SELECT array_agg(ins) INTO v_rows FROM ins;

    INSERT INTO appointment_resources (appointment_id, kind, code, text, coding_system, role,
                                       start_at, end_at, own_time, active)
    SELECT a.id, n.kind, n.code, coalesce(n.text, ''), coalesce(n.coding_system, ''),
           coalesce(n.role, ''), coalesce(n.start_at, a.datetime),
           coalesce(n.end_at, coalesce(n.start_at, a.datetime) + (a.end_at - a.datetime)),
           n.start_at IS NOT NULL, a.active
      FROM generate_subscripts(p_book, 1) AS i
      JOIN unnest(v_rows) AS a ON a.appointment_key = p_key1[i]
     CROSS JOIN LATERAL jsonb_to_recordset(p_resources[i]) AS n(
           kind text, code text, text text, coding_system text, role text, action text,
           start_at timestamptz, end_at timestamptz)
     WHERE coalesce(n.action, '') <> 'D'
     ORDER BY i;

    INSERT INTO hl7_messages (id, channel, received_at, peer, control_id, sending_application,
                              sending_facility, message_type, raw, content_hash, outcome, ack_code,
                              error_code, error_location, error, warnings, appointment_id)
    SELECT v_journal[i], m.channel, m.received_at, coalesce(m.peer, ''),
           coalesce(m.control_id, ''), coalesce(m.sending_application, ''),
           coalesce(m.sending_facility, ''), coalesce(m.message_type, ''), p_raw[i], p_hash[i],
           m.outcome, m.ack_code, m.error_code, m.error_location, m.error, m.warnings, a.id
      FROM generate_subscripts(p_book, 1) AS i
      JOIN unnest(v_rows) AS a ON a.appointment_key = p_key1[i]
     CROSS JOIN LATERAL jsonb_populate_record(NULL::hl7_messages, p_meta[i]) AS m
     ORDER BY i;

    IF v_neighbour IS NOT NULL THEN
        RETURN QUERY
        SELECT h.i, 'other'::text, a.id, a.appointment_key, a.status, a.urgency, a.datetime,
               a.end_at, a.patient_key, a.last_event_time, a.last_message_id, NULL::jsonb,
               (SELECT coalesce(jsonb_agg(jsonb_build_array(r.kind, r.code, r.text,
                                                            r.coding_system, r.role)
                                          ORDER BY r.id), '[]'::jsonb)
                  FROM appointment_resources AS r WHERE r.appointment_id = a.id),
               NULL::text, NULL::text, NULL::bigint, NULL::appointments
          FROM unnest(v_member_of, v_neighbour) AS h(i, aid)
          JOIN appointments AS a ON a.id = h.aid
         WHERE a.active
         ORDER BY h.i, a.datetime, a.id;
    END IF;
    RETURN QUERY
    SELECT i, 'apply'::text, NULL::integer, NULL::text, NULL::text, NULL::text,
           NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::bigint,
           NULL::jsonb, NULL::jsonb,
           CASE WHEN a.id IS NULL THEN 'exists' ELSE 'applied' END,
           CASE WHEN a.id IS NULL THEN p_key1[i] END,
           CASE WHEN a.id IS NULL THEN NULL ELSE v_journal[i] END, a
      FROM generate_subscripts(p_book, 1) AS i
      LEFT JOIN unnest(v_rows) AS a ON a.appointment_key = p_key1[i]
     ORDER BY i;
END
$$;
