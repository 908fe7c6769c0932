-- Hot path (throughput issue): the per-message functions' cached plans never scan a whole table.
--
-- Their statements are planned once per session (force_generic_plan). On a new database the
-- tables have no statistics yet, and for a lookup such as "alt_key = ANY (keys)" a sequential
-- scan of the (empty) table looks cheaper than its index: that plan then stays for the life of
-- the session while the table grows, so every booking paid a scan of all appointments until
-- autovacuum's first ANALYZE invalidated the plan (a fresh engine slowed down message after
-- message). Every statement of these functions has an index path; with seq scans disabled the
-- planner takes it whatever the statistics say, and the cost per message does not depend on
-- the table's size or age.
ALTER FUNCTION radsched_claim_message(bigint, text, text, text, text, bytea) SET enable_seqscan = off;
ALTER FUNCTION radsched_apply_appointment(jsonb, bytea, bytea, bigint, text[], text, timestamptz,
                                          jsonb, jsonb, boolean) SET enable_seqscan = off;
ALTER FUNCTION radsched_conflict_context(bigint[], jsonb, bytea, text[], text[], text[],
                                         timestamptz, timestamptz, text, timestamptz, timestamptz)
    SET enable_seqscan = off;
ALTER FUNCTION radsched_conflict_links(text, text[], jsonb, integer) SET enable_seqscan = off;
ALTER FUNCTION radsched_overlapping(text[], text[], timestamptz, timestamptz, text, text[])
    SET enable_seqscan = off;
ALTER FUNCTION radsched_check_and_apply(bigint[], jsonb, text[], text[], timestamptz, timestamptz,
                                        text, timestamptz, timestamptz, jsonb, bytea, bytea, bigint,
                                        text[], text, timestamptz, jsonb, jsonb, boolean)
    SET enable_seqscan = off;
ALTER FUNCTION radsched_finish(jsonb, jsonb) SET enable_seqscan = off;
