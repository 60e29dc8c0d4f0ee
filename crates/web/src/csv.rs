//! CSV downloads of a listing's current filter, streamed page by page from the store: a download
//! of millions of findings never holds more than one page in memory.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use rampart_model::CveId;
use rampart_model::export::{AssetRecord, CsvRecord, FindingRecord, VulnerabilityRecord, csv_line};
use rampart_store::export::{asset_record, finding_record, vulnerability_record};
use rampart_store::{
    AssetFilter, FindingFilter, Store, Visibility, VulnerabilityFilter, kev_index,
};

const PAGE: u32 = 1000;

fn header_line(h: &[&str]) -> String {
    csv_line(&h.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
}

fn respond(
    filename: &'static str,
    header_row: String,
    rows: impl Stream<Item = Result<String, std::io::Error>> + Send + 'static,
) -> Response {
    let body =
        futures::StreamExt::chain(futures::stream::once(async move { Ok(header_row) }), rows);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static(filename),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Pages of `fetch(after)`, each turned into CSV text.
fn pages<C, F, Fut>(fetch: F) -> impl Stream<Item = Result<String, std::io::Error>> + Send
where
    C: Send + 'static,
    F: Fn(Option<C>) -> Fut + Send + 'static,
    Fut:
        std::future::Future<Output = Result<(String, Option<C>), rampart_store::StoreError>> + Send,
{
    // State: Some(cursor) while pages remain.
    futures::stream::unfold((fetch, Some(None)), |(fetch, state)| async move {
        let after = state?;
        match fetch(after).await {
            Ok((text, next)) => Some((Ok(text), (fetch, next.map(Some)))),
            Err(e) => {
                tracing::error!(message = "CSV download failed.", error = %e);
                Some((
                    Err(std::io::Error::other("the download failed")),
                    (fetch, None),
                ))
            }
        }
    })
}

pub fn assets(store: Arc<dyn Store>, vis: Visibility, filter: AssetFilter) -> Response {
    let rows = pages(move |after: Option<i64>| {
        let (store, vis, filter) = (store.clone(), vis.clone(), filter.clone());
        async move {
            let page = store.assets_page(&vis, &filter, after, PAGE).await?;
            let text = page
                .items
                .iter()
                .map(|a| csv_line(&asset_record(a).cells()))
                .collect();
            Ok((text, page.next))
        }
    });
    respond(
        "attachment; filename=\"assets.csv\"",
        header_line(AssetRecord::HEADER),
        rows,
    )
}

pub fn findings(store: Arc<dyn Store>, vis: Visibility, filter: FindingFilter) -> Response {
    let rows = pages(move |after: Option<i64>| {
        let (store, vis, filter) = (store.clone(), vis.clone(), filter.clone());
        async move {
            let page = store.findings_page(&vis, &filter, after, PAGE).await?;
            let text = page
                .items
                .iter()
                .map(|f| csv_line(&finding_record(f).cells()))
                .collect();
            Ok((text, page.next))
        }
    });
    respond(
        "attachment; filename=\"findings.csv\"",
        header_line(FindingRecord::HEADER),
        rows,
    )
}

pub fn vulnerabilities(
    store: Arc<dyn Store>,
    vis: Visibility,
    filter: VulnerabilityFilter,
) -> Response {
    let rows = pages(move |after: Option<CveId>| {
        let (store, vis, filter) = (store.clone(), vis.clone(), filter.clone());
        async move {
            let page = store
                .vulnerabilities_page(&vis, &filter, after, PAGE)
                .await?;
            let kev = kev_index(
                store.as_ref(),
                page.items.iter().map(|v| &v.vulnerability.cve_id),
            )
            .await?;
            let text = page
                .items
                .iter()
                .map(|v| {
                    csv_line(&vulnerability_record(v, kev.get(&v.vulnerability.cve_id)).cells())
                })
                .collect();
            Ok((text, page.next))
        }
    });
    respond(
        "attachment; filename=\"vulnerabilities.csv\"",
        header_line(VulnerabilityRecord::HEADER),
        rows,
    )
}
