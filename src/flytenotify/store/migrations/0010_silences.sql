-- Silences: "quiet, I'm on it". A delivery planned while a silence that
-- matches it is in effect is recorded with status 'silenced' and the silence's
-- id, and never claimed; ending the silence with release makes those rows
-- pending again. (Version 9 is another change's.)
--
-- project, domain,   what it matches; NULL matches every value. launch_plan is
-- launch_plan,       a name (any version); trigger_name a Flyte 2 trigger
-- trigger_name,      (the runs it started) ; recipient exact or a form
-- recipient          an [allow] entry names (a domain)
-- phases             JSON list of phase numbers; '[]' matches every phase
-- match_all          1 when it matches everything on purpose (no matcher)
-- starts_at,         when it is in effect; ends_at NULL: until ended (recurring
-- ends_at            only)
-- cron, duration,    a recurring silence's windows: one opens whenever cron fires
-- timezone           on the wall clock of timezone (IANA) and lasts duration
--                    seconds of it; cron '' for a one-off silence
-- ended_at,          when and by whom it was ended early; NULL while it is not
-- ended_by
CREATE TABLE silences (
    id           {{id}},
    project      TEXT,
    domain       TEXT,
    launch_plan  TEXT,
    trigger_name TEXT,
    phases       TEXT NOT NULL DEFAULT '[]',
    recipient    TEXT,
    match_all    INTEGER NOT NULL DEFAULT 0,
    starts_at    {{timestamp}} NOT NULL,
    ends_at      {{timestamp}},
    cron         TEXT NOT NULL DEFAULT '',
    duration     INTEGER NOT NULL DEFAULT 0,
    timezone     TEXT NOT NULL DEFAULT '',
    comment      TEXT NOT NULL,
    author       TEXT NOT NULL,
    created_at   {{timestamp}} NOT NULL,
    ended_at     {{timestamp}},
    ended_by     TEXT NOT NULL DEFAULT ''
);
-- What intake reads for every batch that plans deliveries: the silences not ended.
CREATE INDEX silences_not_ended ON silences (starts_at) WHERE ended_at IS NULL;

-- The silence that held a delivery (kept after it is released or re-driven).
-- Statuses now: pending | retrying | delivered | dead | silenced; attempts'
-- outcomes also 'silenced' (held when a silence was created) and 'released'.
ALTER TABLE deliveries ADD COLUMN silence_id BIGINT REFERENCES silences (id);
CREATE INDEX deliveries_by_silence ON deliveries (silence_id, id) WHERE silence_id IS NOT NULL;
