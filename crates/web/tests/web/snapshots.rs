//! Snapshots (insta, under `tests/snapshots`): the OpenAPI document, validated first; the main
//! content of key pages rendered over fixed data; and the SVG charts. Times, form tokens and
//! other values that change from run to run are redacted.
//!
//! After an intended change: `INSTA_UPDATE=always cargo test -p rampart-web --test web snapshots`
//! and review the diff of `tests/snapshots` before committing.

use std::collections::HashSet;

use crate::fixtures::*;
use crate::helpers::*;

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("../snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.add_filter(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "[time]");
    s.add_filter(
        r#"name="csrf_token" value="[^"]*""#,
        r#"name="csrf_token" value="[csrf]""#,
    );
    s.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[rfc3339]");
    s.add_filter(r#""version": "[^"]+""#, r#""version": "[version]""#);
    s
}

/// The page's `<main>` element: what the page shows, without the frame.
fn main_of(body: &str) -> String {
    let start = body.find("<main").expect("a <main> element");
    let end = body.find("</main>").expect("a </main>") + "</main>".len();
    body[start..end].to_owned()
}

/// Every `<svg …>…</svg>` with this class.
fn charts(body: &str, class: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("<svg") {
        let end = i + rest[i..].find("</svg>").unwrap() + "</svg>".len();
        let svg = &rest[i..end];
        if svg[..svg.find('>').unwrap()].contains(class) {
            out.push(svg.to_owned());
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn openapi_document_is_valid_and_stable() {
    let doc = rampart_web::openapi();
    let json = serde_json::to_string_pretty(&doc).unwrap();
    let spec = oas3::from_json(&json).expect("the document parses as OpenAPI 3.1");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    let mut ids = HashSet::new();
    let mut operations = 0;
    for (path, method, op) in spec.operations() {
        operations += 1;
        let what = format!("{method} {path}");
        assert!(!op.tags.is_empty(), "{what} has no tag");
        if let Some(id) = &op.operation_id {
            assert!(ids.insert(id.clone()), "{what}: operation id {id} twice");
        }
        let responses = op.responses.as_ref().expect("responses");
        assert!(
            responses.keys().any(|code| code.starts_with('2')),
            "{what} documents no success"
        );
        for (code, r) in responses {
            let r = r
                .resolve(&spec)
                .unwrap_or_else(|e| panic!("{what} {code}: {e}"));
            for (mime, media) in &r.content {
                if let Some(schema) = &media.schema {
                    schema
                        .resolve(&spec)
                        .unwrap_or_else(|e| panic!("{what} {code} {mime}: {e}"));
                }
            }
            if code != "204" && code.starts_with('2') {
                assert!(!r.content.is_empty(), "{what} {code} has no body schema");
            }
            if code.starts_with('4') {
                assert!(
                    r.content.contains_key("application/json")
                        || r.content.contains_key("application/problem+json"),
                    "{what} {code} is not a problem"
                );
            }
        }
        // Every {parameter} of the path is declared as a path parameter.
        let params = op.parameters(&spec).unwrap();
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(|c| c == '{' || c == '}');
            assert!(
                params
                    .iter()
                    .any(|p| p.name == name && matches!(p.location, oas3::spec::ParameterIn::Path)),
                "{what}: {{{name}}} is not declared"
            );
        }
    }
    assert_eq!(operations, 35);
    // Every schema reference anywhere in the document resolves.
    let components = &doc.components.as_ref().unwrap().schemas;
    for (i, _) in json.match_indices("#/components/schemas/") {
        let name: String = json[i + 21..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        assert!(components.contains_key(&name), "{name} is not defined");
    }
    settings().bind(|| insta::assert_snapshot!("openapi", json));
}

#[tokio::test]
async fn pages_over_fixed_data() {
    let app = spawn_app().await;
    let estate = seed_cloud(&app).await;
    let mut viewer = app.signed_in(VIEWER).await;
    for (name, path) in [
        ("page_dashboard", "/".to_owned()),
        (
            "page_assets_by_open_findings",
            "/assets?sort=-open_findings".into(),
        ),
        (
            "page_asset_device",
            format!("/assets/{}", estate.device_asset),
        ),
        ("page_asset_vm", format!("/assets/{}", estate.vm_asset)),
        ("page_posture", "/posture".into()),
        (
            "page_posture_sandbox",
            format!("/posture?status=any&subscription={SUB_B}"),
        ),
    ] {
        let page = viewer.get(&path).await;
        assert_eq!(page.status, reqwest::StatusCode::OK, "{path}");
        settings().bind(|| insta::assert_snapshot!(name, main_of(&page.body)));
    }
    let dashboard = viewer.get("/").await.body;
    let posture = viewer.get("/posture").await.body;
    let severity = charts(&dashboard, "id=\"severity-chart\"");
    let trend = charts(&posture, "score-trend");
    assert_eq!((severity.len(), trend.len()), (1, 1));
    settings().bind(|| {
        insta::assert_snapshot!("chart_severity", severity[0]);
        insta::assert_snapshot!("chart_secure_score_trend", trend[0]);
    });
}
