//! The Defender for Cloud side of the tenant, a pure function of `(seed, tick)` like the rest.
//!
//! Subscriptions are the three the MDE side already names in `vmMetadata` plus a disabled one. The
//! assessed resources of a subscription are the MDE devices whose `vmMetadata.resourceId` points into
//! it (so MDE and Defender for Cloud describe the same VM), two VMs without Defender for Endpoint,
//! two container images and a SQL server (none in the second subscription: a security control
//! only counts where it has resources, so the subscriptions' maximum scores differ, as they do in
//! real tenants, and a tenant score must weight them as Microsoft does). Every (resource, recommendation) pair flips between
//! healthy, unhealthy and not-applicable in epochs of 6–11 ticks, and every vulnerable package on a
//! VM or image lives in epochs too, so advancing the clock changes scores, recommendations and
//! findings in a computable way.

use std::collections::BTreeMap;

use crate::cloud_records::{
    CloudAssessment, CloudFinding, CloudResource, CloudResourceKind, CloudRisk, CloudSubscription,
    ScoreControl, SecureScore,
};
use crate::hash::{below, mix, pick, unit};
use crate::time::Ts;

use super::snapshot::Snapshot;
use super::{World, guid};

const T_CLOUD: u64 = 0xC10D;

/// A built-in recommendation (`assessmentMetadata`).
pub(crate) struct Meta {
    pub(crate) key: &'static str,
    pub(crate) name: &'static str,
    pub(crate) severity: &'static str,
    pub(crate) category: &'static str,
    pub(crate) applies: CloudResourceKind,
    /// Index into [`CONTROLS`].
    pub(crate) control: usize,
    pub(crate) description: &'static str,
}

pub(crate) const VM_VULNS: &str = "1195afff-c881-495e-9bc5-1486211ae03f";
pub(crate) const IMAGE_VULNS: &str = "c0b7cfc6-3172-465a-b378-53c7ff2cc0d5";

pub(crate) const METADATA: [Meta; 8] = [
    Meta {
        key: "94208a8b-16e8-4e5b-abbd-4e81c9d02bee",
        name: "Accounts with owner permissions on Azure resources should be MFA enabled",
        severity: "High",
        category: "IdentityAndAccess",
        applies: CloudResourceKind::Subscription,
        control: 0,
        description: "Enable multi-factor authentication for all subscription accounts with owner permissions.",
    },
    Meta {
        key: "805651bc-6ecd-4c73-9b55-97a19d0582d0",
        name: "Management ports of virtual machines should be protected with just-in-time network access control",
        severity: "High",
        category: "Networking",
        applies: CloudResourceKind::VirtualMachine,
        control: 1,
        description: "Defender for Cloud has identified overly permissive inbound rules for management ports.",
    },
    Meta {
        key: VM_VULNS,
        name: "Machines should have vulnerability findings resolved",
        severity: "High",
        category: "Compute",
        applies: CloudResourceKind::VirtualMachine,
        control: 2,
        description: "Resolve the vulnerabilities found on your virtual machines.",
    },
    Meta {
        key: "ffff0522-1e88-47fc-8382-2a80ba848f5d",
        name: "Machines should have a vulnerability assessment solution",
        severity: "Medium",
        category: "Compute",
        applies: CloudResourceKind::VirtualMachine,
        control: 2,
        description: "Defender for Cloud regularly checks your connected machines for a vulnerability assessment tool.",
    },
    Meta {
        key: "e1145ab1-eb4f-43d8-911b-36ddf771d13f",
        name: "System updates should be installed on your machines (powered by Azure Update Manager)",
        severity: "High",
        category: "Compute",
        applies: CloudResourceKind::VirtualMachine,
        control: 3,
        description: "Your machines are missing system, security, and critical updates.",
    },
    Meta {
        key: IMAGE_VULNS,
        name: "Azure registry container images should have vulnerabilities resolved",
        severity: "High",
        category: "Compute",
        applies: CloudResourceKind::ContainerImage,
        control: 2,
        description: "Container image vulnerability assessment scans your registry for commonly known vulnerabilities.",
    },
    Meta {
        key: "82e20e14-edc5-4373-bfc4-f13121257c37",
        name: "SQL databases should have vulnerability findings resolved",
        severity: "High",
        category: "Data",
        applies: CloudResourceKind::SqlServer,
        control: 2,
        description: "SQL Vulnerability assessment scans your database for security vulnerabilities.",
    },
    Meta {
        key: "651967bf-044e-4bde-8376-3e08e0600105",
        name: "SQL servers should use customer-managed keys to encrypt data at rest",
        severity: "Low",
        category: "Data",
        applies: CloudResourceKind::SqlServer,
        control: 4,
        description: "Implementing Transparent Data Encryption with your own key gives you control over it.",
    },
];

/// `(definition GUID, display name, max score)`.
pub(crate) const CONTROLS: [(&str, &str, u32); 5] = [
    ("34a42fb3-e6db-409c-b56b-7b1db6b8aee0", "Enable MFA", 10),
    (
        "3a01b1b4-9d5a-4e6c-8b7e-6a44d8f2b6b1",
        "Secure management ports",
        8,
    ),
    (
        "f9f0eed0-f143-47bf-b856-671ea2eeed62",
        "Remediate vulnerabilities",
        6,
    ),
    (
        "e9e5ed5c-61b6-4a43-9c41-9e8b1d1b0e44",
        "Apply system updates",
        6,
    ),
    (
        "1d2f5c9a-8c6e-4c1c-9a1b-3f4c5d6e7f80",
        "Enable encryption at rest",
        4,
    ),
];

/// `(vendor, package, installed, fixed)`.
type Package = (&'static str, &'static str, &'static str, &'static str);

/// The software the scanners report.
const PACKAGES: [Package; 12] = [
    (
        "openssl",
        "openssl",
        "3.0.2-0ubuntu1.10",
        "3.0.2-0ubuntu1.15",
    ),
    (
        "gnome",
        "libxml2",
        "2.9.14+dfsg-1.3ubuntu3.3",
        "2.9.14+dfsg-1.3ubuntu3.4",
    ),
    ("haxx", "curl", "7.81.0-1ubuntu1.13", "7.81.0-1ubuntu1.16"),
    ("apache", "log4j-core", "2.14.1", "2.17.1"),
    (
        "python",
        "python3.10",
        "3.10.12-1~22.04.2",
        "3.10.12-1~22.04.5",
    ),
    ("gnu", "glibc", "2.35-0ubuntu3.4", "2.35-0ubuntu3.8"),
    ("nodejs", "node", "18.17.1", "18.20.4"),
    ("microsoft", ".net_runtime", "8.0.1", "8.0.8"),
    (
        "sudo_project",
        "sudo",
        "1.9.9-1ubuntu2.3",
        "1.9.9-1ubuntu2.4",
    ),
    (
        "zlib",
        "zlib1g",
        "1:1.2.11.dfsg-2ubuntu9.2",
        "1:1.2.11.dfsg-2ubuntu9.3",
    ),
    (
        "openbsd",
        "openssh-server",
        "1:8.9p1-3ubuntu0.4",
        "1:8.9p1-3ubuntu0.10",
    ),
    ("golang", "stdlib", "1.21.3", "1.22.7"),
];

/// The subscription (by index) that has no SQL server, hence no "Enable encryption at rest"
/// control and a smaller maximum score.
const SUBSCRIPTION_WITHOUT_SQL: usize = 1;

/// Risk factors Defender CSPM names (a subset).
const RISK_FACTORS: [&str; 4] = [
    "Internet exposure",
    "Sensitive data",
    "Lateral movement",
    "Critical resource",
];

/// `(vendor, component, installed, fixed)` of AKS node findings (`ServiceUpgrade`): fixed by a
/// node image or cluster upgrade.
const AKS_PACKAGES: [Package; 3] = [
    (
        "microsoft",
        "AKSUbuntu-2204gen2containerd",
        "202409.23.0",
        "202411.12.0",
    ),
    ("kubernetes", "kubelet", "1.29.2", "1.29.9"),
    ("containerd", "containerd", "1.7.15", "1.7.22"),
];

const NAMES: [&str; 4] = [
    "Prod Workloads",
    "Test and Staging",
    "Shared Services",
    "Legacy (cancelled)",
];

/// One CVE of an individual recommendation, as `CvesDetails` carries it.
#[derive(Clone, Debug)]
pub(crate) struct CveDetail {
    pub(crate) cve_id: String,
    pub(crate) severity: &'static str,
    pub(crate) cvss: Option<f64>,
    pub(crate) vector: Option<String>,
    pub(crate) published: i64,
    pub(crate) exploit_in_kit: bool,
}

/// An individual `SoftwareUpdate` recommendation on one resource.
#[derive(Clone, Debug)]
pub(crate) struct SoftwareUpdate {
    pub(crate) resource: usize,
    pub(crate) key: String,
    pub(crate) id: String,
    pub(crate) vendor: &'static str,
    pub(crate) package: &'static str,
    pub(crate) installed: &'static str,
    pub(crate) fixed: &'static str,
    /// The highest CVE severity (`metadata.severity`).
    pub(crate) severity: &'static str,
    pub(crate) cves: Vec<CveDetail>,
    /// First tick of the current status (unhealthy since, or healthy since).
    pub(crate) since: i64,
    /// First tick the recommendation was evaluated (`firstEvaluationDate`).
    pub(crate) first: i64,
    /// `SoftwareUpdate`, or `ServiceUpgrade` (AKS nodes).
    pub(crate) category: &'static str,
    /// The package was updated: the recommendation turned `Healthy` and Microsoft stripped its
    /// `CvesDetails`. It stays listed until the package's next epoch.
    pub(crate) healthy: bool,
}

/// Everything Defender for Cloud holds for one subscription at one tick.
pub(crate) struct SubscriptionView {
    pub(crate) resources: Vec<CloudResource>,
    pub(crate) assessments: Vec<CloudAssessment>,
    pub(crate) updates: Vec<SoftwareUpdate>,
    pub(crate) controls: Vec<ScoreControl>,
    pub(crate) score: SecureScore,
}

/// Seconds after an epoch's start at which an individual recommendation was first evaluated,
/// and at which its status changed (evaluated, then found unhealthy an hour later).
pub(crate) const FIRST_EVALUATED_AFTER: i64 = 1234;
pub(crate) const STATUS_CHANGED_AFTER: i64 = 1234 + 3600;

/// A status date of an individual recommendation: `extra` seconds into tick `tick`, with the
/// 7-digit fraction Microsoft sends.
pub(crate) fn update_stamp(clock: &crate::time::Clock, tick: i64, extra: i64) -> Ts {
    Ts {
        secs: clock.at(tick) + extra,
        nanos: 1_234_500,
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "Critical" => 4,
        "High" => 3,
        "Medium" => 2,
        "Low" => 1,
        _ => 0,
    }
}

impl World {
    fn cloud_hash(&self, parts: &[u64]) -> u64 {
        parts
            .iter()
            .fold(mix(self.seed, T_CLOUD), |h, p| mix(h, *p))
    }

    fn text_hash(s: &str) -> u64 {
        s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }

    /// Every subscription of the tenant: the three of `vmMetadata`, then a disabled one.
    pub(crate) fn cloud_subscriptions(&self) -> Vec<CloudSubscription> {
        let mut subs: Vec<String> = self.subscriptions.to_vec();
        subs.push(guid(mix(mix(self.seed, 0x5B5), 4)));
        subs.into_iter()
            .enumerate()
            .map(|(i, id)| CloudSubscription {
                subscription_id: id,
                display_name: NAMES[i].to_owned(),
                state: if i == 3 { "Disabled" } else { "Enabled" }.to_owned(),
            })
            .collect()
    }

    /// The resources of a subscription at a tick, in id order (case-insensitive).
    pub(crate) fn cloud_resources(&self, sub: &str, tick: i64) -> Vec<CloudResource> {
        let Some(index) = self.subscriptions.iter().position(|s| s == sub) else {
            return Vec::new();
        };
        let mut out: BTreeMap<String, CloudResource> = BTreeMap::new();
        let mut add = |r: CloudResource| {
            out.entry(r.id.to_ascii_lowercase()).or_insert(r);
        };
        add(CloudResource {
            subscription_id: sub.to_owned(),
            id: format!("/subscriptions/{sub}"),
            name: NAMES[index].to_owned(),
            kind: CloudResourceKind::Subscription,
            resource_type: "subscriptions".to_owned(),
            provider: "Microsoft.Resources".to_owned(),
            mde_machine_id: None,
        });
        for core in Snapshot::new(self, tick).devices() {
            let machine = self.machine(&core, tick);
            let Some(vm) = machine.vm_metadata else {
                continue;
            };
            if vm.subscription_id != sub {
                continue;
            }
            let name = vm.resource_id.rsplit('/').next().unwrap_or("vm").to_owned();
            add(CloudResource {
                subscription_id: sub.to_owned(),
                id: vm.resource_id,
                name,
                kind: CloudResourceKind::VirtualMachine,
                resource_type: "virtualMachines".to_owned(),
                provider: "Microsoft.Compute".to_owned(),
                mde_machine_id: Some(machine.id),
            });
        }
        for n in 0..2u64 {
            add(CloudResource {
                subscription_id: sub.to_owned(),
                id: format!(
                    "/subscriptions/{sub}/resourceGroups/RG-APPS-{index}/providers/Microsoft.Compute/virtualMachines/vm-app-{index}{n}"
                ),
                name: format!("vm-app-{index}{n}"),
                kind: CloudResourceKind::VirtualMachine,
                resource_type: "virtualMachines".to_owned(),
                provider: "Microsoft.Compute".to_owned(),
                mde_machine_id: None,
            });
            let h = self.cloud_hash(&[index as u64, 0x1A6, n]);
            let digest = format!(
                "{:016x}{:016x}{:016x}{:016x}",
                mix(h, 1),
                mix(h, 2),
                mix(h, 3),
                mix(h, 4)
            );
            let repo = ["web/frontend", "jobs/worker"][n as usize];
            add(CloudResource {
                subscription_id: sub.to_owned(),
                id: format!(
                    "/subscriptions/{sub}/resourceGroups/rg-registry/providers/Microsoft.ContainerRegistry/registries/acr{index}/repositories/{repo}/images/sha256:{digest}"
                ),
                name: format!("{repo}@sha256:{}", &digest[..12]),
                kind: CloudResourceKind::ContainerImage,
                resource_type: ".containerimage".to_owned(),
                provider: "Microsoft.ContainerRegistry".to_owned(),
                mde_machine_id: None,
            });
        }
        add(CloudResource {
            subscription_id: sub.to_owned(),
            id: format!(
                "/subscriptions/{sub}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-{index}"
            ),
            name: format!("aks-{index}"),
            kind: CloudResourceKind::KubernetesCluster,
            resource_type: "managedClusters".to_owned(),
            provider: "Microsoft.ContainerService".to_owned(),
            mde_machine_id: None,
        });
        if index == SUBSCRIPTION_WITHOUT_SQL {
            return out.into_values().collect();
        }
        add(CloudResource {
            subscription_id: sub.to_owned(),
            id: format!(
                "/subscriptions/{sub}/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-data-{index}"
            ),
            name: format!("sql-data-{index}"),
            kind: CloudResourceKind::SqlServer,
            resource_type: "servers".to_owned(),
            provider: "Microsoft.Sql".to_owned(),
            mde_machine_id: None,
        });
        out.into_values().collect()
    }

    /// The CVEs of one package in one epoch (`eh`): one to three, distinct.
    fn package_cves(&self, eh: u64, count: u64) -> Vec<CveDetail> {
        let mut cves: Vec<CveDetail> = Vec::new();
        for c in 0..count {
            let ch = mix(eh, 0x100 + c);
            let cve_id = if count > 3 {
                // A big package: ids that cannot collide.
                format!("CVE-2024-{}", 20_000 + c)
            } else {
                format!(
                    "CVE-{}-{}",
                    2023 + below(mix(ch, 1), 3),
                    10_000 + below(mix(ch, 2), 50_000)
                )
            };
            if cves.iter().any(|x| x.cve_id == cve_id) {
                continue;
            }
            let severity = pick(
                mix(ch, 3),
                &[
                    ("Critical", 10u32),
                    ("High", 30),
                    ("Medium", 35),
                    ("Low", 15),
                    ("Unknown", 10),
                ],
            );
            let (cvss, vector) = if severity == "Unknown" {
                (None, None)
            } else {
                let base = match severity {
                    "Critical" => 9.0,
                    "High" => 7.0,
                    "Medium" => 4.0,
                    _ => 0.1,
                };
                (
                    Some(round(base + unit(mix(ch, 4)) * 0.9, 1)),
                    Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".to_owned()),
                )
            };
            cves.push(CveDetail {
                cve_id,
                severity,
                cvss,
                vector,
                published: self.clock.at(-40 - below(mix(ch, 5), 400) as i64),
                exploit_in_kit: unit(mix(ch, 6)) < 0.1,
            });
        }
        cves
    }

    /// The packages of one resource at a tick (none on subscriptions and SQL servers): the
    /// vulnerable ones (`Unhealthy`), then those fixed in the current epoch of their slot, which
    /// Microsoft keeps listing as `Healthy` recommendations without `CvesDetails`.
    fn software_updates(
        &self,
        resource_index: usize,
        r: &CloudResource,
        tick: i64,
    ) -> Vec<SoftwareUpdate> {
        let (slots, packages, category): (u64, &[Package], &str) = match r.kind {
            CloudResourceKind::VirtualMachine => (3, &PACKAGES, "SoftwareUpdate"),
            CloudResourceKind::ContainerImage => (4, &PACKAGES, "SoftwareUpdate"),
            CloudResourceKind::KubernetesCluster => (2, &AKS_PACKAGES, "ServiceUpgrade"),
            _ => (0, &PACKAGES, "SoftwareUpdate"),
        };
        let rh = Self::text_hash(&r.id.to_ascii_lowercase());
        let mut used = Vec::new();
        let mut out = Vec::new();
        let mut fixed = Vec::new();
        let update = |eh: u64, p: usize, since: i64, first: i64, healthy: bool| {
            let (vendor, package, installed, fixed) = packages[p];
            let cves = self.package_cves(eh, 1 + below(mix(eh, 5), 3));
            let severity = cves
                .iter()
                .map(|c| c.severity)
                .max_by_key(|s| severity_rank(s))
                .unwrap_or("Unknown");
            let key = guid(eh);
            SoftwareUpdate {
                resource: resource_index,
                id: format!("{}/providers/Microsoft.Security/assessments/{key}", r.id),
                key,
                vendor,
                package,
                installed,
                fixed,
                severity,
                cves,
                since,
                first,
                category,
                healthy,
            }
        };
        // An epoch of a slot holds a vulnerable package 70 % of the time.
        let package_of = |h: u64, epoch: i64| {
            let eh = mix(h, epoch as u64);
            (unit(mix(eh, 3)) < 0.7)
                .then(|| (eh, below(mix(eh, 4), packages.len() as u64) as usize))
        };
        for slot in 0..slots {
            let h = self.cloud_hash(&[rh, 0x5107, slot]);
            let period = 8 + below(mix(h, 1), 8) as i64;
            let phase = below(mix(h, 2), period as u64) as i64;
            let epoch = (tick + phase).div_euclid(period);
            let start = epoch * period - phase;
            match package_of(h, epoch) {
                Some((eh, p)) if !used.contains(&p) => {
                    used.push(p);
                    out.push(update(eh, p, start, start, false));
                }
                Some(_) => {}
                None => {
                    if let Some((eh, p)) = package_of(h, epoch - 1) {
                        fixed.push((eh, p, start, start - period));
                    }
                }
            }
        }
        for (eh, p, since, first) in fixed {
            if !used.contains(&p) {
                used.push(p);
                out.push(update(eh, p, since, first, true));
            }
        }
        // The data mode's big package: always there, never fixed.
        if self.cloud_big_package > 0
            && r.kind == CloudResourceKind::VirtualMachine
            && r.id.ends_with("/virtualMachines/vm-app-00")
        {
            let eh = self.cloud_hash(&[rh, 0xB16]);
            let cves = self.package_cves(eh, u64::from(self.cloud_big_package));
            let key = guid(eh);
            out.push(SoftwareUpdate {
                resource: resource_index,
                id: format!("{}/providers/Microsoft.Security/assessments/{key}", r.id),
                key,
                vendor: "linux",
                package: "linux-image-generic",
                installed: "5.15.0-91.101",
                fixed: "5.15.0-125.135",
                severity: "Critical",
                cves,
                since: 0,
                first: 0,
                category: "SoftwareUpdate",
                healthy: false,
            });
        }
        out
    }

    fn assessment_status(
        &self,
        r: &CloudResource,
        meta: &Meta,
        tick: i64,
        vulnerable: bool,
    ) -> (&'static str, Option<&'static str>, i64) {
        let h = self.cloud_hash(&[
            Self::text_hash(&r.id.to_ascii_lowercase()),
            Self::text_hash(meta.key),
        ]);
        let period = 6 + below(mix(h, 1), 6) as i64;
        let phase = below(mix(h, 2), period as u64) as i64;
        let epoch = (tick + phase).div_euclid(period);
        let since = epoch * period - phase;
        if meta.key == VM_VULNS || meta.key == IMAGE_VULNS {
            return if vulnerable {
                ("Unhealthy", None, since)
            } else {
                ("Healthy", None, since)
            };
        }
        let u = unit(mix(h, epoch as u64));
        if u < 0.55 {
            ("Healthy", None, since)
        } else if u < 0.9 {
            ("Unhealthy", None, since)
        } else if meta.key == "ffff0522-1e88-47fc-8382-2a80ba848f5d" {
            ("NotApplicable", Some("mdeTvm"), since)
        } else {
            ("NotApplicable", Some("OffByPolicy"), since)
        }
    }

    /// The risk Defender CSPM gives an unhealthy recommendation on a resource: the metadata's
    /// severity, raised one level by an internet-exposed or critical resource; a fifth of them lie
    /// on an attack path.
    fn risk(&self, r: &CloudResource, meta: &Meta, tick: i64) -> CloudRisk {
        let h = self.cloud_hash(&[
            Self::text_hash(&r.id.to_ascii_lowercase()),
            Self::text_hash(meta.key),
            0x815C,
            tick.div_euclid(8) as u64,
        ]);
        let factors: Vec<String> = RISK_FACTORS
            .iter()
            .enumerate()
            .filter(|(i, _)| unit(mix(h, *i as u64 + 1)) < 0.3)
            .map(|(_, f)| (*f).to_owned())
            .collect();
        let raised = factors
            .iter()
            .any(|f| f == "Internet exposure" || f == "Critical resource");
        let base = severity_rank(meta.severity);
        let level = match (base + u8::from(raised)).min(4) {
            4 => "Critical",
            3 => "High",
            2 => "Medium",
            _ => "Low",
        };
        let attack_paths = if unit(mix(h, 9)) < 0.2 {
            vec![guid(mix(h, 10))]
        } else {
            Vec::new()
        };
        CloudRisk {
            level: level.to_owned(),
            factors,
            attack_paths,
        }
    }

    /// Defender for Cloud's view of one subscription; `None` for unknown or disabled ones.
    pub(crate) fn subscription_view(&self, sub: &str, tick: i64) -> Option<SubscriptionView> {
        self.cloud_subscriptions()
            .into_iter()
            .find(|s| s.subscription_id == sub && s.state == "Enabled")?;
        let resources = self.cloud_resources(sub, tick);
        let mut updates = Vec::new();
        for (i, r) in resources.iter().enumerate() {
            updates.extend(self.software_updates(i, r, tick));
        }
        let mut assessments = Vec::new();
        for (i, r) in resources.iter().enumerate() {
            let vulnerable = updates.iter().any(|u| u.resource == i && !u.healthy);
            for meta in METADATA.iter().filter(|m| m.applies == r.kind) {
                let (status, cause, since) = self.assessment_status(r, meta, tick, vulnerable);
                let risk = (status == "Unhealthy").then(|| self.risk(r, meta, tick));
                assessments.push(CloudAssessment {
                    risk,
                    subscription_id: sub.to_owned(),
                    id: format!(
                        "{}/providers/Microsoft.Security/assessments/{}",
                        r.id, meta.key
                    ),
                    key: meta.key.to_owned(),
                    resource_id: r.id.clone(),
                    display_name: meta.name.to_owned(),
                    status: status.to_owned(),
                    cause: cause.map(str::to_owned),
                    severity: meta.severity.to_owned(),
                    category: meta.category.to_owned(),
                    status_changed: Ts::at(self.clock.at(since) + 1234).to_chrono(),
                });
            }
        }
        let mut controls = Vec::new();
        for (c, (control_id, name, max)) in CONTROLS.iter().enumerate() {
            let keys: Vec<&str> = METADATA
                .iter()
                .filter(|m| m.control == c)
                .map(|m| m.key)
                .collect();
            // A control with no resource it applies to is not part of the subscription's score.
            if !assessments.iter().any(|a| keys.contains(&a.key.as_str())) {
                continue;
            }
            // Per resource: unhealthy if any of its recommendations in the control is, else healthy
            // if any is, else not applicable.
            let mut per_resource: BTreeMap<String, u8> = BTreeMap::new();
            for a in assessments
                .iter()
                .filter(|a| keys.contains(&a.key.as_str()))
            {
                let rank = match a.status.as_str() {
                    "Unhealthy" => 2,
                    "Healthy" => 1,
                    _ => 0,
                };
                let e = per_resource
                    .entry(a.resource_id.to_ascii_lowercase())
                    .or_insert(0);
                *e = (*e).max(rank);
            }
            let count = |rank: u8| per_resource.values().filter(|r| **r == rank).count() as u32;
            let (unhealthy, healthy, not_applicable) = (count(2), count(1), count(0));
            let total = healthy + unhealthy;
            let current = if total == 0 {
                0.0
            } else {
                round(f64::from(*max) * f64::from(healthy) / f64::from(total), 2)
            };
            controls.push(ScoreControl {
                subscription_id: sub.to_owned(),
                control_id: (*control_id).to_owned(),
                display_name: (*name).to_owned(),
                current,
                max: *max,
                percentage: round(current / f64::from(*max), 4),
                healthy,
                unhealthy,
                not_applicable,
                weight: u64::from(total),
                assessment_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            });
        }
        let max: u32 = controls.iter().map(|c| c.max).sum();
        let current = round(controls.iter().map(|c| c.current).sum(), 2);
        let weight = resources
            .iter()
            .filter(|r| {
                let id = r.id.to_ascii_lowercase();
                assessments.iter().any(|a| {
                    a.resource_id.to_ascii_lowercase() == id && a.status != "NotApplicable"
                })
            })
            .count() as u64;
        let score = SecureScore {
            subscription_id: sub.to_owned(),
            current,
            max,
            percentage: round(current / f64::from(max.max(1)), 4),
            weight,
        };
        Some(SubscriptionView {
            resources,
            assessments,
            updates,
            controls,
            score,
        })
    }
}

impl SubscriptionView {
    /// One finding per CVE of every unhealthy individual recommendation.
    pub(crate) fn findings(&self, clock: &crate::time::Clock) -> Vec<CloudFinding> {
        let at = |tick: i64, extra: i64| update_stamp(clock, tick, extra).to_chrono();
        let mut out = Vec::new();
        for u in self.updates.iter().filter(|u| !u.healthy) {
            let r = &self.resources[u.resource];
            for c in &u.cves {
                out.push(CloudFinding {
                    subscription_id: r.subscription_id.clone(),
                    resource_id: r.id.clone(),
                    resource_kind: r.kind,
                    resource_name: r.name.clone(),
                    assessment_id: u.id.clone(),
                    cve_id: c.cve_id.clone(),
                    severity: if c.severity == "Unknown" {
                        u.severity
                    } else {
                        c.severity
                    }
                    .to_owned(),
                    cvss: c.cvss,
                    software_vendor: u.vendor.to_owned(),
                    software_name: u.package.to_owned(),
                    installed_version: u.installed.to_owned(),
                    fixed_version: u.fixed.to_owned(),
                    category: u.category.to_owned(),
                    recommendation_severity: u.severity.to_owned(),
                    first_evaluated: at(u.first, FIRST_EVALUATED_AFTER),
                    status_changed: at(u.since, STATUS_CHANGED_AFTER),
                    published: Ts::at(c.published).to_chrono(),
                });
            }
        }
        out
    }
}
