//! The Defender for Endpoint client the sync engine and the `integration test` command use.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use url::Url;

use crate::client::{ClientConfig, Connection, connection_accessors};
use crate::cloud::Endpoints;
use crate::error::{ApiError, EndpointError, Forbidden, Refusal};
use crate::export_file::{parse_download_url, read_export_file};
use crate::export_set::{FileReadOptions, list_export_files, read_export_set};
use crate::family::ApiFamily;
use crate::http::Bearer;
use crate::paging::{
    EXPORT_MAX_PAGE_SIZE, Keyed, MACHINES_MAX_TOP, RecordStream, VULNERABILITIES_MAX_TOP,
    read_skip_pages,
};
use crate::roles::{ENDPOINT_ROLES, MACHINE_READ, MissingRoles, RequiredRole, VULNERABILITY_READ};
use crate::token_error::TokenError;
use crate::wire::entra::Claims;
use crate::wire::mde::{
    AssetVulnerability, Collection, DeltaAssetVulnerability, ExportFilesResponse, Machine,
    Vulnerability,
};

/// The application role each Defender for Endpoint family needs.
fn required_role(family: ApiFamily) -> RequiredRole {
    match family {
        ApiFamily::Machines => MACHINE_READ,
        ApiFamily::Vulnerabilities
        | ApiFamily::JsonExport
        | ApiFamily::FileExport
        | ApiFamily::Arm
        | ApiFamily::ResourceGraph => VULNERABILITY_READ,
    }
}

/// Defender for Endpoint's 403 `Forbidden` is a missing application role: name it, and say whether
/// the token lacks it.
fn missing_role(api: Refusal, token: &dyn Bearer) -> ApiError {
    let required = required_role(api.family);
    let missing = token
        .claims()
        .map(|c| c.missing_roles(std::slice::from_ref(&required)));
    EndpointError::Forbidden(Box::new(Forbidden {
        api,
        required,
        missing,
    }))
    .into()
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
    conn: Connection,
}

impl MdeClient {
    pub fn new(config: ClientConfig) -> Result<MdeClient, ApiError> {
        let endpoints = Endpoints::mde(config.cloud, &config.overrides)?;
        let rate_limits = config.rate_limits.clone();
        let conn = Connection::open(config, endpoints, &rate_limits, missing_role)?;
        Ok(MdeClient { conn })
    }

    connection_accessors!();

    /// Acquires a token (or uses the cached one) and reports its roles. `Err` explains AADSTS errors;
    /// `Ok` with missing roles explains which permission to grant.
    pub async fn check_token(&self) -> Result<TokenCheck, TokenError> {
        let token = self.conn.tokens.token().await?;
        let claims = token.claims().cloned();
        let wanted = self
            .conn
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
    pub async fn read_one_machine(&self) -> Result<Option<Machine>, ApiError> {
        let url = self.url("api/machines", Some("$top=1"))?;
        let page: Collection<Machine> = match self
            .conn
            .core
            .get_json(ApiFamily::Machines, &url, SMALL_ANSWER)
            .await
        {
            Ok(p) => p,
            Err(ApiError::Refused(api)) if api.status == 404 => {
                // The same 404 comes from a wrong API URL: only when another collection of the
                // same API answers is it the empty tenant.
                let probe = self.url("api/vulnerabilities", Some("$top=1"))?;
                return match self
                    .conn
                    .core
                    .get_json::<Collection<Vulnerability>>(
                        ApiFamily::Vulnerabilities,
                        &probe,
                        SMALL_ANSWER,
                    )
                    .await
                {
                    Err(ApiError::Refused(other)) if other.status == 404 => {
                        Err(ApiError::Refused(api))
                    }
                    _ => Ok(None),
                };
            }
            Err(e) => return Err(e),
        };
        Ok(page.value.into_iter().next())
    }

    /// `GET /api/machines/SoftwareVulnerabilitiesByMachine?$top=1`: proves the vulnerability
    /// permission works (`$top` is right here: one row, no paging).
    pub async fn read_one_vulnerability_row(&self) -> Result<Option<AssetVulnerability>, ApiError> {
        let url = self.url(
            "api/machines/SoftwareVulnerabilitiesByMachine",
            Some("$top=1"),
        )?;
        let page: Collection<AssetVulnerability> = self
            .conn
            .core
            .get_json(ApiFamily::JsonExport, &url, SMALL_ANSWER)
            .await?;
        Ok(page.value.into_iter().next())
    }

    /// Every device, by `$top`/`$skip` paging (`$top` = `paging.machines_page_size`, at most 10,000),
    /// de-duplicated by id.
    pub fn machines(&self) -> RecordStream<Machine> {
        let size = self
            .conn
            .paging
            .machines_page_size
            .clamp(1, MACHINES_MAX_TOP);
        self.skip_read(ApiFamily::Machines, "api/machines", size, None)
    }

    /// The tenant's CVE catalogue, by `$top`/`$skip` paging (at most 8,000 per page), de-duplicated
    /// by id.
    pub fn vulnerabilities(&self) -> RecordStream<Vulnerability> {
        let size = self
            .conn
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
            .conn
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
    pub async fn export_files(&self, sas_valid_hours: u8) -> Result<ExportFilesResponse, ApiError> {
        let url = self.export_listing_url(sas_valid_hours)?;
        list_export_files(&self.conn.core, &url).await
    }

    fn export_listing_url(&self, sas_valid_hours: u8) -> Result<Url, ApiError> {
        let hours = sas_valid_hours.clamp(1, 6);
        self.url(
            "api/machines/SoftwareVulnerabilitiesExport",
            Some(&format!("sasValidHours={hours}")),
        )
    }

    /// Downloads one export file (a SAS URL from [`export_files`](Self::export_files)) and streams its
    /// records, decompressed and parsed line by line. No bearer token is sent with it.
    pub fn export_file_records(&self, sas_url: &str) -> RecordStream<AssetVulnerability> {
        let url = match parse_download_url(sas_url) {
            Ok(u) => u,
            Err(e) => return RecordStream::failed(e),
        };
        let core = Arc::clone(&self.conn.core);
        let plan = self.conn.plan(ApiFamily::FileExport);
        RecordStream::spawn(self.conn.paging.channel_capacity, move |tx| {
            read_export_file(core, plan, url, 0, tx)
        })
    }

    /// Every file of `listing` (from [`export_files`](Self::export_files)), `options.concurrency`
    /// at a time, as one stream whose events carry the file's index as their `page`; each line
    /// read into `T` ([`AssetVulnerability`], or [`FindingRow`](crate::wire::mde::FindingRow)).
    /// Links that expire are replaced by a fresh listing of the same snapshot (see
    /// the `export_set` module). Complete when every listed file was read to its end.
    pub fn export_records<T>(
        &self,
        listing: ExportFilesResponse,
        options: FileReadOptions,
    ) -> RecordStream<T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let relist = match self.export_listing_url(options.sas_valid_hours) {
            Ok(u) => u,
            Err(e) => return RecordStream::failed(e),
        };
        let core = Arc::clone(&self.conn.core);
        let plan = self.conn.plan(ApiFamily::FileExport);
        // Room for a batch from every download in flight, so one slow consumer step does not
        // stall all of them at once.
        let capacity = self
            .conn
            .paging
            .channel_capacity
            .max(options.concurrency * 2);
        RecordStream::spawn(capacity, move |tx| {
            read_export_set(core, plan, listing, relist, options, tx)
        })
    }

    fn skip_read<T>(
        &self,
        family: ApiFamily,
        path: &str,
        size: u32,
        filter: Option<String>,
    ) -> RecordStream<T>
    where
        T: serde::de::DeserializeOwned + Keyed + Send + 'static,
    {
        let base = match self.conn.url(path) {
            Ok(u) => u,
            Err(e) => return RecordStream::failed(e),
        };
        let core = Arc::clone(&self.conn.core);
        let plan = self.conn.plan(family);
        RecordStream::spawn(self.conn.paging.channel_capacity, move |tx| {
            read_skip_pages(core, plan, base, size, filter, tx)
        })
    }

    fn linked_read<T>(&self, path: &str, query: &[(&str, &str)]) -> RecordStream<T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let first = self.conn.url(path).map(|mut url| {
            url.query_pairs_mut().extend_pairs(query);
            url
        });
        self.conn.linked_read(ApiFamily::JsonExport, first)
    }

    fn url(&self, path: &str, query: Option<&str>) -> Result<Url, ApiError> {
        let mut url = self.conn.url(path)?;
        url.set_query(query);
        Ok(url)
    }
}

/// Small answers (one record, the export file list) are read whole, up to this size.
const SMALL_ANSWER: usize = 4 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::MdeConfig;
    use crate::cloud::CloudError;
    use crate::entra::ClientCredentials;
    use rampart_model::Cloud;
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
            matches!(err, ApiError::Config(CloudError::ProductUnavailable { .. })),
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
