-- A search sorted by one date within one patient's record walks that patient's date rows in order and stops
-- at the page's end (store/sql/walk.rs): descending by the range's end needs it in the patient-first order
-- (ascending walks search_date_patient, by the start).
CREATE INDEX search_date_patient_high ON search_date (patient, rtype, param, high, rid);
