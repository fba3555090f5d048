-- Conversations: one message per execution and destination, kept up to date.
--
-- conversations   one row per (execution, destination), keyed
--                 "<project/domain/name>|<channel>|<recipient>". The first
--                 delivery to claim the key (an upsert: of two replicas racing,
--                 one inserts, the other finds its row) sends the first
--                 message; root_delivery is that delivery, thread the
--                 provider's id of its message once sent (Slack channel/ts,
--                 Mattermost post id, email Message-ID, PagerDuty dedup key,
--                 a webhook's delivery id). Later deliveries of the key
--                 update or follow that message. A first message not being
--                 sent (its delivery failed and waits, or is dead) is taken
--                 over by the next delivery of the key.
CREATE TABLE conversations (
    conversation  TEXT PRIMARY KEY,
    root_delivery BIGINT NOT NULL,
    thread        TEXT,
    updated_at    {{timestamp}} NOT NULL
);

-- provider_message_id  the provider's id of the message the delivery went out
--                      as (a thread reply's own ts, a post id, a Message-ID...)
-- in_reply_to          the conversation's first message it updated or followed;
--                      NULL when it was that first message (or stood alone)
-- follows              a recovery message's: the failed execution whose
--                      conversation it joins (NULL: its own execution's)
ALTER TABLE deliveries ADD COLUMN provider_message_id TEXT;
ALTER TABLE deliveries ADD COLUMN in_reply_to TEXT;
ALTER TABLE deliveries ADD COLUMN follows TEXT;

-- Recoveries: "nightly_etl succeeded again after 3 failures" needs an
-- execution's launch plan (a Flyte 2 run's task) as "project/domain/name",
-- and its executions newest first. Set when an execution is recorded;
-- executions recorded before this version have none and are not counted.
ALTER TABLE executions ADD COLUMN plan TEXT;
CREATE INDEX executions_by_plan ON executions (plan, terminal_at) WHERE plan IS NOT NULL;
