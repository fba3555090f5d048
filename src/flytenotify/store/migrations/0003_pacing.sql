-- Pacing shared by every replica: the next free send slot per destination
-- (a Slack channel, a PagerDuty routing key). A replica reserves a slot with
-- one atomic upsert, so replicas together keep a provider's per-destination
-- rate, not just each replica on its own.
CREATE TABLE pacing (
    key     TEXT PRIMARY KEY,
    next_at {{timestamp}} NOT NULL
);
