//! `rampart workspace`, `user grant|revoke`, and `--workspace` on `integration add`,
//! `sync --all` and `export` (docs/workspaces.md).

use rampart_sim::SimConfig;

use crate::{DEMO_SECRET, Env};

#[test]
fn workspaces_scope_adding_syncing_and_exporting() {
    let env = Env::new(SimConfig {
        devices: 30,
        findings_per_device: 5,
        ..SimConfig::default()
    });
    let add = env.run(&["workspace", "add", "Acme"], None);
    assert_eq!(add.code, 0, "{add:?}");
    let again = env.run(&["workspace", "add", "ACME"], None);
    assert_ne!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("already exists"), "{again:?}");

    assert_eq!(
        env.add("alpha", DEMO_SECRET, &["--workspace", "acme"]).code,
        0
    );
    assert_eq!(env.add("beta", DEMO_SECRET, &[]).code, 0);
    let unknown = env.add("gamma", DEMO_SECRET, &["--workspace", "Nope"]);
    assert_ne!(unknown.code, 0, "{unknown:?}");
    assert!(
        unknown.stderr.contains("no workspace named 'Nope'")
            && unknown.stderr.contains("rampart workspace list"),
        "{unknown:?}"
    );
    let list = env.run(&["integration", "list"], None);
    assert!(!list.stdout.contains("gamma"), "{list:?}");
    let row = |name: &str| {
        list.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .split_whitespace()
            .nth(1)
            .map(str::to_owned)
    };
    assert_eq!(row("alpha").as_deref(), Some("Acme"), "{list:?}");
    assert_eq!(row("beta").as_deref(), Some("Default"), "{list:?}");
    let workspaces = env.run(&["workspace", "list"], None);
    assert_eq!(workspaces.code, 0, "{workspaces:?}");
    assert!(
        workspaces.stdout.contains("Acme") && workspaces.stdout.contains("Default"),
        "{workspaces:?}"
    );

    // `sync --all --workspace`: only that workspace's integrations.
    let sync = env.run(&["sync", "--all", "--workspace", "Acme"], None);
    assert_eq!(sync.code, 0, "{sync:?}");
    assert!(
        sync.stdout.contains("alpha") && !sync.stdout.contains("beta"),
        "{sync:?}"
    );
    assert_eq!(env.run(&["sync", "beta"], None).code, 0);

    // `export --workspace`: only what that workspace's integrations synced.
    let csv = env.run(
        &[
            "export",
            "findings",
            "--format",
            "csv",
            "--workspace",
            "Acme",
        ],
        None,
    );
    assert_eq!(csv.code, 0, "{csv:?}");
    let rows: Vec<&str> = csv.stdout.lines().skip(1).collect();
    assert!(!rows.is_empty(), "{csv:?}");
    assert!(rows.iter().all(|r| r.starts_with("alpha,")), "{csv:?}");
    let everything = env.run(&["export", "findings", "--format", "csv"], None);
    assert_eq!(everything.stdout.lines().count() - 1, 2 * rows.len());
    for kind in ["assets", "vulnerabilities", "posture"] {
        let out = env.run(
            &["export", kind, "--format", "jsonl", "--workspace", "Acme"],
            None,
        );
        assert_eq!(out.code, 0, "{out:?}");
        assert!(!out.stdout.contains("\"beta\""), "{out:?}");
    }
    let beta_in_acme = env.run(
        &[
            "export",
            "assets",
            "--format",
            "csv",
            "--workspace",
            "Acme",
            "--integration",
            "beta",
        ],
        None,
    );
    assert_ne!(beta_in_acme.code, 0, "{beta_in_acme:?}");
    let bad = env.run(
        &["export", "assets", "--format", "csv", "--workspace", "Nope"],
        None,
    );
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.stderr.contains("no workspace named 'Nope'"), "{bad:?}");

    // Removal refuses while integrations remain, and says how to move or remove them.
    let remove = env.run(&["workspace", "remove", "Acme"], None);
    assert_ne!(remove.code, 0, "{remove:?}");
    assert!(
        remove.stderr.contains("alpha")
            && remove.stderr.contains("rampart integration move")
            && remove.stderr.contains("rampart integration remove"),
        "{remove:?}"
    );
    let moved = env.run(
        &["integration", "move", "alpha", "--workspace", "Default"],
        None,
    );
    assert_eq!(moved.code, 0, "{moved:?}");
    let remove = env.run(&["workspace", "remove", "Acme"], None);
    assert_eq!(remove.code, 0, "{remove:?}");
}

#[test]
fn user_grant_and_revoke() {
    let env = Env::new(SimConfig {
        devices: 5,
        findings_per_device: 1,
        ..SimConfig::default()
    });
    assert_eq!(env.run(&["workspace", "add", "Beta"], None).code, 0);
    let add = env.run(
        &["user", "add", "bob", "--role", "viewer", "--password-stdin"],
        Some("a long and unusual passphrase 8421\n"),
    );
    assert_eq!(add.code, 0, "{add:?}");
    let grant = env.run(
        &[
            "user",
            "grant",
            "bob",
            "--workspace",
            "Beta",
            "--role",
            "admin",
        ],
        None,
    );
    assert_eq!(grant.code, 0, "{grant:?}");
    assert!(
        grant.stdout.contains("admin of workspace 'Beta'"),
        "{grant:?}"
    );
    let revoke = env.run(&["user", "revoke", "bob", "--workspace", "beta"], None);
    assert_eq!(revoke.code, 0, "{revoke:?}");
    let again = env.run(&["user", "revoke", "bob", "--workspace", "Beta"], None);
    assert_ne!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("has no role"), "{again:?}");
    let unknown = env.run(
        &[
            "user",
            "grant",
            "bob",
            "--workspace",
            "Nope",
            "--role",
            "viewer",
        ],
        None,
    );
    assert_ne!(unknown.code, 0, "{unknown:?}");
    assert!(
        unknown.stderr.contains("no workspace named 'Nope'"),
        "{unknown:?}"
    );
    let nobody = env.run(
        &[
            "user",
            "grant",
            "nobody",
            "--workspace",
            "Beta",
            "--role",
            "viewer",
        ],
        None,
    );
    assert_ne!(nobody.code, 0, "{nobody:?}");
}
