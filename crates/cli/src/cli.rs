//! The command-line interface (stable: tests and docs depend on it; extend, don't break).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rampart_model::{ClientId, Cloud, IntegrationName, Product, TenantId};

#[derive(Debug, Parser)]
#[command(
    name = "rampart",
    version,
    about = "Microsoft Defender for Endpoint and Defender for Cloud, in your own exposure store.",
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Where Rampart keeps its data: a SQLite file (sqlite://path) or a PostgreSQL URL
    /// (postgres://user@host/db). Default: sqlite://./rampart-data/rampart.db
    #[arg(long, global = true, env = "DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,

    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RAMPART_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// More detail in logs (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Settings file (TOML; see `rampart config check`). Default: ./rampart.toml when it exists.
    /// Command-line options and environment variables override what it says.
    #[arg(long, global = true, env = crate::config::CONFIG_ENV, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Options of the commands that sync (sync, serve, demo): only they show them.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// From how many devices a full Defender for Endpoint read takes the findings from export
    /// files instead of JSON pages, when the source is auto (the default; `sync --source` forces
    /// either). Microsoft advises the files above 100,000 devices.
    #[arg(long, env = "RAMPART_FILES_FROM_DEVICES", value_name = "N",
          default_value_t = rampart_sync::EngineOptions::default().file_export_threshold)]
    pub files_from_devices: u64,
    /// Where people reach the portal (e.g. https://rampart.example.com): webhook alerts link to
    /// it. Unset: alerts carry no links.
    #[arg(long, env = "RAMPART_PUBLIC_URL", value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the emulator, add two integrations, sync them and serve the portal: nothing to configure.
    Demo(DemoArgs),
    /// Serve the portal and REST API, and run scheduled syncs.
    Serve(ServeArgs),
    /// Run the emulator of Microsoft Entra ID and Defender for Endpoint on its own.
    Sim(SimArgs),
    /// Add, list, test or remove integrations.
    #[command(subcommand)]
    Integration(IntegrationCommand),
    /// Sync one integration, or all of them.
    Sync(SyncArgs),
    /// Export stored data as CSV, JSON lines or OCSF.
    Export(ExportArgs),
    /// Manage portal accounts and their roles in workspaces.
    #[command(subcommand)]
    User(UserCommand),
    /// Add, list or remove workspaces (one per customer or team; docs/workspaces.md).
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Outgoing alerts by webhook: add, list, remove or test (docs/webhooks.md).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// SLA days per decision (the installation's or an integration's own) and the SLA report
    /// (docs/prioritisation.md).
    #[command(subcommand)]
    Sla(SlaCommand),
    /// Copy the SQLite database to a file while Rampart runs (PostgreSQL: prints the pg_dump
    /// command).
    Backup(BackupArgs),
    /// Replace the SQLite database with a backup (stop Rampart first).
    Restore(RestoreArgs),
    /// Threat intelligence (CISA's Known Exploited Vulnerabilities catalogue): refresh it now,
    /// import a downloaded copy, or show what is stored.
    #[command(subcommand)]
    Intel(IntelCommand),
    /// Check the settings file and show the settings in effect.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The transfer floor of `scripts/bench`: download what a full sync downloads, discard it.
    #[command(hide = true)]
    BenchDownload(BenchDownloadArgs),
}

#[derive(Debug, Args)]
pub struct BenchDownloadArgs {
    #[arg(long, value_parser = parse_url)]
    pub login_url: String,
    #[arg(long, value_parser = parse_url)]
    pub api_url: String,
    #[arg(long)]
    pub tenant_id: TenantId,
    #[arg(long)]
    pub client_id: ClientId,
    /// The environment variable holding the client secret.
    #[arg(long, value_name = "VAR")]
    pub client_secret_env: String,
    /// JSON pages or export files (auto means pages).
    #[arg(long, value_enum, default_value_t = SourceArg::Pages)]
    pub source: SourceArg,
    /// `pageSize` of the JSON export pages (the sync's default).
    #[arg(long, default_value_t = 100_000)]
    pub page_size: u32,
    /// Export files downloaded at a time (the sync's default).
    #[arg(long, default_value_t = 3)]
    pub concurrency: usize,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the portal.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Devices in the simulated tenant.
    #[arg(long, default_value_t = 2000)]
    pub devices: u32,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// HTTPS served by Rampart itself (serve, demo); without them, plain HTTP (behind a reverse
/// proxy that terminates TLS: see --trusted-proxy).
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate: a PEM file, the server's certificate first, then its
    /// intermediates. Needs --tls-key. SIGHUP re-reads both files (a renewed certificate).
    #[arg(long, env = "RAMPART_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key: a PEM file (PKCS#8, RSA or EC), unencrypted, readable
    /// only by the user Rampart runs as. Needs --tls-cert.
    #[arg(long, env = "RAMPART_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Connections served at once; further ones wait until one closes.
    #[arg(long, env = "RAMPART_MAX_CONNECTIONS", value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Seconds a client has to send a complete request head (also the wait for the next request
    /// on a kept-alive connection).
    #[arg(long, env = "RAMPART_HEADER_TIMEOUT", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Seconds after which a connection moving no bytes while none of its requests is answered,
    /// or a request body that stops arriving, is closed.
    #[arg(long, env = "RAMPART_IDLE_TIMEOUT", value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout: u64,
    /// A reverse proxy (address or CIDR, repeatable) whose X-Forwarded-For and X-Forwarded-Proto
    /// are believed: the login rate limit then counts per client, and cookies are Secure when
    /// the proxy says the browser came over HTTPS. Nobody else's are believed.
    #[arg(long = "trusted-proxy", value_name = "CIDR", env = "RAMPART_TRUSTED_PROXIES",
          value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<rampart_web::IpNet>,
    /// Browsers always reach Rampart over HTTPS (a TLS terminator in front that sends no
    /// X-Forwarded-Proto): mark every cookie Secure. With --tls-cert they always are.
    #[arg(long)]
    pub secure_cookies: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Portal sessions end this many hours after sign-in, however busy (they also end after 8
    /// hours without a request).
    #[arg(long, value_name = "HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub session_lifetime: u64,
    /// Ask for this bearer token on /metrics: the name of the environment variable holding it
    /// (never the token itself on the command line, where `ps` shows it).
    #[arg(long, value_name = "VAR")]
    pub metrics_token_env: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub kev: KevFeedArgs,
    /// Do not refresh the KEV catalogue (a site without internet access that imports it with
    /// `rampart intel import kev FILE`).
    #[arg(long)]
    pub no_kev_refresh: bool,
    /// What this process does: `all` (portal, API and sync jobs), `web` (portal and API; "Sync
    /// now" queues for the workers) or `worker` (sync jobs; serves only /healthz, /readyz and
    /// /metrics). Several web and worker processes may share one PostgreSQL database; SQLite
    /// takes one process that runs jobs.
    #[arg(long, env = "RAMPART_ROLE", value_enum, default_value_t = ServeRole::All)]
    pub role: ServeRole,
    /// Seconds a sync job may go without its worker's heartbeat before another worker takes it
    /// over (heartbeats go every quarter of it).
    #[arg(long, env = "RAMPART_JOB_LEASE", value_name = "SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(4..=86_400))]
    pub job_lease: u64,
    /// On SIGTERM or Ctrl-C: seconds running syncs get to finish before they are stopped and
    /// their jobs handed back to the queue for another worker.
    #[arg(long, env = "RAMPART_STOP_GRACE", value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub stop_grace: u64,
    /// Seconds between the scheduler's looks for due syncs (a finished sync also starts the next
    /// waiting one at once).
    #[arg(long, env = "RAMPART_SCHEDULER_TICK", value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub scheduler_tick: u64,
}

/// `serve --role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeRole {
    All,
    Web,
    Worker,
}

impl From<ServeRole> for rampart_web::ServerRole {
    fn from(role: ServeRole) -> Self {
        match role {
            ServeRole::All => rampart_web::ServerRole::All,
            ServeRole::Web => rampart_web::ServerRole::Web,
            ServeRole::Worker => rampart_web::ServerRole::Worker,
        }
    }
}

/// Where CISA's KEV catalogue is read from (`serve` refreshes it daily, `intel refresh` now).
#[derive(Debug, Args)]
pub struct KevFeedArgs {
    /// URL of CISA's Known Exploited Vulnerabilities feed, or a mirror of it: https (plain http
    /// only to a loopback address).
    #[arg(long, env = "RAMPART_KEV_URL", value_name = "URL",
          default_value = rampart_sync::intel::DEFAULT_KEV_URL, value_parser = parse_kev_url)]
    pub kev_url: String,
}

#[derive(Debug, Subcommand)]
pub enum IntelCommand {
    /// Download the KEV catalogue now (a conditional GET: when it is unchanged, nothing is
    /// downloaded and the stored one is kept).
    Refresh {
        #[command(flatten)]
        feed: KevFeedArgs,
    },
    /// Import a downloaded file, for a site without internet access: `rampart intel import kev
    /// known_exploited_vulnerabilities.json`. A file that is not the feed, or not whole, is
    /// refused and the stored catalogue kept.
    Import {
        #[arg(value_enum)]
        source: IntelSourceArg,
        /// The file, as downloaded from CISA.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Show the stored KEV catalogue: version, entries, when and where it was read, and the
    /// last error.
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IntelSourceArg {
    /// CISA's Known Exploited Vulnerabilities catalogue (JSON).
    Kev,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Seed of the generated tenant: the same seed always gives the same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Devices in the tenant at the start.
    #[arg(long, default_value_t = 200)]
    pub devices: u32,
    /// Average number of vulnerability findings per device.
    #[arg(long, default_value_t = 100)]
    pub findings_per_device: u32,
    /// Tenant ID the emulator accepts (default: the documented demo tenant).
    #[arg(long, requires_all = ["client_id", "client_secret"])]
    pub tenant_id: Option<TenantId>,
    /// Client ID of the emulated app registration.
    #[arg(long, requires_all = ["tenant_id", "client_secret"])]
    pub client_id: Option<ClientId>,
    /// Client secret of the emulated app registration (it is the emulator's own, not a real one).
    #[arg(long, requires_all = ["tenant_id", "client_id"])]
    pub client_secret: Option<String>,
    /// Application roles in issued tokens (comma-separated); give an empty value for a token
    /// without roles (no admin consent).
    #[arg(long, value_delimiter = ',')]
    pub roles: Option<Vec<String>>,
    /// The configured client secret has expired (token requests fail with AADSTS7000222).
    #[arg(long)]
    pub secret_expired: bool,
    /// Do not enforce Microsoft's documented rate limits.
    #[arg(long)]
    pub no_rate_limits: bool,
    /// Share of API requests that fail (429, 5xx, resets, truncated bodies), from 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub fault_rate: f64,
    /// Advance the simulated tenant by one 6-hour snapshot every this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub tick_every: Option<u64>,
    /// Compress API responses when the client offers it, as Microsoft does (on), or never (off:
    /// spares the emulator's CPU in benchmarks on loopback). Export files are gzip either way.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub compression: OnOff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum IntegrationCommand {
    /// Add an integration. The client secret is read from standard input or an environment
    /// variable, never from the command line.
    Add(IntegrationAddArgs),
    /// List integrations.
    List,
    /// Test the connection step by step (login host, token, roles, one read of each API).
    Test { name: IntegrationName },
    /// Remove an integration and the data it synced.
    Remove {
        name: IntegrationName,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Move an integration, with everything it synced, to another workspace.
    Move {
        name: IntegrationName,
        /// The workspace it moves to (`rampart workspace list` shows them).
        #[arg(long, value_name = "WORKSPACE")]
        workspace: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Add a workspace.
    Add { name: String },
    /// List workspaces with how many integrations and members each has.
    List,
    /// Remove a workspace that holds no integrations (its roles and API tokens go with it).
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SlaCommand {
    /// Show the SLA days: the installation's, and each integration's own where it has them.
    Show,
    /// Change the days of the installation, or of one integration with --integration. Days not
    /// given keep what applies now. Queues the re-assessment that moves the due dates.
    Set(SlaSetArgs),
    /// Make an integration use the installation's days again.
    Unset {
        #[arg(long)]
        integration: IntegrationName,
    },
    /// SLA compliance: open findings on track, due soon, overdue and accepted; findings fixed in
    /// the period, on time, and the time they took.
    Report(SlaReportArgs),
}

#[derive(Debug, Args)]
pub struct SlaSetArgs {
    /// Set this integration's own days instead of the installation's.
    #[arg(long)]
    pub integration: Option<IntegrationName>,
    /// Days to fix an `immediate` finding.
    #[arg(long, value_name = "DAYS")]
    pub immediate: Option<u32>,
    /// Days to fix an `out-of-cycle` finding.
    #[arg(long, value_name = "DAYS")]
    pub out_of_cycle: Option<u32>,
    /// Days to fix a `scheduled` finding.
    #[arg(long, value_name = "DAYS")]
    pub scheduled: Option<u32>,
    /// Days to fix a `defer` finding.
    #[arg(long, value_name = "DAYS")]
    pub defer: Option<u32>,
}

#[derive(Debug, Args)]
pub struct SlaReportArgs {
    /// One integration only.
    #[arg(long)]
    pub integration: Option<IntegrationName>,
    /// The period for fixed findings: 30, 90 or 365 days (default 30).
    #[arg(long)]
    pub days: Option<u32>,
    /// Print JSON (the shape of `GET /api/v1/sla/report`) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add a webhook. The URL is read from standard input or an environment variable (for Teams
    /// and Slack it is a credential); a generic webhook's signing secret is printed once.
    Add(WebhookAddArgs),
    /// List webhooks with their last delivery's status.
    List,
    /// Remove a webhook and its delivery log.
    Remove { name: String },
    /// Send a test message now and say how the receiver answered.
    Test { name: String },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("url").multiple(false).args(["url_stdin", "url_env"])))]
pub struct WebhookAddArgs {
    #[arg(long)]
    pub name: String,
    /// generic (signed JSON), teams or slack.
    #[arg(long, default_value = "generic")]
    pub format: String,
    /// Comma-separated: immediate_finding, sla_breach, sync_failed, secret_expiring.
    #[arg(long, value_delimiter = ',', required = true)]
    pub events: Vec<String>,
    /// The workspace whose events it receives; without it, every workspace's.
    #[arg(long)]
    pub workspace: Option<String>,
    /// Read the URL from standard input.
    #[arg(long)]
    pub url_stdin: bool,
    /// Read the URL from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub url_env: Option<String>,
}

#[derive(Debug, Args)]
// Exactly one secret source; "none given" is reported by the command in one line, not by clap.
#[command(group(clap::ArgGroup::new("secret").multiple(false).args(["client_secret_stdin", "client_secret_env"])))]
pub struct IntegrationAddArgs {
    #[arg(long)]
    pub name: IntegrationName,
    /// endpoint (Defender for Endpoint) or cloud (Defender for Cloud).
    #[arg(long)]
    pub product: Product,
    /// Directory (tenant) ID: a GUID or a verified domain.
    #[arg(long)]
    pub tenant_id: TenantId,
    /// Application (client) ID of the Entra app registration.
    #[arg(long)]
    pub client_id: ClientId,
    /// Read the client secret (its Value, not its Secret ID) from standard input.
    #[arg(long)]
    pub client_secret_stdin: bool,
    /// Read the client secret from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub client_secret_env: Option<String>,
    /// When the client secret expires (YYYY-MM-DD), so Rampart can warn 30 days ahead.
    #[arg(long, value_name = "DATE")]
    pub secret_expires: Option<chrono::NaiveDate>,
    #[arg(long, default_value = "commercial")]
    pub cloud: Cloud,
    /// Override the login host (emulator, proxy).
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub login_url: Option<String>,
    /// Override the API host (emulator, proxy, regional host).
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub api_url: Option<String>,
    /// Minutes between scheduled syncs (default: 360 for endpoint, 480 for cloud).
    #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(i64).range(5..=10080))]
    pub schedule: Option<i64>,
    /// The workspace it belongs to (default: Default).
    #[arg(long, value_name = "WORKSPACE")]
    pub workspace: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["name", "all"])))]
pub struct SyncArgs {
    pub name: Option<IntegrationName>,
    /// Sync every enabled integration.
    #[arg(long)]
    pub all: bool,
    /// With --all: only the integrations of this workspace.
    #[arg(long, value_name = "WORKSPACE", requires = "all")]
    pub workspace: Option<String>,
    /// Read everything (a new baseline) even when an incremental sync is possible.
    #[arg(long)]
    pub full: bool,
    /// Conclude even when the run would mark more than 30 % of devices missing, or Microsoft's
    /// export shrank by more than half: for when you know the mass change is real.
    #[arg(long)]
    pub accept_mass_changes: bool,
    /// Where a full read of Defender for Endpoint takes the findings from: JSON pages, export
    /// files, or auto (files from `--files-from-devices` devices up, 100,000 unless set, as
    /// Microsoft advises).
    #[arg(long, value_enum, default_value_t = SourceArg::Auto)]
    pub source: SourceArg,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    Auto,
    Pages,
    Files,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportKind {
    Assets,
    Findings,
    Vulnerabilities,
    Posture,
    /// The remediation plan ("Fix first"): fixes ranked by the priority they remove.
    Remediations,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
    Ocsf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(value_enum)]
    pub kind: ExportKind,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    #[arg(long)]
    pub integration: Option<IntegrationName>,
    /// Only what the integrations of this workspace synced (for vulnerabilities: the CVEs they
    /// found).
    #[arg(long, value_name = "WORKSPACE")]
    pub workspace: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file to write (it must not exist yet).
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file (from `rampart backup`) to restore.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Replace a database that holds integrations or accounts.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the settings file (rampart.toml, or --config FILE) and print the settings in
    /// effect, each with where it came from; passwords in database URLs are hidden.
    Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Admin,
    Viewer,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a portal account; the password is read from standard input.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set an account's password (read from standard input); its portal sessions end.
    Passwd {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Remove a portal account (never the last admin); its portal sessions end.
    Remove {
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Give an account a role in a workspace (replacing the role it had there).
    Grant {
        /// The account's name.
        name: String,
        /// The workspace (`rampart workspace list` shows them).
        #[arg(long, value_name = "WORKSPACE")]
        workspace: String,
        /// admin: may change the workspace's integrations; viewer: may only look.
        #[arg(long, value_enum)]
        role: Role,
    },
    /// Take an account's role in a workspace away.
    Revoke {
        /// The account's name.
        name: String,
        /// The workspace (`rampart workspace list` shows them).
        #[arg(long, value_name = "WORKSPACE")]
        workspace: String,
    },
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a number from 0 to 1")),
    }
}

/// An address (`10.0.0.5`, taken as one host) or a network in CIDR notation (`10.0.0.0/8`).
fn parse_network(s: &str) -> Result<rampart_web::IpNet, String> {
    let s = s.trim();
    s.parse::<rampart_web::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(rampart_web::IpNet::from))
        .map_err(|_| {
            format!(
                "'{}' is not an address or network: give one like 10.0.0.5, 10.0.0.0/8 or fd00::/8",
                s.chars().take(60).collect::<String>()
            )
        })
}

fn parse_kev_url(s: &str) -> Result<String, String> {
    rampart_sync::intel::check_feed_url(s)
        .map(|u| u.to_string())
        .map_err(|e| e.to_string())
}

/// The portal's address as people reach it: an http(s) URL with no credentials, query or
/// fragment (alerts append paths to it), kept without its trailing slash.
fn parse_public_url(s: &str) -> Result<String, String> {
    // An address with an `@` may carry a password, which an error must not repeat.
    let shown = if s.contains('@') {
        "the address given".to_owned()
    } else {
        format!("'{}'", s.chars().take(80).collect::<String>())
    };
    let url = reqwest::Url::parse(s.trim()).map_err(|e| {
        format!("{shown} is not a URL ({e}): give the portal's address, like https://rampart.example.com")
    })?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(format!(
            "{shown} is not an http(s) address: give the portal's address, like https://rampart.example.com"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the public URL must not carry a user name or password: alerts would show them to every receiver".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{shown} has a query or fragment: alerts append paths to the public URL, so give the portal's address alone"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn parse_url(s: &str) -> Result<String, String> {
    let trimmed = s.trim_end_matches('/');
    let ok = (trimmed.starts_with("https://") || trimmed.starts_with("http://"))
        && trimmed.len() > "http://".len()
        && !trimmed.contains(char::is_whitespace);
    if !ok {
        return Err(format!(
            "'{}' is not an http(s) URL like https://api.security.microsoft.com",
            s.chars().take(80).collect::<String>()
        ));
    }
    // The same rules as the portal and the API: plain http only to this machine, no credentials.
    rampart_sync::check_override_url("URL", trimmed).map_err(|e| e.to_string())?;
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_interface_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_public_url_is_the_portals_address_alone() {
        assert_eq!(
            parse_public_url("https://rampart.example.com/").as_deref(),
            Ok("https://rampart.example.com")
        );
        assert_eq!(
            parse_public_url("http://10.0.0.5:8080/rampart/").as_deref(),
            Ok("http://10.0.0.5:8080/rampart")
        );
        for bad in [
            "rampart.example.com",
            "ftp://rampart.example.com",
            "https://admin:hunter2@rampart.example.com",
            "https://rampart.example.com/?tenant=1",
            "https://rampart.example.com/#top",
            "admin:hunter2@rampart.example.com",
        ] {
            let error = parse_public_url(bad).expect_err(bad);
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
