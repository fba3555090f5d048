-- The ledger, first release. Times are Unix seconds so that every backend
-- compares them the same way.
--
-- Written once for every backend. Two placeholders in double braces are
-- rendered per dialect by migrations/__init__.py (see DIALECTS there): "id",
-- an auto-assigned 64-bit primary key, and "timestamp", a double-precision
-- number of Unix seconds. Everything else is SQL that SQLite and PostgreSQL
-- both accept.

CREATE TABLE launch_plans (
    project       TEXT NOT NULL,
    domain        TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    notifications TEXT NOT NULL,          -- JSON list, protobuf canonical JSON
    registered_at {{timestamp}} NOT NULL,
    seq           INTEGER NOT NULL,       -- registration order: the highest is "latest"
    PRIMARY KEY (project, domain, name, version)
);

CREATE TABLE executions (
    project        TEXT NOT NULL,
    domain         TEXT NOT NULL,
    name           TEXT NOT NULL,
    launch_plan    TEXT,                  -- JSON EntityId, or NULL when unknown
    workflow       TEXT,                  -- JSON EntityId, or NULL
    notifications  TEXT NOT NULL,         -- frozen at creation: JSON list
    created_at     {{timestamp}} NOT NULL,
    terminal_phase INTEGER,               -- set once, by the first terminal event
    terminal_at    {{timestamp}},
    PRIMARY KEY (project, domain, name)
);

CREATE TABLE events (
    id          {{id}},
    project     TEXT NOT NULL,
    domain      TEXT NOT NULL,
    name        TEXT NOT NULL,
    phase       INTEGER NOT NULL,
    occurred_at {{timestamp}} NOT NULL,
    producer_id TEXT NOT NULL,
    error       TEXT,                     -- JSON ExecutionError, or NULL
    received_at {{timestamp}} NOT NULL,
    outcome     TEXT NOT NULL             -- enqueued | duplicate | after_terminal | no_notifications | recorded
);
CREATE INDEX events_by_execution ON events (project, domain, name);

CREATE TABLE deliveries (
    id                 {{id}},
    idempotency_key    TEXT NOT NULL UNIQUE,
    project            TEXT NOT NULL,
    domain             TEXT NOT NULL,
    name               TEXT NOT NULL,
    phase              INTEGER NOT NULL,
    notification_index INTEGER NOT NULL,
    kind               TEXT NOT NULL,     -- email | slack | pager_duty (the notification)
    channel            TEXT NOT NULL,     -- the transport that sends it
    recipient          TEXT NOT NULL,
    message            TEXT NOT NULL,     -- JSON RenderedMessage
    launch_plan        TEXT,              -- JSON EntityId
    status             TEXT NOT NULL,     -- pending | retrying | delivered | dead
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_at         {{timestamp}} NOT NULL,
    updated_at         {{timestamp}} NOT NULL,
    next_attempt_at    {{timestamp}},     -- due time while pending/retrying
    lease_owner        TEXT,
    lease_until        {{timestamp}},     -- a claim; claimable again once passed
    last_reply         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX deliveries_by_execution ON deliveries (project, domain, name);
CREATE INDEX deliveries_by_status ON deliveries (status, id);

CREATE TABLE attempts (
    id          {{id}},
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id),
    number      INTEGER NOT NULL,
    started_at  {{timestamp}} NOT NULL,
    finished_at {{timestamp}} NOT NULL,
    outcome     TEXT NOT NULL,            -- delivered | transient | permanent | redrive
    reply       TEXT NOT NULL
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id);

CREATE TABLE inbox (
    id          {{id}},
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id),
    kind        TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at {{timestamp}} NOT NULL
);
