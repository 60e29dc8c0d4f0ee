//! The whole flow of an administrator, and the messages of each credential problem.

use rampart_sim::SimConfig;

use crate::{DEMO_SECRET, Env, Run, run};

fn small() -> SimConfig {
    SimConfig {
        devices: 60,
        findings_per_device: 10,
        ..SimConfig::default()
    }
}

fn assert_no_secret(runs: &[&Run], secret: &str) {
    for run in runs {
        assert!(!run.all().contains(secret), "the secret leaked: {run:?}");
    }
}

#[test]
fn add_test_sync_export_remove_and_the_secret_never_shows() {
    let env = Env::new(small());
    let add = env.add(
        "contoso",
        &format!("{DEMO_SECRET}\n"),
        &["--secret-expires", "2099-01-31"],
    );
    assert_eq!(add.code, 0, "{add:?}");
    assert!(add.stdout.contains("••••0001"), "{add:?}");

    let list = env.run(&["integration", "list"], None);
    assert_eq!(list.code, 0, "{list:?}");
    assert!(
        list.stdout.contains("contoso") && list.stdout.contains("2099-01-31"),
        "{list:?}"
    );

    let test = env.run(&["integration", "test", "contoso"], None);
    assert_eq!(test.code, 0, "{test:?}");
    assert_eq!(test.stdout.matches('✓').count(), 5, "{test:?}");

    let sync = env.run(&["sync", "contoso"], None);
    assert_eq!(sync.code, 0, "{sync:?}");
    assert!(sync.stdout.contains("succeeded"), "{sync:?}");

    let truth_findings = env.sim.sim.truth().findings().count();
    let truth_devices = env.sim.sim.truth().machines().count();

    let csv = env.run(&["export", "findings", "--format", "csv"], None);
    assert_eq!(csv.code, 0, "{csv:?}");
    let mut lines = csv.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(
            "integration,source,asset_source_id,asset_name,cve_id,software_vendor,software_name,software_version,severity,cvss,exploitability,recommended_update,status,first_seen,last_seen,fixed_at,priority,decision,due_at,sla_status,priority_factors"
        )
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), truth_findings);
    // Every finding is open after one sync: each has its priority, decision and due date, and
    // the factors end the line (quoted: the values hold commas).
    for row in &rows {
        assert!(
            row.contains(",\"decision=") && row.ends_with('"'),
            "no priority factors: {row}"
        );
        assert!(
            ["immediate", "out-of-cycle", "scheduled", "defer"]
                .iter()
                .any(|d| row.contains(&format!(",{d},"))),
            "no decision: {row}"
        );
    }

    let jsonl = env.run(&["export", "findings", "--format", "jsonl"], None);
    assert_eq!(jsonl.code, 0, "{jsonl:?}");
    let first: serde_json::Value =
        serde_json::from_str(jsonl.stdout.lines().next().expect("a line")).expect("json");
    assert_eq!(first["status"], "open");
    assert_eq!(first["source"], "defender-endpoint");
    assert!(first["priority"].as_f64().is_some(), "{first}");
    assert!(
        first["decision"].is_string() && first["due_at"].is_string(),
        "{first}"
    );
    assert!(first["sla_status"].is_string(), "{first}");
    assert!(
        first["priority_factors"]["exploitation"]["points"].is_u64(),
        "{first}"
    );
    let seen = first["first_seen"].as_str().expect("first_seen");
    assert!(
        seen.ends_with('Z') && seen.contains('T'),
        "not RFC 3339 UTC: {seen}"
    );

    let assets = env.run(&["export", "assets", "--format", "csv"], None);
    assert_eq!(assets.code, 0, "{assets:?}");
    assert!(assets.stdout.starts_with("integration,source,source_id,kind,name,os_platform,os_version,health_status,onboarding_status,exposure_level,risk_score,device_value,ip_addresses,tags,first_seen,last_seen,status,external_ip_address,known_from\n"));
    assert_eq!(assets.stdout.lines().count() - 1, truth_devices);

    let vulns = env.run(&["export", "vulnerabilities", "--format", "jsonl"], None);
    assert_eq!(vulns.code, 0, "{vulns:?}");
    assert!(vulns.stdout.lines().count() > 10);

    // The remediation plan: every open finding under one fix, ranked by the priority removed.
    let plan = env.run(&["export", "remediations", "--format", "csv"], None);
    assert_eq!(plan.code, 0, "{plan:?}");
    let mut lines = plan.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(
            "rank,fix,priority_removed,max_priority,findings,assets,overdue,immediate,cves,reference,link"
        )
    );
    assert!(
        lines.next().is_some_and(|l| l.starts_with("1,")),
        "{plan:?}"
    );
    let plan = env.run(&["export", "remediations", "--format", "jsonl"], None);
    assert_eq!(plan.code, 0, "{plan:?}");
    let fixes: Vec<serde_json::Value> = plan
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let closed: u64 = fixes
        .iter()
        .map(|f| f["findings"].as_u64().expect("findings"))
        .sum();
    assert_eq!(closed as usize, truth_findings);
    for pair in fixes.windows(2) {
        assert!(pair[0]["priority_removed"].as_f64() >= pair[1]["priority_removed"].as_f64());
    }
    let refused = env.run(&["export", "remediations", "--format", "ocsf"], None);
    assert_eq!(refused.code, 2, "{refused:?}");

    let ocsf = env.run(
        &[
            "export",
            "findings",
            "--format",
            "ocsf",
            "--integration",
            "contoso",
        ],
        None,
    );
    assert_eq!(ocsf.code, 0, "{ocsf:?}");
    let event: serde_json::Value =
        serde_json::from_str(ocsf.stdout.lines().next().expect("a line")).expect("json");
    assert_eq!(event["class_uid"], 2002);
    assert!(event["unmapped"]["priority"].as_f64().is_some(), "{event}");
    assert!(event["unmapped"]["decision"].is_string(), "{event}");
    assert!(
        event["unmapped"]["priority_factors"]["decision"]["value"].is_string(),
        "{event}"
    );

    let out = env.dir.path().join("posture.csv");
    let posture = env.run(
        &[
            "export",
            "posture",
            "--format",
            "csv",
            "--output",
            out.to_str().expect("path"),
        ],
        None,
    );
    assert_eq!(posture.code, 0, "{posture:?}");
    assert!(
        std::fs::read_to_string(&out)
            .expect("file")
            .starts_with("record_type,integration,subscription_id")
    );

    let again = env.add("contoso", DEMO_SECRET, &[]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("contoso"), "{again:?}");

    // At rest, the secret is not in the database file in plain text.
    let db = std::fs::read(env.db()).expect("db file");
    assert!(
        !db.windows(DEMO_SECRET.len())
            .any(|w| w == DEMO_SECRET.as_bytes())
    );

    let remove = env.run(&["integration", "remove", "contoso"], None);
    assert_eq!(
        remove.code, 2,
        "non-interactive removal needs --yes: {remove:?}"
    );
    let remove = env.run(&["integration", "remove", "contoso", "--yes"], None);
    assert_eq!(remove.code, 0, "{remove:?}");
    let gone = env.run(&["sync", "contoso"], None);
    assert_eq!(gone.code, 1, "{gone:?}");

    // The command line writes the audit log as the portal and the API do (one service), the
    // connection test included.
    let audit = env.runtime.block_on(async {
        let url = format!("sqlite://{}", env.db().display());
        let store = rampart_store::connect(&url).await.expect("store");
        store.list_audit(50).await.expect("audit")
    });
    let mut actions: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e.target.as_deref() == Some("contoso"))
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    actions.reverse();
    assert_eq!(
        actions,
        [
            ("cli", "integration.create"),
            ("cli", "integration.test"),
            ("cli", "integration.delete"),
        ]
    );

    assert_no_secret(
        &[
            &add, &list, &test, &sync, &csv, &jsonl, &assets, &vulns, &ocsf, &again, &remove, &gone,
        ],
        DEMO_SECRET,
    );
}

#[test]
fn each_credential_problem_gets_its_own_actionable_message() {
    let env = Env::new(small());
    let tenant = env.sim.sim.config().tenant_id.clone();
    let client = env.sim.sim.config().client_id.clone();
    let wrong_secret = "Xy8Q~wrong-secret-value-do-not-leak-42";
    let cases = [
        (
            "wrong-secret",
            tenant.as_str(),
            client.as_str(),
            wrong_secret,
            "AADSTS7000215",
            "Value",
        ),
        (
            "wrong-tenant",
            "11111111-2222-4333-8444-555555555555",
            client.as_str(),
            DEMO_SECRET,
            "AADSTS90002",
            "Directory (tenant) ID",
        ),
        (
            "wrong-client",
            tenant.as_str(),
            "66666666-7777-4888-9999-000000000000",
            DEMO_SECRET,
            "AADSTS700016",
            "Application (client) ID",
        ),
    ];
    let mut messages = Vec::new();
    for (name, t, c, s, code, hint) in cases {
        let add = env.add_product("endpoint", name, t, c, s, &[]);
        assert_eq!(add.code, 0, "{add:?}");
        let test = env.run(&["integration", "test", name], None);
        assert_eq!(test.code, 1, "{test:?}");
        assert!(
            test.stdout.contains(code) && test.stdout.contains(hint),
            "{test:?}"
        );
        let sync = env.run(&["sync", name], None);
        assert_eq!(sync.code, 1, "{sync:?}");
        let line = sync
            .stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default()
            .to_owned();
        assert!(line.contains(code), "{sync:?}");
        assert_no_secret(&[&add, &test, &sync], s);
        messages.push(line);
    }

    let expired = Env::new(SimConfig {
        secret_expired: true,
        ..small()
    });
    assert_eq!(expired.add("old", DEMO_SECRET, &[]).code, 0);
    let sync = expired.run(&["sync", "old"], None);
    assert_eq!(sync.code, 1, "{sync:?}");
    assert!(
        sync.stderr.contains("AADSTS7000222") && sync.stderr.contains("expired"),
        "{sync:?}"
    );
    messages.push(sync.stderr.clone());

    let no_role = Env::new(SimConfig {
        roles: Some(vec!["Machine.Read.All".into()]),
        ..small()
    });
    assert_eq!(no_role.add("partial", DEMO_SECRET, &[]).code, 0);
    let test = no_role.run(&["integration", "test", "partial"], None);
    assert_eq!(test.code, 1, "{test:?}");
    assert!(test.stdout.contains("✗ 3. check roles"), "{test:?}");
    let sync = no_role.run(&["sync", "partial"], None);
    assert_eq!(sync.code, 1, "{sync:?}");
    assert!(sync.stderr.contains("Vulnerability.Read.All"), "{sync:?}");
    messages.push(sync.stderr.clone());

    for (i, a) in messages.iter().enumerate() {
        for b in &messages[i + 1..] {
            assert_ne!(a, b, "two problems gave the same message");
        }
    }
}

/// A full read takes the findings from JSON pages below the device threshold and from export
/// files from it up; the threshold is an option (and an environment variable), `--source` forces
/// either way, and both ways store the same findings.
#[test]
fn the_findings_source_follows_the_device_threshold_and_can_be_forced() {
    let env = Env::new(small());
    let add = env.add("contoso", &format!("{DEMO_SECRET}\n"), &[]);
    assert_eq!(add.code, 0, "{add:?}");
    let devices = env.sim.sim.truth().machines().count().to_string();
    let truth_findings = env.sim.sim.truth().findings().count();
    let stored_findings = || {
        let csv = env.run(&["export", "findings", "--format", "csv"], None);
        assert_eq!(csv.code, 0, "{csv:?}");
        csv.stdout.lines().count() - 1
    };

    // 60 devices, under the default threshold of 100,000: pages.
    let sync = env.run(&["sync", "contoso", "--full"], None);
    assert_eq!(sync.code, 0, "{sync:?}");
    assert!(
        sync.stdout.contains("full sync from JSON pages"),
        "{sync:?}"
    );
    assert_eq!(stored_findings(), truth_findings);

    // A threshold of exactly the tenant's device count: files.
    let sync = env.run(
        &[
            "sync",
            "contoso",
            "--full",
            "--files-from-devices",
            &devices,
        ],
        None,
    );
    assert_eq!(sync.code, 0, "{sync:?}");
    assert!(
        sync.stdout.contains("full sync from export files"),
        "{sync:?}"
    );
    assert!(sync.stdout.contains("0 updated"), "{sync:?}");
    assert_eq!(stored_findings(), truth_findings);

    // The same from the environment; and `--source pages` overrules the threshold.
    let from_env = run(
        env.command()
            .env("RAMPART_FILES_FROM_DEVICES", "1")
            .args(["sync", "contoso", "--full"]),
        None,
    );
    assert_eq!(from_env.code, 0, "{from_env:?}");
    assert!(
        from_env.stdout.contains("from export files"),
        "{from_env:?}"
    );
    let forced = env.run(
        &[
            "sync",
            "contoso",
            "--files-from-devices",
            "1",
            "--full",
            "--source",
            "pages",
        ],
        None,
    );
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(forced.stdout.contains("from JSON pages"), "{forced:?}");

    // A threshold that is not a number is refused before anything runs, and says which option.
    let bad = env.run(&["sync", "contoso", "--files-from-devices", "lots"], None);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("--files-from-devices"), "{bad:?}");
}
