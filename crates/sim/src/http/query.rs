//! Query strings: percent-decoding (`+` is a space), case-insensitive names, duplicates refused.

use percent_encoding::percent_decode_str;

/// Longer query strings are refused before anything looks at them.
pub(crate) const MAX_QUERY: usize = 32 * 1024;
const MAX_PARAMS: usize = 64;

pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

#[derive(Debug)]
pub(crate) struct QueryError(pub(crate) String);

fn decode(s: &str) -> Result<String, QueryError> {
    let plus = s.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            QueryError("The query string is not valid UTF-8 after percent-decoding.".into())
        })
}

impl Query {
    pub(crate) fn parse(raw: &str) -> Result<Query, QueryError> {
        if raw.len() > MAX_QUERY {
            return Err(QueryError(format!(
                "The query string is too long (at most {MAX_QUERY} bytes)."
            )));
        }
        let mut pairs = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            if pairs.len() == MAX_PARAMS {
                return Err(QueryError(format!(
                    "Too many query parameters (at most {MAX_PARAMS})."
                )));
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let k = decode(k)?;
            if pairs
                .iter()
                .any(|(p, _): &(String, String)| p.eq_ignore_ascii_case(&k))
            {
                return Err(QueryError(format!(
                    "Query option '{k}' was specified more than once."
                )));
            }
            pairs.push((k, decode(v)?));
        }
        Ok(Query { pairs })
    }

    /// Every parameter in request order.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A whole number in digits only (blanks around it allowed), as the services read `$top`, `$skip`
/// and `pageSize`: no sign, no exponent, nothing past `u64`.
pub(crate) fn whole_number(raw: &str) -> Option<u64> {
    let value = raw.trim();
    value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u64>().ok())
        .flatten()
}

/// Percent-encodes a value for a URL we build (nextLinks, SAS URLs).
pub(crate) fn encode(v: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(v, SET).to_string()
}
