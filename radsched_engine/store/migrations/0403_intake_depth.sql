-- The depth and oldest age of the outbox's intake at a cost that does not grow with it (notify
-- issue: ACK latency with notify on).
--
-- The worker's gauges counted every intake row (count(*) ... GROUP BY kind) every few seconds:
-- with bookings arriving faster than texts go out, the intake grows, and that count took 15 ms
-- at 50,000 rows and 55 ms at 150,000, a scan on the database whose CPU the messages'
-- transactions need. Now each kind costs a few index probes and a count of at most p_cap
-- entries: exact up to p_cap rows; beyond, the rows after the first p_cap are estimated from
-- the ids they span, at the density of the first p_cap (ids are shared by every kind and
-- some are lost to rolled-back transactions, so the ids' span alone would overcount).
-- The oldest row of a kind is its lowest id (rows are appended in id order and moved out
-- oldest first). `radsched-engine outbox` still counts exactly (an operator's look, not a
-- timer).
CREATE FUNCTION radsched_intake_depth(p_cap integer)
RETURNS TABLE (kind text, depth bigint, oldest timestamptz)
LANGUAGE sql STABLE AS $$
WITH RECURSIVE kinds AS (            -- the distinct kinds, one index probe each
    (SELECT i.kind FROM outbox_intake AS i ORDER BY i.kind LIMIT 1)
    UNION ALL
    SELECT (SELECT i.kind FROM outbox_intake AS i WHERE i.kind > k.kind ORDER BY i.kind LIMIT 1)
      FROM kinds AS k WHERE k.kind IS NOT NULL
)
SELECT k.kind,
       CASE WHEN head.n < p_cap THEN head.n
            ELSE head.n + round((last.id - head.upto) * head.n::numeric
                                / (head.upto - first.id + 1))::bigint
       END,
       first.created_at
  FROM kinds AS k
 CROSS JOIN LATERAL (SELECT i.id, i.created_at FROM outbox_intake AS i WHERE i.kind = k.kind
                     ORDER BY i.id LIMIT 1) AS first
 CROSS JOIN LATERAL (SELECT i.id FROM outbox_intake AS i WHERE i.kind = k.kind
                     ORDER BY i.id DESC LIMIT 1) AS last
 CROSS JOIN LATERAL (SELECT count(*) AS n, max(s.id) AS upto
                       FROM (SELECT i.id FROM outbox_intake AS i WHERE i.kind = k.kind
                             ORDER BY i.id LIMIT p_cap) AS s) AS head
 WHERE k.kind IS NOT NULL
$$;
