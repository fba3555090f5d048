-- Acting on Flyte from flytenotify: answering gates, relaunching, recovering, aborting.
--
-- What waits, on the event that announced it: a PAUSED event (a Flyte 2
-- condition action, or a Flyte 1 gate's signal) keeps what it asks and what
-- it expects, as JSON (store/codec.py); NULL for every other event.
ALTER TABLE events ADD COLUMN paused TEXT;

-- Every action asked of flytenotify, whatever came of it: the audit trail.
--
-- action        approve | reject | signal | relaunch | recover | abort
-- target        the gate answered (a Flyte 1 signal id, a Flyte 2 condition
--               action's name); '' for an action on the whole execution
-- value         the value sent to a gate (JSON), NULL otherwise
-- actor, proof  who asked ("slack:U123", "api-token:3f2a...") and how that was
--               proven ("api-token", "local"...)
-- outcome       pending (being asked of Flyte: the decision is held for it) |
--               done (Flyte took it) | answered (the gate was answered, or the
--               run ended, elsewhere: nothing sent) | refused (by flytenotify:
--               not allowed, a value of the wrong type, not possible) | failed
--               (Flyte refused it or could not be reached; detail says what it said)
-- detail        why, in one line; result: what Flyte made (a relaunched execution)
-- decision      set on the one row that decides a gate or an action on the whole
--               execution (pending, then done or answered), unique: taken before
--               Flyte is asked, so a second request for the same decision, at once
--               or later, on any replica, finds it and changes nothing; NULL on the
--               rows that decided nothing (refused, failed), kept for the trail
CREATE TABLE actions (
    id           {{id}},
    project      TEXT NOT NULL,
    domain       TEXT NOT NULL,
    name         TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL DEFAULT '',
    value        TEXT,
    actor        TEXT NOT NULL,
    proof        TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    detail       TEXT NOT NULL DEFAULT '',
    result       TEXT NOT NULL DEFAULT '',
    requested_at {{timestamp}} NOT NULL,
    decision     TEXT UNIQUE
);
CREATE INDEX actions_by_execution ON actions (project, domain, name, id);
