//! `rampart intel`: the KEV catalogue read from the emulator's copy of CISA's feed over HTTP,
//! imported from a file, shown by `status`, and in `export vulnerabilities`; a bad file or feed
//! is refused in words and the stored catalogue kept.

use rampart_sim::{KEV_PATH, SimConfig};

use crate::{DEMO_SECRET, Env, Run};

fn small() -> SimConfig {
    SimConfig {
        devices: 20,
        findings_per_device: 8,
        ..SimConfig::default()
    }
}

fn ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

/// The `entries:` line of `intel status`.
fn entries(env: &Env) -> u64 {
    let status = env.run(&["intel", "status"], None);
    ok(&status);
    status
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("entries:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no entries line: {status:?}"))
}

#[test]
fn refresh_status_and_export_follow_the_feed() {
    let env = Env::new(small());
    ok(&env.add("contoso", &format!("{DEMO_SECRET}\n"), &[]));
    ok(&env.run(&["sync", "contoso"], None));

    let before = env.run(&["intel", "status"], None);
    ok(&before);
    assert!(
        before.stdout.contains("has not been loaded yet")
            && before.stdout.contains("rampart intel refresh"),
        "{before:?}"
    );

    let url = format!("{}{KEV_PATH}", env.sim.url);
    let listed = env.sim.sim.kev_listed();
    let first = env.run(&["intel", "refresh", "--kev-url", &url], None);
    ok(&first);
    assert!(
        first
            .stdout
            .contains(&format!("stored: {} entries from {url}", listed.len())),
        "{first:?}"
    );
    // Unchanged feed: a conditional GET answered 304, the catalogue kept.
    // The URL from the environment, as `serve` takes it too.
    let again = env
        .command()
        .args(["intel", "refresh"])
        .env("RAMPART_KEV_URL", &url)
        .output()
        .expect("rampart runs");
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{said}");
    assert!(
        said.contains("is current") && said.contains("has not changed"),
        "{said}"
    );

    let status = env.run(&["intel", "status"], None);
    ok(&status);
    for expected in [
        "source:           cisa-kev",
        &format!("entries:          {}", listed.len()),
        &format!("from:             {url}"),
    ] {
        assert!(status.stdout.contains(expected), "{expected}: {status:?}");
    }
    assert!(!status.stdout.contains("version:          —"), "{status:?}");

    // The export says which CVEs are listed, with CISA's due date and ransomware use.
    let csv = env.run(&["export", "vulnerabilities", "--format", "csv"], None);
    ok(&csv);
    let header = csv.stdout.lines().next().expect("a header");
    assert!(
        header.ends_with(
            ",source_exposed_machines,kev,kev_date_added,kev_due_date,kev_known_ransomware_campaign_use"
        ),
        "{header}"
    );
    let jsonl = env.run(&["export", "vulnerabilities", "--format", "jsonl"], None);
    ok(&jsonl);
    let rows: Vec<serde_json::Value> = jsonl
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let kev_rows: Vec<_> = rows.iter().filter(|r| r["kev"] == true).collect();
    assert!(!kev_rows.is_empty(), "no exported CVE is KEV-listed");
    for row in &rows {
        let cve = row["cve_id"].as_str().expect("cve_id");
        let is_listed = listed.iter().any(|l| l == cve);
        assert_eq!(row["kev"] == true, is_listed, "{row}");
        if is_listed {
            let due = row["kev_due_date"].as_str().expect("a due date");
            assert!(due.len() == 10 && due > row["kev_date_added"].as_str().expect("added"));
            assert!(
                ["Known", "Unknown"].contains(
                    &row["kev_known_ransomware_campaign_use"]
                        .as_str()
                        .expect("ransomware use")
                ),
                "{row}"
            );
        } else {
            assert!(row["kev_due_date"].is_null(), "{row}");
        }
    }
    // The KEV columns end each row: listed rows end in the ransomware use, others are empty.
    let listed_in_csv = csv
        .stdout
        .lines()
        .filter(|l| l.ends_with(",Known") || l.ends_with(",Unknown"))
        .count();
    assert_eq!(listed_in_csv, kev_rows.len(), "{}", csv.stdout);
}

const GOOD: &str = r#"{"title":"CISA Catalog of Known Exploited Vulnerabilities","catalogVersion":"2025.01.02","dateReleased":"2025-01-02T15:00:00.0000Z","count":2,"vulnerabilities":[
{"cveID":"CVE-2024-3400","vendorProject":"Palo Alto Networks","product":"PAN-OS","vulnerabilityName":"PAN-OS Command Injection","dateAdded":"2024-04-12","shortDescription":"x","requiredAction":"Apply mitigations per vendor instructions.","dueDate":"2024-04-19","knownRansomwareCampaignUse":"Unknown","notes":""},
{"cveID":"CVE-2023-4966","vendorProject":"Citrix","product":"NetScaler","vulnerabilityName":"Citrix Bleed","dateAdded":"2023-10-18","shortDescription":"y","requiredAction":"Apply updates.","dueDate":"2023-11-08","knownRansomwareCampaignUse":"Known","notes":""}]}"#;

#[test]
fn import_takes_a_whole_file_and_refuses_a_bad_one_keeping_the_catalogue() {
    let env = Env::new(small());
    let good = env.dir.path().join("kev.json");
    std::fs::write(&good, GOOD).expect("write");
    let import = env.run(
        &["intel", "import", "kev", good.to_str().expect("path")],
        None,
    );
    ok(&import);
    assert!(
        import
            .stdout
            .contains("KEV catalogue 2025.01.02 stored: 2 entries from file:"),
        "{import:?}"
    );
    assert_eq!(entries(&env), 2);

    let short = GOOD.replace("\"count\":2", "\"count\":5");
    let cases: [(&str, &str, &str); 3] = [
        ("cut.json", &GOOD[..GOOD.len() / 2], "ends early"),
        ("short.json", &short, "states 5 entries but holds 2"),
        (
            "other.json",
            r#"{"value":[]}"#,
            "is not CISA's KEV catalogue",
        ),
    ];
    for (name, text, reason) in cases {
        let path = env.dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let refused = env.run(
            &["intel", "import", "kev", path.to_str().expect("path")],
            None,
        );
        assert_eq!(refused.code, 2, "{refused:?}");
        assert!(
            refused.stderr.contains("KEV catalogue not replaced")
                && refused.stderr.contains(reason),
            "{name}: {refused:?}"
        );
        assert_eq!(entries(&env), 2, "{name} replaced the catalogue");
    }
    let missing = env.run(&["intel", "import", "kev", "no-such-file.json"], None);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing.stderr.contains("cannot read no-such-file.json"),
        "{missing:?}"
    );

    // A feed URL that is not https is refused before anything is asked; one that does not
    // answer is an error in words, kept for `status`, and the catalogue stays.
    let plain = env.run(
        &[
            "intel",
            "refresh",
            "--kev-url",
            "http://www.cisa.gov/kev.json",
        ],
        None,
    );
    assert_eq!(plain.code, 2, "{plain:?}");
    assert!(
        plain
            .stderr
            .contains("plain http is allowed only to a loopback address"),
        "{plain:?}"
    );
    let closed = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        socket.local_addr().expect("addr").port()
    };
    let down = env.run(
        &[
            "intel",
            "refresh",
            "--kev-url",
            &format!("http://127.0.0.1:{closed}/kev.json"),
        ],
        None,
    );
    assert_eq!(down.code, 1, "{down:?}");
    assert!(
        down.stderr.contains("could not download the KEV catalogue")
            && down.stderr.contains("rampart intel import kev FILE"),
        "{down:?}"
    );
    let status = env.run(&["intel", "status"], None);
    assert!(
        status
            .stdout
            .contains("last error:       could not download"),
        "{status:?}"
    );
    assert_eq!(entries(&env), 2);
    let not_kev = env.run(
        &[
            "intel",
            "refresh",
            "--kev-url",
            &format!("{}/api/machines", env.sim.url),
        ],
        None,
    );
    assert_ne!(not_kev.code, 0, "{not_kev:?}");
    assert_eq!(entries(&env), 2);
}

/// `kev_url` in rampart.toml reaches `intel refresh` (a nested command) as well as `serve`, and
/// `config check` shows it with `serve.no_kev_refresh`.
#[test]
fn the_settings_file_names_the_feed() {
    let env = Env::new(small());
    let url = format!("{}{KEV_PATH}", env.sim.url);
    std::fs::write(
        env.dir.path().join("rampart.toml"),
        format!("kev_url = \"{url}\"\n\n[serve]\nno_kev_refresh = true\n"),
    )
    .expect("write rampart.toml");
    let refreshed = env.run(&["intel", "refresh"], None);
    ok(&refreshed);
    assert!(
        refreshed.stdout.contains(&format!("entries from {url}")),
        "{refreshed:?}"
    );
    assert_eq!(entries(&env), env.sim.sim.kev_listed().len() as u64);

    let checked = env.run(&["config", "check"], None);
    ok(&checked);
    for expected in [
        format!("kev_url = \"{url}\"  # ./rampart.toml"),
        "no_kev_refresh = true  # ./rampart.toml".to_owned(),
    ] {
        assert!(
            checked.stdout.contains(&expected),
            "{expected}: {checked:?}"
        );
    }

    // A feed that is not https is refused against the file and its key.
    std::fs::write(
        env.dir.path().join("rampart.toml"),
        "kev_url = \"http://www.cisa.gov/kev.json\"\n",
    )
    .expect("write rampart.toml");
    let refused = env.run(&["intel", "status"], None);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("rampart.toml is not valid: kev_url: "),
        "{refused:?}"
    );
}
