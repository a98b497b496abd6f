-- EHR launches: a staff member opened a registered app for a patient; the app's authorization request names
-- the launch (by SHA-256 of its random id) and gets that patient as its context.
CREATE TABLE oauth_launches (
    hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth_clients (id),
    account_id TEXT NOT NULL,
    patient TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
