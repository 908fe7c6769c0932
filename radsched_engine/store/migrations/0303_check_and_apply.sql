-- Hot path (throughput issue): a new booking's conflict check and its write in one round trip.
--
-- For an S12 the conflict_check stage needs nothing stored before it can name what to look at
-- (the booking comes from the message alone), so persist sends the neighbourhood request and
-- the change together: the locks, the redelivery check and the neighbours are read first
-- (radsched_conflict_context, unchanged), then the appointment is written
-- (radsched_apply_appointment, unchanged), in one call. The rules run on the neighbours after
-- it; their findings, and the mirrors on the other appointments, are written with the commit
-- (radsched_finish) — or earlier, before any later message of the same transaction that could
-- read them. Rows: those of radsched_conflict_context (apply columns NULL), then one row with
-- role 'apply' and radsched_apply_appointment's result.
CREATE FUNCTION radsched_check_and_apply(
    p_locks bigint[], p_claim jsonb, p_kinds text[], p_codes text[], p_start timestamptz,
    p_end timestamptz, p_patient text, p_from timestamptz, p_to timestamptz,
    p_meta jsonb, p_raw bytea, p_hash bytea, p_lock bigint, p_keys text[], p_trigger text,
    p_event_time timestamptz, p_fields jsonb, p_resources jsonb, p_merge boolean)
RETURNS TABLE (role text, id integer, appointment_key text, status text, urgency text,
               start_at timestamptz, end_at timestamptz, patient_key text,
               last_event_time timestamptz, last_message_id bigint, conflicts jsonb,
               resources jsonb, result text, detail text, journal_id bigint,
               appointment appointments)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    SELECT c.role, c.id, c.appointment_key, c.status, c.urgency, c.start_at, c.end_at,
           c.patient_key, c.last_event_time, c.last_message_id, c.conflicts, c.resources,
           NULL::text, NULL::text, NULL::bigint, NULL::appointments
      FROM radsched_conflict_context(p_locks, p_claim, p_hash, p_keys, p_kinds, p_codes, p_start,
                                     p_end, p_patient, p_from, p_to) AS c;
    RETURN QUERY
    SELECT 'apply'::text, NULL::integer, NULL::text, NULL::text, NULL::text, NULL::timestamptz,
           NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::bigint, NULL::jsonb,
           NULL::jsonb, x.result, x.detail, x.journal_id, x.appointment
      FROM radsched_apply_appointment(p_meta, p_raw, p_hash, p_lock, p_keys, p_trigger,
                                      p_event_time, p_fields, p_resources, p_merge) AS x;
END
$$;

-- What a transaction's stages left for its end, in one statement: p_post = {"conflicts":
-- [{id, value}], "links": [{key, strip, add}]} (findings of bookings checked by
-- radsched_check_and_apply, then their mirrors, in message order) and p_outbox = the outbox
-- rows (radsched_enqueue). Either may be NULL.
CREATE FUNCTION radsched_finish(p_post jsonb, p_outbox jsonb) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    l record;
BEGIN
    IF p_post IS NOT NULL THEN
        UPDATE appointments AS a SET conflicts = c.value, updated_at = now()
          FROM jsonb_to_recordset(coalesce(p_post->'conflicts', '[]')) AS c(id integer, value jsonb)
         WHERE a.id = c.id;
        FOR l IN SELECT * FROM jsonb_to_recordset(coalesce(p_post->'links', '[]'))
                                AS x(key text, strip text[], add jsonb) LOOP
            PERFORM radsched_conflict_links(l.key, l.strip, l.add, NULL);
        END LOOP;
    END IF;
    IF p_outbox IS NOT NULL THEN
        RETURN radsched_enqueue(p_outbox);
    END IF;
    RETURN 0;
END
$$;
