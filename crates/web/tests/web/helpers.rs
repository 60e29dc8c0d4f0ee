//! `spawn_app()` and `TestApp`: a running portal with an admin and a viewer, the emulator, and a
//! small cookie-keeping client that behaves like a browser (Origin, Sec-Fetch-Site, form tokens).

use rampart_model::IntegrationId;
use std::sync::Arc;

use rampart_model::{AssetKind, IntegrationName};
use rampart_sim::{RunningSim, SimConfig};
use rampart_store::{Role, Store};
use rampart_sync::vault::Vault;
use rampart_sync::{Engine, EngineOptions};
use rampart_web::{Application, WebConfig};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::SecretString;
use tempfile::TempDir;

pub const ADMIN: &str = "alice";
pub const VIEWER: &str = "victor";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub url: String,
    pub store: Arc<dyn Store>,
    pub sim: RunningSim,
    pub sim_config: SimConfig,
    /// Stops the first server (graceful shutdown; its scheduler is off anyway).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: TempDir,
}

/// Another server process, as far as the database can tell: its own store connections, engine,
/// worker name and scheduler.
pub struct Server {
    pub url: String,
    pub store: Arc<dyn Store>,
    _task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(40).await
}

pub async fn spawn_app_with(devices: u32) -> TestApp {
    spawn_app_with_sim(sim_with(devices)).await
}

/// The emulator the tests use unless they say otherwise.
fn sim_with(devices: u32) -> SimConfig {
    SimConfig {
        devices,
        findings_per_device: 8,
        rate_limits: false,
        ..SimConfig::default()
    }
}

/// The app against an emulator configured as given.
pub async fn spawn_app_with_sim(sim_config: SimConfig) -> TestApp {
    let (dir, store) = rampart_store::testing::sqlite_store().await;
    spawn_app_on(sim_config, dir, store, |_| {}).await
}

/// A test app on a fresh PostgreSQL database (the store's harness starts a server if needed).
pub async fn spawn_app_on_postgres() -> TestApp {
    let store = rampart_store::testing::postgres_store().await;
    spawn_app_on(sim_with(40), tempfile::tempdir().unwrap(), store, |_| {}).await
}

/// The app over a store the test opened itself (a database it controls).
pub async fn spawn_app_over(store: Arc<dyn Store>) -> TestApp {
    spawn_app_on(sim_with(40), tempfile::tempdir().unwrap(), store, |_| {}).await
}

/// A test app on a fresh SQLite database whose server runs with `configure`d options.
pub async fn spawn_app_configured(devices: u32, configure: impl FnOnce(&mut WebConfig)) -> TestApp {
    let (dir, store) = rampart_store::testing::sqlite_store().await;
    spawn_app_on(sim_with(devices), dir, store, configure).await
}

/// The engine every test server runs, over `store` (one master key: servers on one database
/// open each other's secrets).
pub fn engine(store: &Arc<dyn Store>) -> Arc<Engine> {
    Arc::new(Engine::new(
        store.clone(),
        Vault::from_key(&[7u8; 32]),
        EngineOptions::default(),
    ))
}

async fn spawn_app_on(
    sim_config: SimConfig,
    dir: TempDir,
    store: Arc<dyn Store>,
    configure: impl FnOnce(&mut WebConfig),
) -> TestApp {
    capture_logs();
    let sim = rampart_sim::spawn(sim_config.clone()).await.unwrap();
    let engine = engine(&store);
    let mut config = WebConfig::new("127.0.0.1:0".parse().unwrap());
    config.scheduler = false;
    configure(&mut config);
    let app = Application::build(config, engine).await.unwrap();
    let url = app.url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    for (name, role) in [(ADMIN, Role::Admin), (VIEWER, Role::Viewer)] {
        rampart_web::create_user(
            store.as_ref(),
            name,
            role,
            &SecretString::from(PASSWORD.to_owned()),
            rampart_web::PasswordChosenBy::Owner,
            "test",
        )
        .await
        .unwrap();
    }
    TestApp {
        url,
        store,
        sim,
        sim_config,
        stop: Some(stop),
        _dir: dir,
    }
}

/// A page as fetched.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn csrf(&self) -> Option<String> {
        let key = "name=\"csrf_token\" value=\"";
        let start = self.body.find(key)? + key.len();
        let end = self.body[start..].find('"')?;
        Some(self.body[start..start + end].to_owned())
    }
}

/// A cookie-keeping client that sends what a browser sends on a same-origin form post.
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// The cookies set so far, by name (a browser's cookie jar for one site).
    cookies: std::collections::BTreeMap<String, String>,
    /// Headers sent with every request (what a proxy in front would add).
    extra: Vec<(String, String)>,
    pub csrf: Option<String>,
}

impl TestApp {
    /// The SQLite file every server of this test shares.
    pub fn database(&self) -> std::path::PathBuf {
        self._dir.path().join("rampart.db")
    }

    /// Stops the first server, as a restart would.
    pub fn stop_first_server(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Starts another server on the same database, with its scheduler ticking every `tick`.
    pub async fn another_server(&self, tick: std::time::Duration) -> Server {
        let store: Arc<dyn Store> = Arc::new(
            rampart_store::SqliteStore::open(&self.database())
                .await
                .unwrap(),
        );
        let engine = engine(&store);
        let mut config = WebConfig::new("127.0.0.1:0".parse().unwrap());
        config.scheduler_tick = tick;
        let app = Application::build(config, engine).await.unwrap();
        let url = app.url();
        Server {
            url,
            store,
            _task: tokio::spawn(app.run_until(std::future::pending())),
        }
    }

    pub fn client(&self) -> Client {
        Client::of(&self.url)
    }

    /// `GET /api/v1{path}` with an API token, as a script sends it (no cookies, no form token).
    pub async fn api_get_with(&self, token: &str, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("{}/api/v1{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `{method} /api/v1{path}` with an API token and an optional JSON body: the status and the
    /// JSON answer (`Null` when the body is not JSON).
    pub async fn api_json(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (
            r.status(),
            r.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn signed_in(&self, name: &str) -> Client {
        let mut c = self.client();
        let page = c.login(name, PASSWORD).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        // The token changes at login: pick up the new one.
        c.get("/").await;
        c
    }

    /// An API token of `scope`, created through the portal by the admin.
    pub async fn api_token(&self, scope: &str) -> String {
        let mut admin = self.signed_in(ADMIN).await;
        let page = admin
            .post("/tokens", &[("name", "tests"), ("scope", scope)])
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let key = "<code id=\"new-token\">";
        let start = page.body.find(key).unwrap() + key.len();
        let end = page.body[start..].find('<').unwrap();
        page.body[start..start + end].to_owned()
    }

    /// Adds the emulator's Endpoint integration through the portal; returns its id.
    pub async fn add_integration(&self, admin: &mut Client, name: &str, secret: &str) -> i64 {
        let page = admin
            .post("/integrations", &self.integration_form(name, secret))
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let location = page.location().unwrap();
        location
            .trim_start_matches("/integrations/")
            .split('?')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub fn integration_form(&self, name: &str, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("name", name.to_owned()),
            ("product", "endpoint".into()),
            ("cloud", "commercial".into()),
            ("tenant_id", self.sim_config.tenant_id.clone()),
            ("client_id", self.sim_config.client_id.clone()),
            ("client_secret", secret.to_owned()),
            ("secret_expires", String::new()),
            ("login_url", self.sim.url.clone()),
            ("api_url", self.sim.url.clone()),
            ("schedule_minutes", "360".into()),
            ("enabled", "on".into()),
        ]
    }

    /// Waits until the integration's last run is finished; returns its status.
    pub async fn wait_for_run(&self, id: i64) -> String {
        for _ in 0..600 {
            let runs = self
                .store
                .list_runs(&rampart_store::Visibility::All, IntegrationId(id), 1)
                .await
                .unwrap();
            if let Some(r) = runs.first()
                && r.status != rampart_model::RunStatus::Running
            {
                return r.status.as_str().to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the sync did not finish within a minute");
    }

    /// Stores one asset under a new integration, straight through the store (for hostile names).
    pub async fn seed_asset(&self, name: &str) -> i64 {
        self.seed_asset_named(name, "seeded").await
    }

    /// [`TestApp::seed_asset`] under a new integration of this name.
    pub async fn seed_asset_named(&self, name: &str, integration: &str) -> i64 {
        use rampart_store::{NewIntegration, RunOutcome, SecretCiphertext};
        let integration = self
            .store
            .create_integration(&NewIntegration {
                name: integration.parse::<IntegrationName>().unwrap(),
                product: rampart_model::Product::Endpoint,
                cloud: rampart_model::Cloud::Commercial,
                tenant_id: self.sim_config.tenant_id.parse().unwrap(),
                client_id: self.sim_config.client_id.parse().unwrap(),
                secret: SecretCiphertext {
                    ciphertext: vec![1; 32],
                    nonce: vec![2; 24],
                },
                hint: rampart_model::SecretHint::of("xxxxxxxxxxxxseed", None),
                login_url: None,
                api_url: None,
                schedule_minutes: 360,
                enabled: false,
            })
            .await
            .unwrap();
        let now = chrono::Utc::now();
        let run = self
            .store
            .start_run(integration.id, "full", now)
            .await
            .unwrap();
        let asset = rampart_model::Asset {
            name: Some(name.to_owned()),
            os_platform: Some("Windows11".into()),
            health_status: Some("Active".into()),
            tags: vec![name.to_owned()],
            ..rampart_model::Asset::new("f".repeat(40), AssetKind::Device)
        };
        self.store
            .upsert_assets(integration.id, run, &[asset])
            .await
            .unwrap();
        self.store
            .finish_run(
                run,
                &RunOutcome::new(rampart_model::RunStatus::Succeeded, now),
            )
            .await
            .unwrap();
        first_asset_id(self.store.as_ref(), integration.id).await
    }
}

/// The id of the first asset (in the listing's default order) an integration has.
pub async fn first_asset_id(store: &dyn Store, integration: IntegrationId) -> i64 {
    store
        .assets_page(
            &rampart_store::Visibility::All,
            &rampart_store::AssetFilter {
                integration: Some(integration),
                ..Default::default()
            },
            None,
            1,
        )
        .await
        .unwrap()
        .items[0]
        .id
}

/// An HTTP client that leaves redirects to the test, as a test must see them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Client {
    /// A client of the server at `url` that sends its requests with `http` (one that trusts a
    /// test's own TLS certificate). Redirects must not be followed by `http`.
    pub fn over(url: &str, http: reqwest::Client) -> Client {
        Client {
            base: url.to_owned(),
            http,
            cookies: Default::default(),
            extra: Vec::new(),
            csrf: None,
        }
    }

    /// A client of the server at `url` (another server than the test app's first one).
    pub fn of(url: &str) -> Client {
        Client::over(url, no_redirects())
    }

    /// The `Cookie` header this client sends.
    pub fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// The value of the cookie `name`, if set.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// Sends `name: value` with every request from now on.
    pub fn with_header(&mut self, name: &str, value: &str) {
        self.extra.push((name.to_owned(), value.to_owned()));
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = self
            .extra
            .iter()
            .fold(req, |req, (k, v)| req.header(k.as_str(), v.as_str()));
        let req = match self.cookie_header() {
            Some(c) => req.header("cookie", c),
            None => req,
        };
        let res = req.send().await.unwrap();
        for set in res.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap_or_default();
            let pair = set.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let expired = set.to_ascii_lowercase().contains("max-age=0");
            if expired || value.is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let page = Page {
            status: res.status(),
            headers: res.headers().clone(),
            body: body(res).await,
        };
        if let Some(t) = page.csrf() {
            self.csrf = Some(t);
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// A same-origin form post with the session's token.
    pub async fn post<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        path: &str,
        form: &[(K, V)],
    ) -> Page {
        if self.csrf.is_none() {
            self.get("/").await;
        }
        let mut fields: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        fields.push(("csrf_token".into(), self.csrf.clone().unwrap_or_default()));
        self.post_raw(path, &fields, Some(&self.base.clone())).await
    }

    /// A form post exactly as given (no token added), with `origin` as the Origin header.
    pub async fn post_raw(
        &mut self,
        path: &str,
        fields: &[(String, String)],
        origin: Option<&str>,
    ) -> Page {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(fields);
        if let Some(o) = origin {
            req = req.header("origin", HeaderValue::from_str(o).unwrap());
        }
        self.send(req).await
    }

    pub async fn login(&mut self, name: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        self.post("/login", &[("name", name), ("password", password)])
            .await
    }
}

/// Every log line of this test binary, at debug level and above, for leak checks.
static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();

#[derive(Clone)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let buffer = LOGS.get_or_init(Default::default).clone();
    let writer = LogBuffer(buffer);
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init();
}

pub fn captured_logs() -> String {
    LOGS.get()
        .and_then(|l| {
            l.lock()
                .ok()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        })
        .unwrap_or_default()
}

/// A response body as text, refusing more than 16 MB (the workspace forbids unbounded reads).
pub async fn body(mut res: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        buf.extend_from_slice(&chunk);
        assert!(buf.len() < 16 << 20, "response body too large");
    }
    String::from_utf8_lossy(&buf).into_owned()
}
