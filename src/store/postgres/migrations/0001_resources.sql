-- Resources: one head row per logical resource (current version), superseded versions in resource_history.
CREATE TABLE resources (
    rid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    body TEXT,
    UNIQUE (rtype, id)
);
CREATE INDEX resources_type_updated ON resources (rtype, last_updated);

CREATE TABLE resource_history (
    rid BIGINT NOT NULL REFERENCES resources (rid),
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    body TEXT,
    PRIMARY KEY (rid, version)
);
CREATE INDEX resource_history_updated ON resource_history (last_updated);

-- Patient compartment membership of the current version, computed at write time.
CREATE TABLE compartments (
    patient TEXT NOT NULL,
    rtype TEXT NOT NULL,
    rid BIGINT NOT NULL REFERENCES resources (rid),
    PRIMARY KEY (patient, rtype, rid)
);
CREATE INDEX compartments_rid ON compartments (rid);

-- Search index of current versions. `patient` is the compartment ('' for none) so per-patient searches are
-- one range scan of the compartment-first index; the second index serves searches across patients.
CREATE TABLE search_token (
    rid BIGINT NOT NULL REFERENCES resources (rid),
    patient TEXT NOT NULL,
    rtype TEXT NOT NULL,
    param TEXT NOT NULL,
    system TEXT,
    code TEXT NOT NULL
);
CREATE INDEX search_token_patient ON search_token (patient, rtype, param, code, rid);
CREATE INDEX search_token_value ON search_token (rtype, param, code);
CREATE INDEX search_token_rid ON search_token (rid);

CREATE TABLE search_string (
    rid BIGINT NOT NULL REFERENCES resources (rid),
    patient TEXT NOT NULL,
    rtype TEXT NOT NULL,
    param TEXT NOT NULL,
    -- Byte order ("C"), as SQLite compares: prefix search is a range scan [norm, norm || U+10FFFF).
    norm TEXT COLLATE "C" NOT NULL,
    exact TEXT COLLATE "C" NOT NULL
);
CREATE INDEX search_string_patient ON search_string (patient, rtype, param, norm, rid);
CREATE INDEX search_string_value ON search_string (rtype, param, norm);
CREATE INDEX search_string_rid ON search_string (rid);

CREATE TABLE search_date (
    rid BIGINT NOT NULL REFERENCES resources (rid),
    patient TEXT NOT NULL,
    rtype TEXT NOT NULL,
    param TEXT NOT NULL,
    low BIGINT NOT NULL,
    high BIGINT NOT NULL
);
CREATE INDEX search_date_patient ON search_date (patient, rtype, param, low, rid);
CREATE INDEX search_date_value ON search_date (rtype, param, low);
CREATE INDEX search_date_rid ON search_date (rid);

CREATE TABLE search_reference (
    rid BIGINT NOT NULL REFERENCES resources (rid),
    patient TEXT NOT NULL,
    rtype TEXT NOT NULL,
    param TEXT NOT NULL,
    target TEXT NOT NULL
);
CREATE INDEX search_reference_patient ON search_reference (patient, rtype, param, target, rid);
CREATE INDEX search_reference_value ON search_reference (rtype, param, target);
CREATE INDEX search_reference_rid ON search_reference (rid);

CREATE TABLE search_quantity (
    rid BIGINT NOT NULL REFERENCES resources (rid),
    patient TEXT NOT NULL,
    rtype TEXT NOT NULL,
    param TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    system TEXT,
    code TEXT
);
CREATE INDEX search_quantity_patient ON search_quantity (patient, rtype, param, value, rid);
CREATE INDEX search_quantity_value ON search_quantity (rtype, param, value);
CREATE INDEX search_quantity_rid ON search_quantity (rid);
