//! `rampart.toml`: flags over environment over the file over defaults, `rampart config check`,
//! and the errors a wrong file gets.

use std::path::Path;
use std::process::Command;

use crate::{Run, run};

/// `rampart ARGS` in `dir` with none of the settings' environment variables inherited.
fn rampart(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.args(args).current_dir(dir);
    for var in [
        "DATABASE_URL",
        "RAMPART_CONFIG",
        "RAMPART_LOG_FORMAT",
        "RAMPART_FILES_FROM_DEVICES",
        "RAMPART_MAX_CONNECTIONS",
        "RAMPART_HEADER_TIMEOUT",
        "RAMPART_IDLE_TIMEOUT",
        "RAMPART_TRUSTED_PROXIES",
        "RAMPART_MASTER_KEY",
        "RAMPART_PUBLIC_URL",
    ] {
        cmd.env_remove(var);
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    run(&mut cmd, None)
}

/// The line of `config check`'s output that sets `key`.
fn setting<'a>(run: &'a Run, key: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in {run:?}"))
}

#[test]
fn flags_beat_the_environment_which_beats_the_file_which_beats_the_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let file = dir.path().join("rampart.toml");
    std::fs::write(
        &file,
        format!(
            "database = \"{}\"\nlog_format = \"json\"\nfiles_from_devices = 5000\npublic_url = \"https://rampart.example.com/\"\n\n[serve]\nmax_connections = 7\nheader_timeout = 11\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\nsecure_cookies = true\n",
            at("file.db")
        ),
    )
    .expect("write rampart.toml");

    let checked = rampart(
        dir.path(),
        &["--database", &at("flag.db"), "config", "check"],
        &[
            ("DATABASE_URL", &at("env.db")),
            ("RAMPART_MAX_CONNECTIONS", "8"),
        ],
    );
    assert_eq!(checked.code, 0, "{checked:?}");
    assert!(
        checked.stdout.contains("# Settings file: ./rampart.toml"),
        "{checked:?}"
    );
    let file_source = "# ./rampart.toml";
    for (key, value, source) in [
        ("database", at("flag.db"), "# command line"),
        ("log_format", "\"json\"".into(), file_source),
        ("files_from_devices", "5000".into(), file_source),
        (
            "public_url",
            "\"https://rampart.example.com\"".into(),
            file_source,
        ),
        (
            "max_connections",
            "8".into(),
            "# environment RAMPART_MAX_CONNECTIONS",
        ),
        ("header_timeout", "11".into(), file_source),
        ("idle_timeout", "60".into(), "# default"),
        ("session_lifetime", "168".into(), "# default"),
        ("secure_cookies", "true".into(), file_source),
        (
            "trusted_proxies",
            "[\"10.0.0.0/8\", \"192.0.2.7/32\"]".into(),
            file_source,
        ),
    ] {
        let line = setting(&checked, key);
        assert!(
            line.contains(&value) && line.ends_with(source),
            "{key}: {line}"
        );
    }

    // The settings are used, not only shown: the database each level names is the one opened.
    let opened = |run: &Run, name: &str| {
        assert_eq!(run.code, 0, "{run:?}");
        assert!(
            dir.path().join(name).exists(),
            "{name} was not opened: {run:?}"
        );
    };
    let from_file = rampart(dir.path(), &["integration", "list"], &[]);
    opened(&from_file, "file.db");
    let from_env = rampart(
        dir.path(),
        &["integration", "list"],
        &[("DATABASE_URL", &at("env.db"))],
    );
    opened(&from_env, "env.db");
    let from_flag = rampart(
        dir.path(),
        &["--database", &at("flag.db"), "integration", "list"],
        &[("DATABASE_URL", &at("env.db"))],
    );
    opened(&from_flag, "flag.db");

    // Without a file every setting is the default.
    std::fs::remove_file(&file).expect("remove rampart.toml");
    let defaults = rampart(dir.path(), &["config", "check"], &[]);
    assert_eq!(defaults.code, 0, "{defaults:?}");
    assert!(
        defaults.stdout.contains("# Settings file: none"),
        "{defaults:?}"
    );
    assert!(
        setting(&defaults, "max_connections").ends_with("= 512  # default"),
        "{defaults:?}"
    );
    assert!(
        defaults.stdout.contains("# public_url: not set"),
        "{defaults:?}"
    );
}

#[test]
fn a_file_named_with_config_is_read_from_anywhere_and_must_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let elsewhere = dir.path().join("etc").join("settings.toml");
    std::fs::create_dir_all(elsewhere.parent().expect("parent")).expect("mkdir");
    std::fs::write(&elsewhere, "[serve]\nsession_lifetime = 24\n").expect("write");
    let path = elsewhere.display().to_string();

    for (args, env) in [
        (vec!["config", "check", "--config", &path], vec![]),
        (
            vec!["config", "check"],
            vec![("RAMPART_CONFIG", path.as_str())],
        ),
    ] {
        let checked = rampart(dir.path(), &args, &env);
        assert_eq!(checked.code, 0, "{checked:?}");
        assert!(
            setting(&checked, "session_lifetime").ends_with(&format!("= 24  # {path}")),
            "{checked:?}"
        );
    }

    let missing = rampart(
        dir.path(),
        &["--config", "nowhere.toml", "config", "check"],
        &[],
    );
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing.stderr.contains("nowhere.toml") && missing.stderr.contains("does not exist"),
        "{missing:?}"
    );
}

#[test]
fn an_unknown_key_is_an_error_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("rampart.toml"),
        "[serve]\nlisten = \"127.0.0.1:9000\"\nmax_conections = 10\n",
    )
    .expect("write");
    // Every command refuses it, not only `config check`: a misspelt setting is never ignored.
    for args in [&["config", "check"][..], &["integration", "list"][..]] {
        let refused = rampart(dir.path(), args, &[]);
        assert_eq!(refused.code, 2, "{refused:?}");
        for expected in ["./rampart.toml", "max_conections", "line 3"] {
            assert!(refused.stderr.contains(expected), "{expected}: {refused:?}");
        }
    }
    assert!(!dir.path().join("rampart-data").exists(), "nothing opened");
}

#[test]
fn a_malformed_file_is_an_error_with_its_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("rampart.toml"),
        "log_format = \"json\"\ndatabase = \"sqlite://unterminated\n",
    )
    .expect("write");
    let refused = rampart(dir.path(), &["config", "check"], &[]);
    assert_eq!(refused.code, 2, "{refused:?}");
    for expected in ["./rampart.toml is not valid", "line 2, column"] {
        assert!(refused.stderr.contains(expected), "{expected}: {refused:?}");
    }
}

#[test]
fn a_bad_value_in_the_file_names_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, key) in [
        ("[serve]\nmax_connections = 0\n", "serve.max_connections"),
        (
            "[serve]\ntrusted_proxies = [\"not-a-network\"]\n",
            "serve.trusted_proxies",
        ),
        ("log_format = \"xml\"\n", "log_format"),
        ("[serve]\nlisten = \"everywhere\"\n", "serve.listen"),
        ("public_url = \"rampart.example.com\"\n", "public_url"),
    ] {
        std::fs::write(dir.path().join("rampart.toml"), text).expect("write");
        let refused = rampart(dir.path(), &["config", "check"], &[]);
        assert_eq!(refused.code, 2, "{refused:?}");
        assert!(
            refused
                .stderr
                .contains(&format!("./rampart.toml is not valid: {key}: ")),
            "{key}: {refused:?}"
        );
    }
}

#[test]
fn config_check_hides_the_database_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = "s3cret-Passw0rd";
    std::fs::write(
        dir.path().join("rampart.toml"),
        format!(
            "database = \"postgres://rampart:{password}@db.example:5432/rampart\"\n\n[serve]\nmetrics_token_env = \"RAMPART_TEST_METRICS_TOKEN\"\n"
        ),
    )
    .expect("write");
    let checked = rampart(
        dir.path(),
        &["config", "check"],
        &[("RAMPART_TEST_METRICS_TOKEN", "token-value-never-shown")],
    );
    assert_eq!(checked.code, 0, "{checked:?}");
    assert!(!checked.all().contains(password), "{checked:?}");
    assert!(
        !checked.all().contains("token-value-never-shown"),
        "{checked:?}"
    );
    assert!(
        setting(&checked, "database").contains("postgres://rampart:***@db.example:5432/rampart"),
        "{checked:?}"
    );
    assert!(
        setting(&checked, "metrics_token_env").contains("the variable is set"),
        "{checked:?}"
    );
    // The same URL from the environment or the command line is hidden too.
    let url = format!("postgres://rampart:{password}@db.example/rampart");
    for checked in [
        rampart(dir.path(), &["config", "check"], &[("DATABASE_URL", &url)]),
        rampart(dir.path(), &["--database", &url, "config", "check"], &[]),
    ] {
        assert_eq!(checked.code, 0, "{checked:?}");
        assert!(!checked.all().contains(password), "{checked:?}");
    }
}
