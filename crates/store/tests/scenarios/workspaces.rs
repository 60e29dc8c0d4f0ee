//! Workspaces (docs/workspaces.md): every read that takes a `Visibility` returns nothing of an
//! integration outside it, and a by-id read of one is `NotFound`, exactly as for an id that does
//! not exist. Workspace, membership and token bookkeeping.

use rampart_model::IntegrationId;
use rampart_model::RunId;
use std::sync::Arc;

use chrono::Utc;
use futures::TryStreamExt;

use rampart_model::{
    Asset, ControlScore, Integration, PostureScore, Product, Recommendation, Subscription,
    WorkspaceId,
};
use rampart_store::{
    AssetFilter, AssetSort, FindingFilter, FindingOrder, JobKind, NewApiToken, NewUser,
    RecommendationFilter, Role, Store, StoreError, SubscriptionReadOutcome, TokenScope, Visibility,
    VulnerabilityFilter,
};

use crate::support::*;

scenarios!(
    every_read_filters_by_visibility,
    by_id_reads_outside_are_not_found,
    workspaces_memberships_and_tokens,
);

const SUB: &str = "cccccccc-0000-4000-8000-000000000003";

/// Workspace A: one Endpoint integration with assets 0..3, two CVEs each. Workspace B: one
/// Endpoint integration with assets 100..103, four CVEs each (two of them A never saw), and a
/// Cloud integration with a subscription, scores, controls and a recommendation.
struct World {
    a: Integration,
    b: Integration,
    b_cloud: Integration,
    b_run: RunId,
    b_cloud_run: RunId,
    a_vis: Visibility,
}

async fn world(store: &Arc<dyn Store>) -> World {
    let wa = store.create_workspace("Customer A").await.unwrap();
    let wb = store.create_workspace("Customer B").await.unwrap();
    let a = store
        .create_integration_in(&new_integration("a-mde"), wa.id)
        .await
        .unwrap();
    let b = store
        .create_integration_in(&new_integration("b-mde"), wb.id)
        .await
        .unwrap();
    let mut cloud = new_integration("b-cloud");
    cloud.product = Product::Cloud;
    let b_cloud = store.create_integration_in(&cloud, wb.id).await.unwrap();
    assert_eq!((a.workspace_id, b.workspace_id), (wa.id, wb.id));

    store
        .upsert_vulnerabilities(&(0..5).map(vulnerability).collect::<Vec<_>>())
        .await
        .unwrap();
    let run = full_run_seeing(store, a.id, t(0), 3, 2).await;
    store.finish_run(run, &succeeded(t(1))).await.unwrap();

    let b_run = store.start_run(b.id, "full", t(0)).await.unwrap();
    let assets: Vec<Asset> = (100..103).map(asset).collect();
    store.upsert_assets(b.id, b_run, &assets).await.unwrap();
    store
        .upsert_findings(b.id, b_run, &findings_of(100, 3, 4))
        .await
        .unwrap();
    store.finish_run(b_run, &succeeded(t(2))).await.unwrap();

    let b_cloud_run = store.start_run(b_cloud.id, "full", t(0)).await.unwrap();
    let sub = Subscription {
        subscription_id: SUB.into(),
        display_name: Some("B production".into()),
        state: Some("Enabled".into()),
    };
    store
        .upsert_subscriptions(b_cloud.id, b_cloud_run, &[sub])
        .await
        .unwrap();
    store
        .record_subscription_read(b_cloud.id, b_cloud_run, SUB, &SubscriptionReadOutcome::Ok)
        .await
        .unwrap();
    let score = PostureScore {
        subscription_id: SUB.into(),
        subscription_name: Some("B production".into()),
        current: 5.0,
        max: 10.0,
        fraction: 0.5,
        weight: 3,
    };
    let control = ControlScore {
        subscription_id: SUB.into(),
        control_id: "ctl".into(),
        display_name: Some("Control".into()),
        current: Some(1.0),
        max: 2.0,
        fraction: Some(0.5),
        healthy: 1,
        unhealthy: 1,
        not_applicable: 0,
        weight: 2,
    };
    store
        .record_posture(b_cloud.id, b_cloud_run, t(0), &[score], &[control])
        .await
        .unwrap();
    let resource = format!("/subscriptions/{SUB}");
    let rec = Recommendation {
        subscription_id: SUB.into(),
        assessment_id: format!("{resource}/providers/microsoft.security/assessments/k1"),
        key: "k1".into(),
        resource_id: resource,
        display_name: Some("Enable MFA".into()),
        status: "Unhealthy".into(),
        cause: None,
        severity: Some("High".into()),
        category: Some("Identity".into()),
        status_changed: Some(t(-30)),
        risk: None,
    };
    store
        .upsert_recommendations(b_cloud.id, b_cloud_run, &[rec])
        .await
        .unwrap();
    store
        .finish_run(b_cloud_run, &succeeded(t(3)))
        .await
        .unwrap();
    store
        .enqueue_job(b.id, JobKind::Scheduled, t(60), t(3))
        .await
        .unwrap();
    World {
        a_vis: Visibility::Workspaces(vec![wa.id]),
        a,
        b,
        b_cloud,
        b_run,
        b_cloud_run,
    }
}

fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

async fn every_read_filters_by_visibility(store: Arc<dyn Store>) {
    let w = world(&store).await;
    let (va, all) = (&w.a_vis, &Visibility::All);
    let only_a = |id: IntegrationId| assert_eq!(id, w.a.id, "a row of another workspace");

    let names: Vec<String> = store
        .list_integrations(va)
        .await
        .unwrap()
        .iter()
        .map(|i| i.name.to_string())
        .collect();
    assert_eq!(names, ["a-mde"]);
    assert_eq!(store.list_integrations(all).await.unwrap().len(), 3);

    let assets = store
        .assets_page(va, &AssetFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(assets.items.len(), 3);
    assets.items.iter().for_each(|a| only_a(a.integration_id));
    let sorted = store
        .assets_sorted(va, &AssetFilter::default(), AssetSort::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(sorted.items.len(), 3);
    sorted
        .items
        .iter()
        .for_each(|a| only_a(a.stored.integration_id));
    let searched = store
        .assets_page(
            va,
            &AssetFilter {
                search: Some("host-10".into()),
                ..AssetFilter::default()
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert!(searched.items.is_empty(), "B's asset names found by search");
    let streamed: Vec<_> = store
        .stream_assets(va.clone(), AssetFilter::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed.len(), 3);

    let findings = store
        .findings_page(va, &FindingFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(findings.items.len(), 6);
    findings.items.iter().for_each(|f| only_a(f.integration_id));
    let by_priority = store
        .findings_sorted(
            va,
            &FindingFilter::default(),
            FindingOrder::PriorityDesc,
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(by_priority.items.len(), 6);
    let b_only_cve = FindingFilter {
        cve_id: Some(cve(3).parse().unwrap()),
        ..FindingFilter::default()
    };
    let hidden = store
        .findings_page(va, &b_only_cve, None, 100)
        .await
        .unwrap();
    assert!(hidden.items.is_empty());
    let streamed: Vec<_> = store
        .stream_findings(va.clone(), FindingFilter::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed.len(), 6);

    // The shared catalogue: only CVEs a visible finding refers to, exposure of visible assets.
    let vulns = store
        .vulnerabilities_page(va, &VulnerabilityFilter::default(), None, 100)
        .await
        .unwrap();
    let cves: Vec<String> = vulns
        .items
        .iter()
        .map(|v| v.vulnerability.cve_id.to_string())
        .collect();
    assert_eq!(cves, [cve(0), cve(1)]);
    assert!(vulns.items.iter().all(|v| v.exposed_assets == 3));
    let everything = store
        .vulnerabilities_page(all, &VulnerabilityFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(everything.items.len(), 5);
    assert_eq!(everything.items[0].exposed_assets, 6);

    let counts_a = store.counts(va, None).await.unwrap();
    assert_eq!(counts_a, store.counts(all, Some(w.a.id)).await.unwrap());
    assert_eq!(counts_a.findings_open.total(), 6);
    assert_eq!(
        (
            counts_a.subscriptions,
            counts_a.recommendations_unhealthy.total()
        ),
        (0, 0)
    );
    assert_eq!(
        store
            .counts(va, Some(w.b.id))
            .await
            .unwrap()
            .findings_open
            .total(),
        0
    );
    let counts_all = store.counts(all, None).await.unwrap();
    assert_eq!(counts_all.findings_open.total(), 18);
    assert_eq!(counts_all.subscriptions, 1);

    let fixes = store.top_fixes(va, 10).await.unwrap();
    assert_eq!(fixes.iter().map(|f| f.open_findings).sum::<u64>(), 6);
    let risky = store.riskiest_assets(va, 10).await.unwrap();
    assert_eq!(risky.len(), 3);
    assert!(risky.iter().all(|r| !r.name.contains("host-10")));

    let summary = store.summary(va, 10).await.unwrap();
    assert_eq!(summary.counts.findings_open.total(), 6);
    assert_eq!(summary.counts.assets_active, 3);
    assert_eq!(summary.counts.subscriptions, 0);
    // The dashboard's top fixes: the head of the remediation plan.
    let plan = store
        .remediations(
            va,
            &rampart_store::RemediationFilter::default(),
            rampart_store::RemediationSort::Priority,
            t(2),
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(plan.items.iter().map(|f| f.findings).sum::<u64>(), 6);
    assert_eq!(summary.riskiest.len(), 3);
    assert_eq!(
        summary.as_of,
        Some(t(1)),
        "B's later run is not A's last sync"
    );
    assert_eq!(
        store
            .summary(all, 10)
            .await
            .unwrap()
            .counts
            .findings_open
            .total(),
        18
    );
    let urgent = store.urgent_counts(va, Utc::now()).await.unwrap();
    assert_eq!((urgent.immediate, urgent.overdue), (0, 0));

    assert!(store.list_runs(va, w.b.id, 10).await.unwrap().is_empty());
    assert_eq!(store.list_runs(va, w.a.id, 10).await.unwrap().len(), 1);
    assert_eq!(store.last_successful_run(va, w.b.id).await.unwrap(), None);
    assert!(
        store
            .list_jobs(va, None, false, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.list_jobs(all, None, false, 100).await.unwrap().len(),
        1
    );

    assert!(store.list_subscriptions(va, None).await.unwrap().is_empty());
    assert_eq!(store.list_subscriptions(all, None).await.unwrap().len(), 1);
    assert!(
        store
            .subscription_reads(va, w.b_cloud_run)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .subscription_reads(all, w.b_cloud_run)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.latest_posture(va, None).await.unwrap().is_empty());
    assert!(
        store
            .latest_posture(va, Some(w.b_cloud.id))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.latest_posture(all, None).await.unwrap().len(), 1);
    assert!(
        store
            .posture_history(va, None, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.posture_history(all, None, None).await.unwrap().len(),
        1
    );
    assert!(
        store
            .latest_controls(va, None, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.latest_controls(all, None, None).await.unwrap().len(),
        1
    );
    let recs = store
        .recommendations_page(va, &RecommendationFilter::default(), None, 100)
        .await
        .unwrap();
    assert!(recs.items.is_empty());
    let recs = store
        .recommendations_page(all, &RecommendationFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(recs.items.len(), 1);

    // A posture export through A's visibility has nothing of B.
    let rows: Vec<_> = rampart_store::export::posture_records(&*store, va.clone(), None)
        .try_collect()
        .await
        .unwrap();
    assert!(rows.is_empty(), "{rows:?}");

    // No workspace at all: nothing.
    let none = Visibility::Workspaces(Vec::new());
    assert!(store.list_integrations(&none).await.unwrap().is_empty());
    assert_eq!(
        store
            .counts(&none, None)
            .await
            .unwrap()
            .findings_open
            .total(),
        0
    );
    assert!(
        store
            .vulnerabilities_page(&none, &VulnerabilityFilter::default(), None, 100)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn by_id_reads_outside_are_not_found(store: Arc<dyn Store>) {
    let w = world(&store).await;
    let va = &w.a_vis;
    not_found(store.get_integration(va, w.b.id).await);
    not_found(store.get_integration(va, w.b_cloud.id).await);
    not_found(
        store
            .get_integration_by_name(va, &"b-mde".parse().unwrap())
            .await,
    );
    assert_eq!(store.get_integration(va, w.a.id).await.unwrap().id, w.a.id);
    not_found(store.get_run(va, w.b_run).await);
    assert_eq!(
        store.get_run(&Visibility::All, w.b_run).await.unwrap().id,
        w.b_run
    );

    let b_asset = store
        .assets_page(
            &Visibility::All,
            &AssetFilter {
                integration: Some(w.b.id),
                ..AssetFilter::default()
            },
            None,
            1,
        )
        .await
        .unwrap()
        .items[0]
        .id;
    not_found(store.get_asset(va, b_asset).await);
    not_found(store.linked_assets(va, b_asset).await);
    assert_eq!(
        store
            .get_asset(&Visibility::All, b_asset)
            .await
            .unwrap()
            .stored
            .id,
        b_asset
    );
    // The answer for B's id is the answer for an id that does not exist.
    let missing = store
        .get_integration(va, IntegrationId(999_999))
        .await
        .unwrap_err()
        .to_string();
    let other = store
        .get_integration(va, w.b.id)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        missing.replace("999999", "ID"),
        other.replace(&w.b.id.to_string(), "ID")
    );
}

async fn workspaces_memberships_and_tokens(store: Arc<dyn Store>) {
    let listed = store.list_workspaces().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id, listed[0].name.as_str()),
        (WorkspaceId::DEFAULT, "Default")
    );
    // Integrations created without a workspace go to Default.
    let old = integration(&store, "old").await;
    assert_eq!(old.workspace_id, WorkspaceId::DEFAULT);

    let a = store.create_workspace("  Acme  ").await.unwrap();
    assert_eq!(a.name, "Acme");
    assert!(a.id != WorkspaceId::DEFAULT);
    assert!(matches!(
        store.create_workspace("ACME").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_workspace_by_name("acme").await.unwrap().id, a.id);
    not_found(store.get_workspace_by_name("nobody").await);
    not_found(
        store
            .create_integration_in(&new_integration("lost"), WorkspaceId(424_242))
            .await,
    );

    // Removal refuses while integrations remain, naming them; Default is never removed.
    let held = store
        .create_integration_in(&new_integration("acme-mde"), a.id)
        .await
        .unwrap();
    match store.delete_workspace(a.id).await {
        Err(StoreError::Conflict(m)) => {
            assert!(
                m.contains("acme-mde") && m.contains("rampart integration move"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.delete_workspace(WorkspaceId::DEFAULT).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .move_integration(held.id, WorkspaceId::DEFAULT)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_integration(&Visibility::All, held.id)
            .await
            .unwrap()
            .workspace_id,
        WorkspaceId::DEFAULT
    );
    not_found(store.move_integration(held.id, WorkspaceId(424_242)).await);
    not_found(store.move_integration(IntegrationId(999_999), a.id).await);

    // A viewer starts as a viewer of Default; admins need no membership.
    let new_user = |name: &str, role| NewUser {
        name: name.into(),
        role,
        password_hash: "$argon2id$x".into(),
        created_at: Utc::now(),
        must_change_password: false,
    };
    let viewer = store
        .create_user(&new_user("vera", Role::Viewer))
        .await
        .unwrap();
    let admin = store
        .create_user(&new_user("ada", Role::Admin))
        .await
        .unwrap();
    let m = store.memberships(viewer.id).await.unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].workspace_id, m[0].role),
        (WorkspaceId::DEFAULT, Role::Viewer)
    );
    assert!(store.memberships(admin.id).await.unwrap().is_empty());
    store
        .grant_membership(viewer.id, a.id, Role::Viewer)
        .await
        .unwrap();
    store
        .grant_membership(viewer.id, a.id, Role::Admin)
        .await
        .unwrap();
    let m = store.memberships(viewer.id).await.unwrap();
    assert_eq!(
        m.iter()
            .map(|m| (m.workspace.as_str(), m.role))
            .collect::<Vec<_>>(),
        [("Acme", Role::Admin), ("Default", Role::Viewer)]
    );
    assert_eq!(Visibility::admin_of(&m), Visibility::Workspaces(vec![a.id]));
    assert_eq!(
        Visibility::member_of(&m),
        Visibility::Workspaces(vec![a.id, WorkspaceId::DEFAULT])
    );
    store
        .revoke_membership(viewer.id, WorkspaceId::DEFAULT)
        .await
        .unwrap();
    not_found(
        store
            .revoke_membership(viewer.id, WorkspaceId::DEFAULT)
            .await,
    );
    assert!(
        store
            .grant_membership(viewer.id, WorkspaceId(424_242), Role::Viewer)
            .await
            .is_err()
    );

    // Tokens: scoped or global; removing the workspace takes its roles and tokens with it.
    let token = |hash: &str, workspace| NewApiToken {
        name: hash.into(),
        token_hash: hash.into(),
        scope: TokenScope::Read,
        created_by: "ada".into(),
        created_at: Utc::now(),
        workspace,
    };
    let scoped = store
        .create_api_token(&token("h1", Some(a.id)))
        .await
        .unwrap();
    assert_eq!(scoped.workspace, Some(a.id));
    let global = store.create_api_token(&token("h2", None)).await.unwrap();
    assert_eq!(global.workspace, None);
    assert_eq!(
        store
            .api_token_by_hash("h1")
            .await
            .unwrap()
            .unwrap()
            .workspace,
        Some(a.id)
    );
    store.delete_workspace(a.id).await.unwrap();
    assert!(store.api_token_by_hash("h1").await.unwrap().is_none());
    assert!(store.api_token_by_hash("h2").await.unwrap().is_some());
    assert!(store.memberships(viewer.id).await.unwrap().is_empty());
    not_found(store.delete_workspace(a.id).await);
}

// ---- upgrading a database written before workspaces ---------------------------------------------

/// Brings a database to the schema before workspaces (migrations 1–12).
async fn migrate_before_workspaces(
    engine: &str,
    run: impl AsyncFnOnce(&sqlx::migrate::Migrator) -> Result<(), sqlx::migrate::MigrateError>,
) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(engine);
    let mut migrator = sqlx::migrate::Migrator::new(dir).await.unwrap();
    migrator.migrations = std::borrow::Cow::Owned(
        migrator
            .migrations
            .iter()
            .filter(|m| m.version < 13)
            .cloned()
            .collect(),
    );
    run(&migrator).await.unwrap();
}

/// What an upgraded store must show: existing integrations in Default, existing viewers viewers
/// of Default, admins global (no membership), and new workspaces numbered after Default.
async fn assert_upgraded(store: Arc<dyn Store>) {
    let integrations = store.list_integrations(&Visibility::All).await.unwrap();
    assert_eq!(integrations.len(), 1);
    assert_eq!(integrations[0].workspace_id, WorkspaceId::DEFAULT);
    let users = store.list_users().await.unwrap();
    let id_of = |name: &str| users.iter().find(|u| u.name == name).unwrap().id;
    let viewer = store.memberships(id_of("old-viewer")).await.unwrap();
    assert_eq!(viewer.len(), 1);
    assert_eq!(
        (viewer[0].workspace_id, viewer[0].role),
        (WorkspaceId::DEFAULT, Role::Viewer)
    );
    assert!(
        store
            .memberships(id_of("old-admin"))
            .await
            .unwrap()
            .is_empty()
    );
    let token = store.api_token_by_hash("old-token").await.unwrap().unwrap();
    assert_eq!(token.workspace, None, "existing tokens stay global");
    let next = store.create_workspace("After").await.unwrap();
    assert!(next.id.0 > WorkspaceId::DEFAULT.0, "{next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_keeps_a_single_team_as_it_was_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let url = format!("sqlite://{}", path.display());
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    migrate_before_workspaces("sqlite", async |m| m.run(&pool).await).await;
    for sql in [
        "INSERT INTO users (name, role, password_hash, created_at) VALUES ('old-admin', 'admin', 'x', 1), ('old-viewer', 'viewer', 'x', 1)",
        "INSERT INTO api_tokens (name, token_hash, scope, created_by, created_at) VALUES ('siem', 'old-token', 'read', 'old-admin', 1)",
        "INSERT INTO integrations (name, product, cloud, tenant_id, client_id, secret_ciphertext, secret_nonce, secret_last4, schedule_minutes, enabled, created_at, updated_at) \
         VALUES ('old', 'endpoint', 'commercial', '72f988bf-86f1-41af-91ab-2d7cd011db47', '00000000-0000-0000-0000-000000000001', x'01', x'02', 'a1b2', 360, 1, 1, 1)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    assert_upgraded(rampart_store::connect(&url).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_keeps_a_single_team_as_it_was_on_postgres() {
    let db = rampart_store::testing::postgres_database().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    migrate_before_workspaces("postgres", async |m| m.run(&pool).await).await;
    for sql in [
        "INSERT INTO users (name, role, password_hash, created_at) VALUES ('old-admin', 'admin', 'x', now()), ('old-viewer', 'viewer', 'x', now())",
        "INSERT INTO api_tokens (name, token_hash, scope, created_by, created_at) VALUES ('siem', 'old-token', 'read', 'old-admin', now())",
        "INSERT INTO integrations (name, product, cloud, tenant_id, client_id, secret_ciphertext, secret_nonce, secret_last4, schedule_minutes, enabled, created_at, updated_at) \
         VALUES ('old', 'endpoint', 'commercial', '72f988bf-86f1-41af-91ab-2d7cd011db47', '00000000-0000-0000-0000-000000000001', '\\x01', '\\x02', 'a1b2', 360, true, now(), now())",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    assert_upgraded(rampart_store::connect(&db.url).await.unwrap()).await;
}
