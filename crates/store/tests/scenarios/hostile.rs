//! Whatever Microsoft's API (or an attacker who named a device) sends comes back byte for byte.

use std::sync::Arc;

use rampart_store::{AssetFilter, FindingFilter, NewAuditEntry, Store};

use crate::support::*;

scenarios!(hostile_strings_round_trip, nul_is_replaced_on_both_backends);

fn hostile() -> Vec<String> {
    vec![
        "<script>alert('x')</script>".into(),
        r#"Robert'); DROP TABLE findings;--"#.into(),
        r#""quoted" 'single' `back`"#.into(),
        "back\\slash \\N \\t \\\\ end\\".into(),
        "tab\there\nnew line\r\ncarriage".into(),
        "50% off_sale [a-z] ^$ .*".into(),
        "ünïcödé — 中文 — العربية — 🦀🔥 — e\u{301}".into(),
        "\u{202e}evil-rtl\u{202c}".into(),
        "\u{1}\u{7}\u{1b}[31m control".into(),
        "x".repeat(10_000),
        "ä".repeat(5_000),
        String::new(),
        " leading and trailing ".into(),
    ]
}

async fn hostile_strings_round_trip(store: Arc<dyn Store>) {
    let i = integration(&store, "hostile").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    let words = hostile();
    let assets: Vec<_> = words
        .iter()
        .enumerate()
        .map(|(n, w)| {
            let mut a = asset(n);
            a.source_id = format!("{w}#{n}");
            a.name = Some(w.clone());
            a.os_version = Some(w.clone());
            a.tags = vec![w.clone(), "plain".into()];
            a.ip_addresses = vec![w.clone()];
            a.rbac_group_name = Some(w.clone());
            a
        })
        .collect();
    store.upsert_assets(i.id, run, &assets).await.unwrap();
    let findings: Vec<_> = words
        .iter()
        .enumerate()
        .map(|(n, w)| {
            let mut f = finding(n, n);
            f.key.asset_source_id = format!("{w}#{n}");
            f.key.software_vendor = w.clone();
            f.key.software_name = format!("{w}-name");
            f.key.software_version = w.clone();
            f.exploitability = Some(w.clone());
            f.recommended_update = Some(w.clone());
            f.recommendation_reference = Some(w.clone());
            f.asset_name = Some(w.clone());
            f
        })
        .collect();
    let c = store.upsert_findings(i.id, run, &findings).await.unwrap();
    assert_eq!(c.new, words.len() as u64);
    // Identical again: the comparison of hostile values is exact too.
    let c = store.upsert_findings(i.id, run, &findings).await.unwrap();
    assert_eq!(c.unchanged, words.len() as u64);

    let stored = all_assets(&store, AssetFilter::default()).await;
    assert_eq!(stored.len(), words.len());
    for (s, a) in stored.iter().zip(&assets) {
        assert_eq!(&s.asset, a);
    }
    let stored = all_findings(&store, FindingFilter::default()).await;
    for (s, f) in stored.iter().zip(&findings) {
        assert_eq!(s.finding.key, f.key);
        assert_eq!(s.finding.exploitability, f.exploitability);
        assert_eq!(s.finding.recommended_update, f.recommended_update);
        assert_eq!(
            s.finding.recommendation_reference,
            f.recommendation_reference
        );
        assert_eq!(s.finding.asset_name, f.asset_name);
    }

    // Searching for hostile text finds it literally.
    for (n, w) in words
        .iter()
        .enumerate()
        .filter(|(_, w)| w.len() < 100 && !w.trim().is_empty())
    {
        let hits = all_assets(
            &store,
            AssetFilter {
                search: Some(format!("{w}#{n}")),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(hits.len(), 1, "search for {w:?}");
    }

    // Integration-side strings and audit details too.
    let mut new = new_integration("hostile-2");
    new.api_url = Some(words[0].clone());
    new.login_url = Some(words[4].clone());
    let created = store.create_integration(&new).await.unwrap();
    let back = store
        .get_integration(&rampart_store::Visibility::All, created.id)
        .await
        .unwrap();
    assert_eq!(back.api_url, new.api_url);
    assert_eq!(back.login_url, new.login_url);
    store
        .set_sync_state(i.id, &words[3], &words[6])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_sync_state(i.id, &words[3])
            .await
            .unwrap()
            .as_deref(),
        Some(words[6].as_str())
    );
    store
        .record_audit(&NewAuditEntry {
            at: t(0),
            actor: words[1].clone(),
            action: "integration.create".into(),
            target: Some(words[2].clone()),
            details: Some(words[9].clone()),
        })
        .await
        .unwrap();
    let log = store.list_audit(1).await.unwrap();
    assert_eq!(log[0].actor, words[1]);
    assert_eq!(log[0].details.as_deref(), Some(words[9].as_str()));
}

async fn nul_is_replaced_on_both_backends(store: Arc<dyn Store>) {
    let i = integration(&store, "nul").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    let mut a = asset(1);
    a.name = Some("a\0b".into());
    store.upsert_assets(i.id, run, &[a]).await.unwrap();
    let mut f = finding(1, 1);
    f.key.software_name = "nul\0name".into();
    store
        .upsert_findings(i.id, run, &[f.clone()])
        .await
        .unwrap();
    // The same key with the NUL is the same finding.
    let again = store.upsert_findings(i.id, run, &[f]).await.unwrap();
    assert_eq!(again.unchanged, 1);
    // Two spellings that store the same are one key, also within one batch.
    let mut twin = finding(1, 1);
    twin.key.software_name = "nul\u{FFFD}name".into();
    let mut twin2 = twin.clone();
    twin2.key.software_name = "nul\0name".into();
    let c = store
        .upsert_findings(i.id, run, &[twin, twin2])
        .await
        .unwrap();
    assert_eq!(c.total(), 1);
    let stored = all_assets(&store, AssetFilter::default()).await;
    assert_eq!(stored[0].asset.name.as_deref(), Some("a\u{FFFD}b"));
    let stored = all_findings(&store, FindingFilter::default()).await;
    assert_eq!(stored[0].finding.key.software_name, "nul\u{FFFD}name");
}
