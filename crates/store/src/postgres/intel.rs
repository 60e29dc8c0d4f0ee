//! PostgreSQL: the KEV catalogue and intelligence sources (see `crate::intel`).

use sqlx::AssertSqlSafe;

use rampart_model::CveId;
use rampart_model::priority::KevEntry;

use super::{PgStore, db, ts};
use crate::error::Result;
use crate::intel::*;

impl PgStore {
    pub(super) async fn intel_replace_kev(
        &self,
        snapshot: &KevSnapshot,
        entries: &[KevEntry],
    ) -> Result<IntelSource> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a write transaction"))?;
        // Two refreshes at once (two `serve` processes) replace one after the other, never mixed.
        sqlx::query("LOCK TABLE kev_entries IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(db("locking the KEV catalogue"))?;
        sqlx::query("DELETE FROM kev_entries")
            .execute(&mut *tx)
            .await
            .map_err(db("clearing the KEV catalogue"))?;
        sqlx::query(
            "INSERT INTO kev_entries (cve_id, date_added, due_date, known_ransomware_campaign_use, \
             vendor_project, product, vulnerability_name, short_description, required_action, notes) \
             SELECT cve_id, date_added, due_date, known_ransomware_campaign_use, vendor_project, \
             product, vulnerability_name, short_description, required_action, notes \
             FROM jsonb_to_recordset($1::jsonb) AS x(cve_id text, date_added date, due_date date, \
             known_ransomware_campaign_use text, vendor_project text, product text, \
             vulnerability_name text, short_description text, required_action text, notes text)",
        )
        .bind(kev_rows_json(entries))
        .execute(&mut *tx)
        .await
        .map_err(db("storing the KEV catalogue"))?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO intel_sources ({SOURCE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, NULL) \
             ON CONFLICT (source) DO UPDATE SET url = excluded.url, etag = excluded.etag, \
             last_modified = excluded.last_modified, fetched_at = excluded.fetched_at, \
             attempted_at = excluded.attempted_at, catalog_version = excluded.catalog_version, \
             date_released = excluded.date_released, count = excluded.count, last_error = NULL \
             RETURNING {SOURCE_COLUMNS}"
        )))
        .bind(KEV_SOURCE)
        .bind(&snapshot.url)
        .bind(&snapshot.etag)
        .bind(&snapshot.last_modified)
        .bind(ts(snapshot.fetched_at))
        .bind(&snapshot.catalog_version)
        .bind(snapshot.date_released.map(ts))
        .bind(entries.len() as i64)
        .fetch_one(&mut *tx)
        .await
        .map_err(db("recording the KEV source"))?;
        let source = decode_source(&row)?;
        tx.commit()
            .await
            .map_err(db("committing the KEV catalogue"))?;
        Ok(source)
    }

    pub(super) async fn intel_record_check(&self, check: &IntelCheck<'_>) -> Result<()> {
        let fetched = check.error.is_none().then(|| ts(check.at));
        sqlx::query(
            "INSERT INTO intel_sources (source, url, fetched_at, attempted_at, last_error) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (source) DO UPDATE SET attempted_at = excluded.attempted_at, \
             fetched_at = COALESCE(excluded.fetched_at, intel_sources.fetched_at), \
             last_error = excluded.last_error",
        )
        .bind(check.source)
        .bind(check.url)
        .bind(fetched)
        .bind(ts(check.at))
        .bind(check.error)
        .execute(&self.pool)
        .await
        .map_err(db("recording an intelligence check"))?;
        Ok(())
    }

    pub(super) async fn intel_source_row(&self, source: &str) -> Result<Option<IntelSource>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {SOURCE_COLUMNS} FROM intel_sources WHERE source = $1"
        )))
        .bind(source)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading an intelligence source"))?
        .map(|r| decode_source(&r))
        .transpose()
    }

    pub(super) async fn intel_kev_for(&self, cves: &[CveId]) -> Result<Vec<KevEntry>> {
        if cves.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {KEV_COLUMNS} FROM kev_entries \
             WHERE cve_id IN (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY cve_id COLLATE \"C\""
        )))
        .bind(cve_ids_json(cves))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading KEV entries"))?
        .iter()
        .map(decode_kev)
        .collect()
    }
}
