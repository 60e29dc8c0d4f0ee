//! Test harness: a real SQLite file or a real PostgreSQL database per test.
//!
//! Other crates enable it as a dev-dependency:
//! `rampart-store = { workspace = true, features = ["testing"] }`.
//!
//! ```ignore
//! let (_dir, store) = rampart_store::testing::sqlite_store().await;
//! let store = rampart_store::testing::postgres_store().await;
//! ```
//!
//! PostgreSQL: with `TEST_DATABASE_URL` set (a role that may `CREATE DATABASE`), each test gets a
//! fresh database on that server. Without it, the first call in a test process starts one
//! throwaway server: Debian's PostgreSQL binaries (`/usr/lib/postgresql/<version>/bin`, or
//! `PG_BIN`), `initdb` into a temporary directory (as the `postgres` user when running as root),
//! trust authentication, a free port plus a unix socket in that directory, `fsync=off`. A watchdog
//! process stops the server and removes the directory as soon as the test process is gone, however
//! it ends. Each store drops its database when it is dropped.
//!
//! Nothing here ever skips: when PostgreSQL cannot be had, the test fails and says how to fix it
//! (`scripts/pg-test-server --install`).

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use tempfile::TempDir;

use crate::PgStore;
use crate::{SqliteStore, Store};

/// A fresh SQLite database in a real file. Keep the directory alive as long as the store.
pub async fn sqlite_store() -> (TempDir, Arc<dyn Store>) {
    let dir = tempfile::Builder::new()
        .prefix("rampart-test-")
        .tempdir()
        .expect("cannot create a temporary directory for the test database");
    let store = SqliteStore::open(&dir.path().join("rampart.db"))
        .await
        .unwrap_or_else(|e| panic!("cannot open the test SQLite database: {e}"));
    (dir, Arc::new(store))
}

/// A fresh PostgreSQL database, dropped when the store is dropped. Panics with instructions when
/// no PostgreSQL can be had.
pub async fn postgres_store() -> Arc<dyn Store> {
    let database = postgres_database().await;
    let mut store = PgStore::connect(&database.url)
        .await
        .unwrap_or_else(|e| panic!("cannot open the test PostgreSQL database: {e}"));
    store.attach(Box::new(database));
    Arc::new(store)
}

/// The names of the store's user accounts, in its listing order: what tests compare after
/// accounts were added or removed.
pub async fn user_names(store: &dyn Store) -> Vec<String> {
    store
        .list_users()
        .await
        .unwrap_or_else(|e| panic!("cannot list the users: {e}"))
        .into_iter()
        .map(|u| u.name)
        .collect()
}

/// A fresh, empty PostgreSQL database for other processes to open (the `rampart` binary in a
/// test): its URL, dropped with this value.
pub struct TestDatabase {
    pub url: String,
    _drop: DropDatabase,
}

/// A fresh, empty PostgreSQL database on the test server. Panics with instructions when no
/// PostgreSQL can be had.
pub async fn postgres_database() -> TestDatabase {
    let admin = admin_url().await;
    let name = fresh_database_name();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to the test PostgreSQL server at {}: {e}",
                crate::postgres::redact(&admin)
            )
        });
    // The name is ours (t_<digits>_...), so formatting it into the statement is safe.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot create a test database on {} (the role needs CREATEDB): {e}",
                crate::postgres::redact(&admin)
            )
        });
    let _ = conn.close().await;
    TestDatabase {
        url: with_database(&admin, &name),
        _drop: DropDatabase { admin, name },
    }
}

/// The admin URL of the server tests use: `TEST_DATABASE_URL`, or the throwaway server's.
async fn admin_url() -> String {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL")
        && !url.trim().is_empty()
    {
        return url;
    }
    // Starting the server blocks for a second or two; do it off the async threads.
    let started = tokio::task::spawn_blocking(|| SERVER.get_or_init(start_server).clone())
        .await
        .unwrap_or_else(|e| Err(format!("the server start-up task failed: {e}")));
    match started {
        Ok(url) => url,
        Err(why) => panic!(
            "cannot start a throwaway PostgreSQL server for the tests: {why}\n\
             Install PostgreSQL with `scripts/pg-test-server --install`, or point TEST_DATABASE_URL at a \
             server where the user may CREATE DATABASE (e.g. TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres)."
        ),
    }
}

static SERVER: OnceLock<Result<String, String>> = OnceLock::new();

fn fresh_database_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

fn with_database(admin: &str, name: &str) -> String {
    match url::Url::parse(admin) {
        Ok(mut u) => {
            u.set_path(&format!("/{name}"));
            u.to_string()
        }
        Err(_) => panic!(
            "TEST_DATABASE_URL is not a URL: {}",
            crate::postgres::redact(admin)
        ),
    }
}

/// Drops the per-test database when the store goes.
struct DropDatabase {
    admin: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread with its own
        // small runtime does the work, and we wait for it so the database is gone when the test
        // returns. WITH (FORCE) ends the pool's connections still closing.
        let worker = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = worker.join();
    }
}

// ---- the throwaway server ------------------------------------------------------------------------

/// Where the PostgreSQL server binaries are: `PG_BIN`, else Debian's PostgreSQL 15, else the
/// newest Debian version installed.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        let dir = PathBuf::from(dir);
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let preferred = Path::new("/usr/lib/postgresql/15/bin");
    if preferred.join("initdb").exists() {
        return Some(preferred.to_owned());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root (initdb and the server refuse
/// to run as root).
fn pg_command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

fn id_of(flag: &str, user: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, user])
        .output()
        .map_err(|e| format!("cannot run id: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            format!(
                "there is no '{user}' system user to run PostgreSQL as (installing the postgresql package creates it)"
            )
        })
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Starts the shared server and returns its admin URL. It lives as long as the test process (its
/// watchdog then stops it), so it is never dropped.
fn start_server() -> Result<String, String> {
    let server = ThrowawayServer::launch(Listen::Tcp)?;
    let url = server.url.clone();
    std::mem::forget(server);
    Ok(url)
}

/// Where a throwaway server accepts connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listen {
    /// 127.0.0.1 and the unix socket (the shared server: `scripts/pg-test-server` users may
    /// point tools at it).
    Tcp,
    /// The unix socket in its directory only: no TCP port that another process could take
    /// while the server is stopped, so it can always start again.
    SocketOnly,
}

/// A PostgreSQL server of one test's own, for tests that stop and start the database under a
/// running Rampart (the shared server must never go down under other tests). Dropping it stops
/// the server and removes its directory; a watchdog does the same if the test process dies.
///
/// ```ignore
/// let server = rampart_store::testing::ThrowawayServer::start();
/// let store = rampart_store::connect(server.url()).await?;
/// server.stop();   // the database goes away
/// server.resume(); // and comes back, at the same address
/// ```
#[derive(Debug)]
pub struct ThrowawayServer {
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
    url: String,
}

impl ThrowawayServer {
    /// Starts a new server (a second or two). Panics with instructions when PostgreSQL cannot
    /// be had, as [`postgres_store`] does.
    pub fn start() -> ThrowawayServer {
        ThrowawayServer::launch(Listen::SocketOnly).unwrap_or_else(|why| {
            panic!(
                "cannot start a throwaway PostgreSQL server for this test: {why}\n\
                 Install PostgreSQL with `scripts/pg-test-server --install`."
            )
        })
    }

    /// The URL of its `postgres` database, as its superuser (trust authentication).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server (fast shutdown: open connections are ended) and waits until it is down.
    pub fn stop(&self) {
        let mut stop = self.pg_ctl();
        stop.args(["-m", "fast", "-w", "-t", "60", "stop"]);
        if let Err(e) = run(stop, "pg_ctl stop") {
            panic!("cannot stop the throwaway PostgreSQL server: {e}");
        }
    }

    /// Starts the stopped server again, at the same address, and waits until it accepts
    /// connections.
    pub fn resume(&self) {
        if let Err(e) = self.pg_ctl_start() {
            panic!("cannot start the throwaway PostgreSQL server again: {e}");
        }
    }

    fn launch(listen: Listen) -> Result<ThrowawayServer, String> {
        let bin = postgres_bin_dir().ok_or_else(|| {
            "the PostgreSQL server binaries are not installed (looked in PG_BIN and /usr/lib/postgresql/*/bin)"
                .to_owned()
        })?;
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("rampart-pg-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?
            .keep();
        // From here on the watchdog owns the directory: it removes it (and stops the server) when
        // this process is gone, even if it is killed.
        spawn_watchdog(&bin, &dir, as_postgres)?;
        if as_postgres {
            let uid = id_of("-u", "postgres")?;
            let gid = id_of("-g", "postgres")?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot hand {} to the postgres user: {e}", dir.display()))?;
        }
        let mut server = ThrowawayServer {
            bin,
            dir,
            as_postgres,
            url: String::new(),
        };
        let data = server.dir.join("data");
        let mut initdb = pg_command(&server.bin.join("initdb"), as_postgres);
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(&server.dir);
        run(initdb, "initdb")?;

        let listen_addresses = match listen {
            Listen::Tcp => "127.0.0.1",
            Listen::SocketOnly => "",
        };
        let mut last_error = String::new();
        // A free port can be taken between our probe and the server's bind: try a few. (With
        // the socket only, the port just names the socket file.)
        for _ in 0..3 {
            let port = free_port()?;
            let conf = format!(
                "\n# rampart test server\nport = {port}\nlisten_addresses = '{listen_addresses}'\nunix_socket_directories = '{}'\n\
                 fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\nshared_buffers = 64MB\n",
                server.dir.display()
            );
            let conf_path = data.join("postgresql.conf");
            let mut current = std::fs::read_to_string(&conf_path)
                .map_err(|e| format!("cannot read {}: {e}", conf_path.display()))?;
            if let Some(pos) = current.find("\n# rampart test server\n") {
                current.truncate(pos);
            }
            current.push_str(&conf);
            std::fs::write(&conf_path, current)
                .map_err(|e| format!("cannot write {}: {e}", conf_path.display()))?;

            match server.pg_ctl_start() {
                Ok(()) => {
                    // Connect through the socket: no TCP, and no port another process could hold.
                    server.url = format!(
                        "postgres://postgres@localhost:{port}/postgres?host={}",
                        server.dir.display()
                    );
                    return Ok(server);
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn pg_ctl(&self) -> Command {
        let mut c = pg_command(&self.bin.join("pg_ctl"), self.as_postgres);
        c.arg("-D")
            .arg(self.dir.join("data"))
            .stdout(Stdio::null())
            .current_dir(&self.dir);
        c
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut start = self.pg_ctl();
        start
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "start"]);
        run(start, "pg_ctl start").map_err(|e| {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })
    }
}

impl Drop for ThrowawayServer {
    fn drop(&mut self) {
        if self.dir.join("data").join("postmaster.pid").exists() {
            let mut stop = self.pg_ctl();
            stop.args(["-m", "immediate", "-w", "stop"]);
            let _ = run(stop, "pg_ctl stop");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A detached shell that waits for this process to end, then stops the server and removes its
/// directory.
fn spawn_watchdog(bin: &Path, dir: &Path, as_postgres: bool) -> Result<(), String> {
    let pg_ctl = bin.join("pg_ctl");
    let stop = if as_postgres {
        format!(
            "runuser -u postgres -- '{}' -D \"$2/data\" -m immediate -w stop",
            pg_ctl.display()
        )
    } else {
        format!("'{}' -D \"$2/data\" -m immediate -w stop", pg_ctl.display())
    };
    let script = format!(
        "while kill -0 \"$1\" 2>/dev/null; do sleep 0.3; done; \
         if [ -f \"$2/data/postmaster.pid\" ]; then {stop} >/dev/null 2>&1; fi; rm -rf \"$2\""
    );
    // setsid: a Ctrl-C sent to the test's process group must not kill the watchdog before it
    // has cleaned up.
    let mut c = if Path::new("/usr/bin/setsid").exists() {
        let mut c = Command::new("/usr/bin/setsid");
        c.arg("sh");
        c
    } else {
        Command::new("sh")
    };
    c.arg("-c")
        .arg(script)
        .arg("rampart-pg-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(|_| ())
        .map_err(|e| format!("cannot start the server's watchdog: {e}"))?;
    // Give the shell a moment so that the directory is never left without a guardian.
    std::thread::sleep(Duration::from_millis(10));
    Ok(())
}
