-- Outbox delivery order and patient SMS state (notify issue).

-- Rows of one kind sharing an order key are delivered one at a time, oldest first: a later text
-- to a patient never overtakes an earlier one still waiting (pending, retrying or in flight).
-- Producers set it in the payload ("order_key"); rows without one are independent.
ALTER TABLE outbox ADD COLUMN order_key text GENERATED ALWAYS AS (payload->>'order_key') STORED;
CREATE INDEX outbox_order_key ON outbox (order_key, kind, id)
    WHERE order_key IS NOT NULL AND status IN ('pending', 'retry', 'sending');
CREATE INDEX outbox_dead ON outbox (updated_at) WHERE status = 'dead';

-- Numbers that answered STOP (Twilio error 21610): never texted again until they opt back in.
CREATE TABLE sms_opt_outs (
    phone               text PRIMARY KEY,                  -- E.164
    opted_out_at        timestamptz NOT NULL DEFAULT now(),
    source              text NOT NULL DEFAULT 'twilio-21610'
);

-- Delivery status reported by Twilio's status callbacks, by message SID. Kept apart from the
-- outbox row because a callback may arrive before the worker has recorded the SID.
CREATE TABLE sms_delivery_status (
    sid                 text PRIMARY KEY,                  -- SM... / MM...
    status              text NOT NULL,                     -- queued, sent, delivered, undelivered, failed, ...
    error_code          integer,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
