-- The remediation plan's roll-up (0017) with its CVE lists as the last column. They are most of
-- a row's bytes (17 MB of 17.3 MB at 2,000,000 findings); placed before the software ids, every
-- view read them (on SQLite, through each row's overflow pages) to reach the columns after them,
-- although only the page's fixes show their CVEs. The rows are a count, so they are dropped and
-- every integration's plan is counted again: until then a view counts it from its findings
-- (crates/store/src/fix_plan.rs).

DROP TABLE fix_plan;

CREATE TABLE fix_plan (
    integration_id    INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    -- The fix, as crates/store/src/exceptions.rs (fix_key) spells it.
    fix               TEXT    NOT NULL,
    findings          INTEGER NOT NULL,
    assets            INTEGER NOT NULL,
    priority_removed  REAL NOT NULL,
    max_priority      REAL,
    immediate         INTEGER NOT NULL,
    -- Findings whose due date had passed when the plan was counted (fix_plan_builds.built_at).
    overdue           INTEGER NOT NULL,
    -- The software ids of its findings, comma-separated, and the recommended update they share
    -- ('' for none; NULL when they differ, which a software name ending in " to …" can cause):
    -- they lead an index (findings_open_by_software) to this fix's findings.
    software_ids      TEXT    NOT NULL,
    recommended_update TEXT,
    reference         TEXT,
    -- The CVEs of its findings, comma-separated: read for the fixes a page shows.
    cves              TEXT    NOT NULL,
    PRIMARY KEY (integration_id, fix)
);

DELETE FROM fix_plan_builds;
