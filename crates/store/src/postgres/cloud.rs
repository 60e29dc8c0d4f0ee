//! PostgreSQL: Defender for Cloud subscriptions, posture history and recommendations. Small
//! batches (subscriptions, scores, controls) are written row by row inside the call's
//! transaction; recommendations are staged with COPY and merged by one statement, like findings.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};

use rampart_model::{ControlScore, IntegrationId, PostureScore, Recommendation, Subscription};

use super::{CopyBuf, PgStore, bind_args, count_kinds, db, stage, touch_run, ts};
use crate::cloud_sql::*;
use crate::common::*;
use crate::error::Result;
use crate::types::*;
use crate::types_cloud::*;

impl PgStore {
    pub(super) async fn cloud_upsert_subscriptions(
        &self,
        integration_id: IntegrationId,
        run_id: i64,
        subscriptions: &[Subscription],
    ) -> Result<UpsertCounts> {
        let rows = subscription_rows(subscriptions);
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
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
        let mut tx = self.pool.begin().await.map_err(db("starting a read"))?;
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
            .fetch_all(&self.pool)
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
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
        let mut tx = self.pool.begin().await.map_err(db("starting a read"))?;
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
        let mut tx = self.pool.begin().await.map_err(db("starting a read"))?;
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("starting a transaction"))?;
        let observed = ts(touch_run(&mut tx, integration_id, run_id).await?);
        if rows.is_empty() {
            tx.commit()
                .await
                .map_err(db("committing recommendations"))?;
            return Ok(UpsertCounts::default());
        }
        let mut b = CopyBuf::default();
        for (ord, r) in rows.iter().enumerate() {
            b.int(ord as i64);
            b.text(&r.assessment_id);
            b.text(&r.subscription_id);
            b.text(&r.key);
            b.text(&r.resource_id);
            b.opt_text(r.display_name.as_deref());
            b.text(&r.status);
            b.opt_text(r.cause.as_deref());
            b.opt_text(r.severity.as_deref());
            b.opt_text(r.category.as_deref());
            b.opt_ts(r.status_changed);
            b.opt_text(r.risk_level.as_deref());
            b.opt_text(r.risk.as_deref());
            b.end_row();
        }
        stage(
            &mut tx,
            "CREATE TEMP TABLE stage_recommendations (ord INTEGER NOT NULL, assessment_id TEXT NOT NULL, \
             subscription_id TEXT NOT NULL, assessment_key TEXT NOT NULL, resource_id TEXT NOT NULL, display_name TEXT, \
             status TEXT NOT NULL, cause TEXT, severity TEXT, category TEXT, status_changed TIMESTAMPTZ, \
             risk_level TEXT, risk TEXT) ON COMMIT DROP",
            "COPY stage_recommendations FROM STDIN",
            b.into_bytes(),
            "staging recommendations",
        )
        .await?;
        let counts = count_kinds(
            &mut tx,
            concat!(
                "WITH up AS (INSERT INTO recommendations (",
                recommendation_insert_columns!(),
                ") SELECT $1, s.assessment_id, s.subscription_id, s.assessment_key, s.resource_id, \
                 (SELECT a.id FROM assets a WHERE a.integration_id = $1 AND a.source_id = s.resource_id), \
                 s.display_name, s.status, s.cause, s.severity, s.category, s.status_changed, $2, $2, $3, \
                 s.risk_level, s.risk FROM stage_recommendations s ORDER BY s.ord",
                recommendation_on_conflict!(),
                ") SELECT change_kind, count(*) AS n FROM up GROUP BY change_kind"
            ),
            Some(integration_id),
            Some(observed),
            Some(run_id),
            "upserting recommendations",
        )
        .await?;
        sqlx::query("DROP TABLE stage_recommendations")
            .execute(&mut *tx)
            .await
            .map_err(db("dropping the recommendation staging table"))?;
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
        let mut tx = self.pool.begin().await.map_err(db("starting a read"))?;
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
        let mut tx = self.pool.begin().await.map_err(db("starting a read"))?;
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
    conn: &mut sqlx::PgConnection,
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
    conn: &mut sqlx::PgConnection,
    op: &'static str,
) -> Result<IntegrationNames> {
    decode_integration_names(
        &sqlx::query(INTEGRATION_NAMES)
            .fetch_all(&mut *conn)
            .await
            .map_err(db(op))?,
    )
}
