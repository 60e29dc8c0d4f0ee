//! Reading and writing overlap: records stream from Microsoft (decoded on the client's task), are
//! converted and batched here, and a writer task upserts the batches. A bounded channel between the
//! two keeps memory flat: when the database is slower than the network, reading waits.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rampart_microsoft::{ApiError, ReadEvent, ReadReport, RecordStream};
use rampart_store::{StoreError, UpsertCounts};
use tokio::sync::mpsc;

use crate::progress::Progress;

/// What streaming one API into the store did.
#[derive(Debug)]
pub(crate) struct Piped<C = UpsertCounts> {
    /// The reader's account: pages, records, completeness.
    pub report: ReadReport,
    /// What the upserts did.
    pub counts: C,
    /// Records the conversion refused (e.g. export rows without a CVE).
    pub skipped: u64,
}

/// Why a pipe stopped early. Whatever was written before stays written: upserts are idempotent,
/// and nothing is concluded from a pipe that did not finish.
#[derive(Debug)]
pub(crate) enum PipeError {
    Read(ApiError),
    Write(StoreError),
}

impl From<ApiError> for PipeError {
    fn from(e: ApiError) -> Self {
        PipeError::Read(e)
    }
}

/// Time the pipe's own loop spent in each step.
#[derive(Debug, Default)]
struct Timings {
    reading: Duration,
    converting: Duration,
    waiting_for_writer: Duration,
}

/// Batches in flight between reader and writer. Two: one being written, one being filled.
const BATCHES_IN_FLIGHT: usize = 2;

/// How batches are cut and written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batching {
    /// Records per write.
    pub size: usize,
    /// Writes that may run at once ([`rampart_store::Store::concurrent_writes`]).
    pub writers: usize,
}

/// Streams `stream` through `convert` into `write`, `batching.size` records per write, up to
/// `batching.writers` writes at once. `write` returns its counts (`UpsertCounts`, or a sum of
/// several for writes to more than one table).
pub(crate) async fn pipe<T, U, C, W, Fut, N>(
    mut stream: RecordStream<T>,
    mut convert: C,
    batching: Batching,
    write: W,
    progress: &dyn Progress,
) -> Result<Piped<N>, PipeError>
where
    T: Send + 'static,
    U: Send + 'static,
    C: FnMut(T) -> Option<U>,
    W: Fn(Vec<U>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<N, StoreError>> + Send,
    N: Default + std::ops::AddAssign + Send + 'static,
{
    let batch_size = batching.size.max(1);
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Vec<U>>(BATCHES_IN_FLIGHT);
    let writers = batching.writers.max(1);
    let writer = tokio::spawn(async move {
        let mut total = N::default();
        let mut busy = Duration::ZERO;
        let mut writes = futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(move |batch| {
                let write = write(batch);
                async move {
                    let t = Instant::now();
                    let written = write.await;
                    (written, t.elapsed())
                }
            })
            .buffer_unordered(writers);
        while let Some((written, took)) = writes.next().await {
            total += written?;
            busy += took;
        }
        Ok::<_, StoreError>((total, busy))
    });
    let mut time = Timings::default();

    let mut buffer: Vec<U> = Vec::with_capacity(batch_size);
    // Refusals count per page until the page is done: a page (or export file) read again from
    // its start delivers its records again, and they must not be counted twice.
    let mut skipped = 0u64;
    let mut skipped_in: HashMap<u32, u64> = HashMap::new();
    let mut report = None;
    let mut read_error = None;
    let mut writer_gone = false;

    'read: loop {
        let t = Instant::now();
        let next = stream.next().await;
        time.reading += t.elapsed();
        let Some(event) = next else { break };
        match event {
            Err(e) => {
                read_error = Some(e);
                break;
            }
            Ok(ReadEvent::Records { page, records }) => {
                progress.advance(records.len() as u64);
                let mut refused = 0u64;
                let mut t = Instant::now();
                for record in records {
                    match convert(record) {
                        Some(u) => buffer.push(u),
                        None => refused += 1,
                    }
                    if buffer.len() >= batch_size {
                        let full = std::mem::replace(&mut buffer, Vec::with_capacity(batch_size));
                        time.converting += t.elapsed();
                        let w = Instant::now();
                        let sent = tx.send(full).await;
                        time.waiting_for_writer += w.elapsed();
                        t = Instant::now();
                        if sent.is_err() {
                            writer_gone = true;
                            break 'read;
                        }
                    }
                }
                time.converting += t.elapsed();
                if refused > 0 {
                    *skipped_in.entry(page).or_default() += refused;
                }
            }
            Ok(ReadEvent::Restart { page, reason }) => {
                // Records of this page are delivered again; the upserts make that harmless.
                skipped_in.remove(&page);
                progress.note(&format!("page {} is read again: {reason}", page + 1));
            }
            Ok(ReadEvent::PageDone { page, .. }) => {
                skipped += skipped_in.remove(&page).unwrap_or(0);
            }
            Ok(ReadEvent::Finished(r)) => report = Some(r),
        }
    }
    // Pages that never finished (the read failed) still had their refusals seen once.
    skipped += skipped_in.values().sum::<u64>();
    if !writer_gone && !buffer.is_empty() {
        let _ = tx.send(buffer).await;
    }
    drop(tx);
    // Let the writer finish what it was given, so everything read is stored, then report.
    let written = match writer.await {
        Ok(result) => result,
        Err(join) => Err(StoreError::InvalidInput(format!(
            "the database writer stopped unexpectedly: {join}"
        ))),
    };
    let (counts, writing) = written.map_err(PipeError::Write)?;
    // Where the time went, for profiles (`-v`): a reader-bound pipe waits in `reading` (network,
    // decompression, decoding), a writer-bound one in `waiting_for_writer`. With several writers,
    // `writer_busy` adds up their times.
    tracing::info!(
        message = "Pipeline timings.",
        total_ms = started.elapsed().as_millis() as u64,
        reading_ms = time.reading.as_millis() as u64,
        converting_ms = time.converting.as_millis() as u64,
        waiting_for_writer_ms = time.waiting_for_writer.as_millis() as u64,
        writer_busy_ms = writing.as_millis() as u64,
    );
    if let Some(e) = read_error {
        return Err(PipeError::Read(e));
    }
    let report = report.ok_or_else(|| {
        PipeError::Read(ApiError::Interrupted(
            "the reader ended without reporting how far it got".to_owned(),
        ))
    })?;
    Ok(Piped {
        report,
        counts,
        skipped,
    })
}
