-- Deadlines: runs that hang, run late or never start.
--
-- What a deadline means, as managed over the API and the CLI. Those in the
-- configuration file ([deadlines.NAME]) are not stored: the file is their source.
--
-- spec        JSON: launch_plan, task, trigger, max_queued, max_running (seconds),
--             schedule, start_within, slower_than, recipients, resolve
CREATE TABLE deadlines (
    project    TEXT NOT NULL,
    domain     TEXT NOT NULL,
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    updated_at {{timestamp}} NOT NULL,
    PRIMARY KEY (project, domain, name)
);

-- The moments the ledger waits for, kept here so that a restart, or another
-- replica, fires them. A timer is armed in the transaction that records the
-- event starting it, dropped in the one that records the event ending it,
-- and claimed with a lease when due: one process fires it, once.
--
-- key          kind/deadline[/execution]: arming one twice keeps the first
-- kind         max_queued | max_running | slower_than | start_within | resolve
-- project,     the execution it times; '' for a schedule's timer
-- domain, name
-- since        when what it times began (queued, running, a fire time)
-- allowed      how many seconds that may last (due_at = since + allowed)
-- phase        the execution's phase while it waits
-- schedule     a schedule's timer: cron:EXPR or every:SECONDS, to arm the next from
-- satisfied_at a schedule's timer: when a run started in its window (no alert)
CREATE TABLE timers (
    id               {{id}},
    key              TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,
    due_at           {{timestamp}} NOT NULL,
    deadline_project TEXT NOT NULL,
    deadline_domain  TEXT NOT NULL,
    deadline_name    TEXT NOT NULL,
    project          TEXT NOT NULL DEFAULT '',
    domain           TEXT NOT NULL DEFAULT '',
    name             TEXT NOT NULL DEFAULT '',
    since            {{timestamp}} NOT NULL,
    allowed          {{timestamp}} NOT NULL,
    phase            INTEGER NOT NULL DEFAULT 0,
    schedule         TEXT NOT NULL DEFAULT '',
    satisfied_at     {{timestamp}},
    lease_owner      TEXT,
    lease_until      {{timestamp}}
);
-- The next due timer is one index probe however many wait (and none is read while idle).
CREATE INDEX timers_due ON timers (due_at);
CREATE INDEX timers_leased ON timers (lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX timers_by_execution ON timers (project, domain, name);
CREATE INDEX timers_by_deadline ON timers (deadline_project, deadline_domain, deadline_name);

-- Each breach alerted: once per deadline, execution and kind of breach.
--
-- project,     the execution; for a missed start, the fire time it missed
-- domain, name
-- recipients   JSON list, as the deadline named them when it alerted: its
--              follow-up goes there too
-- resolve      1: a follow-up is sent when the execution ends
-- ended_phase, set when the execution ends
-- ended_at
CREATE TABLE deadline_alerts (
    id               {{id}},
    deadline_project TEXT NOT NULL,
    deadline_domain  TEXT NOT NULL,
    deadline_name    TEXT NOT NULL,
    project          TEXT NOT NULL,
    domain           TEXT NOT NULL,
    name             TEXT NOT NULL,
    breach           TEXT NOT NULL,
    phase            INTEGER NOT NULL,
    since            {{timestamp}} NOT NULL,
    allowed          {{timestamp}} NOT NULL,
    breached_at      {{timestamp}} NOT NULL,
    recipients       TEXT NOT NULL,
    resolve          INTEGER NOT NULL,
    ended_phase      INTEGER,
    ended_at         {{timestamp}},
    UNIQUE (deadline_project, deadline_domain, deadline_name, project, domain, name, breach)
);
CREATE INDEX deadline_alerts_by_execution ON deadline_alerts (project, domain, name);
CREATE INDEX deadline_alerts_by_deadline
    ON deadline_alerts (deadline_project, deadline_domain, deadline_name, id);
CREATE INDEX deadline_alerts_open ON deadline_alerts (id) WHERE ended_at IS NULL;

-- How long successful runs took (RUNNING to SUCCEEDED), as flytenotify saw them,
-- for slower_than. series names what selected them: project/domain/launch_plan:NAME,
-- task:NAME, trigger:NAME or * (deadlines selecting alike share it).
CREATE TABLE run_durations (
    series   TEXT NOT NULL,
    project  TEXT NOT NULL,
    domain   TEXT NOT NULL,
    name     TEXT NOT NULL,
    ended_at {{timestamp}} NOT NULL,
    seconds  {{timestamp}} NOT NULL,
    PRIMARY KEY (series, project, domain, name)
);
CREATE INDEX run_durations_recent ON run_durations (series, ended_at);

-- Why a delivery was written: 'phase' (a notification's phase), 'deadline' (a
-- breach) or 'deadline_resolved' (the follow-up when an alerted execution ended).
ALTER TABLE deliveries ADD COLUMN reason TEXT NOT NULL DEFAULT 'phase';

-- The Flyte 2 trigger that started a run, if one did: deadlines may select by it.
ALTER TABLE executions ADD COLUMN trigger_name TEXT NOT NULL DEFAULT '';
