-- The open findings' by-CVE index keyed on the CVE alone, with the integration and the asset
-- carried in its leaf entries (INCLUDE) instead of as second and third keys.
--
-- What reads it still finds everything in the index: "assets exposed to this CVE" counts the
-- distinct assets of one CVE's open findings (PostgreSQL 15 sorts a DISTINCT aggregate's input
-- whatever the index order), a CVE's findings are listed in id order (sorted after the read
-- anyway), and the integration filter of a workspace or an integration is checked on the entry.
--
-- What it saves: a first load drops this index and builds it after the rows are in. Sorted on
-- three keys it was the costliest of the four builds; sorted on the CVE alone it costs less.
-- Measured with psql at 20,000 devices (1.82 M findings, scripts/bench's emulator): 2.62-2.80 s of
-- server CPU with three keys, 1.90-2.22 s with one key and two included columns.
--
-- SQLite has no INCLUDE and keeps the three-column index (crates/store/src/sql_store.rs).
DROP INDEX IF EXISTS findings_open_by_cve;
CREATE INDEX findings_open_by_cve ON findings (cve_id) INCLUDE (integration_id, asset_id) WHERE status = 'open';
