//! Reading every file of one `SoftwareVulnerabilitiesExport` listing (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>): a few files
//! downloaded at a time, each decompressed and parsed line by line as it arrives
//! (`export_file`), all delivering into one [`RecordStream`](crate::RecordStream).
//!
//! - Events carry the file's index in the listing as their `page`: a file that fails part-way is
//!   read again from its start, announced by [`crate::paging::ReadEvent::Restart`] for that index only.
//! - A link that stops working (403 when the SAS signature expired, 404) is replaced by asking for a
//!   fresh listing — one call of the file-export budget (5/min, 20/h, through the client's buckets)
//!   for all the files that need it — and the file is read again. Files are matched between
//!   listings by their path (the SAS query differs). If the fresh listing is of another snapshot
//!   the read stops: files of two snapshots would not add up to one tenant.
//! - The read is complete when every listed file was read to its end with every line readable.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use url::Url;

use crate::error::{ApiError, EndpointError};
use crate::export_file::{parse_download_url, read_export_file};
use crate::family::ApiFamily;
use crate::http::Core;
use crate::paging::{EventTx, ReadEnd, ReadPlan, ReadReport};
use crate::wire::mde::ExportFilesResponse;

/// How the files of one export listing are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReadOptions {
    /// Files downloaded at the same time. Each download decompresses and parses on its own task;
    /// 2–4 keep the network busy without taking the database writer's CPU.
    pub concurrency: usize,
    /// `sasValidHours` (1..=6) asked for when links are fetched again.
    pub sas_valid_hours: u8,
    /// Fresh listings one read may ask for (each is one call of the 20-an-hour budget) before it
    /// gives up.
    pub max_refreshes: u32,
}

impl Default for FileReadOptions {
    fn default() -> Self {
        FileReadOptions {
            concurrency: 3,
            sas_valid_hours: 2,
            max_refreshes: 3,
        }
    }
}

/// The current download links, and how many times they were replaced.
struct Links {
    urls: Vec<Url>,
    generation: u32,
    generated_time: Option<String>,
}

/// What the files read so far add up to.
struct Tally {
    report: ReadReport,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            report: ReadReport::new(ApiFamily::FileExport),
        }
    }
}

impl Tally {
    fn add(&mut self, file: &ReadReport) {
        let r = &mut self.report;
        r.pages += 1;
        r.records += file.records;
        r.restarts += file.restarts;
        r.unreadable += file.unreadable;
        if r.first_unreadable.is_none() {
            r.first_unreadable.clone_from(&file.first_unreadable);
        }
        for id in &file.unreadable_ids {
            if r.unreadable_ids.len() < crate::paging::ODD_IDS_KEPT {
                r.unreadable_ids.push(id.clone());
            }
        }
    }

    fn report(self) -> ReadReport {
        let files = self.report.pages;
        self.report.finish(ReadEnd::AllFiles { files }, 0)
    }
}

/// The answer of `SoftwareVulnerabilitiesExport` at `url`: the download links of the latest
/// snapshot (a few hundred at most).
pub(crate) async fn list_export_files(
    core: &Core,
    url: &Url,
) -> Result<ExportFilesResponse, ApiError> {
    core.get_json(ApiFamily::FileExport, url, 16 * 1024 * 1024)
        .await
}

/// Reads every file of `listing` (see the module docs); `relist` fetches a fresh listing of the
/// same snapshot when links expire.
pub(crate) async fn read_export_set<T: DeserializeOwned + Send + 'static>(
    core: Arc<Core>,
    plan: ReadPlan,
    listing: ExportFilesResponse,
    relist: Url,
    options: FileReadOptions,
    tx: EventTx<T>,
) -> Result<ReadReport, ApiError> {
    let urls = listing
        .export_files
        .iter()
        .map(|u| parse_download_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    let mut links = Links {
        urls,
        generation: 0,
        generated_time: listing.generated_time,
    };
    let mut queue: VecDeque<usize> = (0..links.urls.len()).collect();
    let mut running: JoinSet<(usize, u32, Result<ReadReport, ApiError>)> = JoinSet::new();
    let mut tally = Tally::default();
    let mut refreshes = 0u32;
    let concurrency = options.concurrency.max(1);
    loop {
        while running.len() < concurrency
            && let Some(index) = queue.pop_front()
        {
            let (core, plan, tx) = (Arc::clone(&core), plan.clone(), tx.clone());
            let (url, generation) = (links.urls[index].clone(), links.generation);
            // The file's index tags its events; listings hold a few hundred files at most.
            let page = u32::try_from(index).unwrap_or(u32::MAX);
            running.spawn(async move {
                let result = read_export_file(core, plan, url, page, tx).await;
                (index, generation, result)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (index, generation, result) = joined.map_err(|e| {
            ApiError::Interrupted(format!("an export file reader stopped unexpectedly: {e}"))
        })?;
        match result {
            Ok(report) => tally.add(&report),
            // Another file already brought fresh links: just use them.
            Err(ApiError::Endpoint(EndpointError::ExportLinkStale { .. }))
                if generation < links.generation =>
            {
                queue.push_front(index);
            }
            Err(stale @ ApiError::Endpoint(EndpointError::ExportLinkStale { .. })) => {
                if refreshes >= options.max_refreshes {
                    return Err(stale);
                }
                refreshes += 1;
                tracing::warn!(
                    message = "Export file links refused; fetching fresh ones.",
                    reason = %stale,
                    refresh = refreshes
                );
                core.metrics.retry();
                refresh(&core, &relist, &mut links).await?;
                queue.push_front(index);
            }
            // Dropping the set aborts the other downloads: nothing more is needed from them.
            Err(e) => return Err(e),
        }
    }
    Ok(tally.report())
}

/// Replaces every link with the one of the same file in a fresh listing of the same snapshot.
async fn refresh(core: &Core, relist: &Url, links: &mut Links) -> Result<(), ApiError> {
    let fresh = list_export_files(core, relist).await?;
    if fresh.generated_time != links.generated_time {
        return Err(EndpointError::ExportFile(
            "Microsoft replaced the export snapshot while its files were being read (it does so about every 6 hours); files of two snapshots do not add up to one tenant, so this read concludes nothing. The next sync reads the new snapshot".to_owned(),
        )
        .into());
    }
    let mut by_path: HashMap<String, Url> = HashMap::with_capacity(fresh.export_files.len());
    for u in &fresh.export_files {
        let url = parse_download_url(u)?;
        by_path.insert(url.path().to_owned(), url);
    }
    let mut renewed = Vec::with_capacity(links.urls.len());
    for old in &links.urls {
        match by_path.remove(old.path()) {
            Some(url) => renewed.push(url),
            None => {
                return Err(EndpointError::ExportFile(
                    "a fresh listing of the same export snapshot no longer names one of its files; the next sync reads the export again".to_owned(),
                )
                .into());
            }
        }
    }
    links.urls = renewed;
    links.generation += 1;
    Ok(())
}
