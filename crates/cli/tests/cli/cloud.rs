//! Defender for Cloud from the command line: add, test, sync, export; the RBAC explanation; the
//! demo with both products.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rampart_sim::SimConfig;

use crate::{DEMO_SECRET, Env};

fn small() -> SimConfig {
    SimConfig {
        devices: 60,
        findings_per_device: 5,
        ..SimConfig::default()
    }
}

#[test]
fn a_cloud_integration_is_added_tested_synced_and_exported() {
    let env = Env::new(small());
    let add = env.add_cloud("azure", &[]);
    assert_eq!(add.code, 0, "{add:?}");
    assert!(add.stdout.contains("Defender for Cloud"), "{add:?}");
    assert!(add.stdout.contains("Security Reader"), "{add:?}");

    let test = env.run(&["integration", "test", "azure"], None);
    assert_eq!(
        test.code, 0,
        "a plan warning does not fail the test: {test:?}"
    );
    assert!(test.stdout.contains("✓ 3. list subscriptions"), "{test:?}");
    assert!(
        test.stdout.contains("⚠ 4. check Defender plans"),
        "{test:?}"
    );
    assert!(
        test.stdout.contains("✓ 9. query Resource Graph"),
        "{test:?}"
    );

    let sync = env.run(&["sync", "azure"], None);
    assert_eq!(sync.code, 0, "{sync:?}");
    assert!(sync.stdout.contains("azure: succeeded"), "{sync:?}");

    let truth = env.sim.sim.truth();
    let findings = env.run(&["export", "findings", "--format", "jsonl"], None);
    assert_eq!(findings.code, 0, "{findings:?}");
    let rows: Vec<serde_json::Value> = findings
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.len(), truth.cloud_findings().len());
    assert!(rows.iter().all(|r| r["source"] == "defender-cloud"));
    assert!(
        rows.iter().all(|r| r["asset_source_id"]
            .as_str()
            .unwrap_or("")
            .starts_with("/subscriptions/")),
        "cloud findings are on Azure resources"
    );

    let assets = env.run(&["export", "assets", "--format", "csv"], None);
    assert_eq!(assets.code, 0, "{assets:?}");
    assert_eq!(
        assets.stdout.lines().count() - 1,
        truth.cloud_resources().len()
    );
    for kind in ["virtual_machine", "container_image", "sql_server"] {
        assert!(assets.stdout.contains(kind), "{kind} missing");
    }
    let ocsf = env.run(&["export", "findings", "--format", "ocsf"], None);
    assert_eq!(ocsf.code, 0, "{ocsf:?}");
    assert_eq!(ocsf.stdout.lines().count(), rows.len());

    crate::cloud_posture::assert_posture_exports(&env);

    for run in [&add, &test, &sync, &findings, &assets] {
        assert!(
            !run.all().contains(DEMO_SECRET),
            "the secret leaked: {run:?}"
        );
    }
}

#[test]
fn an_app_without_an_azure_role_is_told_how_to_assign_one() {
    let env = Env::new(SimConfig {
        arm_role: None,
        ..small()
    });
    assert_eq!(env.add_cloud("norole", &[]).code, 0);
    let test = env.run(&["integration", "test", "norole"], None);
    assert_eq!(test.code, 1, "{test:?}");
    assert!(test.stdout.contains("✗ 3. list subscriptions"), "{test:?}");
    assert!(test.stdout.contains("Access control (IAM)"), "{test:?}");
    assert!(test.stdout.contains("not an API permission"), "{test:?}");
    let sync = env.run(&["sync", "norole"], None);
    assert_eq!(sync.code, 1, "{sync:?}");
    assert!(sync.stdout.contains("norole: failed"), "{sync:?}");
    assert!(
        sync.stderr.contains("Security Reader") && sync.stderr.contains("no Azure role"),
        "{sync:?}"
    );
}

#[test]
fn the_demo_adds_and_syncs_both_products() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args([
            "--database",
            &format!("sqlite://{}", dir.path().join("demo.db").display()),
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--devices",
            "40",
        ])
        .env_remove("RAMPART_MASTER_KEY")
        .env_remove("DATABASE_URL")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let mut seen = String::new();
    let started = Instant::now();
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).expect("read stdout");
        if n == 0 {
            break;
        }
        seen.push_str(&line);
        if line.contains("Press Ctrl-C") || started.elapsed() > Duration::from_secs(180) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("demo-endpoint: succeeded"), "{seen}");
    assert!(seen.contains("demo-cloud: succeeded"), "{seen}");
    assert!(seen.contains("Portal: http://127.0.0.1:"), "{seen}");
    // The KEV catalogue came from the emulator's feed, over the real code path.
    let kev = seen
        .lines()
        .find_map(|l| l.strip_prefix("KEV catalogue: "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(kev.is_some_and(|n| n > 0), "{seen}");
}
