-- A hash of what Microsoft reported about a finding besides its key (severity, CVSS,
-- exploitability, recommended update and reference, first and last seen), written with the
-- content by every upsert. A full re-read compares the incoming row's hash with it and leaves an
-- unchanged open row alone: it only counts as seen by the run. NULL (rows written before this
-- column existed) never matches, so such a row is upserted once more and gets its hash.
ALTER TABLE findings ADD COLUMN content_hash BIGINT;

-- When a full read of the integration's findings last finished reconciling: every finding open
-- then had been observed by that run, whether the run rewrote it or found it unchanged and left
-- it alone. A finding's last observation is the later of its own column and this one while it is
-- open; a finding fixed later keeps it (its fix writes the later of the two).
ALTER TABLE integrations ADD COLUMN findings_observed_at TIMESTAMPTZ;
