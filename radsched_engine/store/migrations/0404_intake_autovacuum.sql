-- Autovacuum of the outbox's intake only for the rows moved out (notify issue: ACK latency with
-- notify on).
--
-- While bookings arrive faster than texts go out, the intake grows, and autovacuum worked on
-- it for the growth itself: an analyze after every 10 % of growth (each sampling up to 30,000
-- rows, reading nearly every page of the table and every column, payloads included), and an
-- insert-triggered vacuum after every 20 % (reading the new pages to mark them all-visible),
-- on the database whose CPU the messages' transactions need (in the notify bench the intake
-- grows to 150,000-200,000 rows). Neither is of use here:
-- - nothing reads the statistics: every query on the intake has a fixed plan (the move,
--   radsched_outbox_take, and the depth, radsched_intake_depth, walk the (kind, id) index; the
--   listing of `radsched-engine outbox` reads it in that order; the appointment-delete trigger
--   joins it once per statement);
-- - its rows are not meant to stay: the all-visible marks would only serve the depth's
--   index-only count, which reads at most 10,000 entries of a kind either way, and freezing
--   old rows is left to the anti-wraparound vacuum, which these settings do not change.
-- So autovacuum never analyzes the intake (scale factor 100: after a hundred times its size in
-- changes) and never vacuums it for inserts alone; an explicit ANALYZE skips the payload.
-- Vacuum for dead rows is unchanged: it reclaims the rows the worker moved out.
ALTER TABLE outbox_intake SET (autovacuum_analyze_scale_factor = 100,
                               autovacuum_vacuum_insert_threshold = -1);
ALTER TABLE outbox_intake ALTER COLUMN payload SET STATISTICS 0;
