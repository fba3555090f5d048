-- The web console's logged-in sessions, kept on the server so that logging
-- out ends a session for every replica: a session cookie opens pages only
-- while its row is here and unexpired. The cookie carries a random nonce;
-- a row keeps only its SHA-256 (hex), so whoever reads the ledger cannot
-- log in with what is stored. Expired rows are deleted when someone logs in.
CREATE TABLE console_sessions (
    id         TEXT PRIMARY KEY,
    created_at {{timestamp}} NOT NULL,
    expires_at {{timestamp}} NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
