-- A channel's text settings, stored once instead of in every queued text (notify issue: ACK
-- latency with notify on).
--
-- Each queued text carried in its payload everything the worker needs to compose it later,
-- the channel's settings included (templates, clinic name, time format, facility zone, default
-- region, quiet hours): about half of the row's ~550 bytes, written, parsed and logged on the
-- path of the ACK with every booking. A notify stage now stores its settings here when its
-- channel starts (stages.notify, ``start``), under the first 16 hex digits of the sha256 of
-- their JSON, and its rows carry that id (payload "profile") with only the text's own facts.
-- A profile is never changed: new settings (a reloaded channel file) are a new id, so a text
-- queued before a change is composed with the settings it was queued under. Rows are tiny
-- (one per channel configuration ever run) and are kept.
CREATE TABLE notify_profiles (
    id          text PRIMARY KEY,
    settings    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
