-- Where an execution's notifications came from, and why there are none when a
-- look-up was refused:
--   registered  created through our API, or from a launch plan registered with us
--   flyteadmin  read from FlyteAdmin (GetExecution: the closure's notifications)
--   none        nobody knew the execution: recorded with no notifications
-- lookup_error keeps FlyteAdmin's answer (e.g. "NOT_FOUND: ...") for "none" rows
-- whose look-up was refused; it is final, the execution is never looked up again.
ALTER TABLE executions ADD COLUMN notifications_source TEXT NOT NULL DEFAULT 'registered';
ALTER TABLE executions ADD COLUMN lookup_error TEXT NOT NULL DEFAULT '';

-- Before this version an event for an unknown execution that named no launch
-- plan was recorded with no launch plan and no notifications: say so.
UPDATE executions SET notifications_source = 'none'
 WHERE launch_plan IS NULL AND notifications = '[]';
