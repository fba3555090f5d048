-- PostgreSQL's own statements: what many replicas on many hosts need. Rows are
-- claimed with FOR UPDATE SKIP LOCKED, batches travel as arrays (unnest), and
-- times come from the database's clock, the one every replica shares.

-- name: now
-- Included as {{now}}: the transaction's start on the database clock, in Unix
-- seconds; every row one transaction writes gets the same time.
extract(epoch FROM now())::double precision

-- name: clock
-- Included as {{clock}}: the database clock at this instant.
extract(epoch FROM clock_timestamp())::double precision

-- name: db_now
SELECT {{now}};

-- name: notify
-- Heard by listeners only if and when this transaction commits.
SELECT pg_notify($1, '');

-- name: migration_lock
-- Held until commit: replicas starting at once migrate one after another.
SELECT pg_advisory_xact_lock($1);

-- name: has_schema_migrations
SELECT to_regclass('schema_migrations') IS NOT NULL;

-- name: record_migration
INSERT INTO schema_migrations (version, applied_at) VALUES ($1, {{now}});

-- name: lock_launch_plans
-- seq is registration order: registrations take turns so two replicas never
-- hand out the same number. Readers are not blocked.
LOCK TABLE launch_plans IN SHARE ROW EXCLUSIVE MODE;

-- name: select_executions
SELECT e.* FROM executions AS e
JOIN unnest($1::text[], $2::text[], $3::text[]) AS wanted (project, domain, name)
  ON e.project = wanted.project AND e.domain = wanted.domain AND e.name = wanted.name;

-- name: insert_executions
-- A batch's executions (each once, in key order so that two batches take the
-- rows' locks in the same order); existing ones are kept as they are.
INSERT INTO executions (project, domain, name, launch_plan, workflow, notifications, created_at,
                        notifications_source, lookup_error, rules, plan, trigger_name)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::double precision[], $8::text[], $9::text[], $10::text[], $11::text[],
                     $12::text[])
ON CONFLICT DO NOTHING;

-- name: lock_executions
-- The terminal phase of a batch's executions, their rows locked until commit
-- (in key order: two replicas never wait for each other in a circle), so an
-- execution moves to terminal once whichever replica records its events.
SELECT e.project, e.domain, e.name, e.terminal_phase FROM executions AS e
JOIN unnest($1::text[], $2::text[], $3::text[]) AS wanted (project, domain, name)
  ON e.project = wanted.project AND e.domain = wanted.domain AND e.name = wanted.name
ORDER BY e.project, e.domain, e.name
FOR UPDATE OF e;

-- name: lock_live_silences
-- Of the silences a batch's deliveries were marked with, those not ended,
-- locked until commit: a silence being ended waits for this batch (then
-- releases what it wrote too), or ended first and holds none of it.
SELECT id FROM silences WHERE id = ANY($1::bigint[]) AND ended_at IS NULL
 ORDER BY id
   FOR SHARE;

-- name: move_to_terminal
UPDATE executions AS e SET terminal_phase = moved.phase, terminal_at = {{now}}
  FROM unnest($1::text[], $2::text[], $3::text[], $4::int[]) AS moved (project, domain, name, phase)
 WHERE e.project = moved.project AND e.domain = moved.domain AND e.name = moved.name
   AND e.terminal_phase IS NULL;

-- name: insert_deliveries
-- Every delivery of a batch, ids handed out in input order; a key already
-- written is skipped and returns nothing.
INSERT INTO deliveries (idempotency_key, project, domain, name, phase, notification_index, kind,
                        channel, recipient, message, launch_plan, status, created_at, updated_at,
                        next_attempt_at, group_key, silence_id, follows)
SELECT key, project, domain, name, phase, notification_index, kind, channel, recipient, message,
       launch_plan, status, created_at, updated_at, next_attempt_at, group_key, silence_id, follows
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[],
              $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
              $13::double precision[], $14::double precision[], $15::double precision[],
              $16::text[], $17::bigint[], $18::text[])
       WITH ORDINALITY AS d (key, project, domain, name, phase, notification_index, kind,
                             channel, recipient, message, launch_plan, status, created_at,
                             updated_at, next_attempt_at, group_key, silence_id, follows,
                             position)
 ORDER BY position
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, idempotency_key;

-- name: insert_events
-- Every event of a batch, ids in input order.
INSERT INTO events (project, domain, name, phase, occurred_at, producer_id, error, received_at,
                    outcome, paused)
SELECT project, domain, name, phase, occurred_at, producer_id, error, received_at, outcome, paused
  FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::double precision[],
              $6::text[], $7::text[], $8::double precision[], $9::text[], $10::text[])
       WITH ORDINALITY AS e (project, domain, name, phase, occurred_at, producer_id, error,
                             received_at, outcome, paused, position)
 ORDER BY position;

-- name: found_channels
-- Included as {{found_channels}}: the distinct channels of pending rows, one
-- index probe each (a "loose index scan"); "any channel but these" as one
-- condition would read every pending row, a million during an outage.
WITH RECURSIVE found(channel) AS (
    (SELECT channel FROM deliveries WHERE status IN ('pending', 'retrying')
      ORDER BY channel LIMIT 1)
    UNION ALL
    SELECT (SELECT d.channel FROM deliveries AS d
             WHERE d.status IN ('pending', 'retrying') AND d.channel > found.channel
             ORDER BY d.channel LIMIT 1)
      FROM found WHERE found.channel IS NOT NULL
)

-- name: pending_channels
{{found_channels}}
SELECT channel FROM found WHERE channel IS NOT NULL;

-- name: claim_due
-- Lease due rows of channel $2 for owner $1, $4 seconds: up to $3 rows without
-- a group key, and every due row (up to $3 * $6) of up to $3 groups that are
-- closed, opening each such group for $5 seconds. Rows without a group are
-- locked with SKIP LOCKED: two replicas claiming at once take disjoint rows.
-- A group is taken by the one replica whose upsert finds it closed: the
-- others wait for its row, then see it open and take nothing of it (its
-- rows are not locked before that, so they never hide from the winner).
-- Groups are upserted in key order, as every replica does.
WITH free AS (
    SELECT id FROM deliveries
     WHERE status IN ('pending', 'retrying') AND channel = $2 AND group_key IS NULL
       AND next_attempt_at <= {{now}}
       AND (lease_until IS NULL OR lease_until < {{now}})
     ORDER BY next_attempt_at
     LIMIT $3
       FOR UPDATE SKIP LOCKED
), closed AS (
    SELECT d.group_key FROM deliveries AS d
     WHERE d.status IN ('pending', 'retrying') AND d.channel = $2 AND d.group_key IS NOT NULL
       AND d.next_attempt_at <= {{now}}
       AND (d.lease_until IS NULL OR d.lease_until < {{now}})
       AND NOT EXISTS (SELECT 1 FROM delivery_groups AS g
                        WHERE g.group_key = d.group_key AND g.open_until > {{now}})
     GROUP BY d.group_key
     ORDER BY MIN(d.next_attempt_at)
     LIMIT $3
), opened AS (
    INSERT INTO delivery_groups AS g (group_key, open_until)
    SELECT group_key, {{now}} + $5 FROM closed ORDER BY group_key
    ON CONFLICT (group_key) DO UPDATE SET open_until = excluded.open_until
     WHERE g.open_until <= {{now}}
    RETURNING g.group_key
), members AS (
    SELECT d.id FROM deliveries AS d
     WHERE d.group_key IN (SELECT group_key FROM opened)
       AND d.status IN ('pending', 'retrying')
       AND d.next_attempt_at <= {{now}}
       AND (d.lease_until IS NULL OR d.lease_until < {{now}})
     ORDER BY d.next_attempt_at
     LIMIT $3 * $6
       FOR UPDATE SKIP LOCKED
)
UPDATE deliveries AS d
   SET lease_owner = $1, lease_until = {{now}} + $4, updated_at = {{now}}
 WHERE d.id IN (SELECT id FROM free UNION ALL SELECT id FROM members)
RETURNING d.*;

-- name: complete
-- A whole batch of outcomes: the arrays are its columns. A row counts only if
-- this owner still holds it; its attempt number is the row's new attempt
-- count. A retry's delay is re-based on the database clock (the dispatcher
-- computed "its now + delay").
WITH batch AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
                         $5::double precision[], $6::double precision[],
                         $7::double precision[], $8::text[], $9::text[], $10::int[],
                         $11::text[], $12::text[], $13::text[], $14::text[])
           AS b(id, owner, status, reply, delay, started_at, finished_at, outcome,
                message_id, message_size, provider_message_id, in_reply_to, opened, thread)
), done AS (
    UPDATE deliveries AS d
       SET status = batch.status, attempts = d.attempts + 1, last_reply = batch.reply,
           next_attempt_at = {{now}} + batch.delay,
           message_id = batch.message_id, message_size = batch.message_size,
           provider_message_id = COALESCE(NULLIF(batch.provider_message_id, ''),
                                          d.provider_message_id),
           in_reply_to = COALESCE(NULLIF(batch.in_reply_to, ''), d.in_reply_to),
           lease_owner = NULL, lease_until = NULL, updated_at = {{now}}
      FROM batch
     WHERE d.id = batch.id AND d.lease_owner = batch.owner
       AND d.status IN ('pending', 'retrying')
    RETURNING d.id, d.attempts, d.group_key
), retried_groups AS (
    -- A message to be retried closes its group's window when the retry is
    -- due: the retry goes then, with whatever else of the group is due.
    UPDATE delivery_groups AS g SET open_until = LEAST(g.open_until, r.at)
      FROM (SELECT done.group_key, MIN({{now}} + batch.delay) AS at
              FROM done JOIN batch ON batch.id = done.id
             WHERE batch.status = 'retrying' AND done.group_key IS NOT NULL
             GROUP BY done.group_key) AS r
     WHERE g.group_key = r.group_key
), opened AS (
    -- A conversation's first message was sent (conversation_sent, for the batch).
    UPDATE conversations AS c
       SET root_delivery = done.id, thread = batch.thread, updated_at = {{now}}
      FROM done JOIN batch ON batch.id = done.id
     WHERE batch.opened <> '' AND c.conversation = batch.opened
)
INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, reply)
SELECT done.id, done.attempts, batch.started_at, batch.finished_at, batch.outcome, batch.reply
  FROM done JOIN batch ON batch.id = done.id;

-- name: renew_leases
-- By primary key: a renewal costs the same however many rows are pending.
UPDATE deliveries SET lease_until = {{now}} + $3
 WHERE id = ANY($2::bigint[]) AND lease_owner = $1 AND status IN ('pending', 'retrying');

-- name: next_due_in
-- Seconds from the database's now until the earliest pending row can next be
-- claimed (negative if overdue), by index probes per pending channel: its
-- first row not leased nor held by an open group; if that is not due yet,
-- the earliest lease to pass, found among the due rows, which are then all
-- leased or held (claims only take due rows), so few; and the first close
-- of an open group that holds rows.
{{found_channels}}
, first_free AS (
    SELECT found.channel,
           (SELECT d.next_attempt_at FROM deliveries AS d
             WHERE d.status IN ('pending', 'retrying') AND d.channel = found.channel
               AND (d.lease_until IS NULL OR d.lease_until < {{now}})
               AND (d.group_key IS NULL
                    OR NOT EXISTS (SELECT 1 FROM delivery_groups AS g
                                    WHERE g.group_key = d.group_key
                                      AND g.open_until > {{now}}))
             ORDER BY d.next_attempt_at LIMIT 1) AS at
      FROM found WHERE found.channel IS NOT NULL
)
SELECT LEAST(
           MIN(CASE WHEN at <= {{now}} THEN at
                    ELSE LEAST(at, (SELECT MIN(d.lease_until) FROM deliveries AS d
                                     WHERE d.status IN ('pending', 'retrying')
                                       AND d.channel = first_free.channel
                                       AND d.next_attempt_at <= {{now}}))
               END),
           (SELECT MIN(g.open_until) FROM delivery_groups AS g
             WHERE g.open_until > {{now}}
               AND EXISTS (SELECT 1 FROM deliveries AS d
                            WHERE d.group_key = g.group_key
                              AND d.status IN ('pending', 'retrying')))
       ) - {{now}} AS due_in
  FROM first_free;

-- name: redrive
-- A dead (or silenced) delivery due at once by the database's clock.
UPDATE deliveries SET status = 'pending', next_attempt_at = {{now}}, updated_at = {{now}},
       lease_owner = NULL, lease_until = NULL
 WHERE id = $1 AND status IN ('dead', 'silenced')
RETURNING *;

-- name: hold_deliveries
-- Rows a new silence holds while it is not ended (its row locked against an
-- end until commit), each with an attempt row saying so: those of ids $2 still
-- waiting and not leased (one in flight is left to its send; a claim that
-- leased one meanwhile is seen once its row lock is released).
-- Parameters: the silence's id, the ids, the attempt's reply.
WITH live AS (
    SELECT id FROM silences WHERE id = $1 AND ended_at IS NULL FOR SHARE
), held AS (
    UPDATE deliveries SET status = 'silenced', silence_id = $1, updated_at = {{now}}
     WHERE id = ANY($2::bigint[]) AND status IN ('pending', 'retrying')
       AND (lease_until IS NULL OR lease_until < {{now}})
       AND EXISTS (SELECT 1 FROM live)
    RETURNING id, attempts
)
INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, reply)
SELECT id, attempts, {{now}}, {{now}}, 'silenced', $3 FROM held;

-- name: release_held
-- What a silence held, due at once by the database's clock, each with an
-- attempt row saying so. Parameters: the silence's id, the attempt's reply.
WITH released AS (
    UPDATE deliveries SET status = 'pending', next_attempt_at = {{now}}, updated_at = {{now}},
           lease_owner = NULL, lease_until = NULL
     WHERE silence_id = $1 AND status = 'silenced'
    RETURNING id, attempts
)
INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, reply)
SELECT id, attempts, {{now}}, {{now}}, 'released', $2 FROM released;

-- name: redrive_attempt
-- Parameters: delivery id, its attempts so far.
INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, reply)
VALUES ($1, $2, {{now}}, {{now}}, 'redrive', 're-driven by an operator');

-- name: reserve_slot
-- Slots are spaced on the database's clock: replicas' clocks may disagree.
-- Returns the seconds until the slot reserved starts.
WITH now AS (SELECT {{clock}} AS at)
INSERT INTO pacing AS p (key, next_at) SELECT $1, now.at + $2 FROM now
ON CONFLICT (key) DO UPDATE
    SET next_at = GREATEST(p.next_at, (SELECT at FROM now)) + $2
RETURNING p.next_at - $2 - (SELECT at FROM now) AS wait;

-- name: block_slots
-- No slot of key $1 starts within $2 seconds.
INSERT INTO pacing AS p (key, next_at) VALUES ($1, {{clock}} + $2)
ON CONFLICT (key) DO UPDATE SET next_at = GREATEST(p.next_at, excluded.next_at);

-- name: join_conversation
-- Open a conversation with the delivery given as its first message. One whose
-- first message is not sent yet is taken over when its delivery is not being
-- sent now: it failed and waits for a retry (no lease), is dead, or was
-- delivered with no id recorded; that delivery then follows the new first
-- message when it is retried. Of two replicas racing, one inserts; the
-- other's upsert waits for that row, then finds it open and its delivery
-- leased. Leases are judged by the database's clock. Parameters: key,
-- delivery id.
INSERT INTO conversations AS c (conversation, root_delivery, thread, updated_at)
VALUES ($1, $2, NULL, {{now}})
ON CONFLICT (conversation) DO UPDATE SET
    root_delivery = excluded.root_delivery, updated_at = excluded.updated_at
 WHERE c.thread IS NULL
   AND c.root_delivery <> excluded.root_delivery
   AND EXISTS (SELECT 1 FROM deliveries AS d
                WHERE d.id = c.root_delivery
                  AND (d.status IN ('dead', 'delivered')
                       OR d.lease_until IS NULL OR d.lease_until < {{now}}));

-- name: join_conversations
-- join_conversation for a claim's deliveries in one statement: the arrays are
-- the keys and delivery ids (one per key: an upsert cannot touch a row twice).
INSERT INTO conversations AS c (conversation, root_delivery, thread, updated_at)
SELECT j.key, j.id, NULL, {{now}} FROM unnest($1::text[], $2::bigint[]) AS j(key, id)
ON CONFLICT (conversation) DO UPDATE SET
    root_delivery = excluded.root_delivery, updated_at = excluded.updated_at
 WHERE c.thread IS NULL
   AND c.root_delivery <> excluded.root_delivery
   AND EXISTS (SELECT 1 FROM deliveries AS d
                WHERE d.id = c.root_delivery
                  AND (d.status IN ('dead', 'delivered')
                       OR d.lease_until IS NULL OR d.lease_until < {{now}}));

-- name: select_conversations
-- As select_conversation, for an array of keys.
SELECT c.conversation, c.root_delivery, c.thread, d.status AS root_status
  FROM conversations AS c LEFT JOIN deliveries AS d ON d.id = c.root_delivery
 WHERE c.conversation = ANY($1::text[]);

-- name: launch_plan_name
-- An expression, not a statement: the launch plan's name inside the JSON
-- column deliveries.launch_plan, for the console's launch plan filter.
(launch_plan::jsonb ->> 'name')

-- name: claim_timers
-- Lease up to $3 due timers to owner $1 for $2 seconds, on the database clock
-- ($4: how far the caller's clock runs ahead of it; 0 but where tests move
-- time). SKIP LOCKED: replicas claiming at once take disjoint timers.
WITH due AS (
    SELECT id FROM timers
     WHERE due_at <= {{now}} + $4 AND (lease_until IS NULL OR lease_until < {{now}})
     ORDER BY due_at
     LIMIT $3
       FOR UPDATE SKIP LOCKED
)
UPDATE timers AS t SET lease_owner = $1, lease_until = {{now}} + $2
  FROM due WHERE t.id = due.id
RETURNING t.*;

-- name: next_timer_in
-- Seconds until a timer can next be claimed (negative if overdue): the first
-- not leased coming due (its clock $1 ahead), or a lease passing.
SELECT LEAST(
    (SELECT due_at FROM timers WHERE lease_until IS NULL OR lease_until < {{now}}
      ORDER BY due_at LIMIT 1) - ({{now}} + $1),
    (SELECT MIN(lease_until) FROM timers
      WHERE lease_until IS NOT NULL AND lease_until >= {{now}}) - {{now}}
) AS due_in;

-- name: lock_execution
-- The terminal phase of one execution, its row locked until commit: an event
-- ending it and a timer alerting about it take turns.
SELECT terminal_phase FROM executions WHERE project = $1 AND domain = $2 AND name = $3
   FOR UPDATE;
