-- The web console filters deliveries by recipient ("what did alice get?") and
-- pages them newest first by id; without this index a rare recipient means
-- reading the whole ledger backwards. Status and execution filters already
-- have theirs (deliveries_by_status, deliveries_by_execution).
CREATE INDEX deliveries_by_recipient ON deliveries (recipient, id);
