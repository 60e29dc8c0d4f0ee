-- What lets the prioritising step of a sync (crates/store/src/sql_store.rs, assessment_inputs)
-- know that it has nothing to read without reading the integration's open findings.
--
-- That step assesses the open findings that have no assessment, those whose content the run
-- changed, those of assets the run changed and those of CVEs the catalogue updated. The last two
-- are answered from small tables. The first two were answered only by reading every open finding
-- (0.26-0.38 s at 1.8 M findings, for a run that changed nothing):
-- * The open findings without an assessment are few (new or reopened since the last step) and
--   this index holds only them. Its columns change only where other indexes' columns change too
--   (status, and decision with the priority and due date), so it costs PostgreSQL no HOT update.
-- * The findings whose content a run changed are counted on the run, in the transaction that
--   changed them (an index on change_kind would be rewritten by every re-sync's update, and cost
--   PostgreSQL its HOT updates).
CREATE INDEX findings_unassessed ON findings (integration_id, id) WHERE status = 'open' AND decision IS NULL;
ALTER TABLE sync_runs ADD COLUMN findings_changed BIGINT NOT NULL DEFAULT 0;
