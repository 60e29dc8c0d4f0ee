-- Moves on every write of an integration's findings' assessments (crates/store/src/priority.rs,
-- write_assessments), by whichever process makes it. A first load that counts its roll-ups as it
-- inserts its rows (crates/store/src/first_load_tally.rs) reads it when the load begins and uses
-- its counts only if it has not moved since: nothing else wrote the rows it counted.
ALTER TABLE integrations ADD COLUMN findings_generation BIGINT NOT NULL DEFAULT 0;
