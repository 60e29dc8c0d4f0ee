//! Portal accounts, sessions and API tokens (migration 0002).

use std::sync::Arc;

use chrono::{Duration, Utc};
use rampart_store::{NewApiToken, NewUser, Role, Store, StoreError, TokenScope};

scenarios!(
    users_are_unique_without_case,
    sessions_expire_and_are_replaced,
    passwords_change_and_the_last_admin_stays,
    parallel_removals_leave_an_admin,
    setup_tokens_work_once_and_expire,
    api_tokens_by_hash,
    asset_filters_by_facets,
    dashboard_rankings,
);

async fn users_are_unique_without_case(store: Arc<dyn Store>) {
    assert!(store.list_users().await.unwrap().is_empty());
    let new = |name: &str, role| NewUser {
        name: name.into(),
        role,
        password_hash: "$argon2id$fake".into(),
        created_at: Utc::now(),
        must_change_password: false,
    };
    let alice = store.create_user(&new("alice", Role::Admin)).await.unwrap();
    assert_eq!(alice.role, Role::Admin);
    let dup = store
        .create_user(&new("ALICE", Role::Viewer))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    store.create_user(&new("bob", Role::Viewer)).await.unwrap();

    let creds = store.user_credentials("Alice").await.unwrap().unwrap();
    assert_eq!(creds.user, alice);
    assert_eq!(creds.password_hash, "$argon2id$fake");
    // The hash never shows in debug output.
    assert!(!format!("{creds:?}").contains("argon2id"));
    assert!(store.user_credentials("carol").await.unwrap().is_none());
    assert_eq!(store.get_user(alice.id).await.unwrap(), alice);
    assert!(matches!(
        store.get_user(9999).await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    let names = rampart_store::testing::user_names(store.as_ref()).await;
    assert_eq!(names, ["alice", "bob"]);
}

async fn sessions_expire_and_are_replaced(store: Arc<dyn Store>) {
    let now = Utc::now();
    store
        .save_session("s1", "{\"a\":1}", now + Duration::hours(1))
        .await
        .unwrap();
    store
        .save_session("s1", "{\"a\":2}", now + Duration::hours(1))
        .await
        .unwrap();
    store
        .save_session("old", "{}", now - Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        store.load_session("s1", now).await.unwrap().as_deref(),
        Some("{\"a\":2}")
    );
    assert_eq!(store.load_session("old", now).await.unwrap(), None);
    assert_eq!(store.delete_expired_sessions(now).await.unwrap(), 1);
    store.delete_session("s1").await.unwrap();
    assert_eq!(store.load_session("s1", now).await.unwrap(), None);
}

fn account(name: &str, role: Role) -> NewUser {
    NewUser {
        name: name.into(),
        role,
        password_hash: format!("$argon2id${name}"),
        created_at: Utc::now(),
        must_change_password: false,
    }
}

async fn passwords_change_and_the_last_admin_stays(store: Arc<dyn Store>) {
    let demo = store
        .create_user(&NewUser {
            must_change_password: true,
            ..account("admin", Role::Admin)
        })
        .await
        .unwrap();
    assert!(demo.must_change_password);
    assert_eq!(demo.password_changed_at, None);
    let viewer = store
        .create_user(&account("val", Role::Viewer))
        .await
        .unwrap();

    let at = Utc::now();
    let changed = store
        .set_password(demo.id, "$argon2id$new", false, at)
        .await
        .unwrap();
    assert!(!changed.must_change_password);
    let recorded = changed.password_changed_at.unwrap();
    assert!(
        (recorded - at).num_milliseconds().abs() < 1,
        "{recorded} vs {at}"
    );
    let creds = store.user_credentials("admin").await.unwrap().unwrap();
    assert_eq!(creds.password_hash, "$argon2id$new");
    assert_eq!(creds.user, changed);
    assert!(matches!(
        store.set_password(9999, "x", false, at).await.unwrap_err(),
        StoreError::NotFound(_)
    ));

    // The only admin cannot go; a viewer can, and an unknown id is NotFound.
    let refused = store.delete_user(demo.id).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::Conflict(ref m) if m.contains("last admin")),
        "{refused:?}"
    );
    store.delete_user(viewer.id).await.unwrap();
    assert!(matches!(
        store.delete_user(viewer.id).await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    // With a second admin, the first can go, and then the second is the last.
    let second = store
        .create_user(&account("root", Role::Admin))
        .await
        .unwrap();
    store.delete_user(demo.id).await.unwrap();
    assert!(matches!(
        store.delete_user(second.id).await.unwrap_err(),
        StoreError::Conflict(_)
    ));
    assert_eq!(store.list_users().await.unwrap(), vec![second]);
}

async fn parallel_removals_leave_an_admin(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for name in ["a1", "a2", "a3", "a4"] {
        ids.push(
            store
                .create_user(&account(name, Role::Admin))
                .await
                .unwrap()
                .id,
        );
    }
    let removals = ids.iter().map(|&id| {
        let store = store.clone();
        tokio::spawn(async move { store.delete_user(id).await })
    });
    let results = futures::future::join_all(removals).await;
    let removed = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
    assert_eq!(removed, 3, "{results:?}");
    let left = store.list_users().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].role, Role::Admin);
}

async fn setup_tokens_work_once_and_expire(store: Arc<dyn Store>) {
    let now = Utc::now();
    let hour = Duration::hours(1);
    store
        .issue_setup_token("old", now - hour * 2, now - hour)
        .await
        .unwrap();
    store
        .issue_setup_token("t1", now, now + hour)
        .await
        .unwrap();
    store
        .issue_setup_token("t2", now, now + hour)
        .await
        .unwrap();
    assert!(
        !store.consume_setup_token("old", now).await.unwrap(),
        "expired"
    );
    assert!(!store.consume_setup_token("nope", now).await.unwrap());
    // An unexpired token, but used after its expiry.
    assert!(
        !store
            .consume_setup_token("t1", now + hour * 2)
            .await
            .unwrap()
    );
    // Valid once, in parallel too.
    let uses = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.consume_setup_token("t1", now).await.unwrap() })
    });
    let ok = futures::future::join_all(uses)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    assert_eq!(ok, 1);
    // Once setup is done, the tokens other starts printed are worthless too.
    assert!(!store.consume_setup_token("t2", now).await.unwrap());
}

async fn api_tokens_by_hash(store: Arc<dyn Store>) {
    let t = store
        .create_api_token(&NewApiToken {
            name: "siem".into(),
            token_hash: "abc123".into(),
            scope: TokenScope::Read,
            created_by: "alice".into(),
            created_at: Utc::now(),
            workspace: None,
        })
        .await
        .unwrap();
    assert_eq!(
        store.api_token_by_hash("abc123").await.unwrap().as_ref(),
        Some(&t)
    );
    assert_eq!(store.api_token_by_hash("abc124").await.unwrap(), None);
    assert_eq!(store.list_api_tokens().await.unwrap(), vec![t.clone()]);
    store.delete_api_token(t.id).await.unwrap();
    assert!(matches!(
        store.delete_api_token(t.id).await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    assert_eq!(store.api_token_by_hash("abc123").await.unwrap(), None);
}

async fn asset_filters_by_facets(store: Arc<dyn Store>) {
    use crate::support::*;
    use rampart_store::AssetFilter;
    let i = integration(&store, "facets").await;
    let run = store.start_run(i.id, "full", Utc::now()).await.unwrap();
    let mut a = asset(1);
    a.os_platform = Some("Windows11".into());
    a.health_status = Some("Active".into());
    a.exposure_level = Some("High".into());
    a.tags = vec!["prod".into(), "pci_zone".into()];
    let mut b = asset(2);
    b.os_platform = Some("Linux".into());
    b.health_status = Some("Inactive".into());
    b.tags = vec!["production".into()];
    store
        .upsert_assets(i.id, run, &[a.clone(), b.clone()])
        .await
        .unwrap();
    let all = all_assets(&store, AssetFilter::default()).await;
    let id = |source: &str| all.iter().find(|s| s.asset.source_id == source).unwrap().id;
    let (d1, d2) = (id(&a.source_id), id(&b.source_id));
    let names = |f: AssetFilter| {
        let store = store.clone();
        async move {
            store
                .assets_page(&rampart_store::Visibility::All, &f, None, 10)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|a| a.id)
                .collect::<Vec<_>>()
        }
    };
    let by = |f: fn(&mut AssetFilter)| {
        let mut filter = AssetFilter::default();
        f(&mut filter);
        filter
    };
    assert_eq!(
        names(by(|f| f.os_platform = Some("windows11".into()))).await,
        [d1]
    );
    assert_eq!(
        names(by(|f| f.health_status = Some("active".into()))).await,
        [d1]
    );
    assert_eq!(
        names(by(|f| f.exposure_level = Some("HIGH".into()))).await,
        [d1]
    );
    // A tag matches whole, not as a prefix, and LIKE wildcards are literal.
    assert_eq!(names(by(|f| f.tag = Some("prod".into()))).await, [d1]);
    assert_eq!(names(by(|f| f.tag = Some("production".into()))).await, [d2]);
    assert!(names(by(|f| f.tag = Some("pci%".into()))).await.is_empty());
    assert_eq!(names(by(|f| f.tag = Some("PCI_ZONE".into()))).await, [d1]);
}

async fn dashboard_rankings(store: Arc<dyn Store>) {
    use crate::support::*;
    let i = integration(&store, "ranks").await;
    let run = store.start_run(i.id, "full", Utc::now()).await.unwrap();
    store
        .upsert_vulnerabilities(&(0..4).map(vulnerability).collect::<Vec<_>>())
        .await
        .unwrap();
    let found = findings(3, 4);
    store.upsert_findings(i.id, run, &found).await.unwrap();
    let fixes = store
        .top_fixes(&rampart_store::Visibility::All, 10)
        .await
        .unwrap();
    let total: u64 = fixes.iter().map(|f| f.open_findings).sum();
    let with_update = found
        .iter()
        .filter(|f| f.recommended_update.is_some())
        .count() as u64;
    assert_eq!(total, with_update);
    assert!(
        fixes
            .windows(2)
            .all(|w| w[0].open_findings >= w[1].open_findings)
    );
    let risky = store
        .riskiest_assets(&rampart_store::Visibility::All, 2)
        .await
        .unwrap();
    assert_eq!(risky.len(), 2);
    assert!(risky.iter().all(|a| a.open_findings == 4));
    assert!(risky[0].critical >= risky[1].critical);
}
