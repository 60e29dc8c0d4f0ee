//! A first load's findings on PostgreSQL: `COPY` straight into `findings`.
//!
//! While an integration's first load runs ([`crate::Store::begin_bulk_findings`]), its batches
//! hold rows the table does not have yet, so the staging table and the merge of
//! [`super::bulk::upsert_findings_in`] are work for nothing: each row was copied twice and then
//! checked for a conflict it never had. Here the batch's assets and software are resolved to ids
//! first (a few statements over the batch's distinct keys), and the rows are copied into
//! `findings` with those ids, as the merge would have inserted them.
//!
//! Measured with `psql` on 400,000 rows of a 20,000-device load, with the indexes a first load
//! keeps: `COPY` into a staging table 1.50 s plus the merge 2.40 s, against 2.93 s for the `COPY`
//! into `findings`.
//!
//! A row may exist after all: a page read again after an error delivers its rows a second time,
//! and two batches written at once may share a key. The copy then stops at the unique index, is
//! rolled back to its savepoint, and the caller merges the batch as usual.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;

use rampart_model::{Finding, IntegrationId, RunId};

use super::binary_copy::BinaryCopy;
use super::bulk::{CopyRow, FINDING_COPY_BYTES, send_copy};
use crate::common::*;
use crate::db::{Row, db};
use crate::error::{Result, StoreError};
use crate::first_load_tally::Resolved;
use crate::priority::InsertAssessor;
use crate::types::UpsertCounts;

/// The columns the copy fills, in the order [`copy_rows`] writes them: those the merge inserts.
const COPY_FINDINGS: &str = concat!(
    "COPY findings (",
    finding_insert_columns!(),
    ", ",
    finding_assessment_columns!(),
    ") FROM STDIN (FORMAT binary)"
);

/// Ids in the order of the keys they were looked up for, from `(id, ord)` rows (`ord` counts
/// from 1, as `WITH ORDINALITY` does).
fn ids_in_order(rows: Vec<sqlx::postgres::PgRow>, len: usize, what: &str) -> Result<Vec<i64>> {
    let mut ids = vec![None; len];
    for r in rows.into_iter().map(Row::Postgres) {
        let ord = usize::try_from(r.int("ord")?).unwrap_or(0);
        if let Some(slot) = ord.checked_sub(1).and_then(|at| ids.get_mut(at)) {
            *slot = Some(r.int("id")?);
        }
    }
    ids.into_iter()
        .map(|id| {
            id.ok_or_else(|| {
                StoreError::Corrupt(format!("{what} vanished while its findings were written"))
            })
        })
        .collect()
}

/// Records the batch's software and returns their ids in the order of `keys.software`.
pub(super) async fn software_ids(
    conn: &mut PgConnection,
    keys: &BatchKeys<'_>,
) -> Result<Vec<i64>> {
    let (vendors, names, versions) = (
        keys.software_column(0),
        keys.software_column(1),
        keys.software_column(2),
    );
    // In key order, as the merge does: two batches written at once then take the rows' locks
    // in the same order.
    sqlx::query(
        "INSERT INTO software (vendor, name, version) \
         SELECT v, n, r FROM unnest($1::text[], $2::text[], $3::text[]) AS t(v, n, r) \
         ORDER BY v, n, r ON CONFLICT (vendor, name, version) DO NOTHING",
    )
    .bind(&vendors)
    .bind(&names)
    .bind(&versions)
    .execute(&mut *conn)
    .await
    .map_err(db("recording software"))?;
    let rows = sqlx::query(
        "SELECT s.id, t.ord FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(v, n, r, ord) \
         JOIN software s ON s.vendor = t.v AND s.name = t.n AND s.version = t.r",
    )
    .bind(&vendors)
    .bind(&names)
    .bind(&versions)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("looking up software"))?;
    ids_in_order(rows, keys.software.len(), "software")
}

/// Creates the assets first reported by the batch (the device list did not return them), marks
/// the batch's assets seen by the run, and returns their ids in the order of `keys.assets`:
/// what the merge's statements do, for the distinct assets only.
pub(super) async fn asset_ids(
    conn: &mut PgConnection,
    integration_id: IntegrationId,
    run_id: RunId,
    observed: DateTime<Utc>,
    keys: &BatchKeys<'_>,
) -> Result<Vec<i64>> {
    let sources = keys.asset_column(0);
    sqlx::query(
        "INSERT INTO assets (integration_id, source_id, kind, name, os_platform, os_version, known_from, status, \
         first_observed, last_observed, seen_run) \
         SELECT $1, t.s, 'device', t.n, t.p, t.v, 'vulnerability_data', 'active', $2, $2, $3 \
         FROM unnest($4::text[], $5::text[], $6::text[], $7::text[]) AS t(s, n, p, v) ORDER BY t.s \
         ON CONFLICT (integration_id, source_id) DO NOTHING",
    )
    .bind(integration_id.get())
    .bind(observed)
    .bind(run_id.get())
    .bind(&sources)
    .bind(keys.asset_column(1))
    .bind(keys.asset_column(2))
    .bind(keys.asset_column(3))
    .execute(&mut *conn)
    .await
    .map_err(db("creating assets first reported by findings"))?;
    sqlx::query(
        "UPDATE assets SET seen_run = $3, last_observed = $2, status = 'active', missing_since = NULL \
         WHERE integration_id = $1 AND source_id = ANY($4::text[]) AND seen_run IS DISTINCT FROM $3",
    )
    .bind(integration_id.get())
    .bind(observed)
    .bind(run_id.get())
    .bind(&sources)
    .execute(&mut *conn)
    .await
    .map_err(db("marking the findings' assets seen"))?;
    let rows = sqlx::query(
        "SELECT a.id, t.ord FROM unnest($2::text[]) WITH ORDINALITY AS t(s, ord) \
         JOIN assets a ON a.integration_id = $1 AND a.source_id = t.s",
    )
    .bind(integration_id.get())
    .bind(&sources)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("looking up the findings' assets"))?;
    ids_in_order(rows, keys.assets.len(), "an asset")
}

/// The batch's rows in COPY's binary format, each value as the merge would insert it, given the
/// asset and software ids in the order of `keys`; and each row as resolved, for a first load's
/// tally (`crate::first_load_tally`).
fn copy_rows<'a>(
    rows: &[&'a Finding],
    keys: &BatchKeys<'_>,
    (assets, software): (&[i64], &[i64]),
    (integration_id, run_id, observed): (IntegrationId, RunId, DateTime<Utc>),
    assessor: Option<&dyn InsertAssessor>,
) -> Result<(Vec<u8>, Vec<Resolved<'a>>)> {
    let mut b = BinaryCopy::with_capacity(rows.len() * FINDING_COPY_BYTES);
    let mut resolved = Vec::with_capacity(rows.len());
    for (&f, &(a, s)) in rows.iter().zip(&keys.places) {
        let (Some(&asset_id), Some(&software_id)) = (assets.get(a), software.get(s)) else {
            return Err(StoreError::Corrupt(
                "a finding's asset or software has no id in its batch".to_owned(),
            ));
        };
        let assessment = assessor.and_then(|a| a.assess(f));
        // The columns of `COPY_FINDINGS`, each with its column's type.
        b.int8(integration_id.get());
        b.int8(asset_id);
        b.int8(software_id);
        b.text(f.key.cve_id.as_str());
        b.finding_content(f);
        b.opt_timestamp(Some(observed));
        b.opt_timestamp(Some(observed));
        b.int8(run_id.get());
        b.int8(finding_content_hash(f));
        b.assessment(assessment, observed);
        b.end_row();
        resolved.push(Resolved {
            finding: f,
            asset_id,
            software_id,
            assessment,
        });
    }
    Ok((b.into_bytes(), resolved))
}

/// Copies `data` into `findings`; `Ok(false)` when a row's key was there already (the copy is
/// then rolled back to the savepoint taken before it).
async fn copy_into_findings(conn: &mut PgConnection, data: Vec<u8>) -> Result<bool> {
    let op = "copying a first load's findings";
    sqlx::query("SAVEPOINT first_load_copy")
        .execute(&mut *conn)
        .await
        .map_err(db(op))?;
    match send_copy(conn, COPY_FINDINGS, data, op).await {
        Ok(_) => {
            sqlx::query("RELEASE SAVEPOINT first_load_copy")
                .execute(&mut *conn)
                .await
                .map_err(db(op))?;
            Ok(true)
        }
        Err(e) if e.is_unique_violation() => {
            sqlx::query("ROLLBACK TO SAVEPOINT first_load_copy")
                .execute(&mut *conn)
                .await
                .map_err(db(op))?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Inserts a first load's batch (`rows`, each key once) inside the caller's transaction, and
/// returns its counts and, when it was assessed, its rows as resolved (for the first load's
/// tally). `None` when one of its rows existed already: nothing of the copy is kept, and the
/// caller merges the batch instead.
pub(crate) async fn insert_new_findings_in<'a>(
    conn: &mut PgConnection,
    integration_id: IntegrationId,
    run_id: RunId,
    observed: DateTime<Utc>,
    rows: &[&'a Finding],
    assessor: Option<&dyn InsertAssessor>,
) -> Result<Option<(UpsertCounts, Option<Vec<Resolved<'a>>>)>> {
    let keys = BatchKeys::of(rows);
    let software = software_ids(conn, &keys).await?;
    let assets = asset_ids(conn, integration_id, run_id, observed, &keys).await?;
    let (data, resolved) = copy_rows(
        rows,
        &keys,
        (&assets, &software),
        (integration_id, run_id, observed),
        assessor,
    )?;
    if !copy_into_findings(conn, data).await? {
        return Ok(None);
    }
    let mut counts = UpsertCounts::default();
    counts.add_kind(0, rows.len() as u64);
    // Rows written without an assessor are not what a first load's tally counts.
    Ok(Some((counts, assessor.is_some().then_some(resolved))))
}
