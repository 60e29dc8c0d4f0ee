-- A hash of what Microsoft reported about a finding besides its key, written with the content by
-- SQLite's upserts so that a full re-read skips unchanged rows. PostgreSQL's writers leave it
-- NULL for now (a NULL never matches, so nothing is skipped); the column keeps the two schemas
-- alike.
ALTER TABLE findings ADD COLUMN content_hash BIGINT;

-- When a full read of the integration's findings last finished reconciling: every finding open
-- then had been observed by that run (see the SQLite migration of the same number).
ALTER TABLE integrations ADD COLUMN findings_observed_at TIMESTAMPTZ;
