//! A sync killed with SIGKILL in the middle, then run again, converges to the state of an
//! uninterrupted sync.

use std::time::Duration;

use crate::Env;

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

    // The same sync, uninterrupted, into another database.
    let other = env.dir.path().join("other").join("rampart.db");
    let other_url = format!("sqlite://{}", other.display());
    let add = env.add_on(&other_url, "endpoint", "contoso");
    assert_eq!(add.code, 0, "{add:?}");
    let clean = crate::run(
        env.command_with_db(&other_url).args(["sync", "contoso"]),
        None,
    );
    assert_eq!(clean.code, 0, "{clean:?}");
    let uninterrupted = sorted_export(&env, &other_url);

    assert_eq!(
        killed_then_rerun.len(),
        env.sim.sim.truth().findings().count()
    );
    assert!(
        killed_then_rerun == uninterrupted,
        "a killed and re-run sync differs from an uninterrupted one"
    );
}
