//! One page of a Defender for Endpoint list (`/api/machines`, `/api/vulnerabilities`,
//! `machinesVulnerabilities`): `$skip` and `$top` counted over the records that pass `$filter`,
//! and the nextLink that continues after the page.

use super::ctx::ListOptions;
use super::query::encode;

/// Where the next record that passes the filter falls.
pub(crate) enum Place {
    /// Before the page: skipped by `$skip`.
    Skipped,
    /// On the page: write it.
    Taken,
    /// After a full page: stop, more exist.
    Past,
}

/// Counts the records of one page as they stream past.
pub(crate) struct Window {
    skip: u64,
    limit: u64,
    skipped: u64,
    written: u64,
    more: bool,
}

impl Window {
    /// The page `options` ask for: after `$skip`, `$top` records or else the server's `page`.
    pub(crate) fn new(options: &ListOptions, page: u64) -> Window {
        Window {
            skip: options.skip,
            limit: options.top.unwrap_or(page),
            skipped: 0,
            written: 0,
            more: false,
        }
    }

    /// Still before the page: a record here is only counted, so it need not be built.
    pub(crate) fn skipping(&self) -> bool {
        self.skipped < self.skip
    }

    /// Places the next record that passes the filter (a taken one counts as written).
    pub(crate) fn place(&mut self) -> Place {
        if self.skipping() {
            self.skipped += 1;
            Place::Skipped
        } else if self.written == self.limit {
            self.more = true;
            Place::Past
        } else {
            self.written += 1;
            Place::Taken
        }
    }

    /// `,"@odata.nextLink":…` to the next page of `{base}/api/{path}` when more records exist,
    /// else nothing. Microsoft's quirk: with `$top` there is never a nextLink, even when more exist.
    pub(crate) fn next_link(
        &self,
        options: &ListOptions,
        base: &str,
        path: &str,
    ) -> Option<String> {
        if options.top.is_some() || !self.more {
            return None;
        }
        let skip = self.skip + self.written;
        Some(match &options.raw_filter {
            Some(f) => format!(
                r#","@odata.nextLink":"{base}/api/{path}?$filter={}&$skip={skip}""#,
                encode(f)
            ),
            None => format!(r#","@odata.nextLink":"{base}/api/{path}?$skip={skip}""#),
        })
    }
}
