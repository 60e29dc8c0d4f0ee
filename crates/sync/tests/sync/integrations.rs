//! The integration use cases the CLI, the portal and the API share, against the emulator.

use std::sync::Arc;

use rampart_model::Cloud;
use rampart_sim::SimConfig;
use rampart_store::Store;
use rampart_sync::Engine;
use rampart_sync::integrations::{
    InputProblem, IntegrationError, IntegrationInput, Integrations, SecretProblem, SyncNow,
};
use rampart_sync::vault::Vault;
use secrecy::SecretString;

use crate::harness::test_options;

fn problems(result: Result<impl std::fmt::Debug, IntegrationError>) -> Vec<InputProblem> {
    match result {
        Err(IntegrationError::Invalid(e)) => e.0,
        other => panic!("expected the input to be refused, got {other:?}"),
    }
}

async fn no_integrations(store: &Arc<dyn Store>) -> bool {
    store
        .list_integrations(&rampart_store::Visibility::All)
        .await
        .expect("integrations")
        .is_empty()
}

pub async fn the_integration_use_cases_check_seal_test_and_audit_for_every_surface(
    store: Arc<dyn Store>,
) {
    let sim = rampart_sim::spawn(SimConfig {
        devices: 3,
        findings_per_device: 2,
        ..SimConfig::default()
    })
    .await
    .expect("sim starts");
    let config = sim.sim.config().clone();
    let engine = Engine::new(
        Arc::clone(&store),
        Vault::from_key(&[5u8; 32]),
        test_options(),
    );
    let service = Integrations::new(&engine);
    let input = |secret: &str| IntegrationInput {
        name: "contoso".into(),
        product: "endpoint".into(),
        cloud: String::new(),
        tenant_id: config.tenant_id.clone(),
        client_id: config.client_id.clone(),
        client_secret: Some(SecretString::from(secret.to_owned())),
        login_url: sim.url.clone(),
        api_url: sim.url.clone(),
        enabled: true,
        ..IntegrationInput::default()
    };

    // Defender for Endpoint where Microsoft documents no API for it, and no API URL of its own.
    let china = IntegrationInput {
        cloud: "china".into(),
        api_url: String::new(),
        ..input(&config.client_secret)
    };
    assert_eq!(
        problems(service.add(&china, "alice").await),
        vec![InputProblem::NoEndpointApi(Cloud::China)]
    );
    assert_eq!(
        problems(service.add(&input("\r\n"), "alice").await),
        vec![InputProblem::Secret(SecretProblem::Empty)]
    );
    assert!(no_integrations(&store).await);

    let added = service
        .add(&input(&format!("{}\n", config.client_secret)), "alice")
        .await
        .expect("added");
    let taken = problems(service.add(&input(&config.client_secret), "alice").await);
    assert!(
        matches!(&taken[..], [InputProblem::Refused(m)] if m.contains("contoso")),
        "{taken:?}"
    );

    // A rename keeps the secret (sealed again to the new name): the connection test still passes.
    let rename = IntegrationInput {
        name: "contoso-renamed".into(),
        client_secret: None,
        ..input("")
    };
    let renamed = service
        .update(&added, &rename, "alice")
        .await
        .expect("renamed");
    let report = service.test(&renamed, "alice").await.expect("tested");
    assert!(report.passed(), "{report}");

    // Sending the stored secret to another server needs the secret again.
    let elsewhere = IntegrationInput {
        api_url: "https://collector.example.net".into(),
        ..rename
    };
    let moved = problems(service.update(&renamed, &elsewhere, "alice").await);
    assert!(
        matches!(&moved[..], [InputProblem::Field { label: "Client secret", message }]
            if message.contains("API URL")),
        "{moved:?}"
    );

    assert_eq!(
        service.sync_now(&renamed, "alice").await.expect("queued"),
        SyncNow::Queued
    );
    service.remove(&renamed, "alice").await.expect("removed");
    assert!(no_integrations(&store).await);

    let mut audit = store.list_audit(20).await.expect("audit");
    audit.reverse();
    let seen: Vec<(&str, &str, Option<&str>)> = audit
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_deref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("alice", "integration.create", Some("contoso")),
            ("alice", "integration.update", Some("contoso-renamed")),
            ("alice", "integration.test", Some("contoso-renamed")),
            ("alice", "integration.sync", Some("contoso-renamed")),
            ("alice", "integration.delete", Some("contoso-renamed")),
        ]
    );
    assert_eq!(
        audit[0].details.as_deref(),
        Some(
            format!(
                "product endpoint, cloud commercial, tenant {}, client {}, every 360 min, enabled",
                config.tenant_id, config.client_id
            )
            .as_str()
        )
    );
    assert_eq!(audit[2].details.as_deref(), Some("passed"));
    for e in &audit {
        let details = e.details.as_deref().unwrap_or_default();
        assert!(!details.contains(&config.client_secret), "{details}");
    }
}
