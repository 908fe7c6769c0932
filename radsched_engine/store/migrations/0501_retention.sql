-- Retention (the data pruner, store/retention.py): how far each pass has got.
--
-- The pruner walks hl7_messages and outbox by primary key, oldest first, in short batches. A
-- pass's mark is the id below which it has nothing left to do (journal raw bytes: every row
-- below has been emptied; journal rows: deleted; outbox: every finished row below deleted, the
-- mark stops at the first row still in flight), so a run starts where the last one stopped
-- instead of re-reading years of rows whose bytes are already gone. No index is added: the
-- passes read the primary key only, and the hot path's inserts stay as they were.
CREATE TABLE retention_marks (
    pass                text PRIMARY KEY,                  -- 'journal_raw', 'journal', 'outbox'
    next_id             bigint NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
