-- The remediation plan's roll-up (issue 14, "Fix first" at millions of findings;
-- docs/prioritisation.md, "The remediation plan"): per integration and fix, what the plan shows of
-- its open findings, counted when a run of the integration finishes or its findings are assessed
-- outside a run (a KEV refresh). A view of the plan then reads these rows instead of grouping every
-- open finding; what exceptions change, and what became overdue since the count, is worked out
-- when it is read (crates/store/src/fix_plan.rs).

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
    -- The CVEs and the software ids of its findings, comma-separated. The software ids and the
    -- recommended update its findings share ('' for none; NULL when they differ, which a software
    -- name ending in " to …" can cause) lead an index (findings_open_by_software) to this fix's
    -- findings when an exception makes the plan count it again.
    cves              TEXT    NOT NULL,
    software_ids      TEXT    NOT NULL,
    recommended_update TEXT,
    reference         TEXT,
    PRIMARY KEY (integration_id, fix)
);

-- When each integration's rows were counted. No row, or stale: the plan counts that integration
-- from its findings (correct, slower) until it is counted again.
CREATE TABLE fix_plan_builds (
    integration_id    INTEGER PRIMARY KEY REFERENCES integrations (id) ON DELETE CASCADE,
    built_at          INTEGER NOT NULL,
    stale             INTEGER NOT NULL DEFAULT 0
);

-- The dashboard's "top fixes" are now the head of the plan above, which leaves accepted findings
-- out; the older per-update counts (0004) are no longer kept.
DROP TABLE fix_rollups;
