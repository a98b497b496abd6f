-- Send Record: what a patient (or someone acting for them) sent to an outside provider. The zip leaves by email,
-- encrypted with a password the server does not store. The same content is offered as a SMART Health Link:
-- its manifest id (random), the passcode's Argon2id hash, when it ends, wrong passcodes so far, when it was
-- deactivated, and the file as JWE (its key is only in the link, so the server cannot read it).
CREATE TABLE record_shares (
    id TEXT PRIMARY KEY,
    patient TEXT NOT NULL,
    sent_by TEXT NOT NULL,
    recipient TEXT NOT NULL,
    range_start TEXT NOT NULL,
    range_end TEXT NOT NULL,
    created BIGINT NOT NULL,
    link_id TEXT NOT NULL UNIQUE,
    passcode_hash TEXT NOT NULL,
    expires BIGINT NOT NULL,
    failures BIGINT NOT NULL DEFAULT 0,
    disabled BIGINT,
    file TEXT NOT NULL
);
CREATE INDEX record_shares_patient ON record_shares (patient, created);

-- A letter may carry one file (base64), such as the encrypted record package.
ALTER TABLE outbox ADD COLUMN attachment_name TEXT;
ALTER TABLE outbox ADD COLUMN attachment_type TEXT;
ALTER TABLE outbox ADD COLUMN attachment_data TEXT;
