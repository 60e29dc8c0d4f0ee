//! The Defender for Cloud client: Azure Resource Manager reads and Resource Graph queries with an
//! ARM-scoped token, through the same HTTP core (rate limits, retries, 429 `Retry-After`) and the
//! same link paging (empty-page and repeated-link guards) as the Defender for Endpoint client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use url::Url;

use crate::client::{ClientConfig, Connection, connection_accessors};
use crate::cloud::Endpoints;
use crate::error::{ApiError, Refusal};
use crate::family::ApiFamily;
use crate::graph::{GraphPlan, read_graph_pages};
use crate::http::Bearer;
use crate::paging::{GRAPH_MAX_TOP, RecordStream};
use crate::token_error::TokenError;
use crate::wire::arm::{
    ArmSubscription, Assessment, AssessmentMetadata, ControlDefinition, CveDetailsRow, Pricing,
    ScoreControlItem, SecureScoreItem, SubAssessment, ValueList, VulnerabilityRow,
};

/// API versions (<https://learn.microsoft.com/en-us/rest/api/defenderforcloud/>).
pub const SUBSCRIPTIONS_API: &str = "2022-12-01";
pub const SECURE_SCORE_API: &str = "2020-01-01";
/// Assessments are read with 2025-05-04, the stable version that carries `properties.risk`
/// (azure-rest-api-specs `Microsoft.Security/stable/2025-05-04/assessments.json`); where a cloud
/// does not offer it yet (400 `NoRegisteredProviderFound`), with [`ASSESSMENTS_FALLBACK_API`].
pub const ASSESSMENTS_API: &str = "2025-05-04";
/// The version Microsoft Learn documents and every cloud serves (no `risk`).
pub const ASSESSMENTS_FALLBACK_API: &str = "2021-06-01";
/// Assessment metadata stays on 2021-06-01: its 2025-05-04 additions are not read.
pub const ASSESSMENT_METADATA_API: &str = "2021-06-01";
pub const SUB_ASSESSMENTS_API: &str = "2019-01-01-preview";
pub const PRICINGS_API: &str = "2024-01-01";
pub const RESOURCE_GRAPH_API: &str = "2024-04-01";

/// The client's Resource Graph query for vulnerability findings: unhealthy individual
/// recommendations of the `SoftwareUpdate` category and of `ServiceUpgrade` (where AKS node
/// findings moved), one row per recommendation with `CvesDetails` as Microsoft sends it (a JSON
/// string). Rampart expands the CVEs itself: `mv-expand` stops at 128 elements per row by default
/// (at most 400), so a package with more CVEs would lose some in silence. Only the fields Rampart
/// reads are projected (Resource Graph refuses answers over 16 MiB); `id` is projected so that
/// Resource Graph can page. Sources:
/// <https://learn.microsoft.com/en-us/azure/governance/resource-graph/concepts/query-language>,
/// <https://learn.microsoft.com/en-us/azure/defender-for-cloud/transition-grouped-individual-recommendations>.
pub const VULNERABILITY_QUERY: &str = r#"securityresources
| where type == "microsoft.security/assessments"
| where properties.metadata.recommendationCategory in ("SoftwareUpdate", "ServiceUpgrade")
| where tostring(properties.status.code) == "Unhealthy"
| project id, subscriptionId, resourceId = tolower(tostring(properties.resourceDetails.Id)), resourceName = tostring(properties.resourceDetails.ResourceName), resourceType = tostring(properties.resourceDetails.ResourceType), category = tostring(properties.metadata.recommendationCategory), severity = tostring(properties.metadata.severity), softwareName = tostring(properties.additionalData.SoftwareName), softwareVendor = tostring(properties.additionalData.SoftwareVendor), detectedVersions = tostring(properties.additionalData.DetectedSoftwareVersions), fixedVersion = tostring(properties.additionalData.FixedVersion), cvesDetails = tostring(properties.additionalData.CvesDetails), firstEvaluationDate = tostring(properties.status.firstEvaluationDate), statusChangeDate = tostring(properties.status.statusChangeDate)"#;

/// CVE ids per `cvedetails` query (the list goes into the query text).
pub const CVE_DETAILS_PER_QUERY: usize = 200;

/// The `microsoft.security/cvedetails` rows of `cve_ids` (valid CVE ids only: they go into the
/// query text). Microsoft serves this type at tenant scope only.
pub fn cve_details_query(cve_ids: &[rampart_model::CveId]) -> String {
    let list = cve_ids
        .iter()
        .map(|c| format!("\"{}\"", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"securityresources
| where type =~ "microsoft.security/cvedetails"
| extend cveId = tostring(coalesce(properties.cveId, name))
| where cveId in~ ({list})
| project id, name, cveId, properties"#
    )
}

/// A Defender for Cloud client for one integration. Cheap to clone; clones share the token cache,
/// rate-limit buckets and metrics.
#[derive(Debug, Clone)]
pub struct ArmClient {
    conn: Connection,
    /// Set once the cloud refused [`ASSESSMENTS_API`]; from then on the fallback is used.
    assessments_fallback: Arc<AtomicBool>,
}

/// Why nothing can be read: the app holds no Azure role anywhere (Microsoft answers an empty
/// subscription list, not an error: <https://learn.microsoft.com/en-us/azure/role-based-access-control/role-assignments-portal>). The steps are exact on purpose.
pub const NO_ROLE_EXPLANATION: &str = "The app sees no Azure subscription, which means it holds no Azure role: Microsoft answers an empty list, not an error. \
Defender for Cloud access is an Azure role assignment (RBAC), not an API permission in the app registration, and needs no admin consent. \
Assign Security Reader (or Reader) at subscription or management-group scope: Azure portal → Subscriptions (or Management groups) → the subscription (or group) → \
Access control (IAM) → Add → Add role assignment → Security Reader → Next → Members: Select members → the app's name → Select → Review + assign. \
A management-group assignment covers every subscription under it. A new assignment can take a few minutes to apply; then test again.";

/// What to do about a 403 `AuthorizationFailed` on one subscription: the app is listed there but
/// lacks a role at subscription scope (e.g. it holds one on a resource group only), or the
/// assignment is very new.
pub fn authorization_failed_fix(subscription: &str) -> String {
    format!(
        "Assign Security Reader (or Reader) to the app on subscription {subscription} itself or on its management group: \
         Azure portal → Subscriptions → {subscription} → Access control (IAM) → Add role assignment → Security Reader → Members: the app's name → Review + assign. \
         A role on a resource group is not enough; a new assignment can take a few minutes to apply"
    )
}

impl ArmClient {
    pub fn new(config: ClientConfig) -> Result<ArmClient, ApiError> {
        let endpoints = Endpoints::arm(config.cloud, &config.overrides)?;
        // Microsoft's ARM limits differ per cloud (token bucket in the commercial cloud, hourly
        // counts in the sovereign ones until the end of 2026); a customised limit is kept.
        let rate_limits = config.rate_limits.for_cloud(config.cloud);
        let conn = Connection::open(config, endpoints, &rate_limits, keep_refusal)?;
        Ok(ArmClient {
            conn,
            assessments_fallback: Arc::new(AtomicBool::new(false)),
        })
    }

    connection_accessors!();

    /// Gets (or reuses) the ARM token. ARM tokens carry no roles: access is Azure RBAC.
    pub async fn check_token(&self) -> Result<(), TokenError> {
        self.conn.tokens.token().await.map(|_| ())
    }

    /// Gets a new ARM token, never a cached one: a role assigned minutes ago applies only to
    /// tokens issued after it (<https://learn.microsoft.com/en-us/azure/role-based-access-control/role-assignments-portal>), and a connection test must see it.
    pub async fn fresh_token(&self) -> Result<(), TokenError> {
        let cached = self.conn.tokens.token().await?;
        self.conn.tokens.invalidate(&cached);
        self.conn.tokens.token().await.map(|_| ())
    }

    /// `GET /subscriptions`, every page. An empty answer means "no role anywhere" (<https://learn.microsoft.com/en-us/azure/role-based-access-control/role-assignments-portal>).
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

    /// Assessments of a subscription, with `risk` where the cloud serves 2025-05-04. After
    /// [`ArmClient::use_assessments_fallback`], with 2021-06-01.
    pub fn assessments(&self, sub: &str) -> RecordStream<Assessment> {
        self.list(
            &format!("subscriptions/{sub}/providers/Microsoft.Security/assessments"),
            self.assessments_api(),
            &[],
        )
    }

    /// The assessments api-version in use.
    pub fn assessments_api(&self) -> &'static str {
        if self.assessments_fallback.load(Ordering::Relaxed) {
            ASSESSMENTS_FALLBACK_API
        } else {
            ASSESSMENTS_API
        }
    }

    /// When `e` says the cloud does not serve [`ASSESSMENTS_API`], switches this client (and its
    /// clones) to [`ASSESSMENTS_FALLBACK_API`] and returns true: read again. False otherwise, and
    /// when the fallback is already in use.
    pub fn use_assessments_fallback(&self, e: &ApiError) -> bool {
        is_unsupported_api_version(e) && !self.assessments_fallback.swap(true, Ordering::Relaxed)
    }

    pub fn assessment_metadata(&self) -> RecordStream<AssessmentMetadata> {
        self.list(
            "providers/Microsoft.Security/assessmentMetadata",
            ASSESSMENT_METADATA_API,
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
    pub async fn pricings(&self, sub: &str) -> Result<Vec<Pricing>, ApiError> {
        let url = self.url(
            &format!("subscriptions/{sub}/providers/Microsoft.Security/pricings"),
            PRICINGS_API,
            &[],
        )?;
        let list: ValueList<Pricing> = self
            .conn
            .core
            .get_json(ApiFamily::Arm, &url, 4 * 1024 * 1024)
            .await?;
        Ok(list.value)
    }

    /// Vulnerability rows of the given subscriptions through Resource Graph, every page
    /// (`$skipToken`), `paging.graph_page_size` rows per page (at most 1,000), subscriptions in groups of fewer than
    /// 300. Rows of subscriptions the app cannot read are silently absent (ARG filters by access),
    /// so pass only subscriptions whose other reads succeeded.
    pub fn vulnerability_rows(&self, subscriptions: &[String]) -> RecordStream<VulnerabilityRow> {
        self.graph(GraphPlan {
            query: VULNERABILITY_QUERY.to_owned(),
            top: self.conn.paging.graph_page_size.clamp(1, GRAPH_MAX_TOP),
            subscriptions: subscriptions.to_vec(),
            max_pages: self.conn.paging.max_pages,
            batch_size: self.conn.paging.batch_size,
            first_page_only: false,
        })
    }

    /// The tenant-scope `microsoft.security/cvedetails` rows of `cve_ids` (at most
    /// [`CVE_DETAILS_PER_QUERY`] per call): CVSS, severity and dates of CVEs whose `CvesDetails`
    /// entry carried only the id. A subscription-scoped query returns nothing for this type, so
    /// no subscription list is sent.
    pub fn cve_details(&self, cve_ids: &[rampart_model::CveId]) -> RecordStream<CveDetailsRow> {
        self.graph(GraphPlan {
            query: cve_details_query(cve_ids),
            top: self.conn.paging.graph_page_size.clamp(1, GRAPH_MAX_TOP),
            subscriptions: Vec::new(),
            max_pages: self.conn.paging.max_pages,
            batch_size: self.conn.paging.batch_size,
            first_page_only: false,
        })
    }

    /// One row of the vulnerability query (`$top=1`), for a connection test.
    pub async fn read_one_vulnerability_row(
        &self,
        subscriptions: &[String],
    ) -> Result<Option<VulnerabilityRow>, ApiError> {
        let (rows, _) = self
            .graph(GraphPlan {
                query: VULNERABILITY_QUERY.to_owned(),
                top: 1,
                subscriptions: subscriptions.to_vec(),
                max_pages: 1,
                batch_size: 1,
                first_page_only: true,
            })
            .collect_all()
            .await?;
        Ok(rows.into_iter().next())
    }

    fn graph<T>(&self, plan: GraphPlan) -> RecordStream<T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let url = match self.url(
            "providers/Microsoft.ResourceGraph/resources",
            RESOURCE_GRAPH_API,
            &[],
        ) {
            Ok(u) => u,
            Err(e) => return RecordStream::failed(e),
        };
        let core = Arc::clone(&self.conn.core);
        RecordStream::spawn(self.conn.paging.channel_capacity, move |tx| {
            read_graph_pages(core, url, plan, tx)
        })
    }

    fn list<T>(&self, path: &str, version: &str, extra: &[(&str, &str)]) -> RecordStream<T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        self.conn
            .linked_read(ApiFamily::Arm, self.url(path, version, extra))
    }

    fn url(&self, path: &str, version: &str, extra: &[(&str, &str)]) -> Result<Url, ApiError> {
        let mut url = self.conn.url(path)?;
        url.query_pairs_mut().append_pair("api-version", version);
        for (k, v) in extra {
            url.query_pairs_mut().append_pair(k, v);
        }
        Ok(url)
    }
}

/// Azure guards its APIs by RBAC, not application roles: a 403 `Forbidden` is kept as Microsoft
/// said it (its `AuthorizationFailed` is read by [`is_authorization_failed`]).
fn keep_refusal(api: Refusal, _token: &dyn Bearer) -> ApiError {
    ApiError::Refused(api)
}

/// Is this ARM's answer to an api-version the resource provider does not serve here (400
/// `NoRegisteredProviderFound`, or `InvalidApiVersionParameter`)?
pub fn is_unsupported_api_version(e: &ApiError) -> bool {
    matches!(e, ApiError::Refused(a) if a.status == 400
    && a.code.as_deref().is_some_and(|c| {
        c.eq_ignore_ascii_case("NoRegisteredProviderFound")
            || c.eq_ignore_ascii_case("InvalidApiVersionParameter")
    }))
}

/// Is this API error ARM's "no role on this subscription"?
pub fn is_authorization_failed(e: &ApiError) -> bool {
    matches!(e, ApiError::Refused(a) if a.status == 403
        && a.code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("AuthorizationFailed")))
}
