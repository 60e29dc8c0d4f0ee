//! The CVE catalogue: a fixed list per product, materialised once (its size depends on the finding
//! density, not on the number of devices), with attributes that drift over time by "revision".

use crate::hash::{below, mix, pick, unit};
use crate::time::{Clock, Ts, civil};

use super::catalog::{PRODUCTS, UpdateStyle};

pub(crate) const SEVERITIES: [&str; 4] = ["Low", "Medium", "High", "Critical"];
pub(crate) const EXPLOITABILITY: [&str; 4] = [
    "NoExploit",
    "ExploitIsPublic",
    "ExploitIsVerified",
    "ExploitIsInKit",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

pub(crate) struct Cve {
    pub(crate) id: String,
    pub(crate) product: usize,
    pub(crate) hash: u64,
    /// CVSS v3 in tenths (78 = 7.8) before revisions.
    base_cvss: u8,
    base_exploit: u8,
    pub(crate) published: i64,
    pub(crate) rsu: Option<String>,
    pub(crate) rsu_id: Option<String>,
    pub(crate) rsu_url: Option<String>,
    pub(crate) update_available: bool,
    pub(crate) epss: f64,
    rev_period: i64,
    rev_phase: i64,
}

/// The attributes of a CVE that TVM revises (and the delta API reports as `Updated`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attrs {
    pub(crate) cvss: u8,
    pub(crate) exploit: u8,
}

impl Attrs {
    pub(crate) fn severity(self) -> &'static str {
        SEVERITIES[severity_index(self.cvss)]
    }

    pub(crate) fn exploitability(self) -> &'static str {
        EXPLOITABILITY[usize::from(self.exploit.min(3))]
    }

    pub(crate) fn cvss_f64(self) -> f64 {
        f64::from(self.cvss) / 10.0
    }
}

pub(crate) fn severity_index(cvss: u8) -> usize {
    match cvss {
        90.. => 3,
        70..=89 => 2,
        40..=69 => 1,
        _ => 0,
    }
}

/// Writes a CVSS score in tenths as a JSON number; whole scores print as integers (`7`), as real data does.
pub(crate) fn write_cvss(out: &mut Vec<u8>, tenths: u8) {
    let whole = tenths / 10;
    if whole >= 10 {
        out.extend_from_slice(b"10");
    } else {
        out.push(b'0' + whole);
    }
    if !tenths.is_multiple_of(10) {
        out.push(b'.');
        out.push(b'0' + tenths % 10);
    }
}

impl Cve {
    fn revision(&self, tick: i64) -> i64 {
        (tick + self.rev_phase).div_euclid(self.rev_period)
    }

    pub(crate) fn attrs(&self, tick: i64) -> Attrs {
        self.attrs_of_revision(self.revision(tick))
    }

    fn attrs_of_revision(&self, rev: i64) -> Attrs {
        let h = mix(self.hash, rev as u64);
        let cvss = (i16::from(self.base_cvss) + (h % 5) as i16 - 2).clamp(10, 100) as u8;
        let exploit = (self.base_exploit + u8::from((h >> 8).is_multiple_of(4))).min(3);
        Attrs { cvss, exploit }
    }

    /// Ticks in `lo..=hi` at which a new revision starts.
    pub(crate) fn revision_boundaries(&self, lo: i64, hi: i64, out: &mut Vec<i64>) {
        periodic_boundaries(self.rev_period, self.rev_phase, lo, hi, out);
    }

    /// Tick at which the revision in force at `tick` started.
    pub(crate) fn revision_start(&self, tick: i64) -> i64 {
        self.revision(tick) * self.rev_period - self.rev_phase
    }
}

/// Ticks `t` in `lo..=hi` where `floor((t + phase) / period)` changes from `t - 1`.
pub(crate) fn periodic_boundaries(period: i64, phase: i64, lo: i64, hi: i64, out: &mut Vec<i64>) {
    if period <= 0 || lo > hi {
        return;
    }
    let first_epoch = (lo + phase + period - 1).div_euclid(period);
    let mut t = first_epoch * period - phase;
    while t <= hi {
        out.push(t);
        t += period;
    }
}

pub(crate) struct Catalogue {
    pub(crate) cves: Vec<Cve>,
    /// `(first index, count)` of each product's CVEs in `cves`.
    pub(crate) ranges: Vec<(u32, u32)>,
}

/// More findings per device need more distinct CVEs per product; capped so the catalogue stays small.
pub(crate) fn scale_for(findings_per_device: u32) -> u32 {
    findings_per_device.div_ceil(100).clamp(1, 10)
}

impl Catalogue {
    pub(crate) fn build(seed: u64, findings_per_device: u32, clock: &Clock) -> Catalogue {
        let scale = scale_for(findings_per_device);
        let mut cves = Vec::new();
        let mut ranges = Vec::with_capacity(PRODUCTS.len());
        let base = mix(seed, 0xC7E);
        for (p, product) in PRODUCTS.iter().enumerate() {
            let count = product.cves * scale;
            ranges.push((cves.len() as u32, count));
            for _ in 0..count {
                let index = cves.len() as u64;
                cves.push(make_cve(mix(base, index), index, p, clock));
            }
        }
        Catalogue { cves, ranges }
    }
}

fn make_cve(h: u64, index: u64, product: usize, clock: &Clock) -> Cve {
    let severity = pick(mix(h, 1), &[(0usize, 10u32), (1, 40), (2, 40), (3, 10)]);
    let (lo, hi) = [(10u64, 39u64), (40, 69), (70, 89), (90, 100)][severity];
    let base_cvss = (lo + below(mix(h, 2), hi - lo + 1)) as u8;
    let base_exploit = pick(mix(h, 3), &[(0u8, 75u32), (1, 15), (2, 6), (3, 4)]);
    let published = clock.at(0)
        - 86_400 * (3 + below(mix(h, 4), 1500) as i64)
        - below(mix(h, 5), 86_400) as i64;
    let (year, month, ..) = civil(published);
    let id = format!("CVE-{year}-{}", 10_000 + index);
    let u = unit(mix(h, 6));
    let n = mix(h, 7);
    let (rsu, rsu_id, rsu_url) = match PRODUCTS[product].update {
        UpdateStyle::MsPatch => {
            let kb = 5_030_000 + below(n, 60_000);
            (
                Some(format!(
                    "{} {year} Security Updates",
                    MONTHS[(month as usize).saturating_sub(1).min(11)]
                )),
                Some(kb.to_string()),
                Some(format!(
                    "https://catalog.update.microsoft.com/v7/site/Search.aspx?q=KB{kb}"
                )),
            )
        }
        UpdateStyle::ThirdParty if u < 0.6 => (None, None, None),
        UpdateStyle::ThirdParty => (Some((100_000 + below(n, 900_000)).to_string()), None, None),
        UpdateStyle::RedHat => {
            let errata = format!("RHSA-{year}:{}", 1000 + below(n, 9000));
            (
                Some(format!(
                    "{id}_oval:com.redhat.rhsa:def:{year}{:04}",
                    below(n >> 3, 10_000)
                )),
                Some(errata.clone()),
                Some(format!("https://access.redhat.com/errata/{errata}")),
            )
        }
        UpdateStyle::Ubuntu => {
            let usn = format!("USN-{}-1", 6000 + below(n, 2000));
            (
                Some(format!(
                    "{id}_oval:com.ubuntu.jammy:def:{}",
                    60_000_000 + below(n >> 5, 9_999_999)
                )),
                Some(usn.clone()),
                Some(format!("https://ubuntu.com/security/notices/{usn}")),
            )
        }
        UpdateStyle::Apple if u < 0.5 => (None, None, None),
        UpdateStyle::Apple => (
            Some(format!("{} 14.{}", PRODUCTS[product].display, below(n, 7))),
            None,
            None,
        ),
    };
    // EPSS is heavily skewed towards zero, and higher where exploits exist.
    let e = unit(mix(h, 8));
    let epss = ((e.powi(8) * 0.9 + f64::from(base_exploit) * 0.05 * e).min(0.97) * 100_000.0)
        .round()
        / 100_000.0;
    let rev_period = 400 + below(mix(h, 9), 1600) as i64;
    Cve {
        id,
        product,
        hash: h,
        base_cvss,
        base_exploit,
        published,
        rsu,
        rsu_id,
        rsu_url,
        update_available: unit(mix(h, 10)) < 0.88,
        epss,
        rev_period,
        rev_phase: below(mix(h, 11), rev_period as u64) as i64,
    }
}

/// Fields of the Vulnerability entity that do not depend on the device scan.
pub(crate) struct EntityExtras {
    pub(crate) cvss_vector: &'static str,
    pub(crate) exploit_types: Vec<String>,
    pub(crate) exploit_uris: Vec<String>,
    pub(crate) supportability: &'static str,
    pub(crate) updated_on: Ts,
    pub(crate) patch_first_available: Option<Ts>,
}

const VECTORS: [&str; 4] = [
    "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N/E:U/RL:O/RC:C",
    "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:N/A:N/E:U/RL:O/RC:C",
    "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C",
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C",
];

impl Cve {
    pub(crate) fn extras(&self, tick: i64, attrs: Attrs, clock: &Clock) -> EntityExtras {
        let h = mix(self.hash, 0xE7);
        let exploit_types = if attrs.exploit == 0 {
            Vec::new()
        } else {
            let t = [
                "Remote",
                "Local privilege escalation",
                "Denial of service",
                "Local",
            ];
            vec![t[below(h, 4) as usize].to_owned()]
        };
        let exploit_uris = if attrs.exploit == 0 {
            Vec::new()
        } else {
            vec![format!(
                "https://www.exploit-db.com/exploits/{}",
                50_000 + below(h >> 7, 9000)
            )]
        };
        let supportability = pick(
            mix(h, 1),
            &[
                ("Supported", 95u32),
                ("NotSupported", 3),
                ("SupportedInPremium", 2),
            ],
        );
        let revised = clock.at(self.revision_start(tick)) + below(mix(h, 2), 3600) as i64;
        let updated = revised.max(self.published + 86_400 * (1 + below(mix(h, 3), 30) as i64));
        let updated_on = Ts {
            secs: updated.min(clock.at(tick)),
            nanos: below(mix(h, 4), 10) as u32 * 100_000_000,
        };
        let patch_first_available = (PRODUCTS[self.product].update == UpdateStyle::MsPatch)
            .then(|| Ts::at(self.published - self.published.rem_euclid(86_400)));
        EntityExtras {
            cvss_vector: VECTORS[severity_index(attrs.cvss)],
            exploit_types,
            exploit_uris,
            supportability,
            updated_on,
            patch_first_available,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_where_the_epoch_changes() {
        for (period, phase) in [(7i64, 3i64), (5, 0), (400, 399)] {
            let mut out = Vec::new();
            periodic_boundaries(period, phase, -50, 50, &mut out);
            let want: Vec<i64> = (-50..=50)
                .filter(|t| (t + phase).div_euclid(period) != (t - 1 + phase).div_euclid(period))
                .collect();
            assert_eq!(out, want);
        }
    }

    #[test]
    fn cvss_prints_like_microsoft() {
        let mut out = Vec::new();
        write_cvss(&mut out, 78);
        out.push(b' ');
        write_cvss(&mut out, 70);
        out.push(b' ');
        write_cvss(&mut out, 100);
        assert_eq!(String::from_utf8(out).unwrap(), "7.8 7 10");
    }
}
