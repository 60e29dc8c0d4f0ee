//! Reading and writing overlap: records stream from Microsoft (decoded on the client's task), are
//! converted and batched here, and a writer task upserts the batches. A bounded channel between the
//! two keeps memory flat: when the database is slower than the network, reading waits.

use std::collections::HashMap;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
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

/// A batch on its way to a pipe's writer. When the writer is done with it (drops it), its buffer,
/// emptied, goes back to the pipe and holds a later batch.
///
/// Why: a fresh buffer per batch is memory the allocator returns to the OS soon after it is freed
/// (mimalloc's purge delay, `crates/cli/src/allocator.rs`) and the next batch faults in again,
/// page by page. A first load at 20,000 devices took ~575,000 page faults, most of them in
/// buffers like this one (BENCHMARKS.md, "2026-12-08 (twelfth)").
pub(crate) struct Batch<U> {
    records: Vec<U>,
    spare: Spare<U>,
}

/// Emptied batch buffers, waiting to be filled again.
type Spare<U> = Arc<Mutex<Vec<Vec<U>>>>;

/// Buffers a pipe keeps for reuse: as many as can be in flight (the channel, the writes, the
/// batch being filled) never need more.
const SPARE_BATCHES: usize = 4;

impl<U> Deref for Batch<U> {
    type Target = Vec<U>;

    fn deref(&self) -> &Vec<U> {
        &self.records
    }
}

impl<U> DerefMut for Batch<U> {
    fn deref_mut(&mut self) -> &mut Vec<U> {
        &mut self.records
    }
}

impl<U> Drop for Batch<U> {
    fn drop(&mut self) {
        let mut records = std::mem::take(&mut self.records);
        records.clear();
        // A poisoned lock only means another batch's drop panicked: the buffer is freed instead.
        if let Ok(mut spare) = self.spare.lock()
            && spare.len() < SPARE_BATCHES
        {
            spare.push(records);
        }
    }
}

/// An empty buffer for the next batch: a spare one if there is one.
fn next_buffer<U>(spare: &Spare<U>, size: usize) -> Vec<U> {
    spare
        .lock()
        .ok()
        .and_then(|mut s| s.pop())
        .unwrap_or_else(|| Vec::with_capacity(size))
}

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
    W: Fn(Batch<U>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<N, StoreError>> + Send,
    N: Default + std::ops::AddAssign + Send + 'static,
{
    let batch_size = batching.size.max(1);
    let started = Instant::now();
    let spare: Spare<U> = Arc::new(Mutex::new(Vec::with_capacity(SPARE_BATCHES)));
    let (tx, mut rx) = mpsc::channel::<Batch<U>>(BATCHES_IN_FLIGHT);
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

    let mut buffer: Vec<U> = next_buffer(&spare, batch_size);
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
                let mut records = records;
                for record in records.drain(..) {
                    match convert(record) {
                        Some(u) => buffer.push(u),
                        None => refused += 1,
                    }
                    if buffer.len() >= batch_size {
                        let full = Batch {
                            records: std::mem::replace(
                                &mut buffer,
                                next_buffer(&spare, batch_size),
                            ),
                            spare: Arc::clone(&spare),
                        };
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
                stream.give_back(records);
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
        let _ = tx
            .send(Batch {
                records: buffer,
                spare: Arc::clone(&spare),
            })
            .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch the writer is done with leaves its buffer, emptied, for the next batch.
    #[test]
    fn a_written_batch_leaves_its_buffer_for_the_next() {
        let spare: Spare<String> = Arc::default();
        // Room for 1,000: a new buffer for a batch of 10 would have room for 10.
        let mut records = next_buffer(&spare, 1_000);
        records.push("a".to_owned());
        drop(Batch {
            records,
            spare: Arc::clone(&spare),
        });
        let next = next_buffer(&spare, 10);
        assert!(next.is_empty() && next.capacity() >= 1_000);
        // With every spare taken, a new one.
        assert!(next_buffer(&spare, 10).capacity() < 1_000);
    }

    /// No more buffers are kept than can be in flight at once.
    #[test]
    fn spare_buffers_are_bounded() {
        let spare: Spare<u8> = Arc::default();
        for _ in 0..SPARE_BATCHES + 3 {
            drop(Batch {
                records: Vec::with_capacity(8),
                spare: Arc::clone(&spare),
            });
        }
        assert_eq!(spare.lock().map(|s| s.len()).unwrap_or(0), SPARE_BATCHES);
    }
}
