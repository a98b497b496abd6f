-- People who sign in to the portal. `person` is the FHIR resource the account stands for (Patient/x for a
-- patient, Practitioner/y for staff); `birth_date` is the date of birth sign-in must match (patients).
-- `password_hash` (Argon2id, PHC string) stays NULL until the invitation is accepted.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    person TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    birth_date TEXT,
    password_hash TEXT,
    created INTEGER NOT NULL,
    registered INTEGER
);

-- Single-use links (invitations, password resets): only the SHA-256 of the token is kept.
CREATE TABLE account_tokens (
    hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    purpose TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    used INTEGER,
    superseded INTEGER
);
CREATE INDEX account_tokens_account ON account_tokens (account_id, purpose);

-- Server-side sessions, by the SHA-256 of the cookie value.
CREATE TABLE sessions (
    hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    created INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE INDEX sessions_account ON sessions (account_id);

-- Failed attempts per key (an account's email, a client address) for slowing down and locking.
CREATE TABLE throttle (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first_failure INTEGER NOT NULL,
    locked_until INTEGER NOT NULL
);

-- Email waiting to be sent, written in the same transaction as what caused it. A row is deleted once sent,
-- so the link it carries is not kept.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    last_error TEXT
);
CREATE INDEX outbox_next ON outbox (next_attempt);
