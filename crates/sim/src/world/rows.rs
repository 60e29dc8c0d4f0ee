//! Export records: one struct of borrowed parts, three wire forms.
//!
//! The JSON export (camelCase, explicit nulls), the export files (PascalCase, `OS…`, null keys omitted,
//! keys in alphabetical order like Spark writes them) and the delta API (camelCase, no
//! `securityUpdateAvailable`, plus `status` and `eventTimestamp`) are written by hand into a byte buffer:
//! this is the hot loop of every benchmark, and serde would allocate per field.

use crate::records::Finding;
use crate::time::{Ts, write_export_ts};

use super::Names;
use super::catalog::{Group, PlatformInfo, Product};
use super::cves::{Attrs, Cve, write_cvss};

pub(crate) struct RowData<'a> {
    pub(crate) names: &'a Names,
    pub(crate) group: &'static Group,
    pub(crate) platform: &'static PlatformInfo,
    pub(crate) os_version: &'a str,
    pub(crate) product: &'static Product,
    /// (diskPaths, registryPaths) JSON literals; `None` is null.
    pub(crate) paths: (Option<&'static str>, Option<&'static str>),
    pub(crate) version: &'a str,
    pub(crate) cve: Option<(&'a Cve, Attrs)>,
    pub(crate) first_seen: Ts,
    pub(crate) last_seen: Ts,
}

/// Delta-only fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    New,
    Fixed,
    Updated,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::New => "New",
            Status::Fixed => "Fixed",
            Status::Updated => "Updated",
        }
    }
}

/// Appends a JSON string literal; generated strings rarely need escaping, so check first.
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.extend_from_slice(s.as_bytes());
    } else {
        for c in s.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }
    out.push(b'"');
}

fn push_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_ts(out: &mut Vec<u8>, ts: Ts) {
    out.push(b'"');
    write_export_ts(out, ts);
    out.push(b'"');
}

impl RowData<'_> {
    fn push_id(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        out.extend_from_slice(self.names.id.as_bytes());
        for part in [self.product.vendor, self.product.name, self.version] {
            out.push(b'_');
            out.extend_from_slice(part.as_bytes());
        }
        out.push(b'_');
        if let Some((cve, _)) = self.cve {
            out.extend_from_slice(cve.id.as_bytes());
        }
        out.push(b'"');
    }

    fn push_reference(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\"va-_-");
        out.extend_from_slice(self.product.vendor.as_bytes());
        out.extend_from_slice(b"-_-");
        out.extend_from_slice(self.product.name.as_bytes());
        out.push(b'"');
    }

    fn exploitability(&self) -> &'static str {
        self.cve.map_or("NoExploit", |(_, a)| a.exploitability())
    }

    fn update_available(&self) -> bool {
        self.cve.is_some_and(|(c, _)| c.update_available)
    }

    /// `SoftwareVulnerabilitiesByMachine` row, or (with `delta`) a `SoftwareVulnerabilityChangesByMachine` row.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>, delta: Option<(Status, Ts)>) {
        out.extend_from_slice(b"{\"id\":");
        self.push_id(out);
        out.extend_from_slice(b",\"deviceId\":\"");
        out.extend_from_slice(self.names.id.as_bytes());
        out.extend_from_slice(b"\",\"rbacGroupName\":");
        push_json_str(out, self.group.export_name());
        out.extend_from_slice(b",\"rbacGroupId\":");
        push_u64(out, u64::from(self.group.id));
        out.extend_from_slice(b",\"deviceName\":");
        push_opt_str(out, self.names.name.as_deref());
        out.extend_from_slice(b",\"osPlatform\":\"");
        out.extend_from_slice(self.platform.export_name.as_bytes());
        out.extend_from_slice(b"\",\"osVersion\":");
        push_json_str(out, self.os_version);
        out.extend_from_slice(b",\"osArchitecture\":\"");
        out.extend_from_slice(self.names.export_arch.as_bytes());
        out.extend_from_slice(b"\",\"softwareVendor\":");
        push_json_str(out, self.product.vendor);
        out.extend_from_slice(b",\"softwareName\":");
        push_json_str(out, self.product.name);
        out.extend_from_slice(b",\"softwareVersion\":");
        push_json_str(out, self.version);
        out.extend_from_slice(b",\"cveId\":");
        match self.cve {
            Some((cve, attrs)) => {
                push_json_str(out, &cve.id);
                out.extend_from_slice(b",\"cvssScore\":");
                write_cvss(out, attrs.cvss);
                out.extend_from_slice(b",\"vulnerabilitySeverityLevel\":\"");
                out.extend_from_slice(attrs.severity().as_bytes());
                out.extend_from_slice(b"\",\"recommendedSecurityUpdate\":");
                push_opt_str(out, cve.rsu.as_deref());
                out.extend_from_slice(b",\"recommendedSecurityUpdateId\":");
                push_opt_str(out, cve.rsu_id.as_deref());
                out.extend_from_slice(b",\"recommendedSecurityUpdateUrl\":");
                push_opt_str(out, cve.rsu_url.as_deref());
            }
            None => out.extend_from_slice(
                b"null,\"cvssScore\":null,\"vulnerabilitySeverityLevel\":null,\"recommendedSecurityUpdate\":null,\
                  \"recommendedSecurityUpdateId\":null,\"recommendedSecurityUpdateUrl\":null",
            ),
        }
        out.extend_from_slice(b",\"diskPaths\":");
        out.extend_from_slice(self.paths.0.unwrap_or("null").as_bytes());
        out.extend_from_slice(b",\"registryPaths\":");
        out.extend_from_slice(self.paths.1.unwrap_or("null").as_bytes());
        out.extend_from_slice(b",\"lastSeenTimestamp\":");
        push_ts(out, self.last_seen);
        out.extend_from_slice(b",\"firstSeenTimestamp\":");
        push_ts(out, self.first_seen);
        out.extend_from_slice(b",\"exploitabilityLevel\":\"");
        out.extend_from_slice(self.exploitability().as_bytes());
        out.extend_from_slice(b"\",\"recommendationReference\":");
        self.push_reference(out);
        match delta {
            None => {
                out.extend_from_slice(b",\"securityUpdateAvailable\":");
                out.extend_from_slice(if self.update_available() {
                    b"true"
                } else {
                    b"false"
                });
            }
            Some((status, at)) => {
                out.extend_from_slice(b",\"status\":\"");
                out.extend_from_slice(status.as_str().as_bytes());
                out.extend_from_slice(b"\",\"eventTimestamp\":");
                push_ts(out, at);
            }
        }
        out.push(b'}');
    }

    /// A line of an export file: PascalCase, `OS` upper-case, null keys omitted, alphabetical.
    pub(crate) fn write_pascal(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        if let Some((cve, attrs)) = self.cve {
            out.extend_from_slice(b"\"CveId\":");
            push_json_str(out, &cve.id);
            out.extend_from_slice(b",\"CvssScore\":");
            write_cvss(out, attrs.cvss);
            out.push(b',');
        }
        out.extend_from_slice(b"\"DeviceId\":\"");
        out.extend_from_slice(self.names.id.as_bytes());
        out.push(b'"');
        if let Some(name) = &self.names.name {
            out.extend_from_slice(b",\"DeviceName\":");
            push_json_str(out, name);
        }
        if let Some(p) = self.paths.0 {
            out.extend_from_slice(b",\"DiskPaths\":");
            out.extend_from_slice(p.as_bytes());
        }
        out.extend_from_slice(b",\"ExploitabilityLevel\":\"");
        out.extend_from_slice(self.exploitability().as_bytes());
        out.extend_from_slice(b"\",\"FirstSeenTimestamp\":");
        push_ts(out, self.first_seen);
        out.extend_from_slice(b",\"Id\":");
        self.push_id(out);
        out.extend_from_slice(b",\"LastSeenTimestamp\":");
        push_ts(out, self.last_seen);
        out.extend_from_slice(b",\"OSArchitecture\":\"");
        out.extend_from_slice(self.names.export_arch.as_bytes());
        out.extend_from_slice(b"\",\"OSPlatform\":\"");
        out.extend_from_slice(self.platform.export_name.as_bytes());
        out.extend_from_slice(b"\",\"OSVersion\":");
        push_json_str(out, self.os_version);
        out.extend_from_slice(b",\"RbacGroupId\":");
        push_u64(out, u64::from(self.group.id));
        out.extend_from_slice(b",\"RbacGroupName\":");
        push_json_str(out, self.group.export_name());
        out.extend_from_slice(b",\"RecommendationReference\":");
        self.push_reference(out);
        if let Some((cve, _)) = self.cve {
            for (key, value) in [
                (&b",\"RecommendedSecurityUpdate\":"[..], &cve.rsu),
                (&b",\"RecommendedSecurityUpdateId\":"[..], &cve.rsu_id),
                (&b",\"RecommendedSecurityUpdateUrl\":"[..], &cve.rsu_url),
            ] {
                if let Some(v) = value {
                    out.extend_from_slice(key);
                    push_json_str(out, v);
                }
            }
        }
        if let Some(p) = self.paths.1 {
            out.extend_from_slice(b",\"RegistryPaths\":");
            out.extend_from_slice(p.as_bytes());
        }
        out.extend_from_slice(b",\"SecurityUpdateAvailable\":");
        out.extend_from_slice(if self.update_available() {
            b"true"
        } else {
            b"false"
        });
        out.extend_from_slice(b",\"SoftwareName\":");
        push_json_str(out, self.product.name);
        out.extend_from_slice(b",\"SoftwareVendor\":");
        push_json_str(out, self.product.vendor);
        out.extend_from_slice(b",\"SoftwareVersion\":");
        push_json_str(out, self.version);
        if let Some((_, attrs)) = self.cve {
            out.extend_from_slice(b",\"VulnerabilitySeverityLevel\":\"");
            out.extend_from_slice(attrs.severity().as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
    }

    /// The truth record of a row that has a CVE.
    pub(crate) fn to_finding(&self) -> Option<Finding> {
        let (cve, attrs) = self.cve?;
        let mut id = Vec::with_capacity(96);
        self.push_id(&mut id);
        let id = String::from_utf8_lossy(&id[1..id.len() - 1]).into_owned();
        let paths =
            |p: Option<&str>| p.map(|s| serde_json::from_str::<Vec<String>>(s).unwrap_or_default());
        Some(Finding {
            id,
            device_id: self.names.id.clone(),
            rbac_group_name: self.group.export_name().to_owned(),
            rbac_group_id: self.group.id,
            device_name: self.names.name.clone().unwrap_or_default(),
            os_platform: self.platform.export_name.to_owned(),
            os_version: self.os_version.to_owned(),
            os_architecture: self.names.export_arch.to_owned(),
            software_vendor: self.product.vendor.to_owned(),
            software_name: self.product.name.to_owned(),
            software_version: self.version.to_owned(),
            cve_id: cve.id.clone(),
            cvss_score: Some(attrs.cvss_f64()),
            vulnerability_severity_level: attrs.severity().to_owned(),
            recommended_security_update: cve.rsu.clone(),
            recommended_security_update_id: cve.rsu_id.clone(),
            recommended_security_update_url: cve.rsu_url.clone(),
            disk_paths: paths(self.paths.0),
            registry_paths: paths(self.paths.1),
            last_seen_timestamp: self.last_seen.to_chrono(),
            first_seen_timestamp: self.first_seen.to_chrono(),
            exploitability_level: attrs.exploitability().to_owned(),
            recommendation_reference: format!(
                "va-_-{}-_-{}",
                self.product.vendor, self.product.name
            ),
            security_update_available: cve.update_available,
        })
    }
}
