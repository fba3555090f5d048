-- Acknowledgements: "I'm on it", said by a person from a chat message's button.
--
-- One per execution and person: a second click (a replay, a double click, a
-- second replica) finds the first and writes nothing. An execution that has
-- one is no longer re-alerted by its deadlines (engine/timers.py).
--
-- actor, proof  who acknowledged ("slack:U123", "mattermost:alice") and how
--               that was proven ("slack-signature", "mattermost-hmac")
-- message       the provider's id of the message the button was on (Slack
--               channel/ts, a Mattermost post id); '' when not known
CREATE TABLE acknowledgements (
    id              {{id}},
    project         TEXT NOT NULL,
    domain          TEXT NOT NULL,
    name            TEXT NOT NULL,
    actor           TEXT NOT NULL,
    proof           TEXT NOT NULL,
    message         TEXT NOT NULL DEFAULT '',
    acknowledged_at {{timestamp}} NOT NULL,
    UNIQUE (project, domain, name, actor)
);
