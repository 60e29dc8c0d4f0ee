//! One record's JSON (an item of a page's `value` array, or a line of an export file) into its
//! wire type.
//!
//! `serde_json::from_slice` checks UTF-8 string by string as it parses; `from_str` trusts a `&str`
//! and copies strings out unchecked. Checking the whole record once with the standard library's
//! validator (which skips ASCII a word at a time) and then parsing it as a `&str` reads the same
//! values for less: on 100,000 export rows into [`FindingRow`](crate::FindingRow), 89–93 ms
//! against 111–117 ms (see BENCHMARKS.md, "2026-12-07 (seventh)"). A record that is not UTF-8
//! goes through `from_slice`, so that it fails exactly as it always did, with serde's own message
//! and [`Category`](serde_json::error::Category).

use serde::de::DeserializeOwned;

/// Reads `raw` (one JSON value) into `T`: the values, and on failure the error, are those of
/// `serde_json::from_slice(raw)`.
pub fn decode_record<T: DeserializeOwned>(raw: &[u8]) -> Result<T, serde_json::Error> {
    match std::str::from_utf8(raw) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AssetVulnerability, FindingRow};
    use proptest::prelude::*;

    /// Both readers on the same bytes: the same value, or errors alike in kind and words.
    fn agree<T: DeserializeOwned + PartialEq + std::fmt::Debug>(raw: &[u8]) {
        let current = serde_json::from_slice::<T>(raw);
        let decoded = decode_record::<T>(raw);
        match (current, decoded) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => {
                assert_eq!(a.classify(), b.classify(), "{a} / {b}");
                assert_eq!(a.to_string(), b.to_string());
            }
            (a, b) => panic!("the readers disagree: {a:?} / {b:?}"),
        }
    }

    const ROW: &str = r#"{"id":"d1_microsoft_edge_1.0_CVE-2024-0001","deviceId":"D1","deviceName":"pc-1.contoso.com","osPlatform":"Windows11","osVersion":"22H2","softwareVendor":"microsoft","softwareName":"edge","softwareVersion":"1.0","cveId":"CVE-2024-0001","cvssScore":"7.5","vulnerabilitySeverityLevel":"High","recommendedSecurityUpdate":"February 2025 Security Updates","recommendedSecurityUpdateId":"KB5051987","firstSeenTimestamp":"2024-06-01 10:00:00.1234567","lastSeenTimestamp":"2024-06-02T10:00:00Z","exploitabilityLevel":"ExploitIsPublic","recommendationReference":"va-_-microsoft-_-edge","diskPaths":["C:\\Program Files\\édge"],"registryPaths":[]}"#;

    #[test]
    fn a_row_reads_the_same_both_ways() {
        agree::<FindingRow>(ROW.as_bytes());
        agree::<AssetVulnerability>(ROW.as_bytes());
        let row: FindingRow = decode_record(ROW.as_bytes()).expect("the row is valid");
        assert_eq!(row.device_id.as_deref(), Some("D1"));
        assert_eq!(row.cvss_score, Some(7.5));
    }

    #[test]
    fn a_record_that_is_not_utf8_fails_as_before() {
        let mut raw = ROW.as_bytes().to_vec();
        let at = ROW.find("pc-1").expect("the name is in the row");
        raw[at] = 0xff;
        agree::<FindingRow>(&raw);
        assert!(decode_record::<FindingRow>(&raw).is_err());
    }

    /// Strings with escapes, non-ASCII text, stray bytes and wrong types, in a row's places.
    fn text() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(b"\\\"".to_vec()),
                Just(b"\\u00e9".to_vec()),
                Just(b"\\ud83d\\ude00".to_vec()),
                Just(b"\\ud800".to_vec()),
                Just("é漢😀".as_bytes().to_vec()),
                Just(vec![0xc3]),
                Just(vec![0xff]),
                Just(vec![b'\n']),
                "[a-zA-Z0-9 .:_-]{0,6}".prop_map(String::into_bytes),
            ],
            0..6,
        )
        .prop_map(|parts| parts.concat())
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            text().prop_map(|t| [b"\"".as_slice(), &t, b"\""].concat()),
            Just(b"null".to_vec()),
            Just(b"7.5".to_vec()),
            Just(b"-1e400".to_vec()),
            Just(b"true".to_vec()),
            Just(b"[]".to_vec()),
            Just(b"{\"a\":1}".to_vec()),
            text(),
        ]
    }

    fn row() -> impl Strategy<Value = Vec<u8>> {
        let keys = prop_oneof![
            Just("deviceId"),
            Just("DeviceName"),
            Just("softwareName"),
            Just("cveId"),
            Just("cvssScore"),
            Just("vulnerabilitySeverityLevel"),
            Just("firstSeenTimestamp"),
            Just("LastSeenTimestamp"),
            Just("recommendationReference"),
            Just("other"),
        ];
        proptest::collection::vec((keys, value()), 0..8).prop_map(|fields| {
            let mut raw = b"{".to_vec();
            for (i, (key, value)) in fields.iter().enumerate() {
                if i > 0 {
                    raw.push(b',');
                }
                raw.extend_from_slice(format!("\"{key}\":").as_bytes());
                raw.extend_from_slice(value);
            }
            raw.push(b'}');
            raw
        })
    }

    proptest! {
        #[test]
        fn any_row_reads_the_same_both_ways(raw in row()) {
            agree::<FindingRow>(&raw);
            agree::<AssetVulnerability>(&raw);
            agree::<serde_json::Value>(&raw);
        }

        #[test]
        fn any_bytes_read_the_same_both_ways(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            agree::<FindingRow>(&raw);
            agree::<serde_json::Value>(&raw);
        }
    }
}
