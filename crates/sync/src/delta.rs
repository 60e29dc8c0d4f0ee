//! Microsoft's delta API (`SoftwareVulnerabilityChangesByMachine`), applied so that the result equals
//! a full read.
//!
//! The API returns every change from the 6-hour bucket holding `sinceTime` to now, so consecutive
//! pulls overlap, and a device that moved between device groups appears twice at the same instant
//! (`Fixed` in the old group, `New` in the new one). Changes are therefore folded per finding and
//! instant, then applied in time order: replaying an overlap converges to the same state.

use rampart_model::RunId;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use rampart_microsoft::DeltaAssetVulnerability;
use rampart_microsoft::{ApiError, ReadEvent, ReadReport, RecordStream};
use rampart_microsoft::{ChangeStatus, FindingChange as WireChange, NotAFinding};
use rampart_model::{FindingKey, IntegrationId};
use rampart_store::{DeltaCounts, FindingChange, Store, StoreError};

use crate::progress::Progress;

pub(crate) struct ChangesRead {
    pub changes: Vec<FindingChange>,
    pub report: ReadReport,
    pub skipped: u64,
    pub newest_event: Option<DateTime<Utc>>,
}

/// Reads every change after `watermark` and folds them. The API answers from the start of the
/// 6-hour bucket holding `sinceTime`, so changes at or before the watermark (already in the store)
/// come again and are dropped here: replaying several buckets would flip findings that changed
/// back and forth (fixed, then reopened) and count churn that never happened since the last run.
/// Changes are few compared with a snapshot, so they are held in memory to be put in order.
pub(crate) async fn read_changes(
    mut stream: RecordStream<DeltaAssetVulnerability>,
    watermark: DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<ChangesRead, ApiError> {
    let mut raw: Vec<WireChange> = Vec::new();
    let mut report = None;
    let mut skipped = 0u64;
    while let Some(event) = stream.next().await {
        match event? {
            ReadEvent::Records { records, .. } => {
                progress.advance(records.len() as u64);
                for record in records {
                    match record.into_change() {
                        Ok(change) if change.event_time.is_some_and(|t| t <= watermark) => {}
                        Ok(change) => raw.push(change),
                        Err(NotAFinding::NoCve) => skipped += 1,
                        Err(e) => {
                            skipped += 1;
                            tracing::warn!(message = "Change record skipped.", reason = %e);
                        }
                    }
                }
            }
            ReadEvent::Restart { .. } | ReadEvent::PageDone { .. } => {}
            ReadEvent::Finished(r) => report = Some(r),
        }
    }
    let report = report.ok_or_else(|| {
        ApiError::Interrupted("the change reader ended without reporting how far it got".into())
    })?;
    let newest_event = raw.iter().filter_map(|c| c.event_time).max();
    // A page read twice delivers its changes twice: folding makes that harmless too.
    Ok(ChangesRead {
        changes: fold(raw),
        report,
        skipped,
        newest_event,
    })
}

/// Folds changes per (finding, instant) and orders them by time.
///
/// - `Fixed` + `New` (or `Updated`) at the same instant for the same finding is a device-group
///   move: the finding stays open → one `Updated`.
/// - Otherwise the last word at an instant wins (`New` over `Updated`).
/// - Records without an event time are ordered first (they carry no ordering information).
fn fold(raw: Vec<WireChange>) -> Vec<FindingChange> {
    #[derive(Default)]
    struct Slot {
        fixed: bool,
        present: Option<(bool, rampart_model::Finding)>, // (is_new, finding)
    }
    let mut slots: HashMap<(FindingKey, Option<DateTime<Utc>>), Slot> = HashMap::new();
    let mut order: Vec<(FindingKey, Option<DateTime<Utc>>)> = Vec::new();
    for change in raw {
        let slot_key = (change.finding.key.clone(), change.event_time);
        let slot = slots.entry(slot_key.clone()).or_insert_with(|| {
            order.push(slot_key);
            Slot::default()
        });
        match change.status {
            ChangeStatus::Fixed => slot.fixed = true,
            ChangeStatus::New => slot.present = Some((true, change.finding)),
            ChangeStatus::Updated => {
                let is_new = slot.present.as_ref().is_some_and(|(n, _)| *n);
                slot.present = Some((is_new, change.finding));
            }
            ChangeStatus::Other(status) => {
                tracing::warn!(message = "Change with an unknown status skipped.", %status);
            }
        }
    }
    let mut out: Vec<(Option<DateTime<Utc>>, FindingChange)> = Vec::with_capacity(order.len());
    for key in order {
        let Some(slot) = slots.remove(&key) else {
            continue;
        };
        let at = key.1;
        let change = match (slot.fixed, slot.present) {
            (_, Some((true, finding))) if !slot.fixed => FindingChange::New(finding),
            (true, Some((_, finding))) | (false, Some((false, finding))) => {
                FindingChange::Updated(finding)
            }
            (true, None) => FindingChange::Fixed {
                key: key.0,
                at: at.unwrap_or_else(Utc::now),
            },
            (false, None) => continue,
            // Unreachable by the guard above, kept total for the compiler.
            (false, Some((true, finding))) => FindingChange::New(finding),
        };
        out.push((at, change));
    }
    // Stable: changes at the same instant keep Microsoft's order.
    out.sort_by_key(|(at, _)| *at);
    out.into_iter().map(|(_, c)| c).collect()
}

/// Applies folded changes in order, in batches.
pub(crate) async fn apply(
    store: &Arc<dyn Store>,
    integration: IntegrationId,
    run_id: RunId,
    changes: &[FindingChange],
    batch: usize,
) -> Result<DeltaCounts, StoreError> {
    let mut total = DeltaCounts::default();
    for chunk in changes.chunks(batch.max(1)) {
        let c = store
            .apply_finding_changes(integration, run_id, chunk)
            .await?;
        total.upserted += c.upserted;
        total.fixed += c.fixed;
        total.ignored += c.ignored;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rampart_model::{CveId, Finding};

    fn finding(version: &str) -> Finding {
        Finding::of_key(FindingKey {
            asset_source_id: "a".repeat(40),
            software_vendor: "microsoft".into(),
            software_name: "edge".into(),
            software_version: version.into(),
            cve_id: "CVE-2025-0001".parse::<CveId>().unwrap(),
        })
    }

    fn at(h: u32) -> Option<DateTime<Utc>> {
        Utc.with_ymd_and_hms(2026, 11, 1, h, 0, 0).single()
    }

    fn change(version: &str, status: ChangeStatus, h: u32) -> WireChange {
        WireChange {
            finding: finding(version),
            status,
            event_time: at(h),
        }
    }

    #[test]
    fn a_device_group_move_is_one_update_not_a_fix_and_a_reopen() {
        let folded = fold(vec![
            change("1", ChangeStatus::Fixed, 6),
            change("1", ChangeStatus::New, 6),
        ]);
        assert_eq!(folded.len(), 1);
        assert!(matches!(folded[0], FindingChange::Updated(_)));
    }

    #[test]
    fn an_upgrade_fixes_the_old_version_and_opens_the_new_one_in_time_order() {
        let folded = fold(vec![
            change("2", ChangeStatus::New, 12),
            change("1", ChangeStatus::Fixed, 12),
            change("1", ChangeStatus::New, 6),
        ]);
        assert_eq!(folded.len(), 3);
        assert!(matches!(&folded[0], FindingChange::New(f) if f.key.software_version == "1"));
        assert!(matches!(&folded[1], FindingChange::New(f) if f.key.software_version == "2"));
        assert!(
            matches!(&folded[2], FindingChange::Fixed { key, .. } if key.software_version == "1")
        );
    }

    #[test]
    fn a_repeated_page_folds_away() {
        let folded = fold(vec![
            change("1", ChangeStatus::New, 6),
            change("1", ChangeStatus::New, 6),
        ]);
        assert_eq!(folded.len(), 1);
    }
}
