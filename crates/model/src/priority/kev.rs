//! CISA's Known Exploited Vulnerabilities (KEV) catalogue, as published at
//! <https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json>
//! (catalogue page: <https://www.cisa.gov/known-exploited-vulnerabilities-catalog>).
//!
//! The types read any serde format (the caller picks the parser, e.g. `serde_json::from_slice`).
//! Reading is lenient because the feed's schema changes a few times a year: unknown fields are
//! ignored, every field but `cveID` may be missing or malformed, and an entry that cannot be read
//! at all (no usable `cveID`, not an object) is counted in [`KevCatalog::bad_entries`] instead of
//! failing the whole file. Only a file without a `vulnerabilities` array is refused: that is not
//! the KEV feed.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::CveId;

/// KEV's `knownRansomwareCampaignUse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum RansomwareUse {
    Known,
    /// CISA's `Unknown`, and anything else it may write there.
    #[default]
    #[serde(other)]
    Unknown,
}

/// One KEV entry. Dates are `YYYY-MM-DD`; one that does not parse is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KevEntry {
    #[serde(rename = "cveID")]
    pub cve_id: CveId,
    #[serde(default, deserialize_with = "lenient")]
    pub vendor_project: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub product: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub vulnerability_name: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub date_added: Option<NaiveDate>,
    #[serde(default, deserialize_with = "lenient")]
    pub short_description: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub required_action: Option<String>,
    /// A deadline for US federal civilian agencies (BOD 22-01): shown with `required_action`,
    /// never used as Rampart's own SLA.
    #[serde(default, deserialize_with = "lenient")]
    pub due_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "lenient_ransomware")]
    pub known_ransomware_campaign_use: RansomwareUse,
    #[serde(default, deserialize_with = "lenient")]
    pub notes: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub cwes: Option<Vec<String>>,
}

/// The value when it reads as `T`, `None` when it is missing, null or of another shape.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Maybe<T> {
        Value(T),
        Other(IgnoredAny),
    }
    Ok(match Maybe::<T>::deserialize(deserializer)? {
        Maybe::Value(v) => Some(v),
        Maybe::Other(_) => None,
    })
}

fn lenient_ransomware<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<RansomwareUse, D::Error> {
    Ok(lenient::<D, RansomwareUse>(deserializer)?.unwrap_or_default())
}

/// The catalogue: its header and its entries by CVE id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KevCatalog {
    #[serde(default, deserialize_with = "lenient")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub catalog_version: Option<String>,
    /// CISA writes four fractional digits (`2025-08-25T17:04:19.9796Z`); any RFC 3339 form reads.
    #[serde(default, deserialize_with = "lenient")]
    pub date_released: Option<DateTime<Utc>>,
    /// The count CISA states; compare with [`KevCatalog::len`] to spot a truncated file.
    #[serde(default, deserialize_with = "lenient")]
    pub count: Option<u64>,
    #[serde(rename = "vulnerabilities", deserialize_with = "entries")]
    pub entries: KevEntries,
}

/// The readable entries by CVE id, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KevEntries {
    pub by_cve: BTreeMap<CveId, KevEntry>,
    /// Entries skipped because they could not be read.
    pub bad: usize,
    /// The `cveID` text of a few skipped entries (at most [`KevEntries::SAMPLE`]), for the message
    /// that reports them.
    pub bad_samples: Vec<String>,
}

impl KevEntries {
    pub const SAMPLE: usize = 5;
}

fn entries<'de, D: Deserializer<'de>>(deserializer: D) -> Result<KevEntries, D::Error> {
    /// One element of the array: a readable entry, or whatever `cveID` text it had.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Row {
        Good(Box<KevEntry>),
        Named {
            #[serde(rename = "cveID")]
            cve_id: String,
        },
        Bad(IgnoredAny),
    }

    struct Rows;
    impl<'de> Visitor<'de> for Rows {
        type Value = KevEntries;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the KEV `vulnerabilities` array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KevEntries, A::Error> {
            let mut out = KevEntries::default();
            while let Some(row) = seq.next_element::<Row>()? {
                let name = match row {
                    Row::Good(entry) => {
                        // CISA has listed a CVE twice only by mistake; the later entry wins.
                        out.by_cve.insert(entry.cve_id.clone(), *entry);
                        continue;
                    }
                    Row::Named { cve_id } => cve_id.chars().take(40).collect(),
                    Row::Bad(_) => "(no cveID)".to_owned(),
                };
                out.bad += 1;
                if out.bad_samples.len() < KevEntries::SAMPLE {
                    out.bad_samples.push(name);
                }
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(Rows)
}

impl KevCatalog {
    /// The entry for `cve`, when it is in the catalogue.
    pub fn get(&self, cve: &CveId) -> Option<&KevEntry> {
        self.entries.by_cve.get(cve)
    }

    pub fn contains(&self, cve: &CveId) -> bool {
        self.entries.by_cve.contains_key(cve)
    }

    /// How many entries were read.
    pub fn len(&self) -> usize {
        self.entries.by_cve.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.by_cve.is_empty()
    }

    /// How many entries could not be read.
    pub fn bad_entries(&self) -> usize {
        self.entries.bad
    }

    /// A sentence for the operator when the file was not read whole: skipped entries, or fewer
    /// entries than the stated `count` (a truncated download). `None` when all is well.
    pub fn problems(&self) -> Option<String> {
        let mut said = Vec::new();
        if self.entries.bad > 0 {
            said.push(format!(
                "{} entr{} could not be read and {} skipped (cveID {})",
                self.entries.bad,
                if self.entries.bad == 1 { "y" } else { "ies" },
                if self.entries.bad == 1 { "was" } else { "were" },
                self.entries.bad_samples.join(", ")
            ));
        }
        let seen = (self.len() + self.entries.bad) as u64;
        if let Some(count) = self.count.filter(|&c| c != seen) {
            said.push(format!(
                "the file states {count} entries but holds {seen}: it may be truncated, download it again"
            ));
        }
        (!said.is_empty()).then(|| format!("CISA KEV catalogue: {}", said.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small catalogue in the official format: the header CISA writes (including `title`, which
    /// the schema does not list), three well-formed entries, and a field CISA may add later.
    const SAMPLE: &str = r#"{
      "title": "CISA Catalog of Known Exploited Vulnerabilities",
      "catalogVersion": "2025.08.25",
      "dateReleased": "2025-08-25T17:04:19.9796Z",
      "count": 3,
      "vulnerabilities": [
        {"cveID":"CVE-2021-44228","vendorProject":"Apache","product":"Log4j2",
         "vulnerabilityName":"Apache Log4j2 Remote Code Execution Vulnerability","dateAdded":"2021-12-10",
         "shortDescription":"Apache Log4j2 contains a vulnerability where JNDI features do not protect against attacker-controlled JNDI-related endpoints, allowing for remote code execution.",
         "requiredAction":"For all affected software assets for which updates exist, the only acceptable remediation actions are: 1) Apply updates; OR 2) remove affected assets from agency networks.",
         "dueDate":"2021-12-24","knownRansomwareCampaignUse":"Known",
         "notes":"https://nvd.nist.gov/vuln/detail/CVE-2021-44228","cwes":["CWE-20","CWE-400","CWE-502"]},
        {"cveID":"CVE-2023-4966","vendorProject":"Citrix","product":"NetScaler ADC and NetScaler Gateway",
         "vulnerabilityName":"Citrix NetScaler ADC and NetScaler Gateway Buffer Overflow Vulnerability",
         "dateAdded":"2023-10-18","shortDescription":"Citrix NetScaler ADC and NetScaler Gateway contain a buffer overflow vulnerability.",
         "requiredAction":"Apply mitigations per vendor instructions or discontinue use of the product if mitigations are unavailable.",
         "dueDate":"2023-11-08","knownRansomwareCampaignUse":"Known","notes":"","cwes":["CWE-119"]},
        {"cveID":"CVE-2024-3400","vendorProject":"Palo Alto Networks","product":"PAN-OS",
         "vulnerabilityName":"Palo Alto Networks PAN-OS Command Injection Vulnerability","dateAdded":"2024-04-12",
         "shortDescription":"Palo Alto Networks PAN-OS GlobalProtect feature contains a command injection vulnerability.",
         "requiredAction":"Apply mitigations per vendor instructions.","dueDate":"2024-04-19",
         "knownRansomwareCampaignUse":"Unknown","notes":"","cwes":[],"addedByDirective":"BOD 26-04"}
      ]
    }"#;

    fn cve(s: &str) -> CveId {
        s.parse().unwrap()
    }

    #[test]
    fn reads_the_official_format() {
        let kev: KevCatalog = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(kev.catalog_version.as_deref(), Some("2025.08.25"));
        assert_eq!(
            kev.date_released.map(|d| d.to_rfc3339()),
            Some("2025-08-25T17:04:19.979600+00:00".into())
        );
        assert_eq!((kev.len(), kev.bad_entries(), kev.count), (3, 0, Some(3)));
        assert_eq!(kev.problems(), None);

        let log4j = kev.get(&cve("cve-2021-44228")).unwrap();
        assert_eq!(log4j.vendor_project.as_deref(), Some("Apache"));
        assert_eq!(log4j.date_added, NaiveDate::from_ymd_opt(2021, 12, 10));
        assert_eq!(log4j.due_date, NaiveDate::from_ymd_opt(2021, 12, 24));
        assert_eq!(log4j.known_ransomware_campaign_use, RansomwareUse::Known);
        assert_eq!(log4j.cwes.as_ref().map(Vec::len), Some(3));

        let pan = kev.get(&cve("CVE-2024-3400")).unwrap();
        assert_eq!(pan.known_ransomware_campaign_use, RansomwareUse::Unknown);
        assert!(kev.contains(&cve("CVE-2023-4966")));
        assert!(!kev.contains(&cve("CVE-2024-0001")));
    }

    #[test]
    fn bad_rows_are_counted_not_fatal() {
        let feed = r#"{"catalogVersion":"x","dateReleased":"yesterday","count":"five","vulnerabilities":[
            {"cveID":"CVE-2021-44228","dateAdded":"10/12/2021","dueDate":null,"knownRansomwareCampaignUse":"Perhaps","cwes":"CWE-20"},
            {"cveID":"not a cve","product":"x"},
            {"product":"no id at all"},
            {"cveID":42},
            "a string",
            {"cveID":"CVE-2024-3400"}
        ]}"#;
        let kev: KevCatalog = serde_json::from_str(feed).unwrap();
        assert_eq!(kev.len(), 2);
        assert_eq!(kev.bad_entries(), 4);
        assert_eq!(
            kev.entries.bad_samples,
            ["not a cve", "(no cveID)", "(no cveID)", "(no cveID)"]
        );
        assert_eq!((kev.date_released, kev.count), (None, None));
        let log4j = kev.get(&cve("CVE-2021-44228")).unwrap();
        assert_eq!(
            (log4j.date_added, log4j.due_date, log4j.cwes.as_ref()),
            (None, None, None)
        );
        assert_eq!(log4j.known_ransomware_campaign_use, RansomwareUse::Unknown);
        let problems = kev.problems().unwrap();
        assert!(
            problems.contains("4 entries could not be read"),
            "{problems}"
        );
    }

    #[test]
    fn a_truncated_file_is_reported() {
        let feed = r#"{"count":1404,"vulnerabilities":[{"cveID":"CVE-2024-3400"}]}"#;
        let kev: KevCatalog = serde_json::from_str(feed).unwrap();
        let problems = kev.problems().unwrap();
        assert!(
            problems.contains("states 1404 entries but holds 1"),
            "{problems}"
        );
    }

    #[test]
    fn a_file_that_is_not_the_feed_is_refused() {
        for wrong in [
            r#"{"catalogVersion":"2025.08.25"}"#,
            r#"{"vulnerabilities":{}}"#,
            "[]",
        ] {
            assert!(
                serde_json::from_str::<KevCatalog>(wrong).is_err(),
                "{wrong}"
            );
        }
    }
}
