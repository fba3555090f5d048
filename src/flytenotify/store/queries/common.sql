-- The statements SQLite and PostgreSQL run alike. Parameters are written "?";
-- the loader numbers them $1, $2... for PostgreSQL. Times are Unix seconds.

-- name: register_launch_plan
-- Insert or replace one launch plan version; seq is registration order, so the
-- highest seq of a name is its latest version.
INSERT INTO launch_plans (project, domain, name, version, notifications, registered_at, seq)
VALUES (?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM launch_plans))
ON CONFLICT (project, domain, name, version) DO UPDATE SET
    notifications = excluded.notifications, registered_at = excluded.registered_at,
    seq = excluded.seq;

-- name: launch_plan_version
SELECT * FROM launch_plans WHERE project = ? AND domain = ? AND name = ? AND version = ?;

-- name: launch_plan_latest
-- The version of one launch plan registered last.
SELECT * FROM launch_plans WHERE project = ? AND domain = ? AND name = ?
 ORDER BY seq DESC LIMIT 1;

-- name: latest_launch_plans
-- The version of every launch plan registered last.
SELECT * FROM launch_plans AS lp
 WHERE seq = (SELECT MAX(seq) FROM launch_plans AS other
               WHERE other.project = lp.project AND other.domain = lp.domain
                 AND other.name = lp.name)
 ORDER BY project, domain, name;

-- name: insert_execution
-- An execution as created; an existing one is kept as it is (its notifications
-- were frozen when it was created).
INSERT INTO executions (project, domain, name, launch_plan, workflow, notifications, created_at,
                        notifications_source, lookup_error, rules, plan, trigger_name)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING;

-- name: select_execution
SELECT * FROM executions WHERE project = ? AND domain = ? AND name = ?;

-- name: put_named_rule
-- Create or replace one named rule or named delivery in its scope.
INSERT INTO named_rules (kind, name, project, domain, phases, recipients, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (kind, name, project, domain) DO UPDATE SET
    phases = excluded.phases, recipients = excluded.recipients, updated_at = excluded.updated_at;

-- name: list_named_rules
SELECT * FROM named_rules WHERE kind = ? ORDER BY name, project, domain;

-- name: delete_named_rule
DELETE FROM named_rules WHERE kind = ? AND name = ? AND project = ? AND domain = ?;

-- name: insert_silence
INSERT INTO silences (project, domain, launch_plan, trigger_name, phases, recipient, match_all,
                      starts_at, ends_at, cron, duration, timezone, comment, author, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING *;

-- name: select_silence
SELECT * FROM silences WHERE id = ?;

-- name: list_silences
-- Newest first, below the id given (keyset paging).
SELECT * FROM silences WHERE id < ? ORDER BY id DESC LIMIT ?;

-- name: list_silences_not_over
-- Those neither ended nor past their end at the time given, newest first,
-- below the id given: in effect now, or later (a recurring one between windows).
SELECT * FROM silences
 WHERE ended_at IS NULL AND (ends_at IS NULL OR ends_at > ?) AND id < ?
 ORDER BY id DESC LIMIT ?;

-- name: silences_in_effect
-- What intake reads once per batch that plans deliveries: the silences started
-- by the time given and neither ended nor over then. Whether a recurring one's
-- window is open is the caller's to judge (a cron expression, a time zone).
SELECT * FROM silences
 WHERE ended_at IS NULL AND starts_at <= ? AND (ends_at IS NULL OR ends_at > ?)
 ORDER BY id;

-- name: end_silence
-- End a silence that is not ended yet. Parameters: now, by whom, its id.
UPDATE silences SET ended_at = ?, ended_by = ? WHERE id = ? AND ended_at IS NULL
RETURNING *;

-- name: watch_position
SELECT position FROM watch_positions WHERE source = ?;

-- name: advance_watch_position
-- Move a watch's position forward (never back: two replicas may both write it).
INSERT INTO watch_positions (source, position, updated_at) VALUES (?, ?, ?)
ON CONFLICT (source) DO UPDATE SET
    position = CASE WHEN excluded.position > watch_positions.position
                    THEN excluded.position ELSE watch_positions.position END,
    updated_at = excluded.updated_at;

-- name: release
-- Drop every lease one owner holds (a graceful stop).
UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
 WHERE lease_owner = ? AND status IN ('pending', 'retrying');

-- name: prune_groups
-- Forget the groups whose window closed before the time given: a closed group
-- is as good as absent, so only the table's size changes.
DELETE FROM delivery_groups WHERE open_until < ?;

-- name: insert_inbox
INSERT INTO inbox (delivery_id, kind, recipient, subject, body, received_at)
VALUES (?, ?, ?, ?, ?, ?);

-- name: select_delivery
SELECT * FROM deliveries WHERE id = ?;

-- name: select_deliveries
-- Followed by the filter's conditions, its order and limit (ledger.py builds them).
SELECT * FROM deliveries;

-- name: list_attempts
SELECT * FROM attempts WHERE delivery_id = ? ORDER BY id;

-- name: count_by_status
SELECT status, COUNT(*) AS count FROM deliveries GROUP BY status;

-- name: list_inbox
SELECT * FROM inbox WHERE id > ? ORDER BY id LIMIT ?;

-- name: list_inbox_newest
-- The dev inbox newest first, from the id given down (the console's keyset
-- paging).
SELECT * FROM inbox WHERE id <= ? ORDER BY id DESC LIMIT ?;

-- name: select_inbox
SELECT * FROM inbox WHERE id = ?;

-- name: insert_console_session
-- A console login. Parameters: the SHA-256 of its nonce, now, when it expires.
INSERT INTO console_sessions (id, created_at, expires_at) VALUES (?, ?, ?);

-- name: console_session_live
-- Whether a console session is logged in. Parameters: its id, now.
SELECT 1 AS live FROM console_sessions WHERE id = ? AND expires_at > ?;

-- name: delete_console_session
-- Logging out: the session ends for every replica.
DELETE FROM console_sessions WHERE id = ?;

-- name: prune_console_sessions
-- Sessions that expired before the time given are gone for good.
DELETE FROM console_sessions WHERE expires_at <= ?;

-- name: list_events
SELECT * FROM events WHERE project = ? AND domain = ? AND name = ? ORDER BY id;

-- name: insert_action
-- One action and what came of it. A row that decides (its decision key set)
-- is written once: a second one for the same decision writes nothing and
-- returns no row, and the caller reads the first.
INSERT INTO actions (project, domain, name, action, target, value, actor, proof, outcome, detail,
                     result, requested_at, decision)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (decision) DO NOTHING RETURNING *;

-- name: decided_action
SELECT * FROM actions WHERE decision = ?;

-- name: finish_action
-- What came of a pending action. Parameters: outcome, detail, result, value, the
-- decision it keeps (NULL: it decided nothing, and frees the key), its id.
UPDATE actions SET outcome = ?, detail = ?, result = ?, value = ?, decision = ?
 WHERE id = ? RETURNING *;

-- name: abandon_action
-- A decision held by a request pending since before the time given (its process
-- stopped before Flyte answered): the row is kept as failed and the key freed.
UPDATE actions SET outcome = 'failed', decision = NULL,
       detail = 'abandoned: flytenotify stopped before Flyte answered'
 WHERE decision = ? AND outcome = 'pending' AND requested_at < ?;

-- name: list_actions
-- An execution's actions in the order they were asked.
SELECT * FROM actions WHERE project = ? AND domain = ? AND name = ? ORDER BY id;

-- name: insert_acknowledgement
-- A person's acknowledgement of an execution, once: a second one by the same
-- person writes nothing and returns no row, and the caller reads the first.
INSERT INTO acknowledgements (project, domain, name, actor, proof, message, acknowledged_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (project, domain, name, actor) DO NOTHING RETURNING *;

-- name: acknowledgement_by
SELECT * FROM acknowledgements WHERE project = ? AND domain = ? AND name = ? AND actor = ?;

-- name: list_acknowledgements
-- An execution's acknowledgements, first first.
SELECT * FROM acknowledgements WHERE project = ? AND domain = ? AND name = ? ORDER BY id;

-- name: use_link
-- A signed link's first use: a second writes nothing and returns no row.
INSERT INTO used_links (nonce, actor, used_at) VALUES (?, ?, ?)
ON CONFLICT (nonce) DO NOTHING RETURNING *;

-- name: used_link
SELECT * FROM used_links WHERE nonce = ?;

-- name: release_link
-- A use that could not be carried out (Flyte unreachable): the link works again.
DELETE FROM used_links WHERE nonce = ?;

-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at {{timestamp}} NOT NULL
);

-- name: schema_version
SELECT COALESCE(MAX(version), 0) FROM schema_migrations;

-- name: select_conversation
-- A conversation's first delivery, the provider's id of its message (NULL
-- while it is being sent) and that delivery's status.
SELECT c.root_delivery, c.thread, d.status AS root_status FROM conversations AS c
  LEFT JOIN deliveries AS d ON d.id = c.root_delivery
 WHERE c.conversation = ?;

-- name: conversation_sent
-- A conversation's first message was sent (or a new one, when the old one was
-- deleted): the delivery that sent it and its provider id.
-- Parameters: delivery id, provider id, now, key.
UPDATE conversations SET root_delivery = ?, thread = ?, updated_at = ? WHERE conversation = ?;

-- name: latest_of_message
-- For each execution a message (its message_id) carried, the newest delivery
-- delivered to the same channel and recipient: what that destination was told
-- of it last. One statement for a digest of any size.
SELECT * FROM deliveries
 WHERE id IN (SELECT MAX(later.id)
                FROM deliveries AS carried
                JOIN deliveries AS later
                  ON later.project = carried.project AND later.domain = carried.domain
                 AND later.name = carried.name AND later.channel = carried.channel
                 AND later.recipient = carried.recipient
               WHERE carried.message_id = ? AND later.status = 'delivered'
               GROUP BY later.project, later.domain, later.name, later.channel,
                        later.recipient);

-- name: plan_executions
-- The ended executions of one launch plan (a Flyte 2 task), latest first.
-- Parameters: the plan ("project/domain/name"), how many.
SELECT project, domain, name, terminal_phase FROM executions
 WHERE plan = ? AND terminal_phase IS NOT NULL
 ORDER BY terminal_at DESC LIMIT ?;

-- name: delivered_for_phase
-- What an execution's phase delivered, its recoveries of others left out.
-- Parameters: project, domain, name, phase.
SELECT * FROM deliveries
 WHERE project = ? AND domain = ? AND name = ? AND phase = ? AND status = 'delivered'
   AND follows IS NULL
 ORDER BY id;

-- -- deadlines ---------------------------------------------------------------------

-- name: put_deadline
-- Create or replace a deadline managed over the API.
INSERT INTO deadlines (project, domain, name, spec, updated_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (project, domain, name) DO UPDATE SET
    spec = excluded.spec, updated_at = excluded.updated_at;

-- name: list_deadlines
SELECT * FROM deadlines ORDER BY project, domain, name;

-- name: delete_deadline
DELETE FROM deadlines WHERE project = ? AND domain = ? AND name = ?;

-- name: delete_deadline_timers
-- A deleted deadline's timers; follow-ups of alerts it sent still go out.
DELETE FROM timers
 WHERE deadline_project = ? AND deadline_domain = ? AND deadline_name = ? AND kind <> 'resolve';

-- name: arm_timer
-- A timer, unless one of its key waits already. Parameters: key, kind, due_at, the
-- deadline's project, domain and name, the execution's, since, allowed, phase, schedule.
INSERT INTO timers (key, kind, due_at, deadline_project, deadline_domain, deadline_name,
                    project, domain, name, since, allowed, phase, schedule)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO NOTHING;

-- name: put_schedule_timer
-- A schedule's timer as its deadline's definition sets it (parameters as arm_timer's):
-- replaced only when its schedule or allowance changed, so that writing a
-- definition again keeps the window under way.
INSERT INTO timers (key, kind, due_at, deadline_project, deadline_domain, deadline_name,
                    project, domain, name, since, allowed, phase, schedule)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    due_at = excluded.due_at, since = excluded.since, allowed = excluded.allowed,
    schedule = excluded.schedule, satisfied_at = NULL, lease_owner = NULL, lease_until = NULL
 WHERE timers.schedule <> excluded.schedule OR timers.allowed <> excluded.allowed;

-- name: drop_timer
DELETE FROM timers WHERE key = ?;

-- name: cancel_timers
-- One kind of an execution's timers: it moved on. Parameters: project, domain, name, kind.
DELETE FROM timers WHERE project = ? AND domain = ? AND name = ? AND kind = ?;

-- name: satisfy_start
-- A run of a schedule's deadline started within its timer's window (less a
-- tolerance for clocks): the timer will not alert. Parameters: started,
-- key, tolerance, started, started.
UPDATE timers SET satisfied_at = ?
 WHERE key = ? AND satisfied_at IS NULL AND since - ? <= ? AND ? <= due_at;

-- name: end_missed_starts
-- A run of a deadline's schedule began: the missed starts before it ended
-- (late). Parameters: its phase, when it began, the deadline's project,
-- domain and name, when it began.
UPDATE deadline_alerts SET ended_phase = ?, ended_at = ?
 WHERE deadline_project = ? AND deadline_domain = ? AND deadline_name = ?
   AND breach = 'start_within' AND ended_at IS NULL AND since < ?;

-- name: arm_late_start_timers
-- The follow-up of each missed start end_missed_starts just closed (their
-- ended_at is the time it wrote), due at once. Parameters: now, the
-- deadline's project, domain and name, that time.
INSERT INTO timers (key, kind, due_at, deadline_project, deadline_domain, deadline_name,
                    project, domain, name, since, allowed, phase, schedule)
SELECT 'resolve/' || deadline_project || '/' || deadline_domain || '/' || deadline_name
       || '/' || project || '/' || domain || '/' || name,
       'resolve', CAST(? AS {{timestamp}}), deadline_project, deadline_domain, deadline_name,
       project, domain, name, since, allowed, ended_phase, ''
  FROM deadline_alerts
 WHERE deadline_project = ? AND deadline_domain = ? AND deadline_name = ?
   AND breach = 'start_within' AND resolve = 1 AND ended_at = ?
ON CONFLICT (key) DO NOTHING;

-- name: end_alerts
-- An alerted execution ended. Parameters: its phase, when, project, domain, name.
UPDATE deadline_alerts SET ended_phase = ?, ended_at = ?
 WHERE project = ? AND domain = ? AND name = ? AND ended_at IS NULL;

-- name: arm_resolve_timers
-- The follow-up of each deadline that alerted about an execution that just
-- ended, due at once. Parameters: now, project, domain, name.
INSERT INTO timers (key, kind, due_at, deadline_project, deadline_domain, deadline_name,
                    project, domain, name, since, allowed, phase, schedule)
SELECT 'resolve/' || deadline_project || '/' || deadline_domain || '/' || deadline_name
       || '/' || project || '/' || domain || '/' || name,
       'resolve', CAST(? AS {{timestamp}}), deadline_project, deadline_domain, deadline_name, project, domain, name,
       MIN(since), 0, MAX(ended_phase), ''
  FROM deadline_alerts
 WHERE project = ? AND domain = ? AND name = ? AND resolve = 1 AND ended_at IS NOT NULL
 GROUP BY deadline_project, deadline_domain, deadline_name, project, domain, name
ON CONFLICT (key) DO NOTHING;

-- name: record_duration
-- How long a run that just succeeded ran, from its first RUNNING event, if it
-- had one. Parameters: series, ended at, ended at, project, domain, name.
INSERT INTO run_durations (series, project, domain, name, ended_at, seconds)
SELECT CAST(? AS TEXT), started.project, started.domain, started.name,
       CAST(? AS {{timestamp}}), CAST(? AS {{timestamp}}) - started.at
  FROM (SELECT project, domain, name, MIN(occurred_at) AS at FROM events
         WHERE project = ? AND domain = ? AND name = ? AND phase = 2
         GROUP BY project, domain, name) AS started
 WHERE started.at IS NOT NULL
ON CONFLICT (series, project, domain, name) DO NOTHING;

-- name: prune_durations
-- A series keeps its newest 1,000 runs (the most slower_than's of_last may ask
-- for). Parameters: series, series.
DELETE FROM run_durations
 WHERE series = ? AND ended_at < (SELECT ended_at FROM run_durations WHERE series = ?
                                   ORDER BY ended_at DESC LIMIT 1 OFFSET 999);

-- name: recent_durations
SELECT seconds FROM run_durations WHERE series = ? ORDER BY ended_at DESC LIMIT ?;

-- name: delete_fired_timer
-- A claimed timer, taken out to be settled; nothing if it was cancelled meanwhile
-- (the execution moved on) or its lease passed to another process.
DELETE FROM timers WHERE id = ? AND lease_owner = ? RETURNING *;

-- name: moved_past_queued
-- Whether an execution has an event past queueing (it may have come first).
SELECT 1 AS found FROM events
 WHERE project = ? AND domain = ? AND name = ? AND phase NOT IN (0, 1) LIMIT 1;

-- name: insert_alert
INSERT INTO deadline_alerts (deadline_project, deadline_domain, deadline_name, project, domain,
                             name, breach, phase, since, allowed, breached_at, recipients,
                             resolve)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (deadline_project, deadline_domain, deadline_name, project, domain, name, breach)
DO NOTHING
RETURNING id;

-- name: insert_deadline_delivery
-- A deadline's alert or follow-up, due at once (or silenced); a key written before is skipped.
INSERT INTO deliveries (idempotency_key, project, domain, name, phase, notification_index, kind,
                        channel, recipient, message, launch_plan, status, created_at, updated_at,
                        next_attempt_at, group_key, silence_id, reason)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id;

-- name: alerts_of
-- One deadline's alerts about one execution.
SELECT * FROM deadline_alerts
 WHERE deadline_project = ? AND deadline_domain = ? AND deadline_name = ?
   AND project = ? AND domain = ? AND name = ?
 ORDER BY id;

-- name: deadline_alerts
-- One deadline's alerts, newest first, below the id given (the console's paging).
SELECT * FROM deadline_alerts
 WHERE deadline_project = ? AND deadline_domain = ? AND deadline_name = ? AND id < ?
 ORDER BY id DESC LIMIT ?;

-- name: open_alerts
-- Alerts whose execution has not ended, newest first: what is over a deadline now.
SELECT * FROM deadline_alerts WHERE ended_at IS NULL AND id < ? ORDER BY id DESC LIMIT ?;

-- name: deadline_timers
-- What one deadline waits for: its timers of each kind and the next one due.
SELECT kind, COUNT(*) AS count, MIN(due_at) AS next_due FROM timers
 WHERE deadline_project = ? AND deadline_domain = ? AND deadline_name = ?
 GROUP BY kind ORDER BY kind;

-- name: release_timers
-- Drop every timer lease one owner holds (a graceful stop).
UPDATE timers SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?;
