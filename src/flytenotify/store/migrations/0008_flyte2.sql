-- Flyte 2 runs.
--
-- rules   a Flyte 2 run's notification rules (JSON, see store/codec.py), frozen
--         when flytenotify first saw the run: its inline rules, and what its
--         named rule or named deliveries meant then. '[]' for Flyte 1 executions,
--         whose notifications stay in the notifications column.
ALTER TABLE executions ADD COLUMN rules TEXT NOT NULL DEFAULT '[]';

-- What the names in users' code mean (flyte.notify.NamedRule("oncall"),
-- NamedDelivery(name="chat")), as managed over the API and the CLI. Those in
-- the configuration file are not stored: the file is their source.
--
-- kind        'rule' (a NamedRule: phases and recipients) or 'delivery' (a
--             NamedDelivery: recipients; the phases come from the user's rule)
-- project,    the scope: '' matches every project (domain); the most specific
-- domain      entry of a name wins
-- phases      a rule's phases (JSON list of names), '[]' for a delivery
-- recipients  JSON list, in the recipient syntax notifications use
CREATE TABLE named_rules (
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    project    TEXT NOT NULL DEFAULT '',
    domain     TEXT NOT NULL DEFAULT '',
    phases     TEXT NOT NULL DEFAULT '[]',
    recipients TEXT NOT NULL,
    updated_at {{timestamp}} NOT NULL,
    PRIMARY KEY (kind, name, project, domain)
);

-- How far a watch of Flyte 2's runs has come, per source ("flyte2:PROJECT/DOMAIN"):
-- every run that ended before `position` (Unix seconds) has been recorded. The
-- control plane's stream has no resume cursor, so after a restart or a dropped
-- stream a watch lists the runs that ended since (a margin before) its position.
CREATE TABLE watch_positions (
    source     TEXT PRIMARY KEY,
    position   {{timestamp}} NOT NULL,
    updated_at {{timestamp}} NOT NULL
);
