//! The Defender for Endpoint client the sync engine and the `integration test` command use.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rampart_model::Cloud;
use url::Url;

use crate::cloud::{CloudError, MdeEndpoints, Overrides};
use crate::entra::{ClientCredentials, ENDPOINT_ROLES, MissingRoles, TokenClient, TokenError};
use crate::error::MdeError;
use crate::export_file::read_export_file;
use crate::export_set::{FileReadOptions, read_export_set};
use crate::http::{
    ApiFamily, Core, CoreSetup, HttpOptions, MetricsSnapshot, RateLimits, RetryPolicy,
};
use crate::paging::{
    EXPORT_MAX_PAGE_SIZE, MACHINES_MAX_TOP, PagingOptions, ReadPlan, RecordStream,
    VULNERABILITIES_MAX_TOP, read_linked_pages, read_skip_pages,
};
use crate::wire::entra::Claims;
use crate::wire::mde::{
    AssetVulnerability, Collection, DeltaAssetVulnerability, ExportFilesResponse, Machine,
    Vulnerability,
};

/// Everything needed to build an [`MdeClient`]. Start from [`MdeConfig::new`] and change what you
/// need; `Debug` shows the secret as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct MdeConfig {
    pub cloud: Cloud,
    pub credentials: ClientCredentials,
    pub overrides: Overrides,
    pub http: HttpOptions,
    pub retry: RetryPolicy,
    pub rate_limits: RateLimits,
    pub paging: PagingOptions,
}

impl MdeConfig {
    /// Microsoft's documented limits and hosts for `cloud`, production retry policy.
    pub fn new(cloud: Cloud, credentials: ClientCredentials) -> MdeConfig {
        MdeConfig {
            cloud,
            credentials,
            overrides: Overrides::default(),
            http: HttpOptions::default(),
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::default(),
            paging: PagingOptions::default(),
        }
    }

    /// Sends both the token request and the API calls to `url` (the emulator, which serves both).
    pub fn with_base_url(mut self, url: &str) -> MdeConfig {
        self.overrides.login_url = Some(url.to_owned());
        self.overrides.api_url = Some(url.to_owned());
        self
    }
}

/// What `integration test` shows about the token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenCheck {
    /// The decoded payload (`None` when the token is not a JWT).
    pub claims: Option<Claims>,
    /// Roles Rampart needs that the token lacks (`None` when it cannot tell).
    pub missing_roles: Option<MissingRoles>,
    /// Whether the token's audience is the one asked for (`None` without claims).
    pub audience_matches: Option<bool>,
    pub expires_in: Duration,
}

impl TokenCheck {
    /// Every needed role is there, as far as the token tells.
    pub fn is_ready(&self) -> bool {
        self.missing_roles
            .as_ref()
            .is_none_or(MissingRoles::is_empty)
    }
}

/// A Defender for Endpoint client for one integration (tenant + app). Cheap to clone; clones share
/// the token cache, the rate-limit buckets and the metrics, so keep one per integration for as long
/// as the process runs: Microsoft's limits are per app and tenant, and hourly.
///
/// The reading methods spawn a task on the current Tokio runtime and return at once.
#[derive(Debug, Clone)]
pub struct MdeClient {
    core: Arc<Core>,
    endpoints: Arc<MdeEndpoints>,
    paging: PagingOptions,
}

impl MdeClient {
    pub fn new(config: MdeConfig) -> Result<MdeClient, MdeError> {
        let endpoints = MdeEndpoints::resolve(config.cloud, &config.overrides)?;
        let core = Core::build(CoreSetup {
            login: &endpoints.login,
            credentials: config.credentials,
            scope: endpoints.scope.clone(),
            allowed: endpoints.allowed.clone(),
            http: &config.http,
            retry: config.retry,
            rate_limits: &config.rate_limits,
        })?;
        Ok(MdeClient {
            core: Arc::new(core),
            endpoints: Arc::new(endpoints),
            paging: config.paging,
        })
    }

    pub fn endpoints(&self) -> &MdeEndpoints {
        &self.endpoints
    }

    /// The token client (shared by every clone of this client).
    pub fn tokens(&self) -> &TokenClient {
        &self.core.tokens
    }

    /// Counters since the client was built: API calls, token requests, 429s, retries, bytes.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.core.metrics.snapshot()
    }

    /// Acquires a token (or uses the cached one) and reports its roles. `Err` explains AADSTS errors;
    /// `Ok` with missing roles explains which permission to grant.
    pub async fn check_token(&self) -> Result<TokenCheck, TokenError> {
        let token = self.core.tokens.token().await?;
        let claims = token.claims().cloned();
        let wanted = self
            .endpoints
            .scope
            .trim_end_matches("/.default")
            .trim_end_matches('/');
        let audience_matches = claims
            .as_ref()
            .and_then(|c| c.aud.as_deref())
            .map(|aud| aud.trim_end_matches('/').eq_ignore_ascii_case(wanted));
        Ok(TokenCheck {
            missing_roles: token.missing_roles(ENDPOINT_ROLES),
            claims,
            audience_matches,
            expires_in: token.expires_in(),
        })
    }

    /// `GET /api/machines?$top=1`: proves the machine permission works. `Ok(None)` when the
    /// tenant has no devices: an empty page, or the 404 Not Found that Microsoft documents for a
    /// tenant without recently seen machines (get-machines, "Response").
    pub async fn read_one_machine(&self) -> Result<Option<Machine>, MdeError> {
        let url = self.url("api/machines", Some("$top=1"))?;
        let page: Collection<Machine> = match self
            .core
            .get_json(ApiFamily::Machines, &url, SMALL_ANSWER)
            .await
        {
            Ok(p) => p,
            Err(MdeError::Api(api)) if api.status == 404 => {
                // The same 404 comes from a wrong API URL: only when another collection of the
                // same API answers is it the empty tenant.
                let probe = self.url("api/vulnerabilities", Some("$top=1"))?;
                return match self
                    .core
                    .get_json::<Collection<Vulnerability>>(
                        ApiFamily::Vulnerabilities,
                        &probe,
                        SMALL_ANSWER,
                    )
                    .await
                {
                    Err(MdeError::Api(other)) if other.status == 404 => Err(MdeError::Api(api)),
                    _ => Ok(None),
                };
            }
            Err(e) => return Err(e),
        };
        Ok(page.value.into_iter().next())
    }

    /// `GET /api/machines/SoftwareVulnerabilitiesByMachine?$top=1`: proves the vulnerability
    /// permission works (`$top` is right here: one row, no paging).
    pub async fn read_one_vulnerability_row(&self) -> Result<Option<AssetVulnerability>, MdeError> {
        let url = self.url(
            "api/machines/SoftwareVulnerabilitiesByMachine",
            Some("$top=1"),
        )?;
        let page: Collection<AssetVulnerability> = self
            .core
            .get_json(ApiFamily::JsonExport, &url, SMALL_ANSWER)
            .await?;
        Ok(page.value.into_iter().next())
    }

    /// Every device, by `$top`/`$skip` paging (`$top` = `paging.machines_page_size`, at most 10,000),
    /// de-duplicated by id.
    pub fn machines(&self) -> RecordStream<Machine> {
        let size = self.paging.machines_page_size.clamp(1, MACHINES_MAX_TOP);
        self.skip_read(ApiFamily::Machines, "api/machines", size, None)
    }

    /// The tenant's CVE catalogue, by `$top`/`$skip` paging (at most 8,000 per page), de-duplicated
    /// by id.
    pub fn vulnerabilities(&self) -> RecordStream<Vulnerability> {
        let size = self
            .paging
            .vulnerabilities_page_size
            .clamp(1, VULNERABILITIES_MAX_TOP);
        self.skip_read(
            ApiFamily::Vulnerabilities,
            "api/vulnerabilities",
            size,
            None,
        )
    }

    /// The catalogue entries Microsoft updated after `since`, by `$filter=updatedOn gt …` (the
    /// incremental pattern of get-all-vulnerabilities: `updatedOn` is filterable), paged like
    /// [`vulnerabilities`](Self::vulnerabilities).
    pub fn vulnerabilities_updated_since(
        &self,
        since: DateTime<Utc>,
    ) -> RecordStream<Vulnerability> {
        let size = self
            .paging
            .vulnerabilities_page_size
            .clamp(1, VULNERABILITIES_MAX_TOP);
        // OData datetimes are unquoted (`updatedOn gt 2024-06-01T00:00:00Z`). Milliseconds: a
        // finer `updatedOn` at the same millisecond comes again, which the upsert makes harmless.
        let filter = format!(
            "updatedOn gt {}",
            since.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
        self.skip_read(
            ApiFamily::Vulnerabilities,
            "api/vulnerabilities",
            size,
            Some(filter),
        )
    }

    /// The full vulnerability snapshot (`SoftwareVulnerabilitiesByMachine`), following
    /// `@odata.nextLink` with `pageSize` (1..=200,000; 10k–50k keeps pages at 10–50 MB).
    pub fn software_vulnerabilities_by_machine(
        &self,
        page_size: u32,
    ) -> RecordStream<AssetVulnerability> {
        self.software_vulnerability_rows(page_size)
    }

    /// [`software_vulnerabilities_by_machine`](Self::software_vulnerabilities_by_machine), each row
    /// read straight into `T`: [`FindingRow`](crate::wire::mde::FindingRow) keeps only what a
    /// finding needs, which is what a full sync of millions of rows wants.
    pub fn software_vulnerability_rows<T>(&self, page_size: u32) -> RecordStream<T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let size = page_size.clamp(1, EXPORT_MAX_PAGE_SIZE).to_string();
        self.linked_read(
            "api/machines/SoftwareVulnerabilitiesByMachine",
            &[("pageSize", size.as_str())],
        )
    }

    /// Changes since `since` (`SoftwareVulnerabilityChangesByMachine`; Microsoft accepts at most 14
    /// days back and starts at the 6-hour bucket containing `since`, so consecutive reads overlap).
    pub fn vulnerability_changes_since(
        &self,
        since: DateTime<Utc>,
        page_size: u32,
    ) -> RecordStream<DeltaAssetVulnerability> {
        let since = since.to_rfc3339_opts(SecondsFormat::Millis, true);
        let size = page_size.clamp(1, EXPORT_MAX_PAGE_SIZE).to_string();
        self.linked_read(
            "api/machines/SoftwareVulnerabilityChangesByMachine",
            &[("sinceTime", since.as_str()), ("pageSize", size.as_str())],
        )
    }

    /// The download links of the latest full snapshot (`SoftwareVulnerabilitiesExport`), valid for
    /// `sas_valid_hours` (1..=6). Limited to 20 calls an hour by Microsoft: reuse the links within
    /// their lifetime.
    pub async fn export_files(&self, sas_valid_hours: u8) -> Result<ExportFilesResponse, MdeError> {
        let hours = sas_valid_hours.clamp(1, 6);
        let url = self.url(
            "api/machines/SoftwareVulnerabilitiesExport",
            Some(&format!("sasValidHours={hours}")),
        )?;
        self.core
            .get_json(ApiFamily::FileExport, &url, 16 * 1024 * 1024)
            .await
    }

    /// Downloads one export file (a SAS URL from [`export_files`](Self::export_files)) and streams its
    /// records, decompressed and parsed line by line. No bearer token is sent with it.
    pub fn export_file_records(&self, sas_url: &str) -> RecordStream<AssetVulnerability> {
        let url = match parse_download_url(sas_url) {
            Ok(u) => u,
            Err(e) => return RecordStream::failed(e),
        };
        let core = Arc::clone(&self.core);
        let plan = self.plan(ApiFamily::FileExport);
        RecordStream::spawn(self.paging.channel_capacity, move |tx| {
            read_export_file(core, plan, url, 0, tx)
        })
    }

    /// Every file of `listing` (from [`export_files`](Self::export_files)), `options.concurrency`
    /// at a time, as one stream whose events carry the file's index as their `page`; each line
    /// read into `T` ([`AssetVulnerability`], or [`FindingRow`](crate::wire::mde::FindingRow)).
    /// Links that expire are replaced by a fresh listing of the same snapshot (see
    /// [`crate::export_set`]). Complete when every listed file was read to its end.
    pub fn export_records<T>(
        &self,
        listing: ExportFilesResponse,
        options: FileReadOptions,
    ) -> RecordStream<T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let core = Arc::clone(&self.core);
        let plan = self.plan(ApiFamily::FileExport);
        let client = self.clone();
        // Room for a batch from every download in flight, so one slow consumer step does not
        // stall all of them at once.
        let capacity = self.paging.channel_capacity.max(options.concurrency * 2);
        RecordStream::spawn(capacity, move |tx| {
            read_export_set(client, core, plan, listing, options, tx)
        })
    }

    fn plan(&self, family: ApiFamily) -> ReadPlan {
        ReadPlan {
            family,
            max_pages: self.paging.max_pages,
            batch_size: self.paging.batch_size,
            max_record_bytes: self.paging.max_record_bytes,
        }
    }

    fn skip_read<T>(
        &self,
        family: ApiFamily,
        path: &str,
        size: u32,
        filter: Option<String>,
    ) -> RecordStream<T>
    where
        T: serde::de::DeserializeOwned + crate::paging::Keyed + Send + 'static,
    {
        let base = match self.url(path, None) {
            Ok(u) => u,
            Err(e) => return RecordStream::failed(e),
        };
        let core = Arc::clone(&self.core);
        let plan = self.plan(family);
        RecordStream::spawn(self.paging.channel_capacity, move |tx| {
            read_skip_pages(core, plan, base, size, filter, tx)
        })
    }

    fn linked_read<T>(&self, path: &str, query: &[(&str, &str)]) -> RecordStream<T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let mut first = match self.url(path, None) {
            Ok(u) => u,
            Err(e) => return RecordStream::failed(e),
        };
        first.query_pairs_mut().extend_pairs(query);
        let core = Arc::clone(&self.core);
        let plan = self.plan(ApiFamily::JsonExport);
        RecordStream::spawn(self.paging.channel_capacity, move |tx| {
            read_linked_pages(core, plan, first, tx)
        })
    }

    fn url(&self, path: &str, query: Option<&str>) -> Result<Url, MdeError> {
        let mut url = self.endpoints.api.join(path).map_err(|e| {
            MdeError::Config(CloudError::InvalidUrl {
                which: "API URL",
                shown: self.endpoints.api.as_str().chars().take(120).collect(),
                reason: e.to_string(),
            })
        })?;
        url.set_query(query);
        Ok(url)
    }
}

/// Small answers (one record, the export file list) are read whole, up to this size.
const SMALL_ANSWER: usize = 4 * 1024 * 1024;

/// An export file URL must be https (or plain http to this machine, the emulator). The error never
/// repeats the URL: it carries a SAS signature.
pub(crate) fn parse_download_url(s: &str) -> Result<Url, MdeError> {
    let bad =
        |why: &str| MdeError::ExportFile(format!("the export file link is not usable: {why}"));
    let url = Url::parse(s).map_err(|_| bad("not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(bad("only https links are followed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn config() -> MdeConfig {
        MdeConfig::new(
            Cloud::Commercial,
            ClientCredentials {
                tenant_id: "00000000-0000-4000-8000-000000000001".parse().unwrap(),
                client_id: "00000000-0000-4000-8000-000000000002".parse().unwrap(),
                client_secret: SecretString::from("rampart-demo-secret-value-0001"),
            },
        )
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let cfg = config();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("rampart-demo-secret-value-0001"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
        let client = MdeClient::new(cfg).unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("rampart-demo-secret-value-0001"), "{shown}");
    }

    #[test]
    fn token_url_is_built_from_the_authority_and_tenant() {
        let client = MdeClient::new(config().with_base_url("http://127.0.0.1:9/prefix")).unwrap();
        assert_eq!(
            client.tokens().token_url().as_str(),
            "http://127.0.0.1:9/prefix/00000000-0000-4000-8000-000000000001/oauth2/v2.0/token"
        );
        let client = MdeClient::new(config()).unwrap();
        assert_eq!(
            client.tokens().token_url().as_str(),
            "https://login.microsoftonline.com/00000000-0000-4000-8000-000000000001/oauth2/v2.0/token"
        );
        assert_eq!(
            client.tokens().scope(),
            "https://api.securitycenter.microsoft.com/.default"
        );
    }

    #[test]
    fn china_endpoint_client_is_refused_clearly() {
        let mut cfg = config();
        cfg.cloud = Cloud::China;
        let err = MdeClient::new(cfg).unwrap_err();
        assert!(
            matches!(err, MdeError::Config(CloudError::ProductUnavailable { .. })),
            "{err}"
        );
    }

    #[test]
    fn download_links_must_be_https_and_are_never_echoed() {
        assert!(parse_download_url("https://acct.blob.core.windows.net/c/f.json.gz?sig=S").is_ok());
        assert!(parse_download_url("http://127.0.0.1:8080/blob/f.json.gz?sig=S").is_ok());
        let err = parse_download_url("http://acct.blob.core.windows.net/c/f.json.gz?sig=SECRETSIG")
            .unwrap_err();
        assert!(!err.to_string().contains("SECRETSIG"));
    }
}
