//! Sync scenarios against the emulator over real HTTP, on a real SQLite file and a real PostgreSQL
//! database: the same scenario runs on both backends.

mod cloud;
mod cloud_posture;
mod cloud_store_checks;
mod cloud_vuln;
mod harness;
mod integrations;
mod intel;
mod priority;
mod real_tenants;
mod scenarios;
mod webhooks;

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, store) = rampart_store::testing::sqlite_store().await;
                    crate::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = rampart_store::testing::postgres_store().await;
                    crate::$name(store).await;
                }
            )*
        }
    };
}

use cloud::*;
use cloud_posture::*;
use cloud_vuln::*;
use integrations::*;
use intel::*;
use priority::*;
use real_tenants::*;
use scenarios::*;
use webhooks::*;

on_both_backends!(
    every_open_finding_is_prioritised_and_fixed_ones_have_nothing_pending,
    a_resync_with_nothing_changed_leaves_every_priority_as_it_was,
    a_cve_entering_kev_escalates_its_findings_and_shows_them_changed,
    changed_sla_days_and_rules_reassess_the_findings,
    cloud_findings_take_exposure_and_risk_from_defender_for_clouds_risk,
    the_integration_use_cases_check_seal_test_and_audit_for_every_surface,
    kev_is_fetched_then_not_modified_then_grows_with_the_feed,
    a_bad_download_or_file_is_refused_and_the_catalogue_kept,
    a_cloud_sync_under_faults_holds_exactly_the_truth_and_a_rerun_changes_nothing,
    after_the_clock_moves_a_cloud_sync_records_exactly_the_changes,
    a_failed_cloud_run_concludes_nothing,
    no_azure_role_fails_the_run_and_the_test_with_the_rbac_steps,
    a_refused_subscription_makes_the_run_partial_and_only_it_unconcluded,
    arm_throttling_is_honoured_without_a_429_storm,
    the_cloud_connection_test_names_each_step,
    the_tenant_score_is_microsofts_over_subscriptions_of_different_maxima,
    a_control_without_a_score_keeps_its_subscription_whole,
    recommendations_carry_microsofts_risk,
    without_assessments_2025_05_04_recommendations_are_read_without_risk,
    the_cloud_connection_test_reports_each_step_it_ran,
    an_endpoint_device_and_a_cloud_vm_are_linked,
    cve_entries_with_only_their_id_are_completed_from_cvedetails,
    without_cvedetails_findings_keep_their_recommendations_severity,
    fixed_packages_close_their_findings_and_are_no_recommendations,
    aks_node_findings_arrive_with_microsofts_dates,
    legacy_sub_assessments_keep_v3_scores_dates_and_image_names,
    a_full_sync_under_faults_holds_exactly_the_truth_and_a_rerun_changes_nothing,
    after_the_clock_moves_a_full_sync_records_exactly_the_changes,
    a_delta_sync_ends_where_a_full_sync_would,
    a_failed_read_concludes_nothing,
    a_missing_role_fails_the_run_and_names_the_role,
    the_connection_test_names_the_failing_step_and_never_the_secret,
    a_files_sync_holds_exactly_the_truth_and_equals_a_pages_sync,
    a_files_sync_converges_through_cut_downloads_and_expired_links,
    auto_reads_files_from_the_threshold_up_and_pages_below,
    issue11_an_empty_tenant_tests_and_syncs_with_no_devices,
    issue11_devices_known_only_from_vulnerability_rows_do_not_trip_the_breaker,
    issue11_an_odd_record_is_named_in_the_run_and_the_run_concludes,
    issue11_a_delta_reads_the_catalogue_incrementally_and_keeps_microsofts_count,
    issue11_a_watermark_older_than_fourteen_days_rebaselines,
    issue11_a_tenant_with_devices_still_reads_one,
    a_run_that_would_mark_too_many_devices_missing_is_held_until_accepted,
    a_failed_sync_is_sent_signed_retried_after_a_500_and_never_with_a_secret,
    webhook_urls_are_checked_and_never_repeated,
    findings_becoming_immediate_are_one_event_per_run_and_alerted_once,
    sla_breaches_and_expiring_secrets_are_alerted_once,
);
