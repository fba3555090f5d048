-- Signed links: the answer buttons of an email to one person, as links to the
-- console (/ui/act), each usable once.
--
-- nonce    the link's own (derived from its delivery and what it does): the
--          first use writes the row, a second finds it and does nothing
-- actor    who used it ("email:alice@example.com")
-- used_at  when
CREATE TABLE used_links (
    nonce   TEXT PRIMARY KEY,
    actor   TEXT NOT NULL,
    used_at {{timestamp}} NOT NULL
);
