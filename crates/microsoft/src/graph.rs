//! Azure Resource Graph paging (<https://learn.microsoft.com/en-us/azure/governance/resource-graph/concepts/work-with-data>): the same query is sent again with the
//! `$skipToken` of the previous answer until none comes; subscriptions go in groups (Microsoft
//! advises fewer than 300 per query). Pages are at most 1,000 rows and 16 MiB, so one page is read
//! whole, then handed on in batches like every other read, ending in a [`ReadReport`].
//!
//! An answer over 16 MiB is refused with 400 `BadRequest` whose `details` say
//! `ResponsePayloadTooLarge`: the same page is asked again with half the rows, down to one
//! (<https://learn.microsoft.com/en-us/azure/governance/resource-graph/concepts/work-with-data>).

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::error::{ApiError, Refusal};
use crate::family::ApiFamily;
use crate::http::Core;
use crate::paging::{EventTx, PageOutcome, ReadEnd, ReadEvent, ReadReport};
use crate::wire::arm::GraphPage;

/// Subscriptions per query (Microsoft: "fewer than 300").
pub(crate) const SUBSCRIPTIONS_PER_QUERY: usize = 250;

/// Largest answer accepted: Resource Graph refuses to send more than 16 MiB.
const MAX_PAGE_BYTES: usize = 32 * 1024 * 1024;

/// One Resource Graph read.
#[derive(Debug, Clone)]
pub(crate) struct GraphPlan {
    pub query: String,
    /// `$top`: rows per page (1–1000).
    pub top: u32,
    pub subscriptions: Vec<String>,
    pub max_pages: u32,
    pub batch_size: usize,
    /// Read the first page only (a connection test).
    pub first_page_only: bool,
}

#[derive(Serialize)]
struct GraphRequest<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    subscriptions: &'a [String],
    query: &'a str,
    options: GraphOptions<'a>,
}

#[derive(Serialize)]
struct GraphOptions<'a> {
    #[serde(rename = "$top")]
    top: u32,
    #[serde(rename = "$skipToken", skip_serializing_if = "Option::is_none")]
    skip_token: Option<&'a str>,
    /// Always explicit: the default changed between API versions (<https://learn.microsoft.com/en-us/azure/governance/resource-graph/concepts/work-with-data>).
    #[serde(rename = "resultFormat")]
    result_format: &'a str,
}

/// Resource Graph's refusal of an answer over 16 MiB.
fn too_large(e: &Refusal) -> bool {
    e.status == 400 && e.has_detail("ResponsePayloadTooLarge")
}

/// Reads every page of `plan` for every group of subscriptions, sending records to `tx`.
pub(crate) async fn read_graph_pages<T>(
    core: Arc<Core>,
    url: Url,
    plan: GraphPlan,
    tx: EventTx<T>,
) -> Result<ReadReport, ApiError>
where
    T: DeserializeOwned + Send + 'static,
{
    let family = ApiFamily::ResourceGraph;
    let closed = || ApiError::Interrupted("the consumer stopped reading".to_owned());
    let mut report = ReadReport::new(family);
    let mut page = 0u32;
    let mut end = ReadEnd::NoNextLink { page: 0 };
    // An empty list would query the whole tenant, which is what an empty plan means.
    let groups: Vec<&[String]> = if plan.subscriptions.is_empty() {
        vec![&[]]
    } else {
        plan.subscriptions.chunks(SUBSCRIPTIONS_PER_QUERY).collect()
    };
    let mut top = plan.top.max(1);
    'groups: for group in groups {
        let mut skip: Option<String> = None;
        let mut tokens: HashSet<String> = HashSet::new();
        let mut group_rows = 0u64;
        loop {
            if page >= plan.max_pages {
                end = ReadEnd::MaxPages {
                    pages: plan.max_pages,
                };
                break 'groups;
            }
            let body = serde_json::to_vec(&GraphRequest {
                subscriptions: group,
                query: &plan.query,
                options: GraphOptions {
                    top,
                    skip_token: skip.as_deref(),
                    result_format: "objectArray",
                },
            })
            .map_err(|e| ApiError::Client(e.to_string()))?;
            let answer: GraphPage<Value> = match core
                .call_json(family, &url, Some(&body), MAX_PAGE_BYTES)
                .await
            {
                Ok(a) => a,
                Err(ApiError::Refused(e)) if too_large(&e) && top > 1 => {
                    // Nothing of this page was handed on: ask for it again, smaller.
                    let smaller = (top / 2).max(1);
                    tracing::warn!(family = %family, page, top, smaller, "Resource Graph answer over 16 MiB; asking for fewer rows");
                    top = smaller;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut outcome = PageOutcome {
                items: answer.data.len() as u64,
                ..PageOutcome::default()
            };
            let mut batch = Vec::with_capacity(plan.batch_size.max(1));
            for row in answer.data {
                match T::deserialize(&row) {
                    Ok(r) => batch.push(r),
                    Err(e) => outcome.odd.note_value(&row, &e),
                }
                if batch.len() >= plan.batch_size.max(1) {
                    outcome.kept += batch.len() as u64;
                    let full = std::mem::take(&mut batch);
                    tx.send(Ok(ReadEvent::Records {
                        page,
                        records: full,
                    }))
                    .await
                    .map_err(|_| closed())?;
                }
            }
            if !batch.is_empty() {
                outcome.kept += batch.len() as u64;
                tx.send(Ok(ReadEvent::Records {
                    page,
                    records: batch,
                }))
                .await
                .map_err(|_| closed())?;
            }
            tx.send(Ok(ReadEvent::PageDone {
                page,
                records: outcome.kept,
            }))
            .await
            .map_err(|_| closed())?;
            group_rows += outcome.items;
            report.add(&outcome);
            let this = page;
            page += 1;
            if plan.first_page_only {
                end = ReadEnd::NoNextLink { page: this };
                break 'groups;
            }
            match answer.skip_token.filter(|t| !t.trim().is_empty()) {
                Some(t) if tokens.insert(t.clone()) => skip = Some(t),
                Some(_) => {
                    end = ReadEnd::RepeatedNextLink { page: this };
                    break 'groups;
                }
                None => {
                    let short = answer
                        .total_records
                        .is_some_and(|total| u64::try_from(total).unwrap_or(0) > group_rows);
                    if answer.result_truncated || short {
                        end = ReadEnd::Truncated { page: this };
                        break 'groups;
                    }
                    end = ReadEnd::NoNextLink { page: this };
                    break;
                }
            }
        }
    }
    let report = report.finish(end, 0);
    tracing::info!(family = %report.family, pages = report.pages, records = report.records, complete = report.complete, reason = %report.reason, "read finished");
    Ok(report)
}
