//! The generated tenant: determinism, density, change over time, compression of responses.

use std::collections::BTreeSet;
use std::io::Read;

use rampart_sim::{Sim, SimConfig};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{App, read_body, small_config, values};

fn sim(seed: u64) -> Sim {
    Sim::new(SimConfig {
        seed,
        ..small_config()
    })
    .unwrap()
}

#[test]
fn identical_seeds_give_identical_tenants_and_different_seeds_differ() {
    let (a, b, c) = (sim(5), sim(5), sim(6));
    assert_eq!(values(a.truth().machines()), values(b.truth().machines()));
    assert_eq!(values(a.truth().findings()), values(b.truth().findings()));
    a.tick(3);
    b.tick(3);
    assert_eq!(values(a.truth().findings()), values(b.truth().findings()));
    assert_ne!(
        values(sim(5).truth().machines()),
        values(c.truth().machines())
    );
    assert_ne!(
        values(sim(5).truth().findings()),
        values(c.truth().findings())
    );
}

#[test]
fn findings_per_device_average_near_the_configuration() {
    let s = Sim::new(SimConfig {
        devices: 300,
        findings_per_device: 60,
        ..SimConfig::default()
    })
    .unwrap();
    let truth = s.truth();
    let onboarded = truth
        .machines()
        .filter(|m| m.onboarding_status == "Onboarded" && !m.is_potential_duplication)
        .count();
    let findings: Vec<_> = truth.findings().collect();
    let avg = findings.len() as f64 / onboarded as f64;
    assert!((45.0..75.0).contains(&avg), "{avg}");
    let per_device: std::collections::BTreeMap<&str, usize> =
        findings.iter().fold(Default::default(), |mut m, f| {
            *m.entry(f.device_id.as_str()).or_default() += 1;
            m
        });
    let (min, max) = (
        per_device.values().min().unwrap(),
        per_device.values().max().unwrap(),
    );
    assert!(*max > 2 * *min, "variance between devices: {min}..{max}");
    let severities: BTreeSet<&str> = findings
        .iter()
        .map(|f| f.vulnerability_severity_level.as_str())
        .collect();
    assert_eq!(severities.len(), 4);
    let exploit = |l: &str| {
        findings
            .iter()
            .filter(|f| f.exploitability_level == l)
            .count()
    };
    assert!(exploit("NoExploit") > findings.len() / 2);
    assert!(
        exploit("ExploitIsPublic") > 0
            && exploit("ExploitIsVerified") > 0
            && exploit("ExploitIsInKit") > 0
    );
}

#[test]
fn time_fixes_some_findings_adds_others_and_moves_devices() {
    let s = sim(3);
    let ids = |s: &Sim| -> BTreeSet<String> { s.truth().findings().map(|f| f.id).collect() };
    let devices = |s: &Sim| -> BTreeSet<String> { s.truth().machines().map(|m| m.id).collect() };
    let (f0, d0) = (ids(&s), devices(&s));
    s.tick(1);
    let f1 = ids(&s);
    let fixed = f0.difference(&f1).count() as f64 / f0.len() as f64;
    let new = f1.difference(&f0).count() as f64 / f0.len() as f64;
    assert!((0.005..0.08).contains(&fixed), "fixed per tick {fixed}");
    assert!(new > 0.005, "new per tick {new}");
    s.tick(40);
    let d41 = devices(&s);
    assert!(d0.difference(&d41).count() > 0, "some devices left");
    assert!(d41.difference(&d0).count() > 0, "some devices joined");
    assert_eq!(s.truth().tick(), 41);
    assert_eq!(s.truth().time().to_rfc3339(), "2026-11-11T06:00:00+00:00");
}

#[test]
fn configuration_is_validated_with_clear_messages() {
    for (config, field) in [
        (
            SimConfig {
                tenant_id: "contoso".into(),
                ..SimConfig::default()
            },
            "tenant_id",
        ),
        (
            SimConfig {
                client_id: "{00000000-0000-4000-8000-000000000002}".into(),
                ..SimConfig::default()
            },
            "client_id",
        ),
        (
            SimConfig {
                fault_rate: -0.1,
                ..SimConfig::default()
            },
            "fault_rate",
        ),
        (
            SimConfig {
                client_secret: String::new(),
                ..SimConfig::default()
            },
            "client_secret",
        ),
    ] {
        let err = Sim::new(config).unwrap_err().to_string();
        assert!(err.contains(field), "{err}");
    }
}

async fn raw_get(app: &App, token: &str, accept: Option<&str>) -> crate::helpers::Reply {
    let client = reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .no_deflate()
        .build()
        .unwrap();
    let mut req = client
        .get(format!("{}/api/machines?$top=50", app.url()))
        .bearer_auth(token);
    if let Some(a) = accept {
        req = req.header("accept-encoding", a);
    }
    read_body(req.send().await.unwrap()).await.unwrap()
}

#[tokio::test]
async fn responses_are_compressed_when_offered_and_decode_to_the_same_json() {
    let app = App::small().await;
    let token = app.token().await;
    let plain = raw_get(&app, &token, None).await;
    assert!(plain.headers.get("content-encoding").is_none());
    let want: Value = plain.json();
    assert_eq!(plain.headers["odata-version"], "4.0");
    assert!(
        plain.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json; odata.metadata=minimal")
    );

    let deflated = raw_get(&app, &token, Some("deflate")).await;
    assert_eq!(deflated.headers["content-encoding"], "deflate");
    let mut text = String::new();
    flate2::read::ZlibDecoder::new(&deflated.body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), want);

    let gzipped = raw_get(&app, &token, Some("gzip")).await;
    assert_eq!(gzipped.headers["content-encoding"], "gzip");
    assert_eq!(
        serde_json::from_str::<Value>(&crate::helpers::gunzip(&gzipped.body)).unwrap(),
        want
    );

    let identity = raw_get(&app, &token, Some("identity, gzip;q=0")).await;
    assert!(identity.headers.get("content-encoding").is_none());

    // A client that decompresses transparently (reqwest with gzip+deflate) sees plain JSON.
    let auto = app.get("/api/machines?$top=50", &token).await;
    assert_eq!(auto.status, StatusCode::OK);
    assert_eq!(auto.json(), want);

    app.running.sim.set_compression(false);
    assert!(
        raw_get(&app, &token, Some("deflate, gzip"))
            .await
            .headers
            .get("content-encoding")
            .is_none()
    );
}
