-- The portal at scale: sort orders, summaries kept when a run finishes, change tracking for the
-- API's changed_since, and one active job per integration. Same conventions as 0001;
-- the SQLite flavour (../sqlite/0004_portal.sql) has the same tables, columns and indexes.

-- Per-asset counts of findings, refreshed for an integration whenever one of its runs finishes
-- (`finish_run`), so that "sort by open findings", the riskiest assets and the dashboard's counts
-- never aggregate millions of findings per page view. open_rank orders "critical first, then high,
-- then all open": critical * 10^12 + high * 10^6 + total, each capped at 999,999.
ALTER TABLE assets ADD COLUMN open_critical BIGINT NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN open_high     BIGINT NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN open_medium   BIGINT NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN open_low      BIGINT NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN open_total    BIGINT NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN fixed_total   BIGINT NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN open_rank     BIGINT NOT NULL DEFAULT 0;

-- Keyset sort orders of the asset listing: (sort key, id). The expressions are exactly those of
-- the listing query (crates/store/src/sort.rs); an index is used only when they match.
-- Names sort byte-wise ("C"), as on SQLite, whatever the database's collation.
CREATE INDEX assets_sort_name ON assets ((lower(COALESCE(name, source_id)) COLLATE "C"), id);
CREATE INDEX assets_sort_last_seen ON assets (COALESCE(last_seen, last_observed), id);
CREATE INDEX assets_sort_exposure ON assets ((CASE lower(exposure_level) WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 WHEN 'none' THEN 0 ELSE -1 END), id);
CREATE INDEX assets_sort_risk ON assets ((CASE lower(risk_score) WHEN 'high' THEN 4 WHEN 'medium' THEN 3 WHEN 'low' THEN 2 WHEN 'informational' THEN 1 WHEN 'none' THEN 0 ELSE -1 END), id);
CREATE INDEX assets_sort_open ON assets (open_rank, id);

-- Recommended updates and the open findings they close, per integration; refreshed with the
-- asset counts above.
CREATE TABLE fix_rollups (
    integration_id      BIGINT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    recommended_update  TEXT   NOT NULL,
    open_findings       BIGINT NOT NULL,
    assets              BIGINT NOT NULL,
    PRIMARY KEY (integration_id, recommended_update)
);

-- When Rampart recorded a fix that a delta reported (fixed_at is Microsoft's event time, which
-- can be hours older than the run that learnt of it): the API's changed_since must see it.
ALTER TABLE findings ADD COLUMN fix_recorded_at TIMESTAMPTZ;

-- One queued or running job per integration: "Sync now" twice, or two processes scheduling the
-- same integration, make one job.
CREATE UNIQUE INDEX jobs_one_active ON jobs (integration_id) WHERE state IN ('queued', 'running');

-- Summaries of an estate stored before this migration.
UPDATE assets SET (open_critical, open_high, open_medium, open_low, open_total, fixed_total) = (
    SELECT COALESCE(sum(CASE WHEN f.status = 'open' AND f.severity = 4 THEN 1 ELSE 0 END), 0),
           COALESCE(sum(CASE WHEN f.status = 'open' AND f.severity = 3 THEN 1 ELSE 0 END), 0),
           COALESCE(sum(CASE WHEN f.status = 'open' AND f.severity = 2 THEN 1 ELSE 0 END), 0),
           COALESCE(sum(CASE WHEN f.status = 'open' AND f.severity = 1 THEN 1 ELSE 0 END), 0),
           COALESCE(sum(CASE WHEN f.status = 'open' THEN 1 ELSE 0 END), 0),
           COALESCE(sum(CASE WHEN f.status = 'fixed' THEN 1 ELSE 0 END), 0)
    FROM findings f WHERE f.asset_id = assets.id);
UPDATE assets SET open_rank = LEAST(open_critical, 999999) * 1000000000000 + LEAST(open_high, 999999) * 1000000 + LEAST(open_total, 999999);
INSERT INTO fix_rollups (integration_id, recommended_update, open_findings, assets)
    SELECT integration_id, recommended_update, count(*), count(DISTINCT asset_id) FROM findings
    WHERE status = 'open' AND recommended_update IS NOT NULL AND recommended_update <> ''
    GROUP BY integration_id, recommended_update;
