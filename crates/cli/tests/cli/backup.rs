//! `rampart backup` while a sync writes, and `rampart restore` of what it wrote.

use rampart_sim::SimConfig;
use sqlx::Connection;

use crate::{DEMO_SECRET, Env, sqlite_connection};

/// Row counts and id sums of the tables a sync writes: equal snapshots mean equal contents as far
/// as a sync could have moved them.
const SNAPSHOT: &str = "SELECT
    (SELECT count(*) || ':' || coalesce(sum(id), 0) FROM assets) || ' ' ||
    (SELECT count(*) || ':' || coalesce(sum(id), 0) FROM findings) || ' ' ||
    (SELECT count(*) || ':' || coalesce(sum(id), 0) FROM sync_runs) || ' ' ||
    (SELECT group_concat(status, ',') FROM sync_runs) || ' ' ||
    (SELECT count(*) FROM integrations)";

#[test]
fn a_backup_taken_during_a_sync_restores_to_the_database_of_that_moment() {
    let env = Env::with_a_slow_sync();
    let (mut child, reader) = env.sync_reading_findings("contoso");
    let drain = crate::drain(reader);

    // Hold the write lock (between two of the sync's transactions) so that the moment of the
    // backup can be compared with the source; readers, and so the backup, never wait for it.
    let mut writer = env.runtime.block_on(sqlite_connection(&env.db()));
    let before = env.runtime.block_on(async {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut writer)
            .await
            .expect("write lock");
        sqlx::query_scalar::<_, String>(SNAPSHOT)
            .fetch_one(&mut writer)
            .await
            .expect("snapshot")
    });
    assert!(before.contains("running"), "no running sync: {before}");
    let backup_file = env.dir.path().join("during-sync.db");
    let backup = env.run(&["backup", "--output", backup_file.to_str().unwrap()], None);
    env.runtime.block_on(async {
        sqlx::query("ROLLBACK")
            .execute(&mut writer)
            .await
            .expect("release");
    });
    assert_eq!(backup.code, 0, "{backup:?}");
    assert!(
        backup.stdout.contains("integrity check passed"),
        "{backup:?}"
    );
    let status = child.wait().expect("wait");
    assert!(status.success(), "the sync failed after the backup");
    drain.join().expect("drain");

    // A second backup while nothing holds the sync back is refused nowhere either.
    let again = env.run(&["backup", "--output", backup_file.to_str().unwrap()], None);
    assert_eq!(
        again.code, 2,
        "an existing backup file is not overwritten: {again:?}"
    );
    assert!(again.stderr.contains("already exists"), "{again:?}");

    // Restore into a new place: the database of the moment the backup was taken.
    let restored_db = env.dir.path().join("restored").join("rampart.db");
    let restored_url = format!("sqlite://{}", restored_db.display());
    let restore = crate::run(
        env.command_with_db(&restored_url).args([
            "restore",
            "--input",
            backup_file.to_str().unwrap(),
        ]),
        None,
    );
    assert_eq!(restore.code, 0, "{restore:?}");
    let list = crate::run(
        env.command_with_db(&restored_url)
            .args(["integration", "list"]),
        None,
    );
    assert_eq!(list.code, 0, "{list:?}");
    assert!(list.stdout.contains("contoso"), "{list:?}");
    let after = env.runtime.block_on(async {
        let mut conn = sqlite_connection(&restored_db).await;
        sqlx::query_scalar::<_, String>(SNAPSHOT)
            .fetch_one(&mut conn)
            .await
            .expect("snapshot")
    });
    assert_eq!(after, before);

    // Restoring over a database in use is refused, even with --force (the test's own connection
    // stands for a running `serve`) ...
    let in_use = env.run(
        &[
            "restore",
            "--input",
            backup_file.to_str().unwrap(),
            "--force",
        ],
        None,
    );
    assert_eq!(in_use.code, 2, "{in_use:?}");
    assert!(in_use.stderr.contains("in use"), "{in_use:?}");
    env.runtime.block_on(writer.close()).expect("close");
    // ... and over one that holds data needs --force.
    let over = env.run(&["restore", "--input", backup_file.to_str().unwrap()], None);
    assert_eq!(over.code, 2, "{over:?}");
    assert!(over.stderr.contains("--force"), "{over:?}");
    let forced = env.run(
        &[
            "restore",
            "--input",
            backup_file.to_str().unwrap(),
            "--force",
        ],
        None,
    );
    assert_eq!(forced.code, 0, "{forced:?}");
}

#[test]
fn a_damaged_backup_is_refused_and_the_database_kept() {
    let env = Env::new(SimConfig {
        devices: 5,
        findings_per_device: 2,
        ..SimConfig::default()
    });
    assert_eq!(env.add("contoso", DEMO_SECRET, &[]).code, 0);
    let junk = env.dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database").unwrap();
    let run = env.run(
        &["restore", "--input", junk.to_str().unwrap(), "--force"],
        None,
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("not a SQLite database"), "{run:?}");
    let list = env.run(&["integration", "list"], None);
    assert!(list.stdout.contains("contoso"), "{list:?}");

    // PostgreSQL: the exact pg_dump command, without the password.
    let pg = crate::run(
        env.command_with_db("postgres://rampart:hunter2@db.example:5432/rampart")
            .args(["backup", "--output", "/tmp/rampart.dump"]),
        None,
    );
    assert_eq!(pg.code, 1, "{pg:?}");
    assert!(
        pg.stdout
            .contains("pg_dump --format=custom --file='/tmp/rampart.dump' 'postgres://rampart@db.example:5432/rampart'"),
        "{pg:?}"
    );
    assert!(!pg.all().contains("hunter2"), "{pg:?}");
}

#[test]
fn export_does_not_offer_the_sync_options() {
    let env = Env::new(SimConfig {
        devices: 5,
        findings_per_device: 2,
        ..SimConfig::default()
    });
    let export = env.run(&["export", "--help"], None);
    assert_eq!(export.code, 0, "{export:?}");
    assert!(
        !export.stdout.contains("--files-from-devices"),
        "{export:?}"
    );
    let add = env.run(&["integration", "add", "--help"], None);
    assert!(!add.stdout.contains("--files-from-devices"), "{add:?}");
    for command in ["sync", "serve", "demo"] {
        let help = env.run(&[command, "--help"], None);
        assert!(
            help.stdout.contains("--files-from-devices"),
            "{command}: {help:?}"
        );
    }
    // A plain progress line says what its number counts.
    assert_eq!(env.add("contoso", DEMO_SECRET, &[]).code, 0);
    let sync = env.run(&["sync", "contoso"], None);
    assert_eq!(sync.code, 0, "{sync:?}");
    assert!(
        sync.stderr
            .contains("contoso: reading devices: 5 records read"),
        "{sync:?}"
    );
    assert!(sync.stderr.contains("changes made"), "{sync:?}");
}
