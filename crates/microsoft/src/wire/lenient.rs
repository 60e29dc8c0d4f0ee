//! Tolerant field deserializers for the places where Microsoft's wire types differ from its docs.
//!
//! Microsoft has sent numbers as strings
//! (`expires_in: "3599"` on the v1 token endpoint), strings documented as numbers (`rbacGroupId`),
//! scores that are sometimes integers and sometimes strings (`cvssScore`), collections sent as a single
//! string (`cveSupportability`), and `null` where an array is documented. Each helper here accepts
//! every shape seen, so one odd record never stops a sync. Values that are present but meaningless
//! (`"cvssScore": "n/a"`) become `None`: a missing score is better than a lost record.

use std::fmt;

use secrecy::SecretString;
use serde::Deserializer;
use serde::de::{self, Deserialize, SeqAccess, Visitor};

/// The `Visitor` methods every visitor here shares: `null` and an absent value are `None`, and an
/// `Option` is looked through to the value inside.
macro_rules! null_is_none {
    ($de:lifetime) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<$de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    };
}

/// A JSON number or numeric string, as `f64`.
struct F64Visitor;

impl<'de> Visitor<'de> for F64Visitor {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, a numeric string or null")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(v.is_finite().then_some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.trim().parse::<f64>().ok().filter(|x| x.is_finite()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    null_is_none!('de);
}

/// A JSON integer, integral float or numeric string, as `i64`.
struct I64Visitor;

impl<'de> Visitor<'de> for I64Visitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer, a numeric string or null")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).ok())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // `140.0` is an integer that went through a float somewhere; `1.5` is not an id.
        let integral = v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15;
        Ok(integral.then_some(v as i64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let t = v.trim();
        Ok(t.parse::<i64>().ok().or_else(|| {
            t.parse::<f64>()
                .ok()
                .and_then(|f| self.visit_f64::<E>(f).ok().flatten())
        }))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    null_is_none!('de);
}

/// `cvssScore`, `cvssV3`, `epss`: number, integer literal or numeric string; anything else is `None`.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(F64Visitor)
}

/// `rbacGroupId`, `osBuild`, counters: integer or numeric string; anything else is `None`.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_any(I64Visitor)
}

/// Token lifetimes (`expires_in`, `expires_on`, ...): number on the v2 endpoint, string on v1.
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(d.deserialize_any(I64Visitor)?
        .and_then(|v| u64::try_from(v).ok()))
}

/// Like [`opt_u64`] for a field that must be there: a token without a lifetime cannot be cached.
pub fn req_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    opt_u64(d)?.ok_or_else(|| de::Error::custom("expected a non-negative number of seconds"))
}

/// A timestamp in any of Microsoft's formats (`parse_microsoft_timestamp`), parsed from the wire
/// without an intermediate `String`; one that does not parse is `None`, as in `convert`.
pub fn opt_timestamp<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, D::Error> {
    d.deserialize_any(StrVisitor(timestamp_or_warn))
}

/// A timestamp, or `None` with a warning naming the value: a time Rampart cannot read is left
/// empty (never replaced by the time of the sync), and the log says which form it was.
pub(crate) fn timestamp_or_warn(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    match rampart_model::parse_microsoft_timestamp(s) {
        Ok(t) => Some(t),
        Err(e) => {
            // A new format would repeat on every row: the first few say it all.
            static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            if SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 5 {
                tracing::warn!(error = %e, "timestamp not understood; the record keeps no time for it");
            }
            None
        }
    }
}

/// A severity word (`Severity::parse_lenient`), parsed from the wire without a `String`; unknown
/// words are `None`.
pub fn opt_severity<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<rampart_model::Severity>, D::Error> {
    d.deserialize_any(StrVisitor(rampart_model::Severity::parse_lenient))
}

/// A string handed to `parse` as `&str`, whether it was borrowed from the input or unescaped into
/// a scratch buffer; `null` and values of other types are `None`.
struct StrVisitor<F>(F);

impl<'de, T, F: FnOnce(&str) -> Option<T>> Visitor<'de> for StrVisitor<F> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((self.0)(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    null_is_none!('de);
}

/// An array of strings where Microsoft may send `null` (treated as empty) or omit the key.
pub fn vec_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// `cveSupportability`: documented as a collection, sent as a single string. Accepts both; several
/// values are joined with `, `.
pub fn opt_string_or_seq<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, an array of strings or null")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut parts: Vec<String> = Vec::new();
            while let Some(p) = seq.next_element::<Option<String>>()? {
                parts.extend(p);
            }
            Ok((!parts.is_empty()).then(|| parts.join(", ")))
        }
        null_is_none!('de);
    }
    d.deserialize_any(V)
}

/// A secret string (access token) that goes straight into a [`SecretString`], so that it is never
/// printed by a derived `Debug`.
pub fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    Ok(SecretString::from(String::deserialize(d)?))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Row {
        #[serde(default, deserialize_with = "super::opt_f64")]
        f: Option<f64>,
        #[serde(default, deserialize_with = "super::opt_i64")]
        i: Option<i64>,
        #[serde(default, deserialize_with = "super::opt_u64")]
        u: Option<u64>,
        #[serde(default, deserialize_with = "super::vec_or_null")]
        v: Vec<String>,
        #[serde(default, deserialize_with = "super::opt_string_or_seq")]
        s: Option<String>,
    }

    fn row(json: &str) -> Row {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn numbers_come_as_numbers_strings_or_integers() {
        assert_eq!(row(r#"{"f":7.8}"#).f, Some(7.8));
        assert_eq!(row(r#"{"f":7}"#).f, Some(7.0));
        assert_eq!(row(r#"{"f":"9.1"}"#).f, Some(9.1));
        assert_eq!(row(r#"{"f":"n/a"}"#).f, None);
        assert_eq!(row(r#"{"f":null}"#).f, None);
        assert_eq!(row(r#"{}"#).f, None);
        assert_eq!(row(r#"{"i":140}"#).i, Some(140));
        assert_eq!(row(r#"{"i":"140"}"#).i, Some(140));
        assert_eq!(row(r#"{"i":140.0}"#).i, Some(140));
        assert_eq!(row(r#"{"i":1.5}"#).i, None);
        assert_eq!(row(r#"{"i":""}"#).i, None);
        assert_eq!(row(r#"{"u":"3599"}"#).u, Some(3599));
        assert_eq!(row(r#"{"u":3599}"#).u, Some(3599));
        assert_eq!(row(r#"{"u":-1}"#).u, None);
    }

    #[test]
    fn arrays_may_be_null_and_collections_may_be_strings() {
        assert!(row(r#"{"v":null}"#).v.is_empty());
        assert_eq!(row(r#"{"v":["a"]}"#).v, vec!["a".to_string()]);
        assert_eq!(row(r#"{"s":"Supported"}"#).s.as_deref(), Some("Supported"));
        assert_eq!(row(r#"{"s":["A","B"]}"#).s.as_deref(), Some("A, B"));
        assert_eq!(row(r#"{"s":[]}"#).s, None);
    }
}
