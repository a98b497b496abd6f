-- Secrets every server process on this database must share (the ID-token signing key, the key that signs
-- SMART Health Link file URLs): made by whichever process starts first, read by the others, so nodes behind a
-- load balancer hold no state of their own.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created BIGINT NOT NULL
);
