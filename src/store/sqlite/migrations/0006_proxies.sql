-- Friends and family: a patient grants a person (a RelatedPerson in the record) access by email and birth
-- date. The person signs in with their own account; a grant opens only while not revoked and only when the
-- birth date the patient entered is the account's.
CREATE TABLE proxy_grants (
    related_person TEXT PRIMARY KEY,
    patient TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    birth_date TEXT NOT NULL,
    -- The patient's name when access was granted, for the header and the choice of records (no record read).
    patient_name TEXT NOT NULL,
    created INTEGER NOT NULL,
    accepted INTEGER,
    revoked INTEGER
);
CREATE INDEX proxy_grants_account ON proxy_grants (account_id);
CREATE INDEX proxy_grants_patient ON proxy_grants (patient);

-- Whose record a session has open (NULL: the account's own).
ALTER TABLE sessions ADD COLUMN patient TEXT;

-- One grant in force per person and patient, even when two requests grant at once.
CREATE UNIQUE INDEX proxy_grants_live ON proxy_grants (account_id, patient) WHERE revoked IS NULL;
