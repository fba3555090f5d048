-- Alert storms: deliveries that share a group key are folded into digests.
--
-- group_key    destination (channel + recipient) and the configured key parts
--              (launch plan, phase, ...), set when the delivery is planned;
--              NULL: never grouped, sent on its own.
-- message_id   the message that carried the delivery: "single:<idempotency key>"
--              or "digest:<uuid>", written with the outcome of its attempt.
-- message_size how many executions that message carried.
ALTER TABLE deliveries ADD COLUMN group_key TEXT;
ALTER TABLE deliveries ADD COLUMN message_id TEXT;
ALTER TABLE deliveries ADD COLUMN message_size INTEGER;

-- A claim of a group's due rows takes them all and opens the group's window;
-- rows that become due while it is open wait for it to close, then go out
-- together as one digest. One row per group key ever seen; a group whose
-- open_until has passed is as good as absent.
CREATE TABLE delivery_groups (
    group_key  TEXT PRIMARY KEY,
    open_until {{timestamp}} NOT NULL
);
CREATE INDEX delivery_groups_open ON delivery_groups (open_until);

-- A group's due rows, claimed together; and "which deliveries did this digest carry".
CREATE INDEX deliveries_by_group ON deliveries (group_key, next_attempt_at)
    WHERE status IN ('pending', 'retrying') AND group_key IS NOT NULL;
CREATE INDEX deliveries_by_message ON deliveries (message_id) WHERE message_id IS NOT NULL;
