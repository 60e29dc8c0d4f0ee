//! Machine entities: names, ids and the many small facts `/api/machines` reports about a device.

use crate::hash::{below, mix, pick, unit};
use crate::records::{IpAddress, Machine, VmMetadata};
use crate::time::Ts;

use super::catalog::{Class, Platform, PlatformInfo};
use super::{Core, Kind, World, guid};

/// The strings of a device that rows repeat (allocated once per device, not per row).
pub(crate) struct Names {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    /// `osArchitecture` as exports spell it (`x64`, not `64-bit`).
    pub(crate) export_arch: &'static str,
}

const T_NAME: u64 = 0x4E;
const T_FACTS: u64 = 0xFA;

fn host_name(index: u32, h: u64, class: Class) -> String {
    match class {
        Class::Workstation => {
            let prefix = pick(
                mix(h, T_NAME),
                &[
                    ("ws-fin", 2u32),
                    ("ws-eng", 3),
                    ("ws-hr", 1),
                    ("lt-eng", 3),
                    ("lt-sales", 2),
                    ("ws-ops", 1),
                ],
            );
            if unit(mix(h, T_NAME + 1)) < 0.05 {
                // Some sensors report a bare upper-case NetBIOS-style name.
                format!("{prefix}-{index:05}").to_ascii_uppercase()
            } else {
                format!("{prefix}-{index:05}.corp.contoso.com")
            }
        }
        Class::Server => {
            let role = pick(
                mix(h, T_NAME),
                &[
                    ("web", 3u32),
                    ("sql", 2),
                    ("app", 3),
                    ("dc", 1),
                    ("file", 1),
                ],
            );
            format!("srv-{role}-{index:05}.corp.contoso.com")
        }
        Class::Linux => {
            let role = pick(
                mix(h, T_NAME),
                &[("web", 3u32), ("db", 2), ("k8s", 3), ("build", 1)],
            );
            if unit(mix(h, T_NAME + 1)) < 0.4 {
                format!("lnx-{role}-{index:05}")
            } else {
                format!("lnx-{role}-{index:05}.corp.contoso.com")
            }
        }
        Class::Mac => format!("mac-{index:05}.corp.contoso.com"),
    }
}

fn ipv4(h: u64) -> String {
    format!(
        "10.{}.{}.{}",
        below(h, 40) + 10,
        below(h >> 8, 250),
        below(h >> 16, 250) + 2
    )
}

fn mac_address(h: u64) -> String {
    format!("00155D{:06X}", h & 0xFF_FFFF)
}

impl World {
    pub(crate) fn names(&self, core: &Core) -> Names {
        let id = self.ids.encode(core.index);
        let name = match (core.kind, core.platform) {
            (Kind::Onboarded, Some(p)) => Some(host_name(core.index, core.hash, p.class)),
            (Kind::StaleDuplicate, Some(p)) => {
                // The stale record of a reinstall carries the name of its successor.
                let next = core.index.saturating_add(1);
                Some(host_name(next, self.device_hash(next), p.class))
            }
            _ => {
                let h = mix(core.hash, T_NAME + 2);
                if unit(h) < 0.3 {
                    None
                } else {
                    let i = core.index;
                    Some(match below(mix(h, 1), 5) {
                        0 => format!("hp-printer-{i:05}"),
                        1 => format!("android-{:06x}", h & 0xFF_FFFF),
                        2 => format!("iphone-{:06x}", (h >> 24) & 0xFF_FFFF),
                        3 => format!("cam-lobby-{i:05}"),
                        _ => format!("nas-{i:05}.corp.contoso.com"),
                    })
                }
            }
        };
        let export_arch = match core.platform.map(|p| p.platform) {
            Some(Platform::MacOs) if unit(mix(core.hash, T_FACTS)) < 0.6 => "arm64",
            Some(Platform::Windows10) if unit(mix(core.hash, T_FACTS + 1)) < 0.02 => "x86",
            _ => "x64",
        };
        Names {
            id,
            name,
            export_arch,
        }
    }

    fn device_first_seen(&self, core: &Core) -> Ts {
        let h = mix(core.hash, T_FACTS + 2);
        let secs = if core.join < 0 {
            self.clock.at(0)
                - 86_400 * (20 + below(h, 880) as i64)
                - below(mix(h, 1), 86_400) as i64
        } else {
            self.clock.at(core.join) - 1 - below(mix(h, 1), 21_599) as i64
        };
        Ts {
            secs,
            nanos: below(mix(h, 2), 10_000_000) as u32 * 100,
        }
    }

    pub(crate) fn machine(&self, core: &Core, tick: i64) -> Machine {
        let names = self.names(core);
        let h = mix(core.hash, T_FACTS + 3);
        let f = |n: u64| mix(h, n);
        let first_seen = self.device_first_seen(core);
        let group = self.group(core, tick);
        let now = self.clock.at(tick);
        let onboarded = core.kind == Kind::Onboarded;
        let health = match core.kind {
            Kind::Onboarded => pick(
                f(1),
                &[
                    ("Active", 880u32),
                    ("Inactive", 50),
                    ("ImpairedCommunication", 30),
                    ("NoSensorData", 20),
                    ("NoSensorDataImpairedCommunication", 10),
                    ("Unknown", 10),
                ],
            ),
            _ => "Inactive",
        };
        // lastSeen is the last full report, about daily; inactive records stopped reporting > 7 days ago.
        let last_seen = if health == "Active" || health == "ImpairedCommunication" {
            let phase = below(f(2), 86_400) as i64;
            let secs = (now - phase).div_euclid(86_400) * 86_400 + phase;
            Ts {
                secs,
                nanos: below(f(3), 10_000_000) as u32 * 100,
            }
        } else {
            Ts {
                secs: now.min(self.clock.at(0)) - 86_400 * (8 + below(f(4), 50) as i64),
                nanos: below(f(3), 10_000) as u32 * 100_000,
            }
        };
        let last_seen = last_seen.max(first_seen);
        let platform = core.platform;
        let class = platform.map(|p| p.class);
        let windows = matches!(class, Some(Class::Workstation | Class::Server));
        let is_aad_joined = match class {
            Some(Class::Workstation) => unit(f(5)) < 0.85,
            Some(Class::Server) => unit(f(5)) < 0.1,
            _ => false,
        };
        let aad_device_id = if (is_aad_joined && unit(f(6)) < 0.9)
            || (!is_aad_joined && onboarded && unit(f(6)) < 0.03)
        {
            Some(guid(f(7)))
        } else {
            None
        };
        let machine_tags: Vec<String> = if !onboarded || unit(f(8)) < 0.7 {
            Vec::new()
        } else {
            let sets: [&[&str]; 5] = [
                &["finance", "tier2"],
                &["VIP"],
                &["Critical", "DMZ"],
                &["pilot"],
                &["tier1"],
            ];
            sets[below(f(9), 5) as usize]
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        };
        let defender_av_status = (onboarded && windows && unit(f(10)) < 0.6).then(|| {
            pick(
                f(11),
                &[("Updated", 80u32), ("NotUpdated", 15), ("Unknown", 5)],
            )
            .to_owned()
        });
        let ip = ipv4(f(12));
        let mac = mac_address(f(13));
        let ip_addresses = if onboarded || core.kind == Kind::StaleDuplicate {
            vec![
                IpAddress {
                    ip_address: ip.clone(),
                    mac_address: Some(mac.clone()),
                    kind: Some("Ethernet".into()),
                    operational_status: "Up".into(),
                },
                IpAddress {
                    ip_address: format!(
                        "fe80::{:x}:{:x}:{:x}:{:x}",
                        f(14) & 0xFFFF,
                        f(15) & 0xFFFF,
                        f(16) & 0xFFFF,
                        f(17) & 0xFFFF
                    ),
                    mac_address: Some(mac),
                    kind: Some("Ethernet".into()),
                    operational_status: "Up".into(),
                },
                IpAddress {
                    ip_address: "127.0.0.1".into(),
                    mac_address: None,
                    kind: Some("SoftwareLoopback".into()),
                    operational_status: "Up".into(),
                },
            ]
        } else {
            let addr = if unit(f(18)) < 0.1 {
                String::new()
            } else {
                ip.clone()
            };
            vec![IpAddress {
                ip_address: addr,
                mac_address: Some(mac),
                kind: Some("Other".into()),
                operational_status: "Unknown".into(),
            }]
        };
        let vm_metadata = match class {
            Some(Class::Server | Class::Linux) if onboarded && unit(f(19)) < 0.5 => {
                let sub = &self.subscriptions[below(f(20), 3) as usize];
                let short = names
                    .name
                    .as_deref()
                    .unwrap_or("vm")
                    .split('.')
                    .next()
                    .unwrap_or("vm")
                    .to_owned();
                let rg = pick(
                    f(21),
                    &[
                        ("rg-prod-weu", 3u32),
                        ("rg-test-weu", 1),
                        ("rg-prod-neu", 2),
                    ],
                );
                Some(VmMetadata {
                    vm_id: guid(f(22)),
                    cloud_provider: "Azure".into(),
                    resource_id: format!(
                        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{short}"
                    ),
                    subscription_id: sub.clone(),
                })
            }
            _ => None,
        };
        let (os_platform, version, os_build, os_processor, os_arch, agent) = match platform {
            Some(p) => (
                p.machine_name.to_owned(),
                Some(p.version.to_owned()),
                p.os_build,
                Some("x64".to_owned()),
                Some(
                    if names.export_arch == "x86" {
                        "32-bit"
                    } else {
                        "64-bit"
                    }
                    .to_owned(),
                ),
                Some(agent_version(p, f(23))),
            ),
            None => (
                "Other".to_owned(),
                Some("Other".to_owned()),
                None,
                None,
                None,
                None,
            ),
        };
        let (managed_by, managed_by_status) = if onboarded && windows {
            let m = pick(
                f(24),
                &[
                    ("Intune", 60u32),
                    ("MicrosoftDefenderForEndpoint", 30),
                    ("Unknown", 10),
                ],
            );
            (m, if m == "Unknown" { "Unknown" } else { "Success" })
        } else if onboarded {
            ("MicrosoftDefenderForEndpoint", "Success")
        } else {
            ("Unknown", "Unknown")
        };
        let excluded = onboarded && unit(f(25)) < 0.007;
        let merged = (core.kind == Kind::StaleDuplicate && unit(f(26)) < 0.5)
            .then(|| self.ids.encode(core.index.saturating_add(1)));
        let external = if unit(f(27)) < 0.15 {
            format!("2001:db8:{:x}::{:x}", f(28) & 0xFFFF, f(29) & 0xFFFF)
        } else {
            format!("203.0.113.{}", below(f(28), 250) + 1)
        };
        Machine {
            id: names.id,
            merged_into_machine_id: merged,
            is_potential_duplication: core.kind == Kind::StaleDuplicate,
            is_excluded: excluded,
            exclusion_reason: excluded.then(|| "Other".to_owned()),
            computer_dns_name: names.name,
            first_seen: first_seen.to_chrono(),
            last_seen: last_seen.to_chrono(),
            os_platform,
            os_version: None,
            os_processor,
            version,
            last_ip_address: (!ip_addresses[0].ip_address.is_empty()).then_some(ip),
            last_external_ip_address: (onboarded || core.kind == Kind::StaleDuplicate)
                .then_some(external),
            agent_version: agent,
            os_build,
            health_status: health.to_owned(),
            device_value: Some(
                if onboarded {
                    pick(f(30), &[("Normal", 85u32), ("High", 10), ("Low", 5)])
                } else {
                    "Normal"
                }
                .to_owned(),
            ),
            rbac_group_id: group.id,
            rbac_group_name: group.name.map(str::to_owned),
            risk_score: Some(
                if onboarded {
                    pick(
                        f(31),
                        &[
                            ("None", 15u32),
                            ("Informational", 10),
                            ("Low", 30),
                            ("Medium", 30),
                            ("High", 15),
                        ],
                    )
                } else {
                    "None"
                }
                .to_owned(),
            ),
            exposure_level: Some(
                if onboarded {
                    pick(
                        f(32),
                        &[("None", 5u32), ("Low", 35), ("Medium", 45), ("High", 15)],
                    )
                } else {
                    "None"
                }
                .to_owned(),
            ),
            is_aad_joined,
            aad_device_id,
            machine_tags,
            defender_av_status,
            onboarding_status: match core.kind {
                Kind::Discovered(status) => status,
                _ => "Onboarded",
            }
            .to_owned(),
            os_architecture: os_arch,
            managed_by: managed_by.to_owned(),
            managed_by_status: managed_by_status.to_owned(),
            ip_addresses,
            vm_metadata,
        }
    }
}

fn agent_version(p: &PlatformInfo, h: u64) -> String {
    match p.class {
        Class::Workstation | Class::Server => {
            format!(
                "10.8760.{}.{}",
                p.os_build.unwrap_or(19041),
                3000 + below(h, 1500)
            )
        }
        Class::Linux => format!("101.24{:03}.{:04}", below(h, 100), below(h >> 10, 9)),
        Class::Mac => format!("101.24{:03}.{:04}", 200 + below(h, 100), below(h >> 10, 9)),
    }
}
