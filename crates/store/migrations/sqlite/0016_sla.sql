-- SLA settings, criticality rules and SLA reporting (issue 14; docs/prioritisation.md, "SLA
-- settings", "Criticality rules", "SLA reports"). Same conventions as 0001 (timestamps are
-- INTEGER microseconds).

-- The installation's SLA in days per decision: one row (id 1), absent until an administrator
-- changes the defaults (2, 7, 30, 90 days).
CREATE TABLE sla_settings (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    immediate     INTEGER NOT NULL,
    out_of_cycle  INTEGER NOT NULL,
    scheduled     INTEGER NOT NULL,
    defer         INTEGER NOT NULL,
    updated_by    TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- An integration's own SLA, replacing the installation's for its findings; no row: the
-- installation's applies.
CREATE TABLE integration_sla (
    integration_id  INTEGER PRIMARY KEY REFERENCES integrations (id) ON DELETE CASCADE,
    immediate       INTEGER NOT NULL,
    out_of_cycle    INTEGER NOT NULL,
    scheduled       INTEGER NOT NULL,
    defer           INTEGER NOT NULL,
    updated_by      TEXT    NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- The organisation's criticality rules, in order (`position` from 0), each setting the human
-- impact of the assets it matches (rampart_model::priority::AssetMatcher).
CREATE TABLE criticality_rules (
    id           INTEGER PRIMARY KEY,
    position     INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    matcher      TEXT    NOT NULL CHECK (matcher IN ('tag', 'device-group', 'name-glob', 'resource-id-prefix')),
    value        TEXT    NOT NULL,
    criticality  TEXT    NOT NULL CHECK (criticality IN ('low', 'medium', 'high', 'very-high')),
    updated_by   TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- The burn-down: at the end of each run's assessment, the integration's open findings counted by
-- decision and severity (a few rows, written by one INSERT ... SELECT).
CREATE TABLE sla_snapshots (
    id              INTEGER PRIMARY KEY,
    integration_id  INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    run_id          INTEGER NOT NULL,
    taken_at        INTEGER NOT NULL,
    decision        TEXT    NOT NULL,
    -- 0: none given.
    severity        INTEGER NOT NULL,
    open_count      INTEGER NOT NULL,
    overdue         INTEGER NOT NULL,
    due_soon        INTEGER NOT NULL,
    accepted        INTEGER NOT NULL
);
CREATE INDEX sla_snapshots_by_time ON sla_snapshots (integration_id, taken_at);

-- What a finding was due when it was fixed (a fixed finding keeps no decision or due date):
-- the SLA report's compliance and its breakdown by decision.
ALTER TABLE findings ADD COLUMN fixed_decision TEXT;
ALTER TABLE findings ADD COLUMN fixed_due_at INTEGER;
-- The SLA report reads the findings fixed in its period from this range only.
CREATE INDEX findings_fixed_by_time ON findings (fixed_at) WHERE status = 'fixed';
