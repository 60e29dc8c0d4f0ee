//! The `rampart` binary as a person uses it: real processes, a real emulator over HTTP, a real
//! SQLite file. Output is captured and searched for secrets.

mod backup;
mod bad_input;
mod cloud;
mod cloud_posture;
mod config;
mod flow;
mod intel;
#[cfg(unix)]
mod key_file;
mod kill;
mod scale_out;
mod sla;
mod tls;
mod webhooks;
mod workspaces;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rampart_sim::{RunningSim, SimConfig};

pub const DEMO_SECRET: &str = "rampart-demo-secret-value-0001";

/// A connection of the test's own to the SQLite file a `rampart` process writes, waiting up to
/// 30 s for its locks.
pub async fn sqlite_connection(path: &Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(30)),
    )
    .await
    .expect("connect")
}

/// Reads the rest of a child's standard error on a thread of its own: a full pipe would stall the
/// child, not what the test looks at.
pub fn drain(mut reader: BufReader<ChildStderr>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
    })
}

/// A data directory and the emulator the commands talk to.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub sim: RunningSim,
    pub runtime: tokio::runtime::Runtime,
}

impl Env {
    pub fn new(config: SimConfig) -> Env {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let sim = runtime
            .block_on(rampart_sim::spawn(config))
            .expect("sim starts");
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            sim,
            runtime,
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("data").join("rampart.db")
    }

    pub fn command(&self) -> Command {
        self.command_with_db(&format!("sqlite://{}", self.db().display()))
    }

    pub fn command_with_db(&self, db: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
        cmd.arg("--database")
            .arg(db)
            .env_remove("RAMPART_MASTER_KEY")
            .env_remove("DATABASE_URL")
            .env_remove("RAMPART_FILES_FROM_DEVICES")
            .env_remove("RAMPART_KEV_URL")
            .env("RUST_LOG", "debug")
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs `rampart ARGS` with `stdin` as standard input.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        run(self.command().args(args), stdin)
    }

    /// `integration add` against the emulator with its own tenant and client and the given secret.
    pub fn add(&self, name: &str, secret: &str, extra: &[&str]) -> Run {
        let config = self.sim.sim.config();
        let (tenant, client) = (&config.tenant_id, &config.client_id);
        self.add_product("endpoint", name, tenant, client, secret, extra)
    }

    /// A Defender for Cloud integration against the emulator.
    pub fn add_cloud(&self, name: &str, extra: &[&str]) -> Run {
        let config = self.sim.sim.config();
        self.add_product(
            "cloud",
            name,
            &config.tenant_id,
            &config.client_id,
            DEMO_SECRET,
            extra,
        )
    }

    /// A tenant large enough that a sync is still reading findings while a test acts, with the
    /// integration `contoso` pointing at it.
    pub fn with_a_slow_sync() -> Env {
        let env = Env::new(SimConfig {
            devices: 600,
            findings_per_device: 40,
            ..SimConfig::default()
        });
        assert_eq!(env.add("contoso", DEMO_SECRET, &[]).code, 0);
        env
    }

    /// `sync NAME` started in the background, once it reads findings; its standard error goes on
    /// in the reader.
    #[expect(
        clippy::zombie_processes,
        reason = "the child is returned; the caller kills or waits for it"
    )]
    pub fn sync_reading_findings(&self, name: &str) -> (Child, BufReader<ChildStderr>) {
        let mut child = self
            .command()
            .args(["sync", name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sync starts");
        let mut reader = BufReader::new(child.stderr.take().expect("stderr"));
        let started = Instant::now();
        let mut line = String::new();
        loop {
            line.clear();
            let ended = reader.read_line(&mut line).map_or(true, |n| n == 0);
            if line.contains("reading findings…") {
                return (child, reader);
            }
            if ended || started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the sync ended, or took two minutes, before reading findings");
            }
        }
    }

    /// `integration add NAME` of `product` (endpoint or cloud) against the emulator, with its
    /// tenant, client and the demo secret, into the database at `db`.
    pub fn add_on(&self, db: &str, product: &str, name: &str) -> Run {
        let config = self.sim.sim.config();
        let args = self.add_args(product, name, &config.tenant_id, &config.client_id);
        run(self.command_with_db(db).args(args), Some(DEMO_SECRET))
    }

    /// `integration add` of `product` against the emulator with the given tenant, client and
    /// secret.
    pub fn add_product(
        &self,
        product: &str,
        name: &str,
        tenant: &str,
        client: &str,
        secret: &str,
        extra: &[&str],
    ) -> Run {
        let mut args = self.add_args(product, name, tenant, client);
        args.extend_from_slice(extra);
        self.run(&args, Some(secret))
    }

    /// The arguments of `integration add` against the emulator (the secret on standard input).
    fn add_args<'a>(
        &'a self,
        product: &'a str,
        name: &'a str,
        tenant: &'a str,
        client: &'a str,
    ) -> Vec<&'a str> {
        vec![
            "integration",
            "add",
            "--name",
            name,
            "--product",
            product,
            "--tenant-id",
            tenant,
            "--client-id",
            client,
            "--client-secret-stdin",
            "--login-url",
            &self.sim.url,
            "--api-url",
            &self.sim.url,
        ]
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn run(cmd: &mut Command, stdin: Option<&str>) -> Run {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("rampart starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        // rampart may refuse its arguments before it reads standard input: a broken pipe then
        // is expected, and the exit code tells the rest.
        let _ = pipe.write_all(input.as_bytes());
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("rampart ends");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}
