//! `export posture` after a Cloud sync: the record types, 0–100 scores, the weighted tenant
//! score, and OCSF Compliance Findings for recommendations.

use crate::Env;

pub fn assert_posture_exports(env: &Env) {
    let truth = env.sim.sim.truth();
    let jsonl = env.run(&["export", "posture", "--format", "jsonl"], None);
    assert_eq!(jsonl.code, 0, "{jsonl:?}");
    let rows: Vec<serde_json::Value> = jsonl
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let of = |t: &str| rows.iter().filter(|r| r["record_type"] == t).count();
    assert_eq!(of("tenant"), 1, "{}", jsonl.stdout);
    assert_eq!(of("score"), truth.secure_scores().len());
    assert_eq!(of("control"), truth.score_controls().len());
    assert_eq!(of("recommendation"), truth.cloud_assessments().len());
    let tenant = rows
        .iter()
        .find(|r| r["record_type"] == "tenant")
        .expect("tenant row");
    let percent = tenant["score_percent"].as_f64().expect("percent");
    let want = truth.tenant_score_percent().expect("tenant score");
    assert!((percent - want).abs() < 1e-6, "{percent} vs {want}");
    // Issue 11 item 12a: each recommendation row carries Microsoft's risk, exactly as sent.
    let risks: std::collections::BTreeMap<String, (serde_json::Value, serde_json::Value)> = rows
        .iter()
        .filter(|r| r["record_type"] == "recommendation")
        .map(|r| {
            (
                r["assessment_id"].as_str().unwrap_or_default().to_owned(),
                (r["risk_level"].clone(), r["attack_paths"].clone()),
            )
        })
        .collect();
    for a in truth.cloud_assessments() {
        let want = match &a.risk {
            Some(k) => (
                serde_json::json!(k.level),
                serde_json::json!(k.attack_paths),
            ),
            None => (serde_json::Value::Null, serde_json::json!([])),
        };
        assert_eq!(
            risks.get(&a.id.to_ascii_lowercase()),
            Some(&want),
            "{}",
            a.id
        );
    }
    assert!(truth.cloud_assessments().iter().any(|a| a.risk.is_some()));
    for r in rows.iter().filter(|r| r["record_type"] == "score") {
        let p = r["score_percent"].as_f64().expect("percent");
        assert!(p > 1.0 && p <= 100.0, "scores are 0–100: {r}");
    }

    let csv = env.run(&["export", "posture", "--format", "csv"], None);
    assert_eq!(csv.code, 0, "{csv:?}");
    assert!(
        csv.stdout
            .starts_with("record_type,integration,subscription_id,")
    );
    assert!(
        csv.stdout
            .lines()
            .next()
            .unwrap_or_default()
            .ends_with(",resolved_at,risk_level,risk_factors,attack_paths")
    );
    assert_eq!(csv.stdout.lines().count() - 1, rows.len());

    let ocsf = env.run(&["export", "posture", "--format", "ocsf"], None);
    assert_eq!(ocsf.code, 0, "{ocsf:?}");
    let events: Vec<serde_json::Value> = ocsf
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(events.len(), truth.cloud_assessments().len());
    assert!(events.iter().all(|e| e["class_uid"] == 2003));
    let failing = truth
        .cloud_assessments()
        .iter()
        .filter(|a| a.status == "Unhealthy")
        .count();
    assert_eq!(
        events
            .iter()
            .filter(|e| e["compliance"]["status"] == "Fail")
            .count(),
        failing
    );
    assert!(ocsf.stderr.contains("left out"), "{ocsf:?}");
}
