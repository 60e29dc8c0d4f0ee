-- The fixed findings in priority order, so that a list of fixed findings (the portal's findings
-- page with status "fixed", the API's sort=-priority with status=fixed) reads its page from the
-- top of this index instead of sorting every fixed finding for each page: a median of 187 ms for
-- a page of the 100,000 fixed findings among 2,000,000 (BENCHMARKS.md, "2026-12-08 (eleventh)").
-- A fixed finding keeps the priority it had when it was fixed. Only fixed rows are in it: a first
-- load writes none, and a run adds one entry per finding it fixes.
CREATE INDEX findings_fixed_by_priority ON findings ((COALESCE(priority, -1)), id) WHERE status = 'fixed';
