//! A sync killed with SIGKILL in the middle, then run again, converges to the state of an
//! uninterrupted sync.

use std::time::{Duration, Instant};

use sqlx::SqliteConnection;

use crate::{Env, sqlite_connection};

fn sorted_export(env: &Env, db: &str) -> Vec<String> {
    let run = crate::run(
        env.command_with_db(db)
            .args(["export", "findings", "--format", "jsonl"]),
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let mut lines: Vec<String> = run.stdout.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// The export of the same sync, uninterrupted, into another database.
fn uninterrupted_export(env: &Env) -> Vec<String> {
    let other = env.dir.path().join("other").join("rampart.db");
    let other_url = format!("sqlite://{}", other.display());
    let add = env.add_on(&other_url, "endpoint", "contoso");
    assert_eq!(add.code, 0, "{add:?}");
    let clean = crate::run(
        env.command_with_db(&other_url).args(["sync", "contoso"]),
        None,
    );
    assert_eq!(clean.code, 0, "{clean:?}");
    sorted_export(env, &other_url)
}

/// Findings whose assessment refers to an explanation the store does not hold.
const UNEXPLAINED: &str = "SELECT count(*) FROM findings f WHERE f.explanation_id IS NOT NULL \
     AND NOT EXISTS (SELECT 1 FROM priority_explanations e WHERE e.id = f.explanation_id)";

async fn count(conn: &mut SqliteConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(conn)
        .await
        .expect("count")
}

/// Starts a first load and kills it once findings are committed, while it is held between two
/// transactions (the test holds the write lock); returns how many findings were left referring
/// to explanations the store lacks. None is when the load wrote every batch and its explanations
/// (or finished altogether) before the lock was granted: SQLite's busy handler sleeps between its tries, and a load
/// committing batch after batch can take the lock back each time (seen once in CI in many runs).
fn kill_a_first_load_between_findings_and_explanations(env: &Env) -> i64 {
    let (mut child, reader) = env.sync_reading_findings("contoso");
    let drain = crate::drain(reader);
    let mut conn = env.runtime.block_on(sqlite_connection(&env.db()));
    let started = Instant::now();
    while env
        .runtime
        .block_on(count(&mut conn, "SELECT count(*) FROM findings"))
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no findings were written in two minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let unexplained = env.runtime.block_on(async {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .expect("write lock");
        count(&mut conn, UNEXPLAINED).await
    });
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    if status.success() {
        // It finished (explanations and all) before the lock was granted: this try missed the
        // window, and a finished load owes nothing (seen once in CI under load).
        assert_eq!(
            unexplained, 0,
            "a finished sync left findings without explanations"
        );
    }
    drain.join().expect("drain");
    env.runtime.block_on(async {
        sqlx::query("ROLLBACK")
            .execute(&mut conn)
            .await
            .expect("release");
    });
    unexplained
}

/// A first load stores its explanations once its read is done (in id order, not batch by batch).
/// Killed after writing findings but before that, it leaves them referring to explanations the
/// store lacks; the next run stores every one, and the result is the uninterrupted sync's.
#[test]
fn a_first_load_killed_before_storing_its_explanations_owes_none_after_the_next_run() {
    // The kill must land in the window; a try that missed it proves nothing, so up to five
    // tries, each on a fresh installation.
    let (env, _) = (0..5)
        .map(|_| {
            let env = Env::with_a_slow_sync();
            let unexplained = kill_a_first_load_between_findings_and_explanations(&env);
            (env, unexplained)
        })
        .find(|(_, unexplained)| *unexplained > 0)
        .expect("in five tries, every killed load had stored every explanation: this test no longer tests the debt");

    let again = env.run(&["sync", "contoso"], None);
    assert_eq!(again.code, 0, "{again:?}");
    let mut conn = env.runtime.block_on(sqlite_connection(&env.db()));
    assert_eq!(env.runtime.block_on(count(&mut conn, UNEXPLAINED)), 0);
    let killed_then_rerun = sorted_export(&env, &format!("sqlite://{}", env.db().display()));
    assert!(
        killed_then_rerun == uninterrupted_export(&env),
        "a killed and re-run first load differs from an uninterrupted one"
    );
}

#[test]
fn a_sync_killed_midway_converges_when_run_again() {
    let env = Env::with_a_slow_sync();
    // Start a sync and kill it while it reads findings.
    let (mut child, _reader) = env.sync_reading_findings("contoso");
    std::thread::sleep(Duration::from_millis(150));
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the sync finished before it was killed");

    // Run again: the abandoned run is recognised (its process is gone) and the sync converges.
    let again = env.run(&["sync", "contoso"], None);
    assert_eq!(again.code, 0, "{again:?}");
    let killed_then_rerun = sorted_export(&env, &format!("sqlite://{}", env.db().display()));

    let uninterrupted = uninterrupted_export(&env);

    assert_eq!(
        killed_then_rerun.len(),
        env.sim.sim.truth().findings().count()
    );
    assert!(
        killed_then_rerun == uninterrupted,
        "a killed and re-run sync differs from an uninterrupted one"
    );
}
