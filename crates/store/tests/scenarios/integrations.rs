use rampart_model::IntegrationId;
use std::sync::Arc;

use rampart_model::{Cloud, SecretHint};
use rampart_store::{
    AssetFilter, FindingFilter, IntegrationUpdate, NewAuditEntry, SecretCiphertext, Store,
    StoreError,
};

use crate::support::*;

scenarios!(
    crud_and_name_conflict,
    update_and_rename_conflict,
    delete_removes_its_data_only,
    sync_state_and_audit_log,
);

async fn crud_and_name_conflict(store: Arc<dyn Store>) {
    let created = integration(&store, "contoso-mde").await;
    assert_eq!(created.name.as_str(), "contoso-mde");
    assert_eq!(created.secret_hint.masked(), "••••a1b2");
    assert_eq!(created.api_url.as_deref(), Some("http://127.0.0.1:9999"));
    assert_eq!(created.login_url, None);

    assert_eq!(
        store
            .get_integration(&rampart_store::Visibility::All, created.id)
            .await
            .unwrap(),
        created
    );
    // Names are compared without case.
    let by_name = store
        .get_integration_by_name(
            &rampart_store::Visibility::All,
            &"Contoso-MDE".parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(by_name, created);

    let dup = store
        .create_integration(&new_integration("CONTOSO-mde"))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    assert!(dup.to_string().contains("already exists"), "{dup}");

    integration(&store, "alpha").await;
    let names: Vec<String> = store
        .list_integrations(&rampart_store::Visibility::All)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name.to_string())
        .collect();
    assert_eq!(names, ["alpha", "contoso-mde"]);

    let secret = store.integration_secret(created.id).await.unwrap();
    assert_eq!(secret.ciphertext, vec![1, 2, 3, 0, 255]);
    assert_eq!(secret.nonce, vec![9; 24]);

    let missing = store
        .get_integration_by_name(&rampart_store::Visibility::All, &"nope".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)));
    assert!(missing.to_string().contains("rampart integration list"));
    assert!(matches!(
        store
            .get_integration(&rampart_store::Visibility::All, IntegrationId(999_999))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn update_and_rename_conflict(store: Arc<dyn Store>) {
    let a = integration(&store, "a").await;
    integration(&store, "b").await;
    let updated = store
        .update_integration(
            a.id,
            &IntegrationUpdate {
                name: Some("a-renamed".parse().unwrap()),
                cloud: Some(Cloud::GccHigh),
                secret: Some((
                    SecretCiphertext {
                        ciphertext: vec![42; 40],
                        nonce: vec![1; 24],
                    },
                    SecretHint {
                        last4: "zz99".into(),
                        expires_on: None,
                    },
                )),
                api_url: Some(None),
                login_url: Some(Some("https://login.example".into())),
                schedule_minutes: Some(60),
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name.as_str(), "a-renamed");
    assert_eq!(updated.cloud, Cloud::GccHigh);
    assert_eq!(updated.secret_hint.last4, "zz99");
    assert_eq!(updated.secret_hint.expires_on, None);
    assert_eq!(updated.api_url, None);
    assert_eq!(updated.login_url.as_deref(), Some("https://login.example"));
    assert_eq!(updated.schedule_minutes, 60);
    assert!(!updated.enabled);
    assert_eq!(updated.tenant_id, a.tenant_id);
    assert_eq!(updated.created_at, a.created_at);
    assert_eq!(
        store.integration_secret(a.id).await.unwrap().ciphertext,
        vec![42; 40]
    );

    // An update without a secret keeps the secret.
    store
        .update_integration(
            a.id,
            &IntegrationUpdate {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.integration_secret(a.id).await.unwrap().ciphertext,
        vec![42; 40]
    );

    let clash = store
        .update_integration(
            a.id,
            &IntegrationUpdate {
                name: Some("B".parse().unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(clash, StoreError::Conflict(_)), "{clash:?}");
    assert_eq!(
        store
            .get_integration(&rampart_store::Visibility::All, a.id)
            .await
            .unwrap()
            .name
            .as_str(),
        "a-renamed"
    );
    assert!(matches!(
        store
            .update_integration(IntegrationId(424_242), &IntegrationUpdate::default())
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn delete_removes_its_data_only(store: Arc<dyn Store>) {
    let keep = integration(&store, "keep").await;
    let gone = integration(&store, "gone").await;
    for i in [&keep, &gone] {
        let run = store.start_run(i.id, "full", t(0)).await.unwrap();
        store
            .upsert_assets(i.id, run, &(0..5).map(asset).collect::<Vec<_>>())
            .await
            .unwrap();
        store
            .upsert_findings(i.id, run, &findings(5, 4))
            .await
            .unwrap();
        store.set_sync_state(i.id, "cursor", "x").await.unwrap();
    }
    store.delete_integration(gone.id).await.unwrap();

    assert!(matches!(
        store
            .get_integration(&rampart_store::Visibility::All, gone.id)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        all_assets(
            &store,
            AssetFilter {
                integration: Some(gone.id),
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );
    assert_eq!(
        all_findings(&store, FindingFilter::default()).await.len(),
        20
    );
    assert_eq!(
        all_assets(&store, AssetFilter::default()).await.len(),
        5,
        "the other integration keeps its assets"
    );
    assert!(
        store
            .list_runs(&rampart_store::Visibility::All, gone.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .list_runs(&rampart_store::Visibility::All, keep.id, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.get_sync_state(gone.id, "cursor").await.unwrap(), None);
    assert!(matches!(
        store.delete_integration(gone.id).await,
        Err(StoreError::NotFound(_))
    ));
    // The name is free again.
    integration(&store, "gone").await;
}

async fn sync_state_and_audit_log(store: Arc<dyn Store>) {
    let i = integration(&store, "state").await;
    assert_eq!(
        store.get_sync_state(i.id, "last_delta").await.unwrap(),
        None
    );
    store
        .set_sync_state(i.id, "last_delta", "2026-01-01T00:00:00Z")
        .await
        .unwrap();
    store
        .set_sync_state(i.id, "last_delta", "2026-01-02T00:00:00Z")
        .await
        .unwrap();
    assert_eq!(
        store
            .get_sync_state(i.id, "last_delta")
            .await
            .unwrap()
            .as_deref(),
        Some("2026-01-02T00:00:00Z")
    );
    assert!(matches!(
        store.set_sync_state(IntegrationId(987_654), "k", "v").await,
        Err(StoreError::NotFound(_))
    ));

    for (n, action) in ["integration.create", "integration.test"]
        .into_iter()
        .enumerate()
    {
        store
            .record_audit(&NewAuditEntry {
                at: t(n as i64),
                actor: "admin".into(),
                action: action.into(),
                target: Some("state".into()),
                details: Some(r#"{"cloud":"commercial"}"#.into()),
            })
            .await
            .unwrap();
    }
    let log = store.list_audit(10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].action, "integration.test", "newest first");
    assert_eq!(log[1].at, t(0));
    assert_eq!(log[1].details.as_deref(), Some(r#"{"cloud":"commercial"}"#));
}
