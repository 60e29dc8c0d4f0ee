//! Paging: reading every page of a collection exactly once, streaming its records to the consumer,
//! and saying at the end whether the read was provably complete.
//!
//! Two strategies, from <https://learn.microsoft.com/en-us/defender-endpoint/api/get-machines> and
//! <https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>:
//! - **skip paging** (`/api/machines`, `/api/vulnerabilities`): explicit `$top=N&$skip=k·N`, because
//!   `$top` suppresses `@odata.nextLink`; stop at a short or empty page; drop ids seen before (a live
//!   set shifts under `$skip`); a page identical to the previous one means the server ignored
//!   `$skip`, and ends the read as incomplete.
//! - **link paging** (exports, delta): follow `@odata.nextLink`, never `$top`; only to allowed hosts;
//!   a repeated link ends the read as incomplete; complete when the last page has no link.
//!
//! Both stop after `max_pages`. A page that fails part-way is read again from its start; the consumer
//! is told with [`ReadEvent::Restart`] and receives that page's records again (downstream upserts are
//! idempotent, so re-delivery is harmless, but it is visible).

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::Stream;
use reqwest::Response;
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use url::Url;

use crate::decode::{DecodeError, EnvelopeDecoder, Items};
use crate::error::ApiError;
use crate::family::ApiFamily;
use crate::http::body::{describe, snippet};
use crate::http::{Budget, Core};
use crate::record::decode_record;
use crate::wire::mde::{Machine, Vulnerability};

/// Paging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagingOptions {
    /// `$top` for `/api/machines` (Microsoft's maximum, 10,000, is also the default).
    pub machines_page_size: u32,
    /// `$top` for `/api/vulnerabilities` (maximum 8,000).
    pub vulnerabilities_page_size: u32,
    /// `$top` of Resource Graph queries (1–1,000; Microsoft's default would be 100).
    pub graph_page_size: u32,
    /// Hard stop: a read never fetches more pages than this.
    pub max_pages: u32,
    /// Records per [`ReadEvent::Records`] message.
    pub batch_size: usize,
    /// Messages buffered between the reader and the consumer (back-pressure beyond that).
    pub channel_capacity: usize,
    /// Largest single record accepted.
    pub max_record_bytes: usize,
}

impl Default for PagingOptions {
    fn default() -> Self {
        PagingOptions {
            machines_page_size: MACHINES_MAX_TOP,
            vulnerabilities_page_size: VULNERABILITIES_MAX_TOP,
            graph_page_size: GRAPH_MAX_TOP,
            max_pages: 10_000,
            batch_size: 1_000,
            channel_capacity: 4,
            max_record_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Microsoft's `$top` caps. Asking for more than the cap would make every page look "short" and end
/// the read after one page, so configured sizes are clamped to these.
pub const MACHINES_MAX_TOP: u32 = 10_000;
pub const VULNERABILITIES_MAX_TOP: u32 = 8_000;
/// Resource Graph's largest page.
pub const GRAPH_MAX_TOP: u32 = 1_000;
/// `pageSize` range of the export APIs.
pub const EXPORT_MAX_PAGE_SIZE: u32 = 200_000;

/// What a reader tells its consumer, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadEvent<T> {
    /// Records of page `page` (0-based), in Microsoft's order. A page arrives as one or more batches.
    Records { page: u32, records: Vec<T> },
    /// Page `page` failed part-way and is read again from its start: its records delivered so far
    /// will be delivered again.
    Restart { page: u32, reason: String },
    /// Page `page` is complete; `records` were delivered for it (after de-duplication).
    PageDone { page: u32, records: u64 },
    /// The read is over; nothing follows.
    Finished(ReadReport),
}

/// Why a read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEnd {
    /// A page shorter than `$top` (or empty): the end of the set.
    ShortPage { page: u32, items: u64 },
    /// The last page had no `@odata.nextLink`.
    NoNextLink { page: u32 },
    /// An export file was read to its end.
    EndOfFile,
    /// Every file of an export listing was read to its end.
    AllFiles { files: u32 },
    /// `max_pages` pages were read and there were more.
    MaxPages { pages: u32 },
    /// Page `page` repeated the previous page: the server ignored `$skip`.
    RepeatedPage { page: u32 },
    /// The `@odata.nextLink` after page `page` pointed at a page already read.
    RepeatedNextLink { page: u32 },
    /// Paging ended normally, but some records could not be read (a shape the wire types refuse).
    UnreadableRecords { count: u64, first_error: String },
    /// Too many empty pages in a row still carried a next-page link (an ARM pathology).
    EmptyPages { page: u32, pages: u32 },
    /// Resource Graph said `resultTruncated: "true"` (or returned fewer rows than its
    /// `totalRecords` without a `$skipToken`): rows are missing and cannot be paged to.
    Truncated { page: u32 },
    /// The first page answered 404 Not Found, which is how `GET /api/machines` says that the
    /// tenant has no recently seen devices (get-machines, "Response"): an empty, complete read.
    NothingThere,
}

impl ReadEnd {
    fn is_natural(&self) -> bool {
        matches!(
            self,
            ReadEnd::ShortPage { .. }
                | ReadEnd::NoNextLink { .. }
                | ReadEnd::EndOfFile
                | ReadEnd::AllFiles { .. }
                | ReadEnd::NothingThere
        )
    }
}

impl fmt::Display for ReadEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadEnd::ShortPage { page, items } => {
                write!(
                    f,
                    "page {} held {items} records, fewer than a full page: the end",
                    page + 1
                )
            }
            ReadEnd::NoNextLink { page } => {
                write!(f, "page {} had no next-page link: the end", page + 1)
            }
            ReadEnd::EndOfFile => f.write_str("the file was read to its end"),
            ReadEnd::AllFiles { files } => {
                write!(f, "all {files} export files were read to their end")
            }
            ReadEnd::MaxPages { pages } => write!(f, "stopped after the maximum of {pages} pages"),
            ReadEnd::RepeatedPage { page } => write!(
                f,
                "page {} repeated the previous page (the server ignored $skip); stopped",
                page + 1
            ),
            ReadEnd::RepeatedNextLink { page } => write!(
                f,
                "the next-page link after page {} pointed back at a page already read; stopped",
                page + 1
            ),
            ReadEnd::EmptyPages { page, pages } => write!(
                f,
                "{pages} empty pages in a row up to page {} still linked to more; stopped",
                page + 1
            ),
            ReadEnd::Truncated { page } => write!(
                f,
                "Resource Graph cut the result at page {} and gave no way to read the rest",
                page + 1
            ),
            ReadEnd::UnreadableRecords { count, first_error } => {
                write!(
                    f,
                    "{count} records could not be read, more than a read may skip (first: {first_error})"
                )
            }
            ReadEnd::NothingThere => f.write_str(
                "Microsoft answered 404 Not Found: it has no recently seen devices for this tenant",
            ),
        }
    }
}

/// The summary of one read. A sync may conclude (mark fixed, mark missing) only from a `complete`
/// read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReport {
    pub family: ApiFamily,
    /// Pages read successfully.
    pub pages: u32,
    /// Records delivered, each once (re-deliveries after a restart are not counted again).
    pub records: u64,
    /// Records dropped because their id was already delivered (skip paging over a shifting set).
    pub duplicates_dropped: u64,
    /// Records the wire types could not read (skipped). A few are tolerated (see
    /// [`odd_records_tolerated`]); more make the read incomplete.
    pub unreadable: u64,
    /// The ids of the unreadable records that had one (the first [`ODD_IDS_KEPT`]).
    pub unreadable_ids: Vec<String>,
    /// Why the first unreadable record could not be read.
    pub first_unreadable: Option<String>,
    /// Pages read again after a failure part-way.
    pub restarts: u32,
    /// Every page was read, the end was seen, no loop, every record read.
    pub complete: bool,
    pub reason: ReadEnd,
}

impl ReadReport {
    pub(crate) fn new(family: ApiFamily) -> ReadReport {
        ReadReport {
            family,
            pages: 0,
            records: 0,
            duplicates_dropped: 0,
            unreadable: 0,
            unreadable_ids: Vec::new(),
            first_unreadable: None,
            restarts: 0,
            complete: false,
            reason: ReadEnd::MaxPages { pages: 0 },
        }
    }

    pub(crate) fn add(&mut self, page: &PageOutcome) {
        self.pages += 1;
        self.records += page.kept;
        self.restarts += page.restarts;
        self.add_odd(&page.odd);
    }

    /// Counts another part's unreadable records (a page, an export file).
    pub(crate) fn add_odd(&mut self, odd: &OddRecords) {
        self.unreadable += odd.count;
        if self.first_unreadable.is_none() {
            self.first_unreadable.clone_from(&odd.first_error);
        }
        for id in &odd.ids {
            if self.unreadable_ids.len() < ODD_IDS_KEPT {
                self.unreadable_ids.push(id.clone());
            }
        }
    }

    /// Ends the report: complete at a natural end, as long as the unreadable records stay within
    /// what [`odd_records_tolerated`] allows.
    pub(crate) fn finish(mut self, end: ReadEnd, duplicates_dropped: u64) -> ReadReport {
        self.duplicates_dropped = duplicates_dropped;
        let tolerated = odd_records_tolerated(self.unreadable, self.records);
        self.complete = end.is_natural() && tolerated;
        self.reason = if end.is_natural() && !tolerated {
            ReadEnd::UnreadableRecords {
                count: self.unreadable,
                first_error: self.first_unreadable.clone().unwrap_or_default(),
            }
        } else {
            end
        };
        if self.unreadable > 0 {
            tracing::warn!(
                family = %self.family,
                unreadable = self.unreadable,
                ids = ?self.unreadable_ids,
                first_error = self.first_unreadable.as_deref().unwrap_or_default(),
                tolerated,
                "records skipped as unreadable"
            );
        }
        self
    }
}

/// Unreadable records a read may skip and still conclude: one record of a shape Rampart does
/// not expect must not stop a tenant's sync (Microsoft adds fields and values without notice), but
/// many of them mean Rampart no longer understands the answer, and concluding from it (marking
/// findings fixed, devices missing) would be wrong. The rule, also in docs/setup-endpoint.md:
/// at most 1 % of the records read, but always at least one and never more than
/// [`ODD_RECORDS_MAX`]; and fewer unreadable records than readable ones.
pub fn odd_records_tolerated(unreadable: u64, read: u64) -> bool {
    if unreadable == 0 {
        return true;
    }
    let allowed = (read.saturating_add(unreadable) / 100).clamp(1, ODD_RECORDS_MAX);
    unreadable <= allowed && unreadable < read
}

/// The most unreadable records one read may skip and still conclude.
pub const ODD_RECORDS_MAX: u64 = 1_000;
/// How many ids of unreadable records a report keeps (the count is always exact).
pub const ODD_IDS_KEPT: usize = 20;

/// Unreadable records met in one page or file: how many, the first reason, and their ids.
#[derive(Debug, Default, Clone)]
pub(crate) struct OddRecords {
    pub count: u64,
    pub first_error: Option<String>,
    pub ids: Vec<String>,
}

impl OddRecords {
    /// Notes a record (its raw JSON) that the wire type refused.
    pub(crate) fn note(&mut self, raw: &[u8], error: &serde_json::Error) {
        let id = serde_json::from_slice::<RecordId>(raw)
            .ok()
            .and_then(RecordId::into_text);
        self.push(id, error);
    }

    /// Notes a record (already parsed into a JSON value) that the wire type refused.
    pub(crate) fn note_value(&mut self, value: &serde_json::Value, error: &serde_json::Error) {
        let id = RecordId::deserialize(value)
            .ok()
            .and_then(RecordId::into_text);
        self.push(id, error);
    }

    fn push(&mut self, id: Option<String>, error: &serde_json::Error) {
        self.count += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string().chars().take(200).collect());
        }
        if let Some(id) = id
            && self.ids.len() < ODD_IDS_KEPT
        {
            self.ids.push(id);
        }
    }
}

/// Just the id of a record, whatever else it holds: `id` (MDE entities, ARM resources), `Id`
/// (export files).
#[derive(serde::Deserialize)]
struct RecordId {
    #[serde(default, alias = "Id", alias = "ID")]
    id: Option<serde_json::Value>,
}

impl RecordId {
    fn into_text(self) -> Option<String> {
        let text = match self.id? {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        // Printable and bounded: the id goes into the run record and the portal.
        let shown: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
        (!shown.trim().is_empty()).then_some(shown)
    }
}

/// The reading side of a [`RecordStream`]: sends its events, and fills record buffers its
/// consumer gave back ([`RecordStream::give_back`]).
pub(crate) struct EventTx<T> {
    events: mpsc::Sender<Result<ReadEvent<T>, ApiError>>,
    spare: Spare<T>,
}

/// Record buffers a consumer has emptied, for the reader to fill again. Reused rather than freed:
/// the allocator returns freed memory to the OS within milliseconds, and a new buffer is faulted
/// in again page by page (a first load's most frequent page faults, BENCHMARKS.md, "2026-12-08
/// (twelfth)").
type Spare<T> = Arc<std::sync::Mutex<Vec<Vec<T>>>>;

/// Buffers kept for reuse: as many as the channel and the consumer hold at once is plenty.
const SPARE_BUFFERS: usize = 8;

impl<T> Clone for EventTx<T> {
    fn clone(&self) -> Self {
        EventTx {
            events: self.events.clone(),
            spare: Arc::clone(&self.spare),
        }
    }
}

impl<T> EventTx<T> {
    pub(crate) async fn send(
        &self,
        event: Result<ReadEvent<T>, ApiError>,
    ) -> Result<(), mpsc::error::SendError<Result<ReadEvent<T>, ApiError>>> {
        self.events.send(event).await
    }

    /// An empty buffer with room for `size` records: one the consumer gave back, or a new one.
    pub(crate) fn buffer(&self, size: usize) -> Vec<T> {
        let mut buffer = self
            .spare
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        buffer.reserve(size);
        buffer
    }
}

/// The records of one read, as a [`Stream`] of [`ReadEvent`]s ending in
/// [`ReadEvent::Finished`] or an error. Dropping it stops the read.
pub struct RecordStream<T> {
    rx: mpsc::Receiver<Result<ReadEvent<T>, ApiError>>,
    task: Option<JoinHandle<()>>,
    ended: bool,
    spare: Spare<T>,
}

impl<T> fmt::Debug for RecordStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordStream")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> RecordStream<T> {
    /// Runs `read` on its own task, which sends events into a bounded channel.
    pub(crate) fn spawn<F, Fut>(capacity: usize, read: F) -> RecordStream<T>
    where
        F: FnOnce(EventTx<T>) -> Fut,
        Fut: Future<Output = Result<ReadReport, ApiError>> + Send + 'static,
    {
        let (events, rx) = mpsc::channel(capacity.max(1));
        let spare: Spare<T> = Arc::default();
        let tx = EventTx {
            events,
            spare: Arc::clone(&spare),
        };
        let fut = read(tx.clone());
        let task = tokio::spawn(async move {
            let last = fut.await.map(ReadEvent::Finished);
            // The consumer may be gone; then nobody needs the result.
            let _ = tx.send(last).await;
        });
        RecordStream {
            rx,
            task: Some(task),
            ended: false,
            spare,
        }
    }

    /// Hands the buffer of a [`ReadEvent::Records`] back, emptied, for the reader to fill with
    /// later records instead of a new one.
    pub fn give_back(&self, mut records: Vec<T>) {
        records.clear();
        if let Ok(mut spare) = self.spare.lock()
            && spare.len() < SPARE_BUFFERS
        {
            spare.push(records);
        }
    }

    /// A stream that fails at once (configuration errors found before any request).
    pub(crate) fn failed(error: ApiError) -> RecordStream<T> {
        let (tx, rx) = mpsc::channel(1);
        // Capacity 1 and nothing sent yet: this cannot fail.
        let _ = tx.try_send(Err(error));
        RecordStream {
            rx,
            task: None,
            ended: false,
            spare: Arc::default(),
        }
    }

    /// Collects every record, keeping only the last delivery of each page (restarted pages are
    /// replaced, not doubled). For tests, the `integration test` command and small sets: a big
    /// export should be consumed batch by batch instead.
    pub async fn collect_all(mut self) -> Result<(Vec<T>, ReadReport), ApiError> {
        use futures::StreamExt as _;
        let mut done: Vec<T> = Vec::new();
        // Pages in progress, by number: export files are read several at a time.
        let mut pending: std::collections::BTreeMap<u32, Vec<T>> = Default::default();
        while let Some(event) = self.next().await {
            match event? {
                ReadEvent::Records { page, records } => {
                    pending.entry(page).or_default().extend(records)
                }
                ReadEvent::Restart { page, .. } => {
                    pending.remove(&page);
                }
                ReadEvent::PageDone { page, .. } => {
                    done.append(&mut pending.remove(&page).unwrap_or_default())
                }
                ReadEvent::Finished(report) => return Ok((done, report)),
            }
        }
        Err(ApiError::Interrupted(
            "the reader stopped without a result".to_owned(),
        ))
    }
}

impl<T> Stream for RecordStream<T> {
    type Item = Result<ReadEvent<T>, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(item)) => {
                if matches!(item, Ok(ReadEvent::Finished(_)) | Err(_)) {
                    self.ended = true;
                }
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                // The task ended without saying how (it panicked): say so once, never end silently.
                self.ended = true;
                Poll::Ready(Some(Err(ApiError::Interrupted(
                    "the reader task ended unexpectedly".to_owned(),
                ))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for RecordStream<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Records with an id, for de-duplication in skip paging.
pub(crate) trait Keyed {
    fn record_id(&self) -> &str;
}

impl Keyed for Machine {
    fn record_id(&self) -> &str {
        &self.id
    }
}

impl Keyed for Vulnerability {
    fn record_id(&self) -> &str {
        &self.id
    }
}

/// Decides per record whether it is delivered; undone when a page attempt fails.
pub(crate) trait PageFilter<T> {
    fn keep(&mut self, _record: &T) -> bool {
        true
    }
    fn rollback(&mut self) {}
    fn commit(&mut self) {}
}

/// Link paging delivers everything: the export has no stable id to dedupe on, and the store's
/// upserts make repeats harmless.
pub(crate) struct KeepAll;

impl<T> PageFilter<T> for KeepAll {}

/// Skip paging: drops ids already delivered and notices a page that repeats the previous one.
#[derive(Default)]
pub(crate) struct Dedupe {
    seen: HashSet<String>,
    page_new: Vec<String>,
    page_dropped: u64,
    page_hash: DefaultHasher,
    page_len: u64,
    last_page: Option<(u64, u64)>,
    pub dropped: u64,
    pub repeated: bool,
}

impl<T: Keyed> PageFilter<T> for Dedupe {
    fn keep(&mut self, record: &T) -> bool {
        let id = record.record_id();
        id.hash(&mut self.page_hash);
        self.page_len += 1;
        if self.seen.contains(id) {
            self.page_dropped += 1;
            false
        } else {
            self.seen.insert(id.to_owned());
            self.page_new.push(id.to_owned());
            true
        }
    }

    fn rollback(&mut self) {
        for id in self.page_new.drain(..) {
            self.seen.remove(&id);
        }
        self.page_dropped = 0;
        self.page_hash = DefaultHasher::new();
        self.page_len = 0;
    }

    fn commit(&mut self) {
        let fingerprint = (self.page_hash.finish(), self.page_len);
        self.repeated = self.page_len > 0 && self.last_page == Some(fingerprint);
        self.last_page = Some(fingerprint);
        self.dropped += self.page_dropped;
        self.page_new.clear();
        self.page_dropped = 0;
        self.page_hash = DefaultHasher::new();
        self.page_len = 0;
    }
}

/// What one page held.
#[derive(Debug, Default)]
pub(crate) struct PageOutcome {
    /// Items in the page's `value` array (before de-duplication).
    pub items: u64,
    /// Records delivered.
    pub kept: u64,
    pub odd: OddRecords,
    pub next_link: Option<String>,
    pub restarts: u32,
    /// Where the page's time went (for `debug` logs and profiles).
    pub timing: PageTiming,
}

/// Time one page (or export file) spent waiting for the network, decoding, and waiting for the
/// consumer to take its batches.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PageTiming {
    pub network: std::time::Duration,
    pub decoding: std::time::Duration,
    pub consumer: std::time::Duration,
}

impl PageTiming {
    pub(crate) fn ms(d: std::time::Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Why a streamed body stopped before its end.
pub(crate) enum ChunkFailure {
    /// No byte arrived within the read timeout.
    Stalled,
    /// The connection failed (reset, cut, TLS), described.
    Broken(String),
}

impl ChunkFailure {
    /// Why the attempt stopped, in words; `stalled` words a stall (it depends on what was read).
    pub(crate) fn reason(self, stalled: impl FnOnce() -> String) -> String {
        match self {
            ChunkFailure::Broken(reason) => reason,
            ChunkFailure::Stalled => stalled(),
        }
    }
}

/// The next chunk of a streamed body (`None` at its end), within the client's read timeout; the wait
/// counts as network time, the bytes in the metrics.
pub(crate) async fn next_chunk(
    core: &Core,
    resp: &mut Response,
    timing: &mut PageTiming,
) -> Result<Option<bytes::Bytes>, ChunkFailure> {
    let waited = Instant::now();
    let next = tokio::time::timeout(core.read_timeout, resp.chunk()).await;
    timing.network += waited.elapsed();
    match next {
        Ok(Ok(Some(chunk))) => {
            core.metrics.bytes(chunk.len());
            Ok(Some(chunk))
        }
        Ok(Ok(None)) => Ok(None),
        Ok(Err(e)) => Err(ChunkFailure::Broken(describe(&e))),
        Err(_) => Err(ChunkFailure::Stalled),
    }
}

/// The consumer dropped its end of the channel: a batch could not be handed over.
pub(crate) struct ConsumerGone;

/// The error a read ends with when its consumer stopped reading.
pub(crate) fn consumer_gone() -> ApiError {
    ApiError::Interrupted("the consumer stopped reading".to_owned())
}

/// Records on their way to the consumer, in batches of `size`: the batch being filled, and how
/// many of the attempt's records were handed over already.
pub(crate) struct Batches<'a, T> {
    tx: &'a EventTx<T>,
    page: u32,
    size: usize,
    pub batch: Vec<T>,
    pub delivered: u64,
}

impl<'a, T> Batches<'a, T> {
    pub(crate) fn new(tx: &'a EventTx<T>, page: u32, size: usize) -> Self {
        let size = size.max(1);
        Self {
            tx,
            page,
            size,
            batch: tx.buffer(size),
            delivered: 0,
        }
    }

    /// Hands over every whole batch (a partial one stays for later); the wait counts as consumer
    /// time.
    pub(crate) async fn send_full(&mut self, timing: &mut PageTiming) -> Result<(), ConsumerGone> {
        let waiting = Instant::now();
        while self.batch.len() >= self.size {
            // The next batch starts in a buffer with room for a batch and a chunk's records past
            // it (a chunk is read whole before batches are sent), so that filling it does not
            // copy it into a larger one; `split_off` left it the size of the records past the
            // cut.
            let room = self.size.saturating_mul(2);
            let mut full = std::mem::replace(&mut self.batch, self.tx.buffer(room));
            self.batch.extend(full.drain(self.size..));
            self.send(full).await?;
        }
        timing.consumer += waiting.elapsed();
        Ok(())
    }

    /// Hands over what is left at the end of the page or file, if anything.
    pub(crate) async fn send_rest(&mut self) -> Result<(), ConsumerGone> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let rest = std::mem::take(&mut self.batch);
        self.send(rest).await
    }

    async fn send(&mut self, records: Vec<T>) -> Result<(), ConsumerGone> {
        self.delivered += records.len() as u64;
        self.tx
            .send(Ok(ReadEvent::Records {
                page: self.page,
                records,
            }))
            .await
            .map_err(|_| ConsumerGone)
    }
}

/// After an attempt failed part-way: when it had delivered records, tells the consumer they come
/// again ([`ReadEvent::Restart`]); then waits out the backoff, or fails once the budget is spent.
pub(crate) async fn restart_or_fail<T>(
    tx: &EventTx<T>,
    page: u32,
    core: &Core,
    family: ApiFamily,
    budget: &mut Budget<'_>,
    reason: String,
    delivered: u64,
) -> Result<(), ApiError> {
    if delivered > 0 {
        budget.restarts += 1;
        core.metrics.restart();
        tx.send(Ok(ReadEvent::Restart {
            page,
            reason: reason.clone(),
        }))
        .await
        .map_err(|_| consumer_gone())?;
    }
    core.backoff_or_fail(family, budget, None, reason).await
}

/// How a page attempt failed.
enum PageFailure {
    /// Worth reading the page again; `delivered` records of this attempt reached the consumer.
    Transient { reason: String, delivered: u64 },
    /// The body arrived whole but is not valid JSON: reading it again gets the same bytes, so the
    /// read stops at once (a network fault looks different: a cut or stalled body).
    Malformed(ApiError),
    /// The consumer is gone.
    Closed,
}

impl From<ConsumerGone> for PageFailure {
    fn from(_: ConsumerGone) -> Self {
        PageFailure::Closed
    }
}

/// Reads one page completely: sends it, streams its body through the decoder, delivers its records
/// in batches, and reads it again from the start after a failure part-way (within the retry budget).
pub(crate) async fn read_page<T, F>(
    core: &Core,
    plan: &ReadPlan,
    url: &Url,
    page: u32,
    filter: &mut F,
    tx: &EventTx<T>,
) -> Result<PageOutcome, ApiError>
where
    T: DeserializeOwned + Send + 'static,
    F: PageFilter<T>,
{
    let family = plan.family;
    let mut budget = Budget::new(&core.retry);
    loop {
        let resp = core.send(family, url, &mut budget).await?;
        let status = resp.status().as_u16();
        match stream_page(core, resp, plan, page, filter, tx).await {
            Ok(mut outcome) => {
                filter.commit();
                outcome.restarts = budget.restarts;
                tracing::debug!(
                    family = %family,
                    page,
                    status,
                    attempt = budget.attempts,
                    items = outcome.items,
                    records = outcome.kept,
                    network_ms = PageTiming::ms(outcome.timing.network),
                    decoding_ms = PageTiming::ms(outcome.timing.decoding),
                    consumer_ms = PageTiming::ms(outcome.timing.consumer),
                    "page fetched"
                );
                tx.send(Ok(ReadEvent::PageDone {
                    page,
                    records: outcome.kept,
                }))
                .await
                .map_err(|_| consumer_gone())?;
                return Ok(outcome);
            }
            Err(PageFailure::Closed) => return Err(consumer_gone()),
            Err(PageFailure::Malformed(e)) => {
                tracing::warn!(family = %family, page, error = %e, "page is not valid JSON; not retried");
                return Err(e);
            }
            Err(PageFailure::Transient { reason, delivered }) => {
                filter.rollback();
                restart_or_fail(tx, page, core, family, &mut budget, reason, delivered).await?;
            }
        }
    }
}

async fn stream_page<T, F>(
    core: &Core,
    mut resp: Response,
    plan: &ReadPlan,
    page: u32,
    filter: &mut F,
    tx: &EventTx<T>,
) -> Result<PageOutcome, PageFailure>
where
    T: DeserializeOwned + Send + 'static,
    F: PageFilter<T>,
{
    let mut out = Batches::new(tx, page, plan.batch_size);
    let mut decoder = EnvelopeDecoder::new(plan.max_record_bytes);
    let mut outcome = PageOutcome::default();
    let mut timing = PageTiming::default();
    // The body's first byte that is not whitespace or a byte order mark.
    let mut first_byte: Option<u8> = None;
    loop {
        let chunk = match next_chunk(core, &mut resp, &mut timing).await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(failure) => {
                let reason = failure
                    .reason(|| format!("the page stalled for {} s", core.read_timeout.as_secs()));
                return Err(PageFailure::Transient {
                    reason,
                    delivered: out.delivered,
                });
            }
        };
        let decoding = Instant::now();
        let chunk_start = decoder.consumed();
        let fed = decoder.feed(
            &chunk,
            &mut PageItems {
                batch: &mut out.batch,
                filter: &mut *filter,
                odd: &mut outcome.odd,
            },
        );
        timing.decoding += decoding.elapsed();
        if first_byte.is_none() {
            first_byte = chunk
                .iter()
                .copied()
                .find(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF);
        }
        if let Err(e) = fed {
            // A page that does not even start as JSON (a proxy's or gateway's HTML page) is the
            // network's doing, worth another try; JSON that breaks inside is Microsoft's answer.
            if first_byte != Some(b'{') {
                return Err(PageFailure::Transient {
                    reason: e.to_string(),
                    delivered: out.delivered,
                });
            }
            return Err(malformed(plan.family, e, &chunk, chunk_start));
        }
        out.send_full(&mut timing).await?;
    }
    // The body ended before the envelope did (a cut connection), or it is a JSON object without
    // a `value` array (an error envelope sent with 200): both worth another try.
    let tail = decoder.finish().map_err(|e| PageFailure::Transient {
        reason: e.to_string(),
        delivered: out.delivered,
    })?;
    out.send_rest().await?;
    outcome.items = tail.items;
    outcome.kept = out.delivered;
    outcome.next_link = tail.next_link;
    outcome.timing = timing;
    Ok(outcome)
}

/// A page's items into records, for [`EnvelopeDecoder::feed`].
struct PageItems<'a, T, F> {
    batch: &'a mut Vec<T>,
    filter: &'a mut F,
    odd: &'a mut OddRecords,
}

impl<T: DeserializeOwned, F: PageFilter<T>> PageItems<'_, T, F> {
    fn take(&mut self, record: T) {
        if self.filter.keep(&record) {
            self.batch.push(record);
        }
    }
}

impl<T: DeserializeOwned, F: PageFilter<T>> Items for PageItems<'_, T, F> {
    /// Reads a record straight from the chunk. Anything but a record read whole (the chunk cuts
    /// it, our type refuses it, it is not JSON) is left to `item`, which decides as it always did.
    fn read_prefix(&mut self, text: &str) -> Option<usize> {
        let mut records = serde_json::Deserializer::from_str(text).into_iter::<T>();
        let record = records.next()?.ok()?;
        let read = records.byte_offset();
        self.take(record);
        Some(read)
    }

    fn item(&mut self, raw: &[u8]) -> Result<(), DecodeError> {
        match decode_record::<T>(raw) {
            Ok(record) => {
                self.take(record);
                Ok(())
            }
            // Valid JSON our types refuse: skip it, count it and keep its id.
            Err(e) if e.classify() == Category::Data => {
                self.odd.note(raw, &e);
                Ok(())
            }
            // Not JSON inside an item: the offset is the item's, the detail serde's.
            Err(e) => Err(DecodeError::Syntax {
                at: 0,
                detail: e.to_string(),
            }),
        }
    }
}

/// A body that is not a collection envelope, as an error that names the byte offset and shows a
/// short sample of the text there (page bodies hold data, never a secret; the sample is bounded
/// and printable).
fn malformed(family: ApiFamily, e: DecodeError, chunk: &[u8], chunk_start: u64) -> PageFailure {
    let offset = match &e {
        DecodeError::Syntax { at, .. } | DecodeError::ItemTooLarge { at, .. } => *at,
        DecodeError::Truncated { at } => *at,
        DecodeError::NoValueArray => 0,
    };
    // The item-level errors carry no offset of their own: show the chunk's start then.
    let at_in_chunk = usize::try_from(offset.saturating_sub(chunk_start)).unwrap_or(0);
    let from = at_in_chunk.saturating_sub(40).min(chunk.len());
    let to = at_in_chunk.saturating_add(40).min(chunk.len());
    PageFailure::Malformed(ApiError::MalformedBody {
        family,
        offset,
        detail: e.to_string().chars().take(200).collect(),
        sample: snippet(&chunk[from..to], 80),
    })
}

/// Consecutive empty pages that still link onwards before a read gives up (as incomplete).
pub(crate) const MAX_EMPTY_PAGES: u32 = 5;

/// Settings of one read.
#[derive(Debug, Clone)]
pub(crate) struct ReadPlan {
    pub family: ApiFamily,
    pub max_pages: u32,
    pub batch_size: usize,
    pub max_record_bytes: usize,
}

/// Skip paging (see the module docs). `base` is the collection URL without a query; `odata_filter`
/// a `$filter` expression sent with every page.
pub(crate) async fn read_skip_pages<T>(
    core: Arc<Core>,
    plan: ReadPlan,
    base: Url,
    page_size: u32,
    odata_filter: Option<String>,
    tx: EventTx<T>,
) -> Result<ReadReport, ApiError>
where
    T: DeserializeOwned + Keyed + Send + 'static,
{
    let mut filter = Dedupe::default();
    let mut report = ReadReport::new(plan.family);
    let mut end = ReadEnd::MaxPages {
        pages: plan.max_pages,
    };
    for page in 0..plan.max_pages {
        let mut url = base.clone();
        // Plain digits: `$skip` must never be formatted as 1e+05 or with separators.
        let skip = u64::from(page) * u64::from(page_size);
        // `$` stays literal, as Microsoft's own samples write it.
        let paging = format!("$top={page_size}&$skip={skip}");
        match odata_filter.as_deref() {
            Some(f) => {
                let f: String = url::form_urlencoded::byte_serialize(f.as_bytes()).collect();
                url.set_query(Some(&format!("$filter={f}&{paging}")));
            }
            None => url.set_query(Some(&paging)),
        }
        let outcome = match read_page(&core, &plan, &url, page, &mut filter, &tx).await {
            Ok(o) => o,
            // Microsoft documents 404 Not Found for `GET /api/machines` when the tenant has no
            // recently seen machines (get-machines, "Response"): a first page that is not there is
            // an empty set, not a failure. (404 was already retried once, for the intermittent
            // 404s of MicrosoftDocs#13047.)
            Err(ApiError::Refused(api))
                if page == 0 && api.status == 404 && plan.family == ApiFamily::Machines =>
            {
                tracing::info!(family = %plan.family, code = ?api.code, "no devices: the first page answered 404 Not Found");
                end = ReadEnd::NothingThere;
                break;
            }
            Err(e) => return Err(e),
        };
        report.add(&outcome);
        if filter.repeated {
            end = ReadEnd::RepeatedPage { page };
            break;
        }
        if outcome.items < u64::from(page_size) {
            end = ReadEnd::ShortPage {
                page,
                items: outcome.items,
            };
            break;
        }
    }
    let report = report.finish(end, filter.dropped);
    tracing::info!(family = %report.family, pages = report.pages, records = report.records, complete = report.complete, reason = %report.reason, "read finished");
    Ok(report)
}

/// Link paging (see the module docs). `first` is the first page's full URL.
pub(crate) async fn read_linked_pages<T>(
    core: Arc<Core>,
    plan: ReadPlan,
    first: Url,
    tx: EventTx<T>,
) -> Result<ReadReport, ApiError>
where
    T: DeserializeOwned + Send + 'static,
{
    let mut report = ReadReport::new(plan.family);
    let mut visited: HashSet<String> = HashSet::new();
    visited.insert(first.as_str().to_owned());
    let mut url = first;
    let mut end = ReadEnd::MaxPages {
        pages: plan.max_pages,
    };
    let mut empty_run = 0u32;
    for page in 0..plan.max_pages {
        let outcome = read_page(&core, &plan, &url, page, &mut KeepAll, &tx).await?;
        report.add(&outcome);
        // ARM's guideline is "omit or null", but an empty string has been seen: also the end.
        let Some(link) = outcome.next_link.filter(|l| !l.trim().is_empty()) else {
            end = ReadEnd::NoNextLink { page };
            break;
        };
        empty_run = if outcome.items == 0 { empty_run + 1 } else { 0 };
        if empty_run >= MAX_EMPTY_PAGES {
            end = ReadEnd::EmptyPages {
                page,
                pages: empty_run,
            };
            break;
        }
        // ARM links must be absolute (a `"_dynamic"` link has been seen in a real answer).
        let next = if matches!(plan.family, ApiFamily::Arm | ApiFamily::ResourceGraph) {
            Url::parse(&link)
        } else {
            url.join(&link)
        }
        .map_err(|e| ApiError::UnexpectedBody {
            family: plan.family,
            detail: format!("the next-page link is not an absolute URL ({e})"),
        })?;
        if !core.allowed.allows(&next) {
            tracing::warn!(family = %plan.family, page, host = %next.origin().ascii_serialization(), "next-page link to a foreign host refused");
            return Err(ApiError::UntrustedNextLink {
                family: plan.family,
                host: next.origin().ascii_serialization(),
            });
        }
        if !visited.insert(next.as_str().to_owned()) {
            end = ReadEnd::RepeatedNextLink { page };
            break;
        }
        url = next;
    }
    let report = report.finish(end, 0);
    tracing::info!(family = %report.family, pages = report.pages, records = report.records, complete = report.complete, reason = %report.reason, "read finished");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer the consumer gives back is the one the reader fills next, emptied: later records
    /// land in memory that is already mapped, and none of the earlier ones comes again.
    #[tokio::test]
    async fn buffers_given_back_are_filled_again_empty() {
        use futures::StreamExt as _;
        let (go_on, mut wait) = mpsc::channel::<()>(1);
        let mut stream = RecordStream::spawn(1, move |tx: EventTx<u32>| async move {
            // The first buffer has room for 1,000 records; a new one for the second would have
            // room for 3 (what it asks for), the first one given back has room for 1,000.
            for (first, room) in [(0u32, 1_000), (10, 3)] {
                let mut records = tx.buffer(room);
                records.extend(first..first + 3);
                let _ = tx.send(Ok(ReadEvent::Records { page: 0, records })).await;
                // The next buffer is taken only once the consumer has given this one back.
                let _ = wait.recv().await;
            }
            Ok(ReadReport::new(ApiFamily::JsonExport))
        });
        let mut seen = Vec::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(ReadEvent::Records { records, .. }) => {
                    seen.push((records.capacity(), records.clone()));
                    stream.give_back(records);
                    let _ = go_on.send(()).await;
                }
                Ok(ReadEvent::Finished(_)) => break,
                other => panic!("unexpected event: {:?}", other.map(|_| ())),
            }
        }
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].1, [0, 1, 2]);
        assert_eq!(seen[1].1, [10, 11, 12]);
        assert!(
            seen[1].0 >= 1_000,
            "the second batch was not read into the first's buffer"
        );
    }

    struct Id(&'static str);
    impl Keyed for Id {
        fn record_id(&self) -> &str {
            self.0
        }
    }

    #[test]
    fn dedupe_drops_repeats_and_forgets_a_failed_attempt() {
        let mut d = Dedupe::default();
        assert!(d.keep(&Id("a")) && d.keep(&Id("b")));
        PageFilter::<Id>::commit(&mut d);
        assert!(!d.repeated);
        // A failed attempt of page 2 saw "c"; after rollback "c" is new again.
        assert!(d.keep(&Id("c")));
        PageFilter::<Id>::rollback(&mut d);
        assert!(!d.keep(&Id("b")) && d.keep(&Id("c")));
        PageFilter::<Id>::commit(&mut d);
        assert_eq!(d.dropped, 1);
        assert!(!d.repeated);
        // The same ids in the same order again: a repeated page.
        assert!(!d.keep(&Id("b")) && !d.keep(&Id("c")));
        PageFilter::<Id>::commit(&mut d);
        assert!(d.repeated);
    }

    #[test]
    fn reports_are_complete_only_at_a_natural_end_with_every_record_read() {
        let mut r = ReadReport::new(ApiFamily::Machines);
        r.add(&PageOutcome {
            items: 3,
            kept: 3,
            ..Default::default()
        });
        let done = r
            .clone()
            .finish(ReadEnd::ShortPage { page: 0, items: 3 }, 0);
        assert!(done.complete);
        assert!(!r.clone().finish(ReadEnd::MaxPages { pages: 1 }, 0).complete);
        assert!(
            !r.clone()
                .finish(ReadEnd::RepeatedPage { page: 1 }, 0)
                .complete
        );
        r.add(&PageOutcome {
            odd: OddRecords {
                count: 2,
                first_error: Some("bad".into()),
                ids: vec!["x".into()],
            },
            ..Default::default()
        });
        let partial = r.finish(ReadEnd::NoNextLink { page: 1 }, 0);
        assert!(!partial.complete);
        assert_eq!(
            partial.reason,
            ReadEnd::UnreadableRecords {
                count: 2,
                first_error: "bad".into()
            }
        );
        assert!(
            partial
                .reason
                .to_string()
                .contains("2 records could not be read")
        );
        assert_eq!(partial.unreadable_ids, vec!["x".to_owned()]);
    }

    #[test]
    fn a_few_odd_records_are_tolerated_many_are_not() {
        // One odd record never sinks a read that also read something.
        assert!(odd_records_tolerated(0, 0));
        assert!(odd_records_tolerated(1, 2));
        assert!(!odd_records_tolerated(1, 0), "nothing but odd records");
        // Up to 1 % of the records.
        assert!(odd_records_tolerated(10, 990));
        assert!(!odd_records_tolerated(11, 989));
        // Never more than ODD_RECORDS_MAX, however large the read.
        assert!(odd_records_tolerated(ODD_RECORDS_MAX, 10_000_000));
        assert!(!odd_records_tolerated(ODD_RECORDS_MAX + 1, 10_000_000));
    }

    #[test]
    fn odd_record_ids_come_from_id_or_pascal_id() {
        let mut odd = OddRecords::default();
        let e = serde_json::from_str::<u8>("\"x\"").unwrap_err();
        odd.note(br#"{"id":"a1","x":1}"#, &e);
        odd.note(br#"{"Id":"b2"}"#, &e);
        odd.note(br#"{"id":7}"#, &e);
        odd.note(br#"{"no":"id"}"#, &e);
        odd.note(b"[1,2]", &e);
        assert_eq!(odd.count, 5);
        assert_eq!(odd.ids, vec!["a1", "b2", "7"]);
    }
}
