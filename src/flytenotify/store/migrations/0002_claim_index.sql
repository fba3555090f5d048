-- Claims ask for due rows of one channel at a time (each channel has its own
-- concurrency limit), so the due-rows index leads with the channel: a claim
-- reads only that channel's due rows instead of skipping past every other's.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at)
    WHERE status IN ('pending', 'retrying');
