//! Pacing on the budget Azure reports in its answers (issue 11, item 8b), over real HTTP against
//! the emulator, whose Resource Graph and Resource Manager send the headers Microsoft documents and
//! refuse with 429 once the budget is spent. The client runs with the product's default limits:
//! its own buckets allow Microsoft's documented 15 queries per 5 s and 250 reads, so only reading
//! the headers keeps it from meeting the smaller budgets here (another tool signed in as the same
//! app has spent the rest, or Microsoft changed the quota: it says "subject to change").

use crate::emulator::arm_client;
use rampart_microsoft::{ArmClient, PagingOptions, RetryPolicy};
use rampart_sim::{Family, SimConfig};
use std::time::Duration;

async fn paced_client(
    config: SimConfig,
    paging: PagingOptions,
) -> (rampart_sim::RunningSim, ArmClient) {
    // The product's limits (default), short retry delays.
    arm_client(config, |cfg| {
        cfg.retry = RetryPolicy::with_base_delay(Duration::from_millis(5));
        cfg.paging = paging;
    })
    .await
}

fn tenant() -> SimConfig {
    SimConfig {
        devices: 60,
        findings_per_device: 5,
        rate_limits: true,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn a_spent_resource_graph_quota_is_waited_out_before_the_next_query() {
    // Two queries per one-second window; the vulnerability read needs several pages.
    let (sim, client) = paced_client(
        SimConfig {
            graph_quota: 2,
            graph_quota_window_secs: 1,
            ..tenant()
        },
        PagingOptions {
            graph_page_size: 5,
            ..PagingOptions::default()
        },
    )
    .await;
    let truth = sim.sim.truth();
    let ids: Vec<String> = truth
        .cloud_subscriptions()
        .into_iter()
        .map(|s| s.subscription_id)
        .collect();
    let (rows, report) = client.vulnerability_rows(&ids).collect_all().await.unwrap();
    assert!(report.complete, "{}", report.reason);
    // A row is one recommendation; Rampart expands its CVEs into findings.
    let findings: usize = rows
        .into_iter()
        .map(|r| r.into_findings().expect("a finding row").findings.len())
        .sum();
    assert_eq!(findings, truth.cloud_findings().len());
    let stats = sim.sim.stats();
    assert!(
        stats.calls(Family::ResourceGraph) >= 4,
        "the read must span several quota windows: {stats:?}"
    );
    assert_eq!(
        stats.throttled, 0,
        "a query was sent after Resource Graph said 0 remaining: {stats:?}"
    );
    assert_eq!(client.metrics().throttled, 0);
}

#[tokio::test]
async fn a_spent_arm_read_bucket_is_paced_at_the_documented_refill() {
    // A bucket of 3 reads, refilled at Microsoft's 25 per second; pages of 5 items.
    let (sim, client) = paced_client(
        SimConfig {
            arm_read_burst: 3,
            arm_read_refill: 25,
            arm_page_size: 5,
            ..tenant()
        },
        PagingOptions::default(),
    )
    .await;
    let sub = sim.sim.truth().cloud_subscriptions()[0]
        .subscription_id
        .clone();
    let (items, report) = client.assessments(&sub).collect_all().await.unwrap();
    assert!(report.complete, "{}", report.reason);
    assert!(!items.is_empty());
    let stats = sim.sim.stats();
    assert!(
        stats.calls(Family::Arm) > 6,
        "the read must need more reads than the bucket holds: {stats:?}"
    );
    assert_eq!(
        stats.throttled, 0,
        "a read was sent after Resource Manager said 0 remaining: {stats:?}"
    );
}
