//! SQLite: the KEV catalogue and intelligence sources (see `crate::intel`).

use sqlx::AssertSqlSafe;

use rampart_model::CveId;
use rampart_model::priority::KevEntry;

use super::{SqliteStore, db, opt_ts, ts};
use crate::error::Result;
use crate::intel::*;

impl SqliteStore {
    pub(super) async fn intel_replace_kev(
        &self,
        snapshot: &KevSnapshot,
        entries: &[KevEntry],
    ) -> Result<IntelSource> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM kev_entries")
            .execute(&mut *tx)
            .await
            .map_err(db("clearing the KEV catalogue"))?;
        sqlx::query(
            "INSERT INTO kev_entries (cve_id, date_added, due_date, known_ransomware_campaign_use, \
             vendor_project, product, vulnerability_name, short_description, required_action, notes) \
             SELECT json_extract(value, '$.cve_id'), json_extract(value, '$.date_added'), \
             json_extract(value, '$.due_date'), json_extract(value, '$.known_ransomware_campaign_use'), \
             json_extract(value, '$.vendor_project'), json_extract(value, '$.product'), \
             json_extract(value, '$.vulnerability_name'), json_extract(value, '$.short_description'), \
             json_extract(value, '$.required_action'), json_extract(value, '$.notes') \
             FROM json_each(?)",
        )
        .bind(kev_rows_json(entries))
        .execute(&mut *tx)
        .await
        .map_err(db("storing the KEV catalogue"))?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO intel_sources ({SOURCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) \
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
        .bind(ts(snapshot.fetched_at))
        .bind(&snapshot.catalog_version)
        .bind(opt_ts(snapshot.date_released))
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
             VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (source) DO UPDATE SET attempted_at = excluded.attempted_at, \
             fetched_at = COALESCE(excluded.fetched_at, intel_sources.fetched_at), \
             last_error = excluded.last_error",
        )
        .bind(check.source)
        .bind(check.url)
        .bind(fetched)
        .bind(ts(check.at))
        .bind(check.error)
        .execute(&self.write)
        .await
        .map_err(db("recording an intelligence check"))?;
        Ok(())
    }

    pub(super) async fn intel_source_row(&self, source: &str) -> Result<Option<IntelSource>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {SOURCE_COLUMNS} FROM intel_sources WHERE source = ?"
        )))
        .bind(source)
        .fetch_optional(&self.read)
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
             WHERE cve_id IN (SELECT value FROM json_each(?)) ORDER BY cve_id"
        )))
        .bind(cve_ids_json(cves))
        .fetch_all(&self.read)
        .await
        .map_err(db("reading KEV entries"))?
        .iter()
        .map(decode_kev)
        .collect()
    }
}
