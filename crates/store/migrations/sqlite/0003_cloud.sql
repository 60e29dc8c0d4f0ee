-- Defender for Cloud: subscriptions and how each run read them, secure-score history (per
-- subscription and per control), and recommendations (assessments) with Rampart's history.
-- Same conventions as 0001 (timestamps are INTEGER microseconds). The PostgreSQL flavour
-- (../postgres/0003_cloud.sql) has the same tables, columns and indexes.
--
-- Ids Microsoft spells in mixed case (subscription GUIDs, assessment and resource ids) are stored
-- lower-cased, as the model gives them.

-- The subscriptions an integration can see, with the outcome of the last read of each.
CREATE TABLE subscriptions (
    id                 INTEGER PRIMARY KEY,
    integration_id     INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    subscription_id    TEXT    NOT NULL,
    display_name       TEXT,
    state              TEXT,
    first_observed     INTEGER NOT NULL,
    last_observed      INTEGER NOT NULL,
    seen_run           INTEGER,
    -- Copied from the newest subscription_reads row, so listings need no "latest per group" query.
    last_read_run      INTEGER,
    last_read_outcome  TEXT CHECK (last_read_outcome IN ('ok', 'failed', 'skipped')),
    last_read_detail   TEXT,
    last_read_at       INTEGER
);
CREATE UNIQUE INDEX subscriptions_natural_key ON subscriptions (integration_id, subscription_id);

-- One row per (run, subscription): how that run's read of the subscription went. `detail` is the
-- error in words (with Microsoft's code, e.g. AuthorizationFailed) or why it was skipped.
CREATE TABLE subscription_reads (
    run_id           INTEGER NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    integration_id   INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    subscription_id  TEXT    NOT NULL,
    outcome          TEXT    NOT NULL CHECK (outcome IN ('ok', 'failed', 'skipped')),
    detail           TEXT,
    at               INTEGER NOT NULL,
    PRIMARY KEY (run_id, subscription_id)
);
CREATE INDEX subscription_reads_by_integration ON subscription_reads (integration_id);

-- Secure score history: one row per (run, subscription). Scores are Microsoft's: current and max
-- points, the 0–1 fraction, and the subscription's weight for tenant aggregation.
CREATE TABLE posture_scores (
    id                 INTEGER PRIMARY KEY,
    integration_id     INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    run_id             INTEGER NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    subscription_id    TEXT    NOT NULL,
    subscription_name  TEXT,
    captured_at        INTEGER NOT NULL,
    score_current      REAL,
    score_max          REAL,
    fraction           REAL,
    weight             INTEGER NOT NULL
);
CREATE UNIQUE INDEX posture_scores_natural_key ON posture_scores (run_id, subscription_id);
-- "Newest row per integration × subscription" and history reads.
CREATE INDEX posture_scores_latest ON posture_scores (integration_id, subscription_id, captured_at);

-- Control scores: one row per (run, subscription, control).
CREATE TABLE posture_controls (
    id               INTEGER PRIMARY KEY,
    integration_id   INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    run_id           INTEGER NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    subscription_id  TEXT    NOT NULL,
    control_id       TEXT    NOT NULL,
    display_name     TEXT,
    captured_at      INTEGER NOT NULL,
    score_current    REAL,
    score_max        REAL,
    fraction         REAL,
    healthy          INTEGER NOT NULL,
    unhealthy        INTEGER NOT NULL,
    not_applicable   INTEGER NOT NULL,
    weight           INTEGER NOT NULL
);
CREATE UNIQUE INDEX posture_controls_natural_key ON posture_controls (run_id, subscription_id, control_id);
CREATE INDEX posture_controls_latest ON posture_controls (integration_id, subscription_id, captured_at);

-- Recommendations: one assessment of one resource, keyed by (integration, assessment id).
-- `status` is Microsoft's (Healthy, Unhealthy, NotApplicable) or Rampart's `Removed` (a complete
-- read of its subscription no longer contains it). `asset_id` links the assessed resource's asset
-- row of the same integration when one existed at upsert time (no foreign key: assets are only
-- deleted with their integration, which deletes recommendations first).
CREATE TABLE recommendations (
    id               INTEGER PRIMARY KEY,
    integration_id   INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    assessment_id    TEXT    NOT NULL,
    subscription_id  TEXT    NOT NULL,
    assessment_key   TEXT    NOT NULL,
    resource_id      TEXT    NOT NULL,
    asset_id         INTEGER,
    display_name     TEXT,
    status           TEXT    NOT NULL,
    cause            TEXT,
    severity         TEXT,
    category         TEXT,
    status_changed   INTEGER,
    first_observed   INTEGER NOT NULL,
    last_observed    INTEGER NOT NULL,
    resolved_at      INTEGER,
    removed_at       INTEGER,
    reopened_count   INTEGER NOT NULL DEFAULT 0,
    seen_run         INTEGER,
    change_kind      INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX recommendations_natural_key ON recommendations (integration_id, assessment_id);
-- Reconciliation of one subscription, and the subscription filter.
CREATE INDEX recommendations_by_subscription ON recommendations (integration_id, subscription_id);
-- Status filters and dashboard counts.
CREATE INDEX recommendations_status ON recommendations (integration_id, status);

-- One machine, two identities: an MDE device and the Azure VM it runs on share the lower-cased
-- Azure resource id (and, for Entra-joined machines, the Entra device id).
CREATE INDEX assets_azure_resource ON assets (lower(azure_resource_id)) WHERE azure_resource_id IS NOT NULL;
CREATE INDEX assets_aad_device ON assets (lower(aad_device_id)) WHERE aad_device_id IS NOT NULL;
