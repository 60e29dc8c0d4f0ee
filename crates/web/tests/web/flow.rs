//! The portal's main flow over HTTP: add an integration with a wrong secret, test, fix, test,
//! sync, then browse, filter, paginate and download.

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn add_test_fix_sync_and_browse() {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let id = app
        .add_integration(
            &mut admin,
            "contoso",
            "Wr0ng~secret~value~that~is~long~enough",
        )
        .await;
    let page = admin.get(&format!("/integrations/{id}?notice=saved")).await;
    assert!(page.body.contains("Saved."));
    assert!(page.body.contains("••••ough"), "only the hint shows");

    let report = admin
        .post(&format!("/integrations/{id}/test"), &[] as &[(&str, &str)])
        .await;
    assert_eq!(report.status, StatusCode::OK);
    assert!(
        report.body.contains("Connection test: failed"),
        "{}",
        report.body
    );
    assert!(
        report.body.contains("The client secret is wrong."),
        "{}",
        report.body
    );
    assert!(
        report.body.contains("Fix: In Microsoft Entra"),
        "{}",
        report.body
    );

    // Correct it (everything else unchanged), test again.
    let mut form = app.integration_form("contoso", &app.sim_config.client_secret);
    form.retain(|(k, _)| *k != "secret_expires");
    form.push(("secret_expires", "2099-01-01".into()));
    let saved = admin.post(&format!("/integrations/{id}"), &form).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let report = admin
        .post(&format!("/integrations/{id}/test"), &[] as &[(&str, &str)])
        .await;
    assert!(
        report.body.contains("Connection test: all steps passed"),
        "{}",
        report.body
    );
    assert_eq!(
        report.body.matches("<span class=\"mark\">✓</span>").count(),
        5
    );

    let sync = admin
        .post(&format!("/integrations/{id}/sync"), &[] as &[(&str, &str)])
        .await;
    assert_eq!(sync.status, StatusCode::SEE_OTHER);
    assert_eq!(app.wait_for_run(id).await, "succeeded");
    let page = admin.get(&format!("/integrations/{id}")).await;
    assert!(page.body.contains("run-succeeded"));
    let counts = app
        .store
        .counts(&rampart_store::Visibility::All, None)
        .await
        .unwrap();
    assert!(counts.assets_active >= 40, "{counts:?}");
    assert!(
        page.body
            .contains(&format!("{} read", counts.assets_active)),
        "{}",
        page.body
    );

    // Data pages.
    let assets = admin.get("/assets?limit=15").await;
    assert_eq!(
        assets.body.matches("<tr><td><a href=\"/assets/").count(),
        15
    );
    let next = assets.body.split("id=\"next-page\"").next().unwrap();
    let href = next
        .rsplit("href=\"?")
        .next()
        .unwrap()
        .trim_end_matches("\" ");
    let page2 = admin
        .get(&format!(
            "/assets?{}",
            href.replace("&#38;", "&").replace("&amp;", "&")
        ))
        .await;
    assert_eq!(page2.status, StatusCode::OK);
    assert!(page2.body.contains("id=\"first-page\""));
    assert_ne!(assets.body, page2.body);

    let dash = admin.get("/").await;
    let shown = format!("id=\"assets-active\">{}<", counts.assets_active);
    assert!(dash.body.contains(&shown), "{}", dash.body);
    assert!(
        dash.body
            .contains("<svg class=\"chart\" id=\"severity-chart\"")
    );

    let vulns = admin
        .get("/vulnerabilities?exposed=true&min_severity=high")
        .await;
    assert!(vulns.body.contains("href=\"/vulnerabilities/CVE-"));
    assert!(!vulns.body.contains(">low<"));
    let cve = vulns.body.split("href=\"/vulnerabilities/").nth(1).unwrap();
    let cve = &cve[..cve.find('"').unwrap()];
    let detail = admin.get(&format!("/vulnerabilities/{cve}")).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(detail.body.contains("Affected assets"));

    let findings = admin
        .get("/findings?status=open&min_severity=critical")
        .await;
    assert!(findings.body.contains("class=\"sev-critical\""));
    assert!(!findings.body.contains("class=\"sev-low\""));
    let csv = admin.get("/findings.csv?status=open").await;
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(csv.body.starts_with("integration,source,asset_source_id"));
    assert!(csv.body.lines().count() > 40);

    let windows = admin.get("/assets.csv?platform=Windows11").await;
    for line in windows.body.lines().skip(1) {
        assert!(line.contains(",Windows11,"), "{line}");
    }
    let audit = admin.get("/audit").await;
    for action in [
        "integration.create",
        "integration.update",
        "integration.test",
        "integration.sync",
        "user.login",
    ] {
        assert!(audit.body.contains(action), "{action} is audited");
    }
}

#[tokio::test]
async fn form_errors_are_shown_next_to_the_form() {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let mut form = app.integration_form("bad name!", "secret-value-abcdef");
    form.retain(|(k, _)| *k != "tenant_id");
    form.push(("tenant_id", "not-a-guid".into()));
    let p = admin.post("/integrations", &form).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("id=\"form-errors\""));
    assert!(p.body.contains("Tenant ID"));
    assert!(p.body.contains("Name"));
    // The typed secret is not sent back.
    assert!(!p.body.contains("secret-value-abcdef"));
    // A secret expiring soon is flagged.
    let id = app
        .add_integration(&mut admin, "soon", "secret-value-abcdef")
        .await;
    let mut form = app.integration_form("soon", "");
    let soon = (chrono::Utc::now().date_naive() + chrono::Duration::days(10)).to_string();
    form.retain(|(k, _)| *k != "secret_expires");
    form.push(("secret_expires", soon));
    admin.post(&format!("/integrations/{id}"), &form).await;
    let page = admin.get(&format!("/integrations/{id}")).await;
    assert!(page.body.contains("expires in 10 days"), "{}", page.body);
    assert!(page.body.contains("••••cdef"), "the secret was kept");
}
