//! The Defender for Cloud client: Azure Resource Manager reads and Resource Graph queries with an
//! ARM-scoped token, through the same HTTP core (rate limits, retries, 429 `Retry-After`) and the
//! same link paging (empty-page and repeated-link guards) as the Defender for Endpoint client.

use std::sync::Arc;

use rampart_model::Cloud;
use serde::Serialize;
use url::Url;

use crate::cloud::{ArmEndpoints, CloudError, Overrides};
use crate::entra::{ClientCredentials, TokenClient, TokenError};
use crate::error::MdeError;
use crate::http::{
    ApiFamily, Core, CoreSetup, HttpOptions, MetricsSnapshot, RateLimits, RetryPolicy,
};
use crate::paging::{PagingOptions, ReadPlan, RecordStream, read_linked_pages};
use crate::wire::arm::{
    ArmSubscription, Assessment, AssessmentMetadata, ControlDefinition, GraphPage, Pricing,
    ScoreControlItem, SecureScoreItem, SubAssessment, ValueList, VulnerabilityRow,
};

/// API versions (reference §5.2).
pub const SUBSCRIPTIONS_API: &str = "2022-12-01";
pub const SECURE_SCORE_API: &str = "2020-01-01";
pub const ASSESSMENTS_API: &str = "2021-06-01";
pub const SUB_ASSESSMENTS_API: &str = "2019-01-01-preview";
pub const PRICINGS_API: &str = "2024-01-01";
pub const RESOURCE_GRAPH_API: &str = "2024-04-01";

/// The client's Resource Graph query for vulnerability findings: individual `SoftwareUpdate`
/// recommendations, one row per CVE. `id` is projected so that Resource Graph can page.
pub const VULNERABILITY_QUERY: &str = r#"securityresources
| where type == "microsoft.security/assessments"
| where properties.metadata.recommendationCategory == "SoftwareUpdate"
| where tostring(properties.status.code) == "Unhealthy"
| extend resourceId = tolower(tostring(properties.resourceDetails.Id)), resourceName = tostring(properties.resourceDetails.ResourceName), resourceType = tostring(properties.resourceDetails.ResourceType), displayName = tostring(properties.displayName), severity = tostring(properties.metadata.severity), softwareName = tostring(properties.additionalData.SoftwareName), softwareVendor = tostring(properties.additionalData.SoftwareVendor), detectedVersions = tostring(properties.additionalData.DetectedSoftwareVersions), fixedVersion = tostring(properties.additionalData.FixedVersion)
| mv-expand CveDetail = parse_json(tostring(properties.additionalData.CvesDetails))
| project id, subscriptionId, resourceId, resourceName, resourceType, displayName, severity, softwareName, softwareVendor, detectedVersions, fixedVersion, CveDetail"#;

/// Rows per Resource Graph page (Microsoft's maximum).
pub const GRAPH_PAGE_SIZE: u32 = 1000;

/// Everything needed to build an [`ArmClient`]; `Debug` redacts the secret.
#[derive(Debug, Clone)]
pub struct ArmConfig {
    pub cloud: Cloud,
    pub credentials: ClientCredentials,
    pub overrides: Overrides,
    pub http: HttpOptions,
    pub retry: RetryPolicy,
    pub rate_limits: RateLimits,
    pub paging: PagingOptions,
}

impl ArmConfig {
    pub fn new(cloud: Cloud, credentials: ClientCredentials) -> ArmConfig {
        ArmConfig {
            cloud,
            credentials,
            overrides: Overrides::default(),
            http: HttpOptions::default(),
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::default(),
            paging: PagingOptions::default(),
        }
    }

    /// Sends both the token request and the API calls to `url` (the emulator).
    pub fn with_base_url(mut self, url: &str) -> ArmConfig {
        self.overrides.login_url = Some(url.to_owned());
        self.overrides.api_url = Some(url.to_owned());
        self
    }
}

/// A Defender for Cloud client for one integration. Cheap to clone; clones share the token cache,
/// rate-limit buckets and metrics.
#[derive(Debug, Clone)]
pub struct ArmClient {
    core: Arc<Core>,
    endpoints: Arc<ArmEndpoints>,
    paging: PagingOptions,
}

/// Why nothing can be read: the app holds no Azure role anywhere. The steps are exact on purpose.
pub const NO_ROLE_EXPLANATION: &str = "The app sees no Azure subscription: the app has no Azure role. Assign Security Reader (or Reader) at subscription or management-group scope: Azure portal → Subscriptions → <sub> → Access control (IAM) → Add role assignment → Security Reader → the app. Defender for Cloud access is Azure RBAC, not an API permission; a new assignment can take a few minutes to apply.";

impl ArmClient {
    pub fn new(config: ArmConfig) -> Result<ArmClient, MdeError> {
        let endpoints = ArmEndpoints::resolve(config.cloud, &config.overrides)?;
        let core = Core::build(CoreSetup {
            login: &endpoints.login,
            credentials: config.credentials,
            scope: endpoints.scope.clone(),
            allowed: endpoints.allowed.clone(),
            http: &config.http,
            retry: config.retry,
            rate_limits: &config.rate_limits,
        })?;
        Ok(ArmClient {
            core: Arc::new(core),
            endpoints: Arc::new(endpoints),
            paging: config.paging,
        })
    }

    pub fn endpoints(&self) -> &ArmEndpoints {
        &self.endpoints
    }

    pub fn tokens(&self) -> &TokenClient {
        &self.core.tokens
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.core.metrics.snapshot()
    }

    /// Gets (or reuses) the ARM token. ARM tokens carry no roles: access is Azure RBAC.
    pub async fn check_token(&self) -> Result<(), TokenError> {
        self.core.tokens.token().await.map(|_| ())
    }

    /// `GET /subscriptions`, every page. An empty answer means "no role anywhere" (§1.4).
    pub fn subscriptions(&self) -> RecordStream<ArmSubscription> {
        self.list("subscriptions", SUBSCRIPTIONS_API, &[])
    }

    pub fn secure_scores(&self, sub: &str) -> RecordStream<SecureScoreItem> {
        self.list(
            &format!("subscriptions/{sub}/providers/Microsoft.Security/secureScores"),
            SECURE_SCORE_API,
            &[],
        )
    }

    /// Control scores of `ascScore`, with their definitions.
    pub fn secure_score_controls(&self, sub: &str) -> RecordStream<ScoreControlItem> {
        self.list(
            &format!(
                "subscriptions/{sub}/providers/Microsoft.Security/secureScores/ascScore/secureScoreControls"
            ),
            SECURE_SCORE_API,
            &[("$expand", "definition")],
        )
    }

    pub fn control_definitions(&self) -> RecordStream<ControlDefinition> {
        self.list(
            "providers/Microsoft.Security/secureScoreControlDefinitions",
            SECURE_SCORE_API,
            &[],
        )
    }

    pub fn assessments(&self, sub: &str) -> RecordStream<Assessment> {
        self.list(
            &format!("subscriptions/{sub}/providers/Microsoft.Security/assessments"),
            ASSESSMENTS_API,
            &[],
        )
    }

    pub fn assessment_metadata(&self) -> RecordStream<AssessmentMetadata> {
        self.list(
            "providers/Microsoft.Security/assessmentMetadata",
            ASSESSMENTS_API,
            &[],
        )
    }

    /// Legacy grouped findings (deprecated 2026-07-31; expect an empty list).
    pub fn sub_assessments(&self, sub: &str) -> RecordStream<SubAssessment> {
        self.list(
            &format!("subscriptions/{sub}/providers/Microsoft.Security/subAssessments"),
            SUB_ASSESSMENTS_API,
            &[],
        )
    }

    /// Defender plans of a subscription (not pageable).
    pub async fn pricings(&self, sub: &str) -> Result<Vec<Pricing>, MdeError> {
        let url = self.url(
            &format!("subscriptions/{sub}/providers/Microsoft.Security/pricings"),
            PRICINGS_API,
            &[],
        )?;
        let list: ValueList<Pricing> = self
            .core
            .get_json(ApiFamily::Arm, &url, 4 * 1024 * 1024)
            .await?;
        Ok(list.value)
    }

    /// Vulnerability rows of the given subscriptions through Resource Graph, every page
    /// (`$skipToken`), at most [`GRAPH_PAGE_SIZE`] rows per page. Rows of subscriptions the app
    /// cannot read are silently absent (ARG filters by access).
    pub async fn vulnerability_rows(
        &self,
        subscriptions: &[String],
    ) -> Result<GraphRead<VulnerabilityRow>, MdeError> {
        let url = self.url(
            "providers/Microsoft.ResourceGraph/resources",
            RESOURCE_GRAPH_API,
            &[],
        )?;
        let mut rows = Vec::new();
        let mut skip: Option<String> = None;
        let mut seen_tokens = std::collections::HashSet::new();
        for pages in 1..=self.paging.max_pages {
            let body = GraphRequest {
                subscriptions,
                query: VULNERABILITY_QUERY,
                options: GraphOptions {
                    top: GRAPH_PAGE_SIZE,
                    skip_token: skip.as_deref(),
                    result_format: "objectArray",
                },
            };
            let bytes = serde_json::to_vec(&body).map_err(|e| MdeError::Client(e.to_string()))?;
            let page: GraphPage<VulnerabilityRow> = self
                .core
                .call_json(
                    ApiFamily::ResourceGraph,
                    &url,
                    Some(&bytes),
                    32 * 1024 * 1024,
                )
                .await?;
            rows.extend(page.data);
            match page.skip_token.filter(|t| !t.is_empty()) {
                Some(t) if seen_tokens.insert(t.clone()) => skip = Some(t),
                Some(_) => {
                    return Ok(GraphRead {
                        rows,
                        pages,
                        complete: false,
                    });
                }
                None => {
                    return Ok(GraphRead {
                        rows,
                        pages,
                        complete: !page.result_truncated,
                    });
                }
            }
        }
        Ok(GraphRead {
            rows,
            pages: self.paging.max_pages,
            complete: false,
        })
    }

    fn list<T>(&self, path: &str, version: &str, extra: &[(&str, &str)]) -> RecordStream<T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let first = match self.url(path, version, extra) {
            Ok(u) => u,
            Err(e) => return RecordStream::failed(e),
        };
        let core = Arc::clone(&self.core);
        let plan = ReadPlan {
            family: ApiFamily::Arm,
            max_pages: self.paging.max_pages,
            batch_size: self.paging.batch_size,
            max_record_bytes: self.paging.max_record_bytes,
        };
        RecordStream::spawn(self.paging.channel_capacity, move |tx| {
            read_linked_pages(core, plan, first, tx)
        })
    }

    fn url(&self, path: &str, version: &str, extra: &[(&str, &str)]) -> Result<Url, MdeError> {
        let mut url = self.endpoints.api.join(path).map_err(|e| {
            MdeError::Config(CloudError::InvalidUrl {
                which: "API URL",
                shown: self.endpoints.api.as_str().chars().take(120).collect(),
                reason: e.to_string(),
            })
        })?;
        url.query_pairs_mut().append_pair("api-version", version);
        for (k, v) in extra {
            url.query_pairs_mut().append_pair(k, v);
        }
        Ok(url)
    }
}

/// The rows of a Resource Graph read and whether every page was read.
#[derive(Debug, Clone)]
pub struct GraphRead<T> {
    pub rows: Vec<T>,
    pub pages: u32,
    /// Every page read, no repeated token, not truncated.
    pub complete: bool,
}

#[derive(Serialize)]
struct GraphRequest<'a> {
    subscriptions: &'a [String],
    query: &'a str,
    options: GraphOptions<'a>,
}

#[derive(Serialize)]
struct GraphOptions<'a> {
    #[serde(rename = "$top")]
    top: u32,
    #[serde(rename = "$skipToken", skip_serializing_if = "Option::is_none")]
    skip_token: Option<&'a str>,
    #[serde(rename = "resultFormat")]
    result_format: &'a str,
}

/// Is this API error ARM's "no role on this subscription"?
pub fn is_authorization_failed(e: &MdeError) -> bool {
    matches!(e, MdeError::Api(a) if a.status == 403
        && a.code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("AuthorizationFailed")))
}
