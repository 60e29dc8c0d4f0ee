//! The emulator's configuration and its validation.

use chrono::{DateTime, TimeZone, Utc};

/// Roles an app granted "everything the sync needs" carries in its token (`roles` claim).
pub const DEFAULT_ROLES: [&str; 4] = [
    "Machine.Read.All",
    "Vulnerability.Read.All",
    "Software.Read.All",
    "SecurityRecommendation.Read.All",
];

/// How the simulated tenant looks and behaves.
///
/// Build it with struct-update syntax so that new fields do not break callers:
/// `SimConfig { devices: 500, ..SimConfig::default() }`.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of the data generator: identical seeds give identical tenants.
    pub seed: u64,
    /// Devices at tick 0 (onboarded and discovered).
    pub devices: u32,
    /// Average open CVE findings per onboarded device.
    pub findings_per_device: u32,
    /// The tenant GUID the token endpoints and the data answer for.
    pub tenant_id: String,
    /// The app registration (client id) that may get tokens.
    pub client_id: String,
    /// Its secret value.
    pub client_secret: String,
    /// The secret is expired: token requests fail with AADSTS7000222.
    pub secret_expired: bool,
    /// Application roles in tokens for the MDE API. `None`: all the roles the APIs need;
    /// `Some(vec![])`: consent never granted, tokens carry no `roles` claim at all.
    pub roles: Option<Vec<String>>,
    /// Enforce Microsoft's documented per-minute and per-hour call limits.
    pub rate_limits: bool,
    /// Share of API requests (0.0..=1.0) answered with an injected fault.
    pub fault_rate: f64,
    /// Simulated "now" at tick 0; truncated to the minute. Each tick adds six hours.
    pub start_time: DateTime<Utc>,
    /// The Azure role the app's service principal holds on the tenant's subscriptions (Azure RBAC,
    /// not an API permission). `None`: no role anywhere, so `GET /subscriptions` answers 200 with an
    /// empty list and direct subscription calls 403 `AuthorizationFailed`.
    pub arm_role: Option<String>,
    /// Subscriptions where the role is only held below subscription scope (e.g. on one resource
    /// group): they are listed, but their `Microsoft.Security` reads answer 403 `AuthorizationFailed`.
    pub arm_denied_subscriptions: Vec<String>,
    /// Items per ARM list page (Microsoft picks its own; small values exercise `nextLink` paging).
    pub arm_page_size: u32,
    /// Serve the known ARM paging pathology: the assessments list starts with an empty page that
    /// still carries a `nextLink` (azure-sdk-for-js#17907).
    pub arm_empty_first_page: bool,
    /// ARM's read bucket per principal and subscription (<https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/request-limits-and-throttling>: 250)…
    pub arm_read_burst: u32,
    /// …refilled at this many reads per second (25). Enforced when `rate_limits` is on.
    pub arm_read_refill: u32,
    /// Share (0.0..=1.0) of onboarded devices that `GET /api/machines` does not return while the
    /// vulnerability exports still carry their rows, as in real tenants through data retention and
    /// device-group scoping (and in Microsoft's own examples, whose export rows name devices the
    /// machine examples do not). 0 by default.
    pub unlisted_device_share: f64,
    /// Serve machines without `ipAddresses`, only `lastIpAddress` and `lastExternalIpAddress`, like
    /// the main example of Microsoft's get-machines page.
    pub machines_without_ip_addresses: bool,
    /// Serve export files with `Content-Encoding: gzip` (the blob's stored content encoding), so
    /// that HTTP clients decompress them on the fly. Whether Microsoft's blobs carry it is not
    /// documented; off by default.
    pub blob_content_encoding: bool,
    /// Resource Graph's quota per principal: this many queries (Microsoft documents 15, "subject
    /// to change")…
    pub graph_quota: u32,
    /// …per window of this many seconds (5). Every answer carries `x-ms-user-quota-remaining` and
    /// `x-ms-user-quota-resets-after`; a query beyond the quota is a 429 `RateLimiting`.
    pub graph_quota_window_secs: u32,
    /// Data mode: one control of the first subscription comes with `"score": null` (seen from
    /// Microsoft); the client must keep the control, score unknown, and the subscription whole.
    pub null_control_score: bool,
    /// Data mode: the assessments list does not offer api-version 2025-05-04 (the version with
    /// `properties.risk`), as in a cloud that has not rolled it out: 400
    /// `NoRegisteredProviderFound`.
    pub assessments_without_2025_05_04: bool,
    /// Largest Resource Graph answer, measured on the serialized JSON (Microsoft: 16 MiB; larger
    /// answers are refused with 400 `ResponsePayloadTooLarge`). Small values let a test hit it.
    pub graph_max_response_bytes: usize,
    /// Data mode: one VM of the first subscription has a package with this many CVEs (0: none),
    /// past Resource Graph's default `mv-expand` limit of 128.
    pub cloud_cves_in_one_package: u32,
    /// Data mode: `CvesDetails` entries carry only `CveId`; severity is left to the
    /// recommendation's `metadata.severity` and the details to `microsoft.security/cvedetails`.
    pub cloud_cve_ids_only: bool,
    /// Serve the tenant-scope `microsoft.security/cvedetails` rows (a tenant may have none).
    pub cloud_cvedetails: bool,
    /// Data mode: a tenant from before 2026-07-31 that still serves grouped sub-assessments
    /// (MDVM and Qualys machine findings, registry image findings).
    pub cloud_legacy_sub_assessments: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 1,
            devices: 200,
            findings_per_device: 100,
            tenant_id: "00000000-0000-4000-8000-000000000001".to_owned(),
            client_id: "00000000-0000-4000-8000-000000000002".to_owned(),
            client_secret: "rampart-demo-secret-value-0001".to_owned(),
            secret_expired: false,
            roles: None,
            rate_limits: true,
            fault_rate: 0.0,
            start_time: Utc
                .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .single()
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            arm_role: Some("Security Reader".to_owned()),
            arm_denied_subscriptions: Vec::new(),
            arm_page_size: 50,
            arm_empty_first_page: true,
            arm_read_burst: 250,
            arm_read_refill: 25,
            unlisted_device_share: 0.0,
            machines_without_ip_addresses: false,
            blob_content_encoding: false,
            graph_quota: 15,
            graph_quota_window_secs: 5,
            null_control_score: false,
            assessments_without_2025_05_04: false,
            graph_max_response_bytes: 16 * 1024 * 1024,
            cloud_cves_in_one_package: 0,
            cloud_cve_ids_only: false,
            cloud_cvedetails: true,
            cloud_legacy_sub_assessments: false,
        }
    }
}

/// Why the emulator could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A configuration value is out of range or malformed.
    #[error("invalid emulator configuration: {field} {reason}")]
    InvalidConfig {
        /// The offending field of [`SimConfig`].
        field: &'static str,
        /// What is wrong with it, in words.
        reason: String,
    },
    /// Binding or serving failed.
    #[error("emulator I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SimError {
    SimError::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

/// Upper bounds that keep a typo from asking for an absurd tenant (generation is lazy, but the
/// exposure counts of `/api/vulnerabilities` still scan every device once per snapshot).
const MAX_DEVICES: u32 = 5_000_000;
const MAX_FINDINGS_PER_DEVICE: u32 = 5_000;

pub(crate) fn is_guid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

impl SimConfig {
    /// Checks the values and normalises the start time (to whole minutes, so that `TimePath`s, which
    /// have minute resolution, name snapshots exactly).
    pub(crate) fn validated(mut self) -> Result<SimConfig, SimError> {
        if !is_guid(&self.tenant_id) {
            return Err(invalid(
                "tenant_id",
                format!(
                    "must be a GUID like 00000000-0000-4000-8000-000000000001, got {:?}",
                    self.tenant_id
                ),
            ));
        }
        if !is_guid(&self.client_id) {
            return Err(invalid(
                "client_id",
                format!(
                    "must be a GUID like 00000000-0000-4000-8000-000000000002, got {:?}",
                    self.client_id
                ),
            ));
        }
        self.tenant_id = self.tenant_id.to_ascii_lowercase();
        self.client_id = self.client_id.to_ascii_lowercase();
        if self.client_secret.is_empty() {
            return Err(invalid("client_secret", "must not be empty"));
        }
        if !(self.fault_rate.is_finite() && (0.0..=1.0).contains(&self.fault_rate)) {
            return Err(invalid(
                "fault_rate",
                format!("must be between 0.0 and 1.0, got {}", self.fault_rate),
            ));
        }
        if !(self.unlisted_device_share.is_finite()
            && (0.0..=1.0).contains(&self.unlisted_device_share))
        {
            return Err(invalid(
                "unlisted_device_share",
                format!(
                    "must be between 0.0 and 1.0, got {}",
                    self.unlisted_device_share
                ),
            ));
        }
        if self.devices > MAX_DEVICES {
            return Err(invalid("devices", format!("must be at most {MAX_DEVICES}")));
        }
        if self.findings_per_device > MAX_FINDINGS_PER_DEVICE {
            return Err(invalid(
                "findings_per_device",
                format!("must be at most {MAX_FINDINGS_PER_DEVICE}"),
            ));
        }
        if let Some(roles) = &self.roles
            && let Some(bad) = roles.iter().find(|r| {
                r.is_empty() || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
            })
        {
            return Err(invalid(
                "roles",
                format!("role values look like Machine.Read.All, got {bad:?}"),
            ));
        }
        if self.graph_max_response_bytes < 1024 {
            return Err(invalid("graph_max_response_bytes", "must be at least 1024"));
        }
        if self.cloud_cves_in_one_package > 5_000 {
            return Err(invalid("cloud_cves_in_one_package", "must be at most 5000"));
        }
        if self.arm_page_size == 0 || self.arm_page_size > 5_000 {
            return Err(invalid("arm_page_size", "must be between 1 and 5000"));
        }
        if self.graph_quota == 0 || self.graph_quota_window_secs == 0 {
            return Err(invalid(
                "graph_quota",
                "and graph_quota_window_secs must be at least 1",
            ));
        }
        if self.graph_quota_window_secs > 59 {
            return Err(invalid(
                "graph_quota_window_secs",
                "must be below 60 (Resource Graph's window is seconds long)",
            ));
        }
        for sub in &mut self.arm_denied_subscriptions {
            if !is_guid(sub) {
                return Err(invalid(
                    "arm_denied_subscriptions",
                    format!("must hold subscription GUIDs, got {sub:?}"),
                ));
            }
            *sub = sub.to_ascii_lowercase();
        }
        let secs = self.start_time.timestamp();
        self.start_time = Utc
            .timestamp_opt(secs - secs.rem_euclid(60), 0)
            .single()
            .ok_or_else(|| invalid("start_time", "is out of range"))?;
        Ok(self)
    }

    /// The roles that go into MDE tokens (`None` here means "omit the claim").
    pub(crate) fn token_roles(&self) -> Option<Vec<String>> {
        match &self.roles {
            None => Some(DEFAULT_ROLES.iter().map(|r| (*r).to_owned()).collect()),
            Some(r) if r.is_empty() => None,
            Some(r) => Some(r.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let err = SimConfig {
            tenant_id: "nope".into(),
            ..SimConfig::default()
        }
        .validated()
        .unwrap_err();
        assert!(err.to_string().contains("tenant_id"), "{err}");
        let err = SimConfig {
            fault_rate: 1.5,
            ..SimConfig::default()
        }
        .validated()
        .unwrap_err();
        assert!(err.to_string().contains("fault_rate"), "{err}");
        let err = SimConfig {
            fault_rate: f64::NAN,
            ..SimConfig::default()
        }
        .validated()
        .unwrap_err();
        assert!(err.to_string().contains("fault_rate"), "{err}");
        let err = SimConfig {
            roles: Some(vec!["a,b".into()]),
            ..SimConfig::default()
        }
        .validated()
        .unwrap_err();
        assert!(err.to_string().contains("roles"), "{err}");
        let ok = SimConfig {
            start_time: Utc.with_ymd_and_hms(2026, 1, 1, 10, 11, 12).unwrap(),
            ..SimConfig::default()
        }
        .validated()
        .unwrap();
        assert_eq!(
            ok.start_time,
            Utc.with_ymd_and_hms(2026, 1, 1, 10, 11, 0).unwrap()
        );
    }
}
