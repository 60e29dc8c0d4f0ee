//! `App`: an emulator on a free port plus a client with one helper per endpoint (zero2prod style).

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use rampart_sim::{RunningSim, SimConfig, spawn};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub const MDE_SCOPE: &str = "https://api.securitycenter.microsoft.com/.default";

pub struct App {
    pub running: RunningSim,
    pub client: reqwest::Client,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// Fails the test unless the answer is 200, showing `context` and the body.
    pub fn assert_ok(&self, context: impl std::fmt::Display) {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{context}: {}",
            String::from_utf8_lossy(&self.body)
        );
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads a body through `chunk()` (clippy forbids the unbounded `bytes()`/`text()` helpers).
pub async fn read_body(mut resp: reqwest::Response) -> Result<Reply, reqwest::Error> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        body.extend_from_slice(&chunk);
        assert!(body.len() < 512 * 1024 * 1024, "runaway body");
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub fn small_config() -> SimConfig {
    SimConfig {
        devices: 240,
        findings_per_device: 20,
        rate_limits: false,
        ..SimConfig::default()
    }
}

impl App {
    pub async fn start(config: SimConfig) -> App {
        let running = spawn(config).await.expect("emulator starts");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        App { running, client }
    }

    pub async fn small() -> App {
        App::start(small_config()).await
    }

    pub fn url(&self) -> &str {
        &self.running.url
    }

    pub fn tenant(&self) -> String {
        self.running.sim.config().tenant_id.clone()
    }

    pub fn client_id(&self) -> String {
        self.running.sim.config().client_id.clone()
    }

    pub fn secret(&self) -> String {
        self.running.sim.config().client_secret.clone()
    }

    /// POSTs a form to a token endpoint (`v2`: `/oauth2/v2.0/token`, else `/oauth2/token`).
    pub async fn token_request(&self, tenant: &str, v2: bool, form: &[(&str, &str)]) -> Reply {
        let path = if v2 {
            "oauth2/v2.0/token"
        } else {
            "oauth2/token"
        };
        let resp = self
            .client
            .post(format!("{}/{tenant}/{path}", self.url()))
            .form(form)
            .send()
            .await
            .expect("token request");
        read_body(resp).await.expect("token body")
    }

    /// A v2 client-credentials request of the demo app for `scope`.
    pub async fn demo_token_request(&self, scope: &str) -> Reply {
        let (id, secret, tenant) = (self.client_id(), self.secret(), self.tenant());
        self.token_request(
            &tenant,
            true,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", scope),
            ],
        )
        .await
    }

    pub async fn token_for(&self, scope: &str) -> String {
        let reply = self.demo_token_request(scope).await;
        reply.assert_ok("");
        reply.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub async fn token(&self) -> String {
        self.token_for(MDE_SCOPE).await
    }

    pub async fn get_with(&self, url: &str, token: Option<&str>) -> Result<Reply, reqwest::Error> {
        let mut req = self.client.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read_body(req.send().await?).await
    }

    /// GET `{url}{path}` with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.get_with(&format!("{}{path}", self.url()), Some(token))
            .await
            .expect("GET")
    }

    pub async fn get_url(&self, url: &str, token: &str) -> Reply {
        self.get_with(url, Some(token)).await.expect("GET")
    }

    /// Follows `@odata.nextLink` from `path`, returning every `value` item and the pages' nextLinks.
    pub async fn walk(&self, path: &str, token: &str) -> (Vec<Value>, Vec<String>) {
        let mut items = Vec::new();
        let mut links = Vec::new();
        let mut url = format!("{}{path}", self.url());
        for _ in 0..10_000 {
            let reply = self.get_url(&url, token).await;
            reply.assert_ok(&url);
            let page = reply.json();
            items.extend(page["value"].as_array().expect("value").iter().cloned());
            match page.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) => {
                    links.push(next.to_owned());
                    url = next.to_owned();
                }
                None => return (items, links),
            }
        }
        panic!("paging did not end");
    }

    pub async fn control(&self, path: &str) -> Reply {
        let resp = self
            .client
            .post(format!("{}/_sim/{path}", self.url()))
            .send()
            .await
            .expect("control");
        read_body(resp).await.expect("control body")
    }
}

pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

pub fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    if bytes.is_empty() {
        return out;
    }
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("gzip");
    out
}

pub fn error_code(reply: &Reply) -> String {
    reply.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Export-file key (PascalCase, `OS…`) to JSON-API key (camelCase).
pub fn camel(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("OS") {
        return format!("os{rest}");
    }
    let mut c = key.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A file line made comparable with a JSON row: camelCase keys, omitted keys as explicit nulls.
pub fn file_row_as_json(line: &Value, json_keys: &[String]) -> Value {
    let mut map: BTreeMap<String, Value> = line
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (camel(k), v.clone()))
        .collect();
    for k in json_keys {
        map.entry(k.clone()).or_insert(Value::Null);
    }
    serde_json::to_value(map).expect("value")
}

/// Serialized truth records, for comparison with API output.
pub fn values<T: serde::Serialize>(items: impl Iterator<Item = T>) -> Vec<Value> {
    items
        .map(|i| serde_json::to_value(i).expect("serialize"))
        .collect()
}

pub fn sorted_by_id(mut v: Vec<Value>, key: &str) -> Vec<Value> {
    v.sort_by(|a, b| {
        a[key]
            .as_str()
            .cmp(&b[key].as_str())
            .then_with(|| a.to_string().cmp(&b.to_string()))
    });
    v
}

pub fn example(name: &str) -> Value {
    let path = format!(
        "{}/../../../shared/reference/examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("example JSON")
}

pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}
