//! Scale-out on PostgreSQL: one `serve --role web` and two `serve --role worker` processes share a
//! throwaway database; one worker is killed with SIGKILL in the middle of a sync. Every
//! integration still ends synced once, no integration (nor app registration) is ever synced by
//! two processes at once, and the emulator never had to throttle. On SQLite, a second worker is
//! refused.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rampart_sim::SimConfig;
use sqlx::{Connection, PgConnection, Row};

use crate::{DEMO_SECRET, Env};

/// A `rampart serve` process, killed when dropped.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start(env: &Env, db: &str, args: &[&str]) -> Serve {
        let mut child = env
            .command_with_db(db)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-kev-refresh"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("rampart serve starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut url = None;
        for line in lines.by_ref() {
            let line = line.expect("serve's output");
            if let Some(at) = line.find("http://") {
                url = Some(
                    line[at..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .trim_end_matches([';', ',', ')'])
                        .to_owned(),
                );
                break;
            }
        }
        // Keep the pipe drained: a closed pipe would fail the server's next line.
        std::thread::spawn(move || for _ in lines {});
        let url = url.expect("serve prints where it listens");
        Serve { child, url }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One row of `sync_runs`.
#[derive(Debug)]
struct RunRow {
    integration: i64,
    status: String,
    started: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
    owner: Option<String>,
    error: Option<String>,
}

async fn runs(db: &str) -> Vec<RunRow> {
    let mut conn = PgConnection::connect(db).await.expect("connect");
    sqlx::query(
        "SELECT integration_id, status, started_at, finished_at, owner, error FROM sync_runs ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("runs")
    .into_iter()
    .map(|r| RunRow {
        integration: r.get(0),
        status: r.get(1),
        started: r.get(2),
        finished: r.get(3),
        owner: r.get(4),
        error: r.get(5),
    })
    .collect()
}

/// Integration id → (product, name).
async fn integrations(db: &str) -> HashMap<i64, (String, String)> {
    let mut conn = PgConnection::connect(db).await.expect("connect");
    sqlx::query("SELECT id, product, name FROM integrations")
        .fetch_all(&mut conn)
        .await
        .expect("integrations")
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

fn overlap(a: &RunRow, b: &RunRow) -> bool {
    let end = |r: &RunRow| r.finished.unwrap_or(DateTime::<Utc>::MAX_UTC);
    a.started < end(b) && b.started < end(a)
}

#[test]
fn web_and_two_workers_on_postgres_sync_everything_once_despite_a_killed_worker() {
    let env = Env::new(SimConfig {
        devices: 400,
        findings_per_device: 30,
        ..SimConfig::default()
    });
    let database = env
        .runtime
        .block_on(rampart_store::testing::postgres_database());
    let db = database.url.clone();
    // Six integrations: three Defender for Endpoint, three Defender for Cloud, all of the
    // emulator's one app registration.
    for n in 0..6 {
        let product = if n < 3 { "endpoint" } else { "cloud" };
        let name = format!("{product}-{n}");
        let add = env.add_on(&db, product, &name);
        assert_eq!(add.code, 0, "{add:?}");
    }

    let web = Serve::start(&env, &db, &["--role", "web"]);
    let worker_args = [
        "--role",
        "worker",
        "--job-lease",
        // Short, to keep the test short; long enough that a loaded CI machine's late heartbeat
        // is not taken for a dead worker.
        "8",
        "--scheduler-tick",
        "1",
        "--stop-grace",
        "30",
    ];
    let mut workers = vec![
        Serve::start(&env, &db, &worker_args),
        Serve::start(&env, &db, &worker_args),
    ];

    // The web process serves the portal and leaves syncs to the workers; a worker serves only
    // its operator's routes.
    env.runtime.block_on(async {
        let http = reqwest::Client::new();
        let get = |url: String| {
            let http = http.clone();
            async move { http.get(url).send().await.expect("GET").status().as_u16() }
        };
        assert_eq!(get(format!("{}/login", web.url)).await, 200);
        assert_eq!(get(format!("{}/readyz", workers[0].url)).await, 200);
        assert_eq!(get(format!("{}/login", workers[0].url)).await, 404);
    });

    // Kill, with SIGKILL, the worker that runs the first sync, while it runs.
    let started = Instant::now();
    let owned_by = |r: &RunRow, pid: u32| {
        r.owner
            .as_deref()
            .is_some_and(|o| o.contains(&format!(":{pid}:")))
    };
    let victim = loop {
        let running = env.runtime.block_on(runs(&db));
        if let Some(at) = workers.iter().position(|w| {
            running
                .iter()
                .any(|r| r.status == "running" && owned_by(r, w.pid()))
        }) {
            break at;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no worker ran a sync: {running:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut killed = workers.remove(victim);
    let killed_pid = killed.pid();
    std::thread::sleep(Duration::from_millis(200));
    killed.child.kill().expect("SIGKILL");
    let _ = killed.child.wait();
    let second = workers.remove(0);

    // Every integration ends with one successful run, whatever the killed worker held.
    let names = env.runtime.block_on(integrations(&db));
    let all = loop {
        let all = env.runtime.block_on(runs(&db));
        let done = names.keys().all(|i| {
            all.iter()
                .any(|r| r.integration == *i && r.status == "succeeded")
        });
        if done && all.iter().all(|r| r.status != "running") {
            break all;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not every integration synced within five minutes: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (id, (product, name)) in &names {
        let mine: Vec<&RunRow> = all.iter().filter(|r| r.integration == *id).collect();
        let succeeded = mine.iter().filter(|r| r.status == "succeeded").count();
        assert_eq!(
            succeeded, 1,
            "{product} {name} synced {succeeded} times: {mine:#?}"
        );
        for r in mine.iter().filter(|r| r.status != "succeeded") {
            // Only the killed worker's run may have failed, closed when its job was taken over.
            assert!(
                r.owner
                    .as_deref()
                    .is_some_and(|o| o.contains(&format!(":{killed_pid}:"))),
                "{r:?}"
            );
            assert!(
                r.error.as_deref().unwrap_or_default().contains("abandoned"),
                "{r:?}"
            );
        }
    }
    // The kill landed mid-sync: the killed worker's runs (one per product at most: one app
    // registration) were closed when the other worker took their jobs over.
    let abandoned = all.iter().filter(|r| r.status == "failed").count();
    assert!((1..=2).contains(&abandoned), "{all:#?}");
    // One app registration: its Endpoint syncs never overlapped, nor its Cloud syncs.
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if names[&a.integration].0 == names[&b.integration].0 {
                assert!(!overlap(a, b), "overlapping runs of one app: {a:?} {b:?}");
            }
        }
    }
    let stats = env.sim.sim.stats();
    assert_eq!(stats.throttled, 0, "the emulator throttled: {stats:?}");

    // SIGTERM: the surviving worker stops cleanly (nothing runs, so at once).
    let status = std::process::Command::new("kill")
        .args(["-TERM", &second.pid().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let mut second = second;
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = second.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    drop(web);
    drop(database);
}

#[test]
fn a_second_worker_on_sqlite_is_refused_and_told_to_use_postgresql() {
    let env = Env::new(SimConfig::default());
    assert_eq!(env.add("contoso", DEMO_SECRET, &[]).code, 0);
    let db = format!("sqlite://{}", env.db().display());
    let _first = Serve::start(&env, &db, &["--role", "worker"]);
    let second = crate::run(
        env.command_with_db(&db).args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-kev-refresh",
            "--role",
            "worker",
        ]),
        None,
    );
    assert_ne!(second.code, 0, "{second:?}");
    let said = second.all();
    assert!(said.contains("SQLite takes one worker"), "{said}");
    assert!(said.contains("PostgreSQL"), "{said}");
    // A web-only process beside it is fine: it runs no jobs.
    let web = Serve::start(&env, &db, &["--role", "web"]);
    assert!(web.url.starts_with("http://127.0.0.1:"));
}

/// `(first job's state, its last error, run statuses with errors)` of the only integration.
async fn job_and_runs(
    db: &std::path::Path,
) -> (String, Option<String>, Vec<(String, Option<String>)>) {
    use sqlx::SqliteConnection;
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("connect");
    let job = sqlx::query("SELECT state, last_error FROM jobs ORDER BY id LIMIT 1")
        .fetch_optional(&mut conn)
        .await
        .expect("job");
    let runs = sqlx::query("SELECT status, error FROM sync_runs ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("runs")
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    match job {
        Some(j) => (j.get(0), j.get(1), runs),
        None => (String::new(), None, runs),
    }
}

#[test]
fn a_worker_stopped_by_sigterm_hands_its_sync_back_and_the_next_worker_finishes_it() {
    let env = Env::with_a_slow_sync();
    let db = format!("sqlite://{}", env.db().display());
    let args = [
        "--role",
        "worker",
        "--scheduler-tick",
        "1",
        "--stop-grace",
        "0",
    ];
    let mut worker = Serve::start(&env, &db, &args);
    let started = Instant::now();
    loop {
        let (state, _, runs) = env.runtime.block_on(job_and_runs(&env.db()));
        if state == "running" && runs.iter().any(|(s, _)| s == "running") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no sync started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &worker.pid().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let exit = worker.child.wait().expect("wait");
    assert!(exit.success(), "{exit:?}");
    let (state, why, runs) = env.runtime.block_on(job_and_runs(&env.db()));
    assert_eq!(state, "queued", "the job went back to the queue");
    assert!(
        why.as_deref().unwrap_or_default().contains("stopped"),
        "{why:?}"
    );
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].0, "failed");
    assert!(
        runs[0]
            .1
            .as_deref()
            .unwrap_or_default()
            .contains("interrupted"),
        "{runs:?}"
    );
    // The slot is free again, and the next worker takes the job at once and finishes it.
    let _next = Serve::start(&env, &db, &args);
    let started = Instant::now();
    loop {
        let (state, _, runs) = env.runtime.block_on(job_and_runs(&env.db()));
        if state == "done" {
            // The scheduler may have queued the next sync, due hours later, by now.
            assert_eq!(runs.len(), 2, "{runs:?}");
            assert_eq!(runs[1].0, "succeeded", "{runs:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not finished: {state} {runs:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
