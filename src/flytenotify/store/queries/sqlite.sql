-- SQLite's own statements. One process writes at a time (BEGIN IMMEDIATE), so
-- a read then a write in one transaction cannot race another writer. Times
-- come from the caller ("?"), SQLite has no clock worth sharing.

-- name: has_schema_migrations
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations';

-- name: record_migration
INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?);

-- name: insert_event
-- One per event, in input order (executemany).
INSERT INTO events (project, domain, name, phase, occurred_at, producer_id, error, received_at,
                    outcome, paused)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: terminal_phase
SELECT terminal_phase FROM executions WHERE project = ? AND domain = ? AND name = ?;

-- name: move_to_terminal
UPDATE executions SET terminal_phase = ?, terminal_at = ?
 WHERE project = ? AND domain = ? AND name = ? AND terminal_phase IS NULL;

-- name: last_delivery_id
-- The highest id so far: under the write lock, every row inserted after this
-- gets a higher one (ids are rowids, each one more than the highest).
SELECT COALESCE(MAX(id), 0) FROM deliveries;

-- name: insert_delivery
-- For executemany: the rows written are read back with deliveries_after.
INSERT INTO deliveries (idempotency_key, project, domain, name, phase, notification_index, kind,
                        channel, recipient, message, launch_plan, status, created_at, updated_at,
                        next_attempt_at, group_key, silence_id, follows)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (idempotency_key) DO NOTHING;

-- name: deliveries_after
-- The rows inserted since last_delivery_id, in the same transaction. Parameters: that id.
SELECT id, idempotency_key FROM deliveries WHERE id > ?;

-- name: pending_channel_after
-- The next channel with pending rows after the one given: one index seek.
SELECT MIN(channel) FROM deliveries INDEXED BY deliveries_due
 WHERE status IN ('pending', 'retrying') AND channel > ?;

-- name: due_candidates
-- Up to N due rows of one channel not leased, in due order, leaving out rows
-- whose group is open. Parameters: channel, now, now, now, N.
SELECT id, group_key FROM deliveries INDEXED BY deliveries_due
 WHERE status IN ('pending', 'retrying') AND channel = ?
   AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)
   AND (group_key IS NULL
        OR NOT EXISTS (SELECT 1 FROM delivery_groups AS g
                        WHERE g.group_key = deliveries.group_key AND g.open_until > ?))
 ORDER BY next_attempt_at LIMIT ?;

-- name: lease_ids
-- Parameters: owner, lease until, now, a JSON array of delivery ids.
UPDATE deliveries SET lease_owner = ?, lease_until = ?, updated_at = ?
 WHERE id IN (SELECT value FROM json_each(?))
RETURNING *;

-- name: open_group
-- Open a group that is absent or closed; returns its key only then.
-- Parameters: key, open until, now.
INSERT INTO delivery_groups (group_key, open_until) VALUES (?, ?)
ON CONFLICT (group_key) DO UPDATE SET open_until = excluded.open_until
 WHERE delivery_groups.open_until <= ?
RETURNING group_key;

-- name: claim_group
-- Lease up to N due rows of one group. Parameters: owner, lease until, now,
-- key, now, now, N.
UPDATE deliveries SET lease_owner = ?, lease_until = ?, updated_at = ?
 WHERE id IN (SELECT id FROM deliveries INDEXED BY deliveries_by_group
               WHERE group_key = ? AND status IN ('pending', 'retrying')
                 AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)
               ORDER BY next_attempt_at LIMIT ?)
RETURNING *;

-- name: first_free_at
-- When the first row of a channel that is neither leased nor held by an open
-- group is due. Parameters: channel, now, now.
SELECT next_attempt_at FROM deliveries INDEXED BY deliveries_due
 WHERE status IN ('pending', 'retrying') AND channel = ?
   AND (lease_until IS NULL OR lease_until < ?)
   AND (group_key IS NULL
        OR NOT EXISTS (SELECT 1 FROM delivery_groups AS g
                        WHERE g.group_key = deliveries.group_key AND g.open_until > ?))
 ORDER BY next_attempt_at LIMIT 1;

-- name: first_group_close
-- When the first open group that holds rows closes. Parameters: now.
SELECT MIN(open_until) FROM delivery_groups AS g
 WHERE open_until > ?
   AND EXISTS (SELECT 1 FROM deliveries AS d
                WHERE d.group_key = g.group_key AND d.status IN ('pending', 'retrying'));

-- name: earliest_lease_end
-- When the first lease of a channel's due rows passes (due rows are all leased
-- when this is asked, claims only take due rows, so it reads few).
SELECT MIN(lease_until) FROM deliveries INDEXED BY deliveries_due
 WHERE status IN ('pending', 'retrying') AND channel = ? AND next_attempt_at <= ?;

-- name: held_leases
-- Of a JSON array of delivery ids: each pending row's lease owner and attempts.
SELECT id, lease_owner, attempts FROM deliveries
 WHERE id IN (SELECT value FROM json_each(?)) AND status IN ('pending', 'retrying');

-- name: write_outcome
-- A failed attempt keeps the provider ids an earlier one recorded ('' leaves them).
UPDATE deliveries SET status = ?, attempts = attempts + 1, last_reply = ?, next_attempt_at = ?,
       message_id = ?, message_size = ?,
       provider_message_id = COALESCE(NULLIF(?, ''), provider_message_id),
       in_reply_to = COALESCE(NULLIF(?, ''), in_reply_to),
       lease_owner = NULL, lease_until = NULL, updated_at = ?
 WHERE id = ?;

-- name: close_group_at
-- A message to be retried closes its group's window when the retry is due:
-- the retry goes then, with whatever else of the group is due.
-- Parameters: the retry's time, the delivery id.
UPDATE delivery_groups SET open_until = MIN(open_until, ?)
 WHERE group_key = (SELECT group_key FROM deliveries WHERE id = ?);

-- name: insert_attempt
INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, reply)
VALUES (?, ?, ?, ?, ?, ?);

-- name: renew_leases
-- Parameters: lease until, owner, a JSON array of delivery ids.
UPDATE deliveries SET lease_until = ?
 WHERE lease_owner = ? AND id IN (SELECT value FROM json_each(?))
   AND status IN ('pending', 'retrying');

-- name: redrive
-- A dead (or silenced) delivery due again at once. Parameters: now, now, id.
UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ?,
       lease_owner = NULL, lease_until = NULL
 WHERE id = ? AND status IN ('dead', 'silenced')
RETURNING *;

-- name: live_silences
-- Of a JSON array of silence ids, those not ended (under the write lock: none
-- can end before this transaction commits).
SELECT id FROM silences WHERE id IN (SELECT value FROM json_each(?)) AND ended_at IS NULL;

-- name: hold_deliveries
-- Rows a new silence holds, while it is not ended: those of the JSON array of
-- ids still waiting and not leased (one in flight is left to its send).
-- Parameters: silence id, now, the ids, now, silence id.
UPDATE deliveries SET status = 'silenced', silence_id = ?, updated_at = ?
 WHERE id IN (SELECT value FROM json_each(?)) AND status IN ('pending', 'retrying')
   AND (lease_until IS NULL OR lease_until < ?)
   AND EXISTS (SELECT 1 FROM silences WHERE id = ? AND ended_at IS NULL)
RETURNING id, attempts;

-- name: release_held
-- What a silence held, due at once. Parameters: now, now, the silence's id.
UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ?,
       lease_owner = NULL, lease_until = NULL
 WHERE silence_id = ? AND status = 'silenced'
RETURNING id, attempts;

-- name: redrive_attempt
-- Parameters: delivery id, its attempts so far, now, now.
INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, reply)
VALUES (?, ?, ?, ?, 'redrive', 're-driven by an operator');

-- name: reserve_slot
-- The next slot of a key, interval after the last one or now; returns its start.
-- Parameters: key, now, interval, now, interval, interval.
INSERT INTO pacing (key, next_at) VALUES (?, ? + ?)
ON CONFLICT (key) DO UPDATE SET next_at = MAX(next_at, ?) + ?
RETURNING next_at - ?;

-- name: block_slots
-- No slot of a key starts before the time given. Parameters: key, until.
INSERT INTO pacing (key, next_at) VALUES (?, ?)
ON CONFLICT (key) DO UPDATE SET next_at = MAX(next_at, excluded.next_at);

-- name: join_conversation
-- Open a conversation with the delivery given as its first message. One whose
-- first message is not sent yet is taken over when its delivery is not being
-- sent now: it failed and waits for a retry (no lease), is dead, or was
-- delivered with no id recorded; that delivery then follows the new first
-- message when it is retried. Parameters: key, delivery id, now, now.
INSERT INTO conversations (conversation, root_delivery, thread, updated_at) VALUES (?, ?, NULL, ?)
ON CONFLICT (conversation) DO UPDATE SET
    root_delivery = excluded.root_delivery, updated_at = excluded.updated_at
 WHERE conversations.thread IS NULL
   AND conversations.root_delivery <> excluded.root_delivery
   AND EXISTS (SELECT 1 FROM deliveries AS d
                WHERE d.id = conversations.root_delivery
                  AND (d.status IN ('dead', 'delivered')
                       OR d.lease_until IS NULL OR d.lease_until < ?));

-- name: select_conversations
-- As select_conversation, for a JSON array of keys.
SELECT c.conversation, c.root_delivery, c.thread, d.status AS root_status
  FROM conversations AS c LEFT JOIN deliveries AS d ON d.id = c.root_delivery
 WHERE c.conversation IN (SELECT value FROM json_each(?));

-- name: launch_plan_name
-- An expression, not a statement: the launch plan's name inside the JSON
-- column deliveries.launch_plan, for the console's launch plan filter.
json_extract(launch_plan, '$.name')

-- name: due_timers
-- Up to N due timers not leased, earliest first. Parameters: due by, now, N.
SELECT id FROM timers INDEXED BY timers_due
 WHERE due_at <= ? AND (lease_until IS NULL OR lease_until < ?)
 ORDER BY due_at LIMIT ?;

-- name: lease_timers
-- Parameters: owner, lease until, a JSON array of timer ids.
UPDATE timers SET lease_owner = ?, lease_until = ?
 WHERE id IN (SELECT value FROM json_each(?))
RETURNING *;

-- name: first_free_timer
-- When the first timer not leased is due. Parameters: now.
SELECT due_at FROM timers INDEXED BY timers_due
 WHERE lease_until IS NULL OR lease_until < ?
 ORDER BY due_at LIMIT 1;

-- name: earliest_timer_lease
-- When the first lease held now passes. Parameters: now.
SELECT MIN(lease_until) FROM timers INDEXED BY timers_leased
 WHERE lease_until IS NOT NULL AND lease_until >= ?;
