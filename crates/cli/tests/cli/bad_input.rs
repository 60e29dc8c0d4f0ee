//! Malformed input: exit 2, a one-line reason, nothing written.

use rampart_sim::SimConfig;

use crate::{DEMO_SECRET, Env, exists};

fn assert_refused(env: &Env, args: &[&str], stdin: Option<&str>, needle: &str) {
    let run = env.run(args, stdin);
    assert_eq!(run.code, 2, "{run:?}");
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error:"), "{run:?}");
    assert!(
        first.contains(needle),
        "expected '{needle}' in the first line: {run:?}"
    );
    assert!(!exists(&env.db()), "bad input wrote the database: {run:?}");
    assert!(!run.all().contains(DEMO_SECRET));
}

#[test]
fn malformed_integration_input_is_refused_with_exit_2_and_nothing_written() {
    let env = Env::new(SimConfig::default());
    let tenant = env.sim.sim.config().tenant_id.clone();
    let client = env.sim.sim.config().client_id.clone();
    let base = |over: &[(&str, &str)]| -> Vec<String> {
        let mut fields = vec![
            ("--name", "x"),
            ("--product", "endpoint"),
            ("--tenant-id", tenant.as_str()),
            ("--client-id", client.as_str()),
        ];
        for (k, v) in over {
            if let Some(f) = fields.iter_mut().find(|(fk, _)| fk == k) {
                f.1 = v;
            }
        }
        let mut args = vec!["integration".to_owned(), "add".to_owned()];
        for (k, v) in fields {
            args.push(k.to_owned());
            args.push(v.to_owned());
        }
        args
    };
    let with = |mut args: Vec<String>, extra: &[&str]| {
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let cases: Vec<(Vec<String>, Option<&str>, &str)> = vec![
        (
            with(
                base(&[("--tenant-id", "not-a-guid")]),
                &["--client-secret-stdin"],
            ),
            Some(DEMO_SECRET),
            "not a valid tenant ID",
        ),
        (
            with(base(&[("--client-id", "1234")]), &["--client-secret-stdin"]),
            Some(DEMO_SECRET),
            "not a valid client ID",
        ),
        (
            with(base(&[("--product", "server")]), &["--client-secret-stdin"]),
            Some(DEMO_SECRET),
            "unknown product",
        ),
        (
            with(base(&[("--name", "../etc")]), &["--client-secret-stdin"]),
            Some(DEMO_SECRET),
            "not a valid integration name",
        ),
        // No secret source at all.
        (base(&[]), None, "--client-secret-stdin"),
        // An empty secret on standard input.
        (
            with(base(&[]), &["--client-secret-stdin"]),
            Some("\n"),
            "the client secret is empty",
        ),
        (
            with(
                base(&[]),
                &["--client-secret-env", "RAMPART_TEST_UNSET_VAR"],
            ),
            None,
            "RAMPART_TEST_UNSET_VAR is not set",
        ),
        (
            with(
                base(&[]),
                &["--client-secret-stdin", "--login-url", "ftp://x"],
            ),
            Some(DEMO_SECRET),
            "not an http(s) URL",
        ),
        // Plain http carries the secret unencrypted: only to this machine (the emulator).
        (
            with(
                base(&[]),
                &[
                    "--client-secret-stdin",
                    "--login-url",
                    "http://login.example.com",
                ],
            ),
            Some(DEMO_SECRET),
            "uses plain http to a host that is not this machine",
        ),
        (
            with(
                base(&[]),
                &["--client-secret-stdin", "--api-url", "http://10.0.0.1:8080"],
            ),
            Some(DEMO_SECRET),
            "uses plain http",
        ),
        // Defender for Endpoint where Microsoft documents no API for it, without --api-url.
        (
            with(base(&[]), &["--client-secret-stdin", "--cloud", "china"]),
            Some(DEMO_SECRET),
            "Microsoft documents no Defender for Endpoint API in the China (21Vianet) cloud; choose commercial, gcc, gcc-high or dod, or give --api-url",
        ),
    ];
    for (args, stdin, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&env, &args, stdin, needle);
    }
    // The secret is never accepted on the command line.
    let run = env.run(
        &[
            "integration",
            "add",
            "--name",
            "x",
            "--product",
            "endpoint",
            "--tenant-id",
            &tenant,
            "--client-id",
            &client,
            "--client-secret",
            DEMO_SECRET,
        ],
        None,
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(!exists(&env.db()));
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new(SimConfig::default());
    for args in [
        vec!["sync"],
        vec!["export", "assets"],
        vec!["export", "assets", "--format", "xml"],
        vec!["sim", "--fault-rate", "2"],
        vec![
            "sim",
            "--tenant-id",
            "nope",
            "--client-id",
            "x",
            "--client-secret",
            "y",
        ],
        vec!["nonsense"],
    ] {
        let run = env.run(&args, None);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("error:"), "{run:?}");
    }
}

#[test]
fn passwords_are_checked_and_the_last_admin_stays() {
    let env = Env::new(SimConfig::default());
    let good = "correct horse battery staple";
    let add = env.run(
        &["user", "add", "root", "--role", "admin", "--password-stdin"],
        Some(good),
    );
    assert_eq!(add.code, 0, "{add:?}");
    // A common password, and one that is a keyboard row, are refused in words.
    for (weak, needle) in [
        ("Password2024!", "most common"),
        ("qwertyuiopasdf", "trivial pattern"),
    ] {
        let run = env.run(&["user", "passwd", "root", "--password-stdin"], Some(weak));
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains(needle), "{run:?}");
        assert!(
            !run.all().contains(weak),
            "the password was echoed: {run:?}"
        );
    }
    let run = env.run(
        &["user", "passwd", "root", "--password-stdin"],
        Some("a new and different passphrase"),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = env.run(
        &["user", "passwd", "nobody", "--password-stdin"],
        Some(good),
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no account named 'nobody'"), "{run:?}");

    // The last admin cannot be removed; a viewer can; removal without a terminal needs --yes.
    let run = env.run(&["user", "remove", "root", "--yes"], None);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("last admin"), "{run:?}");
    let add = env.run(
        &["user", "add", "val", "--role", "viewer", "--password-stdin"],
        Some(good),
    );
    assert_eq!(add.code, 0, "{add:?}");
    let run = env.run(&["user", "remove", "val"], None);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--yes"), "{run:?}");
    let run = env.run(&["user", "remove", "val", "--yes"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("Removed viewer account 'val'"),
        "{run:?}"
    );
}
