//! `rampart sla show | set | unset | report`: the SLA days through the same use cases as the
//! portal (audited, validated, a re-assessment queued), applied by the next sync, and the report
//! as a table and as the API's JSON.

use rampart_sim::SimConfig;

use crate::{DEMO_SECRET, Env};

#[test]
fn sla_days_are_set_applied_by_the_next_sync_reported_and_unset() {
    let env = Env::new(SimConfig {
        devices: 6,
        findings_per_device: 4,
        ..SimConfig::default()
    });
    assert_eq!(env.add("contoso", DEMO_SECRET, &[]).code, 0);
    let synced = env.run(&["sync", "contoso"], None);
    assert_eq!(synced.code, 0, "{synced:?}");

    let shown = env.run(&["sla", "show"], None);
    assert_eq!(shown.code, 0, "{shown:?}");
    assert!(
        shown.stdout.contains(
            "Installation: immediate 2 days, out-of-cycle 7, scheduled 30, defer 90 (the defaults)"
        ),
        "{shown:?}"
    );
    assert!(
        shown
            .stdout
            .contains("Integration 'contoso': the installation's"),
        "{shown:?}"
    );

    // Nothing to set, and days the model refuses, are errors in words.
    let nothing = env.run(&["sla", "set"], None);
    assert_eq!(nothing.code, 2, "{nothing:?}");
    assert!(nothing.stderr.contains("--immediate"), "{nothing:?}");
    let unordered = env.run(&["sla", "set", "--immediate", "40"], None);
    assert_eq!(unordered.code, 2, "{unordered:?}");
    assert!(
        unordered
            .stderr
            .contains("a more urgent decision must not get more time"),
        "{unordered:?}"
    );

    // The installation's days, then the integration's own (days not given keep what applied).
    let set = env.run(&["sla", "set", "--immediate", "1", "--defer", "120"], None);
    assert_eq!(set.code, 0, "{set:?}");
    assert!(
        set.stdout
            .contains("Installation: immediate 1 days, out-of-cycle 7, scheduled 30, defer 120."),
        "{set:?}"
    );
    assert!(
        set.stdout.contains("Re-assessment queued for 'contoso'"),
        "{set:?}"
    );
    let own = env.run(
        &[
            "sla",
            "set",
            "--integration",
            "contoso",
            "--scheduled",
            "14",
        ],
        None,
    );
    assert_eq!(own.code, 0, "{own:?}");
    assert!(
        own.stdout.contains(
            "Integration 'contoso': immediate 1 days, out-of-cycle 7, scheduled 14, defer 120."
        ),
        "{own:?}"
    );
    let shown = env.run(&["sla", "show"], None);
    assert!(
        shown.stdout.contains(
            "Installation: immediate 1 days, out-of-cycle 7, scheduled 30, defer 120 (set by cli,"
        ),
        "{shown:?}"
    );
    assert!(
        shown
            .stdout
            .contains("Integration 'contoso': immediate 1 days, out-of-cycle 7, scheduled 14, defer 120 (its own, set by cli,"),
        "{shown:?}"
    );

    // The next sync applies the days: every scheduled finding is due 14 days after its clock
    // started.
    let synced = env.run(&["sync", "contoso"], None);
    assert_eq!(synced.code, 0, "{synced:?}");
    let exported = env.run(&["export", "findings", "--format", "jsonl"], None);
    assert_eq!(exported.code, 0, "{exported:?}");
    let mut scheduled = 0;
    for line in exported.stdout.lines() {
        let f: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        if f["decision"] == "scheduled" {
            let due = chrono::DateTime::parse_from_rfc3339(f["due_at"].as_str().expect("due_at"))
                .expect("due_at is RFC 3339");
            let first =
                chrono::DateTime::parse_from_rfc3339(f["first_seen"].as_str().expect("first_seen"))
                    .expect("first_seen is RFC 3339");
            assert_eq!(due - first, chrono::TimeDelta::days(14), "{f}");
            scheduled += 1;
        }
    }
    assert!(scheduled > 0, "{}", exported.stdout);

    // The report: a table, and the API's JSON.
    let table = env.run(&["sla", "report"], None);
    assert_eq!(table.code, 0, "{table:?}");
    assert!(table.stdout.contains("OVERDUE"), "{table:?}");
    assert!(table.stdout.contains("  contoso"), "{table:?}");
    let json = env.run(&["sla", "report", "--json", "--days", "90"], None);
    assert_eq!(json.code, 0, "{json:?}");
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(report["period_days"], 90);
    let open = report["total"]["open"].as_u64().expect("open");
    assert!(open > 0, "{report}");
    let by_decision: u64 = report["by_decision"]
        .as_array()
        .expect("by_decision")
        .iter()
        .map(|l| l["open"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(by_decision, open, "{report}");
    let period = env.run(&["sla", "report", "--days", "7"], None);
    assert_eq!(period.code, 2, "{period:?}");
    assert!(period.stderr.contains("30, 90 or 365"), "{period:?}");

    // Unset: the installation's days again.
    let unset = env.run(&["sla", "unset", "--integration", "contoso"], None);
    assert_eq!(unset.code, 0, "{unset:?}");
    let shown = env.run(&["sla", "show"], None);
    assert!(
        shown
            .stdout
            .contains("Integration 'contoso': the installation's"),
        "{shown:?}"
    );
    let missing = env.run(&["sla", "unset", "--integration", "fabrikam"], None);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("no integration named 'fabrikam'"),
        "{missing:?}"
    );
}
