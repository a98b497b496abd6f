-- Send Record: what a patient (or someone acting for them) sent to an outside provider. The package itself is
-- never kept: it leaves by email, encrypted with a password the server does not store.
CREATE TABLE record_shares (
    id TEXT PRIMARY KEY,
    patient TEXT NOT NULL,
    sent_by TEXT NOT NULL,
    recipient TEXT NOT NULL,
    range_start TEXT NOT NULL,
    range_end TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX record_shares_patient ON record_shares (patient, created);

-- A letter may carry one file (base64), such as the encrypted record package.
ALTER TABLE outbox ADD COLUMN attachment_name TEXT;
ALTER TABLE outbox ADD COLUMN attachment_type TEXT;
ALTER TABLE outbox ADD COLUMN attachment_data TEXT;
