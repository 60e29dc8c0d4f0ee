//! SQLite: Defender for Cloud subscriptions, posture history and recommendations. Small batches
//! (subscriptions, scores, controls) are written row by row inside the call's transaction;
//! recommendations go as one JSON parameter expanded with `json_each`, like the finding look-ups.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};

use rampart_model::{ControlScore, IntegrationId, PostureScore, Recommendation, Subscription};

use super::{SqliteStore, bind_args, count_kinds, db, touch_run, ts};
use crate::cloud_sql::*;
use crate::common::*;
use crate::error::{Result, StoreError};
use crate::types::*;
use crate::types_cloud::*;

/// Recommendations per statement: one JSON parameter each, so only the RETURNING rows grow.
const RECOMMENDATIONS_PER_STATEMENT: usize = 2000;

impl SqliteStore {
    pub(super) async fn cloud_upsert_subscriptions(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        subscriptions: &[Subscription],
    ) -> Result<UpsertCounts> {
        let rows = subscription_rows(subscriptions);
        let mut tx = self.begin().await?;
        let observed = ts(touch_run(&mut tx, integration_id, run_id).await?);
        let mut before = StoredSubscriptionFacts::new();
        for r in sqlx::query(SUBSCRIPTION_FACTS)
            .bind(integration_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("reading subscriptions"))?
        {
            before.insert(
                r.text("subscription_id")?,
                (r.opt_text("display_name")?, r.opt_text("state")?),
            );
        }
        for s in &rows {
            sqlx::query(UPSERT_SUBSCRIPTION)
                .bind(integration_id)
                .bind(&s.subscription_id)
                .bind(&s.display_name)
                .bind(&s.state)
                .bind(observed)
                .bind(run_id)
                .execute(&mut *tx)
                .await
                .map_err(db("upserting subscriptions"))?;
        }
        tx.commit().await.map_err(db("committing subscriptions"))?;
        Ok(count_subscriptions(&before, &rows))
    }

    pub(super) async fn cloud_record_subscription_read(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        subscription_id: &str,
        outcome: &SubscriptionReadOutcome,
    ) -> Result<()> {
        let sub = clean(subscription_id.trim()).to_ascii_lowercase();
        let detail = outcome.detail().map(|d| clean(d).into_owned());
        let mut tx = self.begin().await?;
        let at = ts(touch_run(&mut tx, integration_id, run_id).await?);
        sqlx::query(RECORD_READ)
            .bind(run_id)
            .bind(integration_id)
            .bind(&sub)
            .bind(outcome.as_str())
            .bind(&detail)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db("recording a subscription read"))?;
        sqlx::query(SUBSCRIPTION_FROM_READ)
            .bind(integration_id)
            .bind(&sub)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db("recording a subscription read"))?;
        sqlx::query(SUBSCRIPTION_LAST_READ)
            .bind(integration_id)
            .bind(&sub)
            .bind(run_id)
            .bind(outcome.as_str())
            .bind(&detail)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db("recording a subscription read"))?;
        tx.commit()
            .await
            .map_err(db("committing a subscription read"))?;
        Ok(())
    }

    pub(super) async fn cloud_list_subscriptions(
        &self,
        integration: Option<IntegrationId>,
    ) -> Result<Vec<StoredSubscription>> {
        let sql = subscriptions_query(integration);
        let mut tx = self.read.begin().await.map_err(db("starting a read"))?;
        let rows = bind_args(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.args)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("listing subscriptions"))?;
        let names = integration_names(&mut tx, "listing subscriptions").await?;
        rows.iter()
            .map(|r| decode_subscription(r, &names))
            .collect()
    }

    pub(super) async fn cloud_subscription_reads(
        &self,
        run_id: i64,
    ) -> Result<Vec<(String, SubscriptionRead)>> {
        let rows = sqlx::query(SUBSCRIPTION_READS)
            .bind(run_id)
            .fetch_all(&self.read)
            .await
            .map_err(db("listing subscription reads"))?;
        rows.iter().map(decode_subscription_read).collect()
    }

    pub(super) async fn cloud_record_posture(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        captured_at: DateTime<Utc>,
        scores: &[PostureScore],
        controls: &[ControlScore],
    ) -> Result<()> {
        let p = posture_rows(scores, controls);
        let captured = ts(captured_at);
        let mut tx = self.begin().await?;
        touch_run(&mut tx, integration_id, run_id).await?;
        for sub in &p.subscriptions {
            for sql in [DELETE_RUN_SCORES, DELETE_RUN_CONTROLS] {
                sqlx::query(sql)
                    .bind(run_id)
                    .bind(sub)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("replacing the run's posture"))?;
            }
        }
        for s in &p.scores {
            sqlx::query(INSERT_SCORE)
                .bind(integration_id)
                .bind(run_id)
                .bind(&s.subscription_id)
                .bind(&s.subscription_name)
                .bind(captured)
                .bind(finite(Some(s.current)))
                .bind(finite(Some(s.max)))
                .bind(finite(Some(s.fraction)))
                .bind(s.weight)
                .execute(&mut *tx)
                .await
                .map_err(db("recording secure scores"))?;
        }
        for c in &p.controls {
            sqlx::query(INSERT_CONTROL)
                .bind(integration_id)
                .bind(run_id)
                .bind(&c.subscription_id)
                .bind(&c.control_id)
                .bind(&c.display_name)
                .bind(captured)
                .bind(finite(c.current))
                .bind(finite(Some(c.max)))
                .bind(finite(c.fraction))
                .bind(c.healthy)
                .bind(c.unhealthy)
                .bind(c.not_applicable)
                .bind(c.weight)
                .execute(&mut *tx)
                .await
                .map_err(db("recording control scores"))?;
        }
        tx.commit().await.map_err(db("committing posture"))?;
        Ok(())
    }

    pub(super) async fn cloud_latest_posture(
        &self,
        integration: Option<IntegrationId>,
    ) -> Result<Vec<StoredPostureScore>> {
        self.posture_scores(
            latest_posture_query(integration),
            "reading the latest posture",
        )
        .await
    }

    pub(super) async fn cloud_posture_history(
        &self,
        integration: Option<IntegrationId>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<PosturePoint>> {
        let rows = self
            .posture_scores(
                posture_history_query(integration, since),
                "reading posture history",
            )
            .await?;
        Ok(posture_points(rows))
    }

    async fn posture_scores(&self, sql: Sql, op: &'static str) -> Result<Vec<StoredPostureScore>> {
        let mut tx = self.read.begin().await.map_err(db("starting a read"))?;
        let rows = bind_args(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.args)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(op))?;
        let names = integration_names(&mut tx, op).await?;
        rows.iter()
            .map(|r| decode_posture_score(r, &names))
            .collect()
    }

    pub(super) async fn cloud_latest_controls(
        &self,
        integration: Option<IntegrationId>,
        subscription: Option<&str>,
    ) -> Result<Vec<StoredControlScore>> {
        let sql = latest_controls_query(integration, subscription);
        let mut tx = self.read.begin().await.map_err(db("starting a read"))?;
        let rows = bind_args(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.args)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("reading the latest control scores"))?;
        let names = integration_names(&mut tx, "reading the latest control scores").await?;
        rows.iter().map(|r| decode_control(r, &names)).collect()
    }

    pub(super) async fn cloud_upsert_recommendations(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        recommendations: &[Recommendation],
    ) -> Result<UpsertCounts> {
        let rows = recommendation_rows(recommendations);
        let mut tx = self.begin().await?;
        let observed = ts(touch_run(&mut tx, integration_id, run_id).await?);
        let mut counts = UpsertCounts::default();
        for chunk in rows.chunks(RECOMMENDATIONS_PER_STATEMENT) {
            let batch: Vec<serde_json::Value> = chunk
                .iter()
                .map(|r| {
                    serde_json::json!([
                        r.assessment_id,
                        r.subscription_id,
                        r.key,
                        r.resource_id,
                        r.display_name,
                        r.status,
                        r.cause,
                        r.severity,
                        r.category,
                        r.status_changed.map(micros),
                        r.risk_level,
                        r.risk,
                    ])
                })
                .collect();
            let json = serde_json::to_string(&batch).map_err(|e| {
                StoreError::InvalidInput(format!("cannot encode the recommendations: {e}"))
            })?;
            let q = sqlx::query(concat!(
                "INSERT INTO recommendations (",
                recommendation_insert_columns!(),
                ") SELECT $1, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, \
                 (SELECT a.id FROM assets a WHERE a.integration_id = $1 AND a.source_id = j.value ->> 3), \
                 j.value ->> 4, j.value ->> 5, j.value ->> 6, j.value ->> 7, j.value ->> 8, j.value ->> 9, \
                 $2, $2, $3, j.value ->> 10, j.value ->> 11 FROM json_each($4) j WHERE true",
                recommendation_on_conflict!()
            ))
            .bind(integration_id)
            .bind(observed)
            .bind(run_id)
            .bind(json);
            count_kinds(&mut tx, q, &mut counts, "upserting recommendations").await?;
        }
        tx.commit()
            .await
            .map_err(db("committing recommendations"))?;
        Ok(counts)
    }

    pub(super) async fn cloud_recommendations_page(
        &self,
        filter: &RecommendationFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Page<StoredRecommendation>> {
        let sql = recommendations_query(super::DIALECT, filter, after, limit);
        let mut tx = self.read.begin().await.map_err(db("starting a read"))?;
        let rows = bind_args(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.args)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("listing recommendations"))?;
        let names = integration_names(&mut tx, "listing recommendations").await?;
        let items = rows
            .iter()
            .map(|r| decode_recommendation(r, &names))
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |r| r.id))
    }

    pub(super) async fn cloud_linked_assets(&self, asset_id: i64) -> Result<Vec<StoredAsset>> {
        let mut tx = self.read.begin().await.map_err(db("starting a read"))?;
        let exists = sqlx::query("SELECT 1 FROM assets WHERE id = $1")
            .bind(asset_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("reading an asset"))?;
        if exists.is_none() {
            return Err(asset_not_found(asset_id));
        }
        let rows = sqlx::query(LINKED_ASSETS)
            .bind(asset_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("finding the same machine in other integrations"))?;
        let names = integration_names(&mut tx, "finding linked assets").await?;
        rows.iter().map(|r| decode_asset(r, &names)).collect()
    }
}

/// The cloud numbers of the dashboard, added to `counts`. On the caller's connection (its read
/// transaction): asking the pool for a second connection while holding one is how concurrent
/// dashboards once took every connection and waited for each other until the pool timed out.
pub(super) async fn cloud_counts(
    conn: &mut sqlx::SqliteConnection,
    integration: Option<IntegrationId>,
    counts: &mut Counts,
) -> Result<()> {
    let sql = subscription_count_query(integration);
    let n: i64 = bind_args(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.args)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("counting subscriptions"))?
        .try_get("n")
        .map_err(db("counting subscriptions"))?;
    counts.subscriptions = as_u64(n);
    let sql = unhealthy_by_severity_query(integration);
    for r in bind_args(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.args)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("counting recommendations"))?
    {
        tally_unhealthy(counts, &r)?;
    }
    Ok(())
}

async fn integration_names(
    conn: &mut sqlx::SqliteConnection,
    op: &'static str,
) -> Result<IntegrationNames> {
    decode_integration_names(
        &sqlx::query(INTEGRATION_NAMES)
            .fetch_all(&mut *conn)
            .await
            .map_err(db(op))?,
    )
}
