-- Sorting by a date (`_sort=-date`) looks up each match's value by rid: with the parameter and both ends in
-- the index it never reads the table row (a lab search sorts 500 matches per page; docs/benchmarks.md). The
-- rid still leads, for the deletes of a resource's old index rows.
DROP INDEX search_date_rid;
CREATE INDEX search_date_rid ON search_date (rid, param, low, high);
