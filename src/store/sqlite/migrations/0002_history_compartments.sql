-- Compartment membership of superseded versions, so history and vread show each version only to the patients
-- whose record it was when written (a result moved from the wrong patient's record stays out of the new one's
-- past, and the old one keeps no claim on the new version).
CREATE TABLE history_compartments (
    rid INTEGER NOT NULL REFERENCES resources (rid),
    version INTEGER NOT NULL,
    patient TEXT NOT NULL,
    PRIMARY KEY (rid, version, patient)
);
CREATE INDEX history_compartments_patient ON history_compartments (patient, rid);
