-- Server-side steps of the per-message hot path: journal insert, redelivery check and the
-- appointment upsert, each one round trip. PL/pgSQL statements take a fresh snapshot each, so
-- "lock, then read" inside one call sees what the lock holder committed.

-- Insert one journal row from its fields as JSON (keys = hl7_messages columns) plus the bytes.
-- (PL/pgSQL rather than SQL: its plan is cached per session, a SQL function's per query.)
CREATE FUNCTION radsched_journal(p_id bigint, p_meta jsonb, p_raw bytea, p_hash bytea)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    m hl7_messages := jsonb_populate_record(NULL::hl7_messages, p_meta);
    v_id bigint;
BEGIN
    INSERT INTO hl7_messages (id, channel, received_at, peer, control_id, sending_application,
                              sending_facility, message_type, raw, content_hash, outcome, ack_code,
                              error_code, error_location, error, warnings, appointment_id)
    VALUES (coalesce(p_id, nextval('hl7_messages_id_seq')), m.channel, m.received_at,
            coalesce(m.peer, ''), coalesce(m.control_id, ''), coalesce(m.sending_application, ''),
            coalesce(m.sending_facility, ''), coalesce(m.message_type, ''), p_raw, p_hash,
            m.outcome, m.ack_code, m.error_code, m.error_location, m.error, m.warnings,
            m.appointment_id)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

-- Serialise deliveries of one (channel, sender, MSH-10); say whether it was already accepted:
-- state 'new', 'duplicate' (same content; ack_code = the ACK first sent) or 'reused'
-- (same MSH-10, different content). An empty MSH-10 is always 'new'.
CREATE FUNCTION radsched_claim_message(p_lock bigint, p_channel text, p_application text,
                                       p_facility text, p_control_id text, p_hash bytea,
                                       OUT state text, OUT ack_code text)
LANGUAGE plpgsql AS $$
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
       AND m.control_id = p_control_id AND m.outcome = 'accepted';
    IF FOUND THEN
        state := CASE WHEN v_hash = p_hash THEN 'duplicate' ELSE 'reused' END;
    END IF;
END
$$;

-- Active bookings of the resources (p_kinds[i], p_codes[i]) overlapping [p_start, p_end), half
-- open. A booking of at most a day that overlaps starts after p_start - 1 day: one btree range
-- scan (appointment_resources_booked) over about a day of each resource's bookings, however
-- large the table; longer bookings come from their own small index. Inlined by the planner.
CREATE FUNCTION radsched_booked(p_kinds text[], p_codes text[], p_start timestamptz,
                                p_end timestamptz)
RETURNS TABLE (appointment_id integer, kind text, code text, start_at timestamptz,
               end_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT r.appointment_id, r.kind, r.code, r.start_at, r.end_at
      FROM unnest(p_kinds, p_codes) AS q(kind, code)
     CROSS JOIN LATERAL (
            SELECT s.appointment_id, s.kind, s.code, s.start_at, s.end_at
              FROM appointment_resources AS s
             WHERE s.kind = q.kind AND s.code = q.code AND s.active AND NOT s.long_booking
               AND s.kind <> 'service' AND s.start_at > p_start - interval '1 day'
               AND s.start_at < p_end AND s.end_at > p_start
            UNION ALL
            SELECT l.appointment_id, l.kind, l.code, l.start_at, l.end_at
              FROM appointment_resources AS l
             WHERE l.kind = q.kind AND l.code = q.code AND l.active AND l.long_booking
               AND l.kind <> 'service' AND l.start_at < p_end AND l.end_at > p_start) AS r
$$;

-- find_overlapping(): active resource bookings (radsched_booked) and active appointments of
-- the patient overlapping [p_start, p_end), except appointments stored under p_exclude. With
-- plan_cache_mode forced to generic, the statement is planned once per session: a custom plan
-- would be estimated cheaper (it knows the dates) and re-made on every call for the same shape.
CREATE FUNCTION radsched_overlapping(p_kinds text[], p_codes text[], p_start timestamptz,
                                     p_end timestamptz, p_patient text, p_exclude text[])
RETURNS TABLE (match text, code text, appointment_id integer, appointment_key text,
               status text, start_at timestamptz, end_at timestamptz, patient_key text,
               modality text, study_type text)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT r.kind, r.code, a.id, a.appointment_key, a.status, r.start_at, r.end_at,
           a.patient_key, a.modality, a.study_type
      FROM radsched_booked(p_kinds, p_codes, p_start, p_end) AS r
      JOIN appointments AS a ON a.id = r.appointment_id
     WHERE a.appointment_key <> ALL (p_exclude) AND coalesce(a.alt_key, '') <> ALL (p_exclude)
    UNION ALL
    SELECT 'patient', '', a.id, a.appointment_key, a.status, a.datetime, a.end_at,
           a.patient_key, a.modality, a.study_type
      FROM appointments AS a
     WHERE p_patient <> '' AND a.patient_key = p_patient AND a.active AND a.patient_key <> ''
       AND a.datetime < p_end AND a.end_at > p_start
       AND a.appointment_key <> ALL (p_exclude) AND coalesce(a.alt_key, '') <> ALL (p_exclude)
     ORDER BY 6, 1, 2, 3;
END
$$;

-- Apply one SIU event to its appointment. Results:
--   applied   the change is stored, the journal row (id = journal_id) written with it
--   duplicate redelivery of an accepted message (detail = the ACK code first sent)
--   reused    MSH-10 already accepted with different content
--   exists    S12 for an appointment that is active (detail = its key)
--   unknown   S13-S26 for an appointment never booked
--   stale     event older than the stored state (detail = stored event time); nothing written
-- p_fields holds only the columns the message sets (JSON null = clear), plus
-- duration_seconds; p_resources NULL = no resource segments; p_merge = S14 resource merge.
CREATE FUNCTION radsched_apply_appointment(
    p_meta jsonb, p_raw bytea, p_hash bytea, p_lock bigint, p_keys text[], p_trigger text,
    p_event_time timestamptz, p_fields jsonb, p_resources jsonb, p_merge boolean)
RETURNS TABLE (result text, detail text, journal_id bigint, appointment appointments)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_claim record;
    a appointments;
    r appointments;
    v_found boolean;
    v_start timestamptz;
    v_end timestamptz;
    v_old appointments;
    v_journal bigint;
    v_placers text[];
    v_fillers text[];
    v_modality text;
BEGIN
    SELECT * INTO v_claim FROM radsched_claim_message(
        p_lock, p_meta->>'channel', p_meta->>'sending_application', p_meta->>'sending_facility',
        p_meta->>'control_id', p_hash);
    IF v_claim.state <> 'new' THEN
        RETURN QUERY SELECT v_claim.state, v_claim.ack_code, NULL::bigint, NULL::appointments;
        RETURN;
    END IF;

    -- The row stored under the best key, else under the other one, else remembering one.
    SELECT * INTO a FROM appointments AS x WHERE x.appointment_key = p_keys[1] FOR UPDATE;
    v_found := FOUND;
    IF NOT v_found AND cardinality(p_keys) > 1 THEN
        SELECT * INTO a FROM appointments AS x WHERE x.appointment_key = p_keys[2] FOR UPDATE;
        v_found := FOUND;
    END IF;
    IF NOT v_found THEN
        SELECT * INTO a FROM appointments AS x WHERE x.alt_key = ANY (p_keys)
         ORDER BY x.active DESC, x.id DESC LIMIT 1 FOR UPDATE;
        v_found := FOUND;
    END IF;
    IF p_trigger = 'S12' AND v_found AND a.active THEN
        RETURN QUERY SELECT 'exists'::text, a.appointment_key, NULL::bigint, a;
        RETURN;
    ELSIF p_trigger <> 'S12' AND NOT v_found THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::text, NULL::bigint, NULL::appointments;
        RETURN;
    ELSIF v_found AND p_event_time < a.last_event_time THEN
        RETURN QUERY SELECT 'stale'::text, a.last_event_time::text, NULL::bigint, a;
        RETURN;
    END IF;

    r := jsonb_populate_record(NULL::appointments, p_fields);
    v_journal := nextval('hl7_messages_id_seq');
    IF NOT v_found THEN
        v_start := r.datetime;
        v_end := v_start + make_interval(secs => (p_fields->>'duration_seconds')::float8);
        INSERT INTO appointments AS x (
            appointment_key, alt_key, channel, sending_application, sending_facility,
            patient_id, patient_name, patient_phone, patient_key, modality, study_type,
            datetime, duration, end_at, status, status_raw, referring_physician, urgency, notes,
            reason, conflicts, placer_id, filler_id, order_refs, last_trigger, last_event_time,
            last_message_id)
        VALUES (
            p_keys[1], p_keys[2], p_meta->>'channel', coalesce(p_meta->>'sending_application', ''),
            coalesce(p_meta->>'sending_facility', ''),
            coalesce(r.patient_id, ''), coalesce(r.patient_name, ''), r.patient_phone,
            coalesce(r.patient_key, ''), coalesce(r.modality, ''), coalesce(r.study_type, ''),
            v_start, ceil(extract(epoch FROM v_end - v_start) / 60)::integer, v_end,
            coalesce(r.status, 'SCHEDULED'), r.status_raw, r.referring_physician,
            coalesce(r.urgency, 'routine'), r.notes, r.reason, r.conflicts, r.placer_id,
            r.filler_id, coalesce(r.order_refs, '{}'), p_trigger, p_event_time, v_journal)
        ON CONFLICT (appointment_key) DO NOTHING
        RETURNING * INTO a;
        IF NOT FOUND THEN           -- a concurrent S12 for the same key committed first
            RETURN QUERY SELECT 'exists'::text, p_keys[1], NULL::bigint, NULL::appointments;
            RETURN;
        END IF;
    ELSE
        v_old := a;
        v_start := CASE WHEN p_fields ? 'datetime' THEN r.datetime ELSE a.datetime END;
        v_end := v_start + CASE WHEN p_fields ? 'duration_seconds'
                                THEN make_interval(secs => (p_fields->>'duration_seconds')::float8)
                                ELSE a.end_at - a.datetime END;
        UPDATE appointments AS x SET
            alt_key = CASE WHEN x.appointment_key = p_keys[1] THEN coalesce(p_keys[2], x.alt_key)
                           ELSE p_keys[1] END,
            patient_id = CASE WHEN p_fields ? 'patient_id' THEN r.patient_id ELSE x.patient_id END,
            patient_name = CASE WHEN p_fields ? 'patient_name' THEN r.patient_name ELSE x.patient_name END,
            patient_phone = CASE WHEN p_fields ? 'patient_phone' THEN r.patient_phone ELSE x.patient_phone END,
            patient_key = CASE WHEN p_fields ? 'patient_key' THEN r.patient_key ELSE x.patient_key END,
            modality = CASE WHEN p_fields ? 'modality' THEN r.modality ELSE x.modality END,
            study_type = CASE WHEN p_fields ? 'study_type' THEN r.study_type ELSE x.study_type END,
            datetime = v_start,
            end_at = v_end,
            duration = CASE WHEN p_fields ? 'duration_seconds'
                            THEN ceil(extract(epoch FROM v_end - v_start) / 60)::integer
                            ELSE x.duration END,
            status = CASE WHEN p_fields ? 'status' THEN r.status ELSE x.status END,
            status_raw = CASE WHEN p_fields ? 'status_raw' THEN r.status_raw ELSE x.status_raw END,
            referring_physician = CASE WHEN p_fields ? 'referring_physician'
                                       THEN r.referring_physician ELSE x.referring_physician END,
            urgency = CASE WHEN p_fields ? 'urgency' THEN r.urgency ELSE x.urgency END,
            notes = CASE WHEN p_fields ? 'notes' THEN r.notes ELSE x.notes END,
            reason = CASE WHEN p_fields ? 'reason' THEN r.reason ELSE x.reason END,
            conflicts = CASE WHEN p_fields ? 'conflicts' THEN r.conflicts ELSE x.conflicts END,
            placer_id = CASE WHEN p_fields ? 'placer_id' THEN r.placer_id ELSE x.placer_id END,
            filler_id = CASE WHEN p_fields ? 'filler_id' THEN r.filler_id ELSE x.filler_id END,
            order_refs = CASE WHEN p_fields ? 'order_refs' THEN r.order_refs ELSE x.order_refs END,
            last_trigger = p_trigger,
            last_event_time = greatest(x.last_event_time, p_event_time),
            last_message_id = v_journal,
            updated_at = now()
        WHERE x.id = a.id
        RETURNING * INTO a;
        -- Resource rows follow the appointment's move and status (own-time rows shift along).
        IF v_old.datetime <> a.datetime OR v_old.end_at <> a.end_at OR v_old.active <> a.active THEN
            UPDATE appointment_resources AS x SET
                start_at = CASE WHEN x.own_time THEN x.start_at + (a.datetime - v_old.datetime)
                                ELSE a.datetime END,
                end_at = CASE WHEN x.own_time THEN x.end_at + (a.datetime - v_old.datetime)
                              ELSE a.end_at END,
                active = a.active
            WHERE x.appointment_id = a.id;
        END IF;
        IF p_resources IS NOT NULL AND p_merge THEN
            DELETE FROM appointment_resources AS x
             USING jsonb_to_recordset(p_resources) AS n(kind text, code text)
             WHERE x.appointment_id = a.id AND x.kind = n.kind AND x.code = n.code;
        ELSIF p_resources IS NOT NULL THEN
            DELETE FROM appointment_resources AS x WHERE x.appointment_id = a.id;
        END IF;
    END IF;

    IF p_resources IS NOT NULL THEN
        INSERT INTO appointment_resources (appointment_id, kind, code, text, coding_system, role,
                                           start_at, end_at, own_time, active)
        SELECT a.id, n.kind, n.code, coalesce(n.text, ''), coalesce(n.coding_system, ''),
               coalesce(n.role, ''), coalesce(n.start_at, a.datetime),
               coalesce(n.end_at, coalesce(n.start_at, a.datetime) + (a.end_at - a.datetime)),
               n.start_at IS NOT NULL, a.active
          FROM jsonb_to_recordset(p_resources) AS n(kind text, code text, text text,
               coding_system text, role text, action text, start_at timestamptz,
               end_at timestamptz)
         WHERE coalesce(n.action, '') <> 'D';
    END IF;

    -- Link orders named by SCH-26 / SCH-27; take the order's modality when SIU gave none.
    IF p_fields ? 'order_refs' AND cardinality(a.order_refs) > 0 THEN
        SELECT array_agg(substr(x, 3)) FILTER (WHERE left(x, 2) = 'P:'),
               array_agg(substr(x, 3)) FILTER (WHERE left(x, 2) = 'F:')
          INTO v_placers, v_fillers
          FROM unnest(a.order_refs) AS x;
        UPDATE orders AS o SET appointment_id = a.id, updated_at = now()
         WHERE (o.placer_order_number = ANY (v_placers) OR o.filler_order_number = ANY (v_fillers))
           AND o.appointment_id IS DISTINCT FROM a.id;
        IF a.modality = '' THEN
            SELECT o.modality INTO v_modality
              FROM orders AS o WHERE o.appointment_id = a.id AND o.modality <> '' LIMIT 1;
            IF FOUND THEN
                UPDATE appointments AS x SET modality = v_modality WHERE x.id = a.id;
                a.modality := v_modality;
            END IF;
        END IF;
    END IF;

    PERFORM radsched_journal(v_journal, p_meta || jsonb_build_object('appointment_id', a.id),
                             p_raw, p_hash);
    RETURN QUERY SELECT 'applied'::text, NULL::text, v_journal, a;
END
$$;
