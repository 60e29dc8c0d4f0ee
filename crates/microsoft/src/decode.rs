//! Incremental decoding of an OData collection page, as its bytes arrive.
//!
//! A page can be 200 MB, so it is never held in memory: [`EnvelopeDecoder`] is fed the body chunk by
//! chunk, walks the envelope's keys in any order, cuts the `value` array into one byte slice per
//! item and hands each slice to a callback (which deserializes it with `record::decode_record`),
//! and keeps `@odata.nextLink`, `@odata.context` and `@odata.count` wherever they appear.
//!
//! Why not `serde_json::from_reader` with a `DeserializeSeed`: that parser reads byte by byte through
//! `io::Read`. Measured on 200k export rows (188 MB, release build, records dropped as a consumer
//! would): `from_reader` 0.87–0.92 s; this decoder (16 KiB chunks) 0.54–0.57 s, of which 0.08–0.11 s
//! is the boundary scan; `from_slice` on the whole page 0.44–0.57 s but needs the page in memory. On
//! two cores shared with the store that difference is seconds per sync. The boundary scan only tracks
//! string, escape and nesting state (skipping string content eight bytes at a time); serde_json still
//! validates every item completely, and the envelope's structure is
//! checked here, so a truncated or garbled body is always an error, never a silently short page.
//!
//! An item that lies whole inside one chunk is not scanned at all: the consumer reads it straight
//! from the chunk ([`Items::read_prefix`]), and the parser says where it ended. Only an item it
//! cannot read that way (one cut by the chunk's end, one the consumer's type refuses) is scanned
//! for its end and handed over as bytes ([`Items::item`]), exactly as before. The scan was a
//! second pass over every byte: 7.9 % of a 20,000-device re-read's CPU samples (BENCHMARKS.md,
//! "2026-12-07 (ninth)").

use std::fmt;

/// What the envelope said besides its items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeTail {
    pub next_link: Option<String>,
    pub context: Option<String>,
    pub count: Option<u64>,
    /// Items in `value` (each handed to the callback once).
    pub items: u64,
}

/// Why a body is not a complete collection envelope. Every one of these means "read the page again".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The body ended before the envelope did (a cut connection, a truncated response).
    Truncated { at: u64 },
    /// Not JSON, or not the envelope's shape (an HTML error page, garbage).
    Syntax { at: u64, detail: String },
    /// One item is larger than the configured limit.
    ItemTooLarge { at: u64, limit: usize },
    /// A well-formed JSON object without a `value` array.
    NoValueArray,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { at } => write!(f, "the page ended early, after {at} bytes"),
            DecodeError::Syntax { at, detail } => {
                write!(f, "the page is not valid JSON at byte {at}: {detail}")
            }
            DecodeError::ItemTooLarge { at, limit } => {
                write!(
                    f,
                    "a record at byte {at} is larger than the {limit}-byte limit"
                )
            }
            DecodeError::NoValueArray => f.write_str("the page has no 'value' array"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `{` (whitespace and a UTF-8 byte order mark allowed).
    Start,
    /// After `{` or `,`: a key, or `}` when `first`.
    KeyOrEnd {
        first: bool,
    },
    /// Inside a key string.
    Key,
    Colon,
    /// Before a member's value.
    Value,
    /// Inside the `value` array, before an item (or `]` when `first`).
    ItemOrEnd {
        first: bool,
    },
    Item,
    AfterItem,
    /// Inside the value of another member.
    Other,
    AfterMember,
    Done,
}

/// Which member's value is being scanned in [`State::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    NextLink,
    Context,
    Count,
    Discard,
}

/// Finds where one JSON value ends, across chunk boundaries.
#[derive(Debug, Default)]
struct ValueScanner {
    started: bool,
    scalar: bool,
    in_string: bool,
    escaped: bool,
    depth: u32,
}

impl ValueScanner {
    /// Scans `bytes` (the value's first byte is `bytes[0]` on the first call). Returns the length of
    /// the value's part in `bytes` when the value ends in it.
    fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        if !self.started {
            self.started = true;
            match bytes.first() {
                Some(b'{' | b'[') => {
                    self.depth = 1;
                    i = 1;
                }
                Some(b'"') => {
                    self.in_string = true;
                    i = 1;
                }
                Some(_) => self.scalar = true,
                None => return None,
            }
        }
        if self.scalar {
            // Numbers and literals end at the next delimiter, which is not part of them.
            return bytes[i..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .map(|p| i + p);
        }
        while i < bytes.len() {
            let c = bytes[i];
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if c == b'\\' {
                    self.escaped = true;
                } else if c == b'"' {
                    self.in_string = false;
                    if self.depth == 0 {
                        return Some(i + 1);
                    }
                } else {
                    // Most of a record is string content: jump to the next quote or backslash.
                    match find_quote_or_backslash(&bytes[i + 1..]) {
                        Some(p) => i += p,
                        None => return None,
                    }
                }
            } else {
                match c {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        None
    }
}

/// The position of the first `"` or `\\` in `bytes`, eight bytes at a time (SWAR: a byte of
/// `v ^ pattern` is zero where `v` matches; the lowest flagged byte is always a true match).
fn find_quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const QUOTE: u64 = LO * b'"' as u64;
    const BACKSLASH: u64 = LO * b'\\' as u64;
    let mut words = bytes.chunks_exact(8);
    let mut base = 0;
    for word in words.by_ref() {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let v = u64::from_le_bytes(word);
        let q = v ^ QUOTE;
        let b = v ^ BACKSLASH;
        let hits = (q.wrapping_sub(LO) & !q & HI) | (b.wrapping_sub(LO) & !b & HI);
        if hits != 0 {
            return Some(base + (hits.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|p| base + p)
}

/// What [`EnvelopeDecoder::feed`] hands the items of `value` to. A closure over the item's bytes
/// is one (it never reads a prefix).
pub trait Items {
    /// Reads the item that `text` begins with, when it can: `text` runs on past the item (to the
    /// chunk's end), and is at most the item size limit long. Returns the item's length in bytes
    /// once it has taken the item, as [`Items::item`] would have for the same bytes; `None` leaves
    /// the item to be scanned for its end and handed to [`Items::item`].
    fn read_prefix(&mut self, _text: &str) -> Option<usize> {
        None
    }

    /// Takes one complete item; an error stops decoding.
    fn item(&mut self, raw: &[u8]) -> Result<(), DecodeError>;
}

impl<F> Items for F
where
    F: FnMut(&[u8]) -> Result<(), DecodeError>,
{
    fn item(&mut self, raw: &[u8]) -> Result<(), DecodeError> {
        self(raw)
    }
}

/// The longest prefix of `text` no longer than `max` bytes that ends on a character boundary.
fn cut_at(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

const MAX_KEY_BYTES: usize = 4 * 1024;
const MAX_KEPT_VALUE_BYTES: usize = 64 * 1024;

/// Feeds on body chunks; see the module docs.
#[derive(Debug)]
pub struct EnvelopeDecoder {
    state: State,
    /// Bytes consumed so far (for error messages).
    offset: u64,
    key: Vec<u8>,
    key_escaped: bool,
    keep: Keep,
    scanner: ValueScanner,
    /// The start of an item (or kept value) that began in an earlier chunk.
    partial: Vec<u8>,
    max_item_bytes: usize,
    seen_value: bool,
    bom_left: u8,
    tail: EnvelopeTail,
    /// Where the current item began (for error offsets).
    item_start: u64,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl EnvelopeDecoder {
    /// `max_item_bytes` bounds one item, so that a broken or hostile server cannot make one "record"
    /// fill the memory.
    pub fn new(max_item_bytes: usize) -> EnvelopeDecoder {
        EnvelopeDecoder {
            state: State::Start,
            offset: 0,
            key: Vec::new(),
            key_escaped: false,
            keep: Keep::Discard,
            scanner: ValueScanner::default(),
            partial: Vec::new(),
            max_item_bytes,
            seen_value: false,
            bom_left: 3,
            tail: EnvelopeTail::default(),
            item_start: 0,
        }
    }

    /// Bytes fed so far (the offset of the next chunk's first byte).
    pub fn consumed(&self) -> u64 {
        self.offset
    }

    /// A callback's error about the current item, placed at the item's byte offset: a syntax
    /// error from `serde_json` (which counts within the item, on its line 1) points at its byte.
    fn at_item(&self, e: DecodeError) -> DecodeError {
        match e {
            DecodeError::Syntax { at: 0, detail } => DecodeError::Syntax {
                at: self.item_start + item_column(&detail).saturating_sub(1),
                detail,
            },
            other => other,
        }
    }

    fn syntax(&self, at: usize, detail: impl Into<String>) -> DecodeError {
        DecodeError::Syntax {
            at: self.offset + at as u64,
            detail: detail.into(),
        }
    }

    fn unexpected(&self, at: usize, byte: u8, wanted: &str) -> DecodeError {
        let shown = if byte.is_ascii_graphic() {
            format!("'{}'", byte as char)
        } else {
            format!("byte 0x{byte:02x}")
        };
        self.syntax(at, format!("found {shown} where {wanted} was expected"))
    }

    /// Consumes one chunk. `items` gets each complete item of `value`, in order; its error stops
    /// decoding.
    pub fn feed<I>(&mut self, chunk: &[u8], items: &mut I) -> Result<(), DecodeError>
    where
        I: Items + ?Sized,
    {
        // The chunk's text, up to its first byte that is not UTF-8 (or a character the chunk
        // cuts): items inside it can be read in place.
        let text = match std::str::from_utf8(chunk) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(&chunk[..e.valid_up_to()]).unwrap_or_default(),
        };
        let mut i = 0;
        while i < chunk.len() {
            let c = chunk[i];
            match self.state {
                State::Start => {
                    // A UTF-8 byte order mark is tolerated before the object.
                    if self.bom_left > 0 && c == [0xEF, 0xBB, 0xBF][3 - self.bom_left as usize] {
                        self.bom_left -= 1;
                    } else if is_ws(c) {
                        self.bom_left = 0;
                    } else if c == b'{' {
                        self.state = State::KeyOrEnd { first: true };
                    } else {
                        return Err(self.unexpected(i, c, "'{' (a JSON object)"));
                    }
                    i += 1;
                }
                State::KeyOrEnd { first } => {
                    if is_ws(c) {
                    } else if c == b'"' {
                        self.key.clear();
                        self.key_escaped = false;
                        self.state = State::Key;
                    } else if c == b'}' && first {
                        self.state = State::Done;
                    } else {
                        return Err(self.unexpected(i, c, "a key"));
                    }
                    i += 1;
                }
                State::Key => {
                    // Keys are short: copy them byte by byte until the closing quote.
                    let start = i;
                    let mut end = None;
                    while i < chunk.len() {
                        let b = chunk[i];
                        if self.key_escaped {
                            self.key_escaped = false;
                        } else if b == b'\\' {
                            self.key_escaped = true;
                        } else if b == b'"' {
                            end = Some(i);
                            break;
                        }
                        i += 1;
                    }
                    let stop = end.unwrap_or(chunk.len());
                    self.key.extend_from_slice(&chunk[start..stop]);
                    if self.key.len() > MAX_KEY_BYTES {
                        return Err(self.syntax(i, "a key is too long"));
                    }
                    if end.is_some() {
                        i += 1;
                        self.state = State::Colon;
                    }
                }
                State::Colon => {
                    if c == b':' {
                        self.state = State::Value;
                    } else if !is_ws(c) {
                        return Err(self.unexpected(i, c, "':'"));
                    }
                    i += 1;
                }
                State::Value => {
                    if is_ws(c) {
                        i += 1;
                        continue;
                    }
                    if matches!(c, b',' | b'}' | b']' | b':') {
                        return Err(self.unexpected(i, c, "a value"));
                    }
                    let key = self.key_text();
                    if key.eq_ignore_ascii_case("value") {
                        if self.seen_value {
                            return Err(self.syntax(i, "'value' appears twice"));
                        }
                        if c != b'[' {
                            return Err(self.unexpected(i, c, "'[' (the value array)"));
                        }
                        self.seen_value = true;
                        self.state = State::ItemOrEnd { first: true };
                        i += 1;
                    } else {
                        self.keep = match key.as_str() {
                            // ARM lists say `nextLink` (<https://learn.microsoft.com/en-us/rest/api/defenderforcloud/>).
                            "@odata.nextLink" | "nextLink" => Keep::NextLink,
                            "@odata.context" => Keep::Context,
                            "@odata.count" => Keep::Count,
                            _ => Keep::Discard,
                        };
                        self.scanner = ValueScanner::default();
                        self.partial.clear();
                        self.state = State::Other;
                    }
                }
                State::ItemOrEnd { first } => {
                    if is_ws(c) {
                        i += 1;
                    } else if c == b']' {
                        if !first {
                            return Err(self.syntax(i, "a comma before ']'"));
                        }
                        self.state = State::AfterMember;
                        i += 1;
                    } else if matches!(c, b',' | b'}' | b':') {
                        return Err(self.unexpected(i, c, "an item"));
                    } else {
                        self.scanner = ValueScanner::default();
                        self.partial.clear();
                        self.item_start = self.offset + i as u64;
                        self.state = State::Item;
                    }
                }
                State::Item => {
                    let start = i;
                    // Only objects (every record is one): a number the chunk cuts would read as
                    // a shorter number, and where a scalar ends the scanner and the parser differ.
                    if self.partial.is_empty()
                        && !self.scanner.started
                        && chunk[start] == b'{'
                        && let Some(rest) = text.get(start..)
                        && let Some(n) = items.read_prefix(cut_at(rest, self.max_item_bytes))
                    {
                        self.tail.items += 1;
                        self.state = State::AfterItem;
                        i = start + n;
                        continue;
                    }
                    match self.scanner.scan(&chunk[start..]) {
                        Some(n) => {
                            let end = start + n;
                            if self.partial.is_empty() {
                                if n > self.max_item_bytes {
                                    return Err(self.too_large(start));
                                }
                                items
                                    .item(&chunk[start..end])
                                    .map_err(|e| self.at_item(e))?;
                            } else {
                                self.partial.extend_from_slice(&chunk[start..end]);
                                if self.partial.len() > self.max_item_bytes {
                                    return Err(self.too_large(start));
                                }
                                let item = std::mem::take(&mut self.partial);
                                let result = items.item(&item);
                                // Keep the allocation for the next item that spans chunks.
                                self.partial = item;
                                self.partial.clear();
                                result.map_err(|e| self.at_item(e))?;
                            }
                            self.tail.items += 1;
                            self.state = State::AfterItem;
                            i = end;
                        }
                        None => {
                            self.partial.extend_from_slice(&chunk[start..]);
                            if self.partial.len() > self.max_item_bytes {
                                return Err(self.too_large(start));
                            }
                            i = chunk.len();
                        }
                    }
                }
                State::AfterItem => {
                    if c == b',' {
                        self.state = State::ItemOrEnd { first: false };
                    } else if c == b']' {
                        self.state = State::AfterMember;
                    } else if !is_ws(c) {
                        return Err(self.unexpected(i, c, "',' or ']'"));
                    }
                    i += 1;
                }
                State::Other => {
                    let start = i;
                    let found = self.scanner.scan(&chunk[start..]);
                    let end = found.map_or(chunk.len(), |n| start + n);
                    if self.keep != Keep::Discard {
                        self.partial.extend_from_slice(&chunk[start..end]);
                        if self.partial.len() > MAX_KEPT_VALUE_BYTES {
                            return Err(self.syntax(start, "an @odata value is too long"));
                        }
                    }
                    i = end;
                    if found.is_some() {
                        self.keep_value(start)?;
                        self.state = State::AfterMember;
                    }
                }
                State::AfterMember => {
                    if c == b',' {
                        self.state = State::KeyOrEnd { first: false };
                    } else if c == b'}' {
                        self.state = State::Done;
                    } else if !is_ws(c) {
                        return Err(self.unexpected(i, c, "',' or '}'"));
                    }
                    i += 1;
                }
                State::Done => {
                    if !is_ws(c) {
                        return Err(self.unexpected(i, c, "the end of the page"));
                    }
                    i += 1;
                }
            }
        }
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// Ends decoding: the body is over.
    pub fn finish(mut self) -> Result<EnvelopeTail, DecodeError> {
        // A number as the last member's value ends only at '}' — or at the end of a broken body.
        if self.state != State::Done {
            return Err(DecodeError::Truncated { at: self.offset });
        }
        if !self.seen_value {
            return Err(DecodeError::NoValueArray);
        }
        Ok(std::mem::take(&mut self.tail))
    }

    fn too_large(&self, at: usize) -> DecodeError {
        DecodeError::ItemTooLarge {
            at: self.offset + at as u64,
            limit: self.max_item_bytes,
        }
    }

    fn key_text(&self) -> String {
        // Keys with escapes are decoded properly; plain keys (all of Microsoft's) are used as is.
        if self.key.contains(&b'\\') {
            let mut quoted = Vec::with_capacity(self.key.len() + 2);
            quoted.push(b'"');
            quoted.extend_from_slice(&self.key);
            quoted.push(b'"');
            serde_json::from_slice::<String>(&quoted).unwrap_or_default()
        } else {
            String::from_utf8_lossy(&self.key).into_owned()
        }
    }

    fn keep_value(&mut self, at: usize) -> Result<(), DecodeError> {
        let raw = std::mem::take(&mut self.partial);
        let bad = |d: &EnvelopeDecoder, e: serde_json::Error| {
            d.syntax(at, format!("bad @odata value: {e}"))
        };
        match self.keep {
            Keep::NextLink => {
                self.tail.next_link = serde_json::from_slice::<Option<String>>(&raw)
                    .map_err(|e| bad(self, e))?
                    .filter(|s| !s.is_empty());
            }
            Keep::Context => {
                // Informational only: an odd context never fails a page.
                self.tail.context = serde_json::from_slice::<Option<String>>(&raw)
                    .ok()
                    .flatten();
            }
            Keep::Count => {
                self.tail.count = serde_json::from_slice::<Option<u64>>(&raw).ok().flatten();
            }
            Keep::Discard => {}
        }
        Ok(())
    }
}

/// The column of a `serde_json` error message ("... at line 1 column 17"), 0 when absent.
fn item_column(detail: &str) -> u64 {
    detail
        .rsplit_once(" column ")
        .and_then(|(_, c)| c.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes `body` cut at the given chunk sizes; returns the items as strings and the tail.
    fn decode(body: &[u8], cuts: &[usize]) -> Result<(Vec<String>, EnvelopeTail), DecodeError> {
        let mut items = Vec::new();
        let tail = decode_into(body, cuts, 1 << 20, &mut |item: &[u8]| {
            items.push(String::from_utf8_lossy(item).into_owned());
            Ok(())
        })?;
        Ok((items, tail))
    }

    /// Keeps each item's text, reading it in place where the decoder offers it.
    #[derive(Default)]
    struct InPlace {
        items: Vec<String>,
        read_in_place: usize,
    }

    impl Items for InPlace {
        fn read_prefix(&mut self, text: &str) -> Option<usize> {
            let mut values =
                serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
            values.next()?.ok()?;
            let n = values.byte_offset();
            self.items.push(text[..n].to_owned());
            self.read_in_place += 1;
            Some(n)
        }

        fn item(&mut self, raw: &[u8]) -> Result<(), DecodeError> {
            self.items.push(String::from_utf8_lossy(raw).into_owned());
            Ok(())
        }
    }

    fn decode_into<I: Items>(
        body: &[u8],
        cuts: &[usize],
        max_item_bytes: usize,
        items: &mut I,
    ) -> Result<EnvelopeTail, DecodeError> {
        let mut d = EnvelopeDecoder::new(max_item_bytes);
        let mut rest = body;
        let mut k = 0;
        while !rest.is_empty() {
            let n = cuts
                .get(k)
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            k += 1;
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            d.feed(chunk, items)?;
        }
        d.finish()
    }

    #[test]
    fn items_whole_in_a_chunk_are_read_in_place() {
        let body = r#"{"value":[{"a":"x,]}"},{"b":[1,{"c":"\\"}]}, 7 ,"é€",null]}"#;
        let mut sink = InPlace::default();
        let tail = decode_into(body.as_bytes(), &[], 1 << 20, &mut sink).unwrap();
        assert_eq!(
            sink.items,
            [
                r#"{"a":"x,]}"}"#,
                r#"{"b":[1,{"c":"\\"}]}"#,
                "7",
                r#""é€""#,
                "null"
            ]
        );
        // The objects are read in place; other values are scanned.
        assert_eq!((sink.read_in_place, tail.items), (2, 5));
        // Cut inside the second item and inside the euro sign: those two are scanned.
        let cut = body.find("\"c\"").unwrap();
        let euro = body.find('€').unwrap() + 1 - cut;
        let mut sink = InPlace::default();
        decode_into(body.as_bytes(), &[cut, euro], 1 << 20, &mut sink).unwrap();
        assert_eq!(sink.items.len(), 5);
        assert_eq!(sink.read_in_place, 1);
    }

    #[test]
    fn an_oversized_item_is_refused_when_read_in_place() {
        let body = br#"{"value":[{"a":"0"},{"a":"0123456789"}]}"#;
        let mut sink = InPlace::default();
        let r = decode_into(body, &[], 10, &mut sink);
        assert!(matches!(r, Err(DecodeError::ItemTooLarge { .. })), "{r:?}");
        assert_eq!(sink.items, [r#"{"a":"0"}"#]);
    }

    #[test]
    fn items_and_odata_members_in_any_order() {
        let body = br#"{"@odata.nextLink":"https://h/api/x?$skiptoken=a\"b","value":[{"a":"x,]}"},{"b":[1,{"c":"\\"}]}, 7 ,"s",null],"@odata.context":"https://h/api/$metadata#X","@odata.count":3,"other":{"n":[1,2]}}"#;
        let (items, tail) = decode(body, &[]).unwrap();
        assert_eq!(
            items,
            vec![
                r#"{"a":"x,]}"}"#,
                r#"{"b":[1,{"c":"\\"}]}"#,
                "7",
                r#""s""#,
                "null"
            ]
        );
        assert_eq!(
            tail.next_link.as_deref(),
            Some("https://h/api/x?$skiptoken=a\"b")
        );
        assert_eq!(tail.context.as_deref(), Some("https://h/api/$metadata#X"));
        assert_eq!(tail.count, Some(3));
        assert_eq!(tail.items, 5);
    }

    #[test]
    fn empty_pages_bom_and_whitespace() {
        let (items, tail) =
            decode(b"\xEF\xBB\xBF \n{ \"value\" : [ ] }\r\n", &[1, 1, 1, 1]).unwrap();
        assert!(items.is_empty());
        assert_eq!(tail.next_link, None);
        let (_, tail) = decode(br#"{"value":[],"@odata.nextLink":null}"#, &[]).unwrap();
        assert_eq!(tail.next_link, None);
    }

    #[test]
    fn broken_bodies_are_errors_never_short_pages() {
        let full = br#"{"value":[{"id":"a"},{"id":"b"}],"@odata.nextLink":"x"}"#;
        for cut in 1..full.len() {
            assert!(
                decode(&full[..cut], &[]).is_err(),
                "truncated at {cut} accepted"
            );
        }
        for bad in [
            &b"<html>502 Bad Gateway</html>"[..],
            b"",
            b"[1,2]",
            br#"{"value":{"id":1}}"#,
            br#"{"value":[1,]}"#,
            br#"{"value":[,1]}"#,
            br#"{"value":[1],"x":,"y":2}"#,
            br#"{"value":[1 2]}"#,
            br#"{"value":[1]} x"#,
            br#"{"value":[1],"value":[2]}"#,
            br#"{"error":{"code":"InternalServerError"}}"#,
        ] {
            assert!(
                decode(bad, &[]).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            decode(br#"{"x":1}"#, &[]).unwrap_err(),
            DecodeError::NoValueArray
        );
    }

    #[test]
    fn an_oversized_item_is_refused() {
        let mut d = EnvelopeDecoder::new(10);
        let r = d.feed(br#"{"value":[{"a":"0123456789"}]}"#, &mut |_: &[u8]| Ok(()));
        assert!(matches!(r, Err(DecodeError::ItemTooLarge { .. })));
        let mut d = EnvelopeDecoder::new(10);
        let r = d
            .feed(br#"{"value":[{"a":"#, &mut |_: &[u8]| Ok(()))
            .and_then(|_| d.feed(br#""0123456789"}]}"#, &mut |_: &[u8]| Ok(())));
        assert!(matches!(r, Err(DecodeError::ItemTooLarge { .. })));
    }

    #[test]
    fn callback_errors_stop_decoding() {
        let mut d = EnvelopeDecoder::new(100);
        let r = d.feed(br#"{"value":[1,2]}"#, &mut |_: &[u8]| {
            Err(DecodeError::NoValueArray)
        });
        assert_eq!(r, Err(DecodeError::NoValueArray));
    }

    fn page_strategy() -> impl Strategy<Value = (String, Vec<String>)> {
        let item = prop_oneof![
            "[a-z0-9 ,:\\[\\]{}\"\\\\é€]{0,12}".prop_map(|s| serde_json::to_string(
                &serde_json::json!({ "id": s, "n": [1, {"x": null}] })
            )
            .unwrap()),
            any::<i32>().prop_map(|n| n.to_string()),
            Just("true".to_string()),
            "[a-z\"\\\\]{0,5}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ];
        (
            proptest::collection::vec(item, 0..20),
            any::<bool>(),
            "[a-z:/?=&\"]{0,20}",
        )
            .prop_map(|(items, link_first, link)| {
                let link = serde_json::to_string(&link).unwrap();
                let value = format!("\"value\":[{}]", items.join(","));
                let body = if link_first {
                    format!("{{\"@odata.nextLink\":{link}, {value}}}")
                } else {
                    format!("{{ \"@odata.context\":\"c\",{value},\n\"@odata.nextLink\":{link}}}")
                };
                (body, items)
            })
    }

    proptest! {
        /// However the body is cut into chunks, the same items come out, once each, in order.
        #[test]
        fn any_chunking_yields_the_same_items((body, items) in page_strategy(), cuts in proptest::collection::vec(1usize..40, 0..60)) {
            let (got, tail) = decode(body.as_bytes(), &cuts).unwrap();
            prop_assert_eq!(&got, &items);
            prop_assert_eq!(tail.items as usize, items.len());
            let mut in_place = InPlace::default();
            let tail = decode_into(body.as_bytes(), &cuts, 1 << 20, &mut in_place).unwrap();
            prop_assert_eq!(&in_place.items, &items);
            prop_assert_eq!(tail.items as usize, items.len());
            let whole: serde_json::Value = serde_json::from_str(&body).unwrap();
            prop_assert_eq!(tail.next_link.as_deref(), whole["@odata.nextLink"].as_str().filter(|s| !s.is_empty()));
        }

        #[test]
        fn the_fast_finder_agrees_with_a_plain_search(bytes in proptest::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), any::<u8>()], 0..64)) {
            let plain = bytes.iter().position(|&c| c == b'"' || c == b'\\');
            prop_assert_eq!(find_quote_or_backslash(&bytes), plain);
        }

        #[test]
        fn a_damaged_page_reads_alike_in_place((body, _) in page_strategy(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cuts in proptest::collection::vec(1usize..40, 0..60)) {
            let mut bytes = body.into_bytes();
            let at = at.index(bytes.len());
            bytes[at] = byte;
            let plain = decode(&bytes, &cuts);
            let mut sink = InPlace::default();
            let in_place = decode_into(&bytes, &cuts, 1 << 20, &mut sink).map(|tail| (sink.items, tail));
            if plain.as_ref().is_ok_and(|(items, _)| items.iter().all(|i| !i.contains(char::REPLACEMENT_CHARACTER))) {
                prop_assert_eq!(plain, in_place);
            } else {
                prop_assert_eq!(plain.map(|(_, tail)| tail), in_place.map(|(_, tail)| tail));
            }
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200), cuts in proptest::collection::vec(1usize..20, 0..20)) {
            let plain = decode(&bytes, &cuts);
            let mut sink = InPlace::default();
            let in_place = decode_into(&bytes, &cuts, 1 << 20, &mut sink).map(|tail| (sink.items, tail));
            // Reading in place changes nothing: the same items, or the same error at the same byte.
            prop_assert_eq!(plain.map(|(_, tail)| tail), in_place.map(|(_, tail)| tail));
        }
    }
}
