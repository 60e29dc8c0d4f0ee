-- The fixed findings of one CVE, so that listing a CVE's findings of any status reads two index
-- ranges (this one and findings_open_by_cve) instead of walking every finding in id or priority
-- order to fill a page (3.5 s for one CVE at 2,000,000 findings, BENCHMARKS.md). Only fixed rows
-- are in it: a first load writes none, and a run adds one entry per finding it fixes.
CREATE INDEX findings_fixed_by_cve ON findings (cve_id) WHERE status = 'fixed';
