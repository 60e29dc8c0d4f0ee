//! Sync scenarios against the emulator over real HTTP, on a real SQLite file and a real PostgreSQL
//! database: the same scenario runs on both backends.

mod cloud;
mod cloud_store_checks;
mod harness;
mod intel;
mod scenarios;

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
use intel::*;
use scenarios::*;

on_both_backends!(
    kev_is_fetched_then_not_modified_then_grows_with_the_feed,
    a_bad_download_or_file_is_refused_and_the_catalogue_kept,
    a_cloud_sync_under_faults_holds_exactly_the_truth_and_a_rerun_changes_nothing,
    after_the_clock_moves_a_cloud_sync_records_exactly_the_changes,
    a_failed_cloud_run_concludes_nothing,
    no_azure_role_fails_the_run_and_the_test_with_the_rbac_steps,
    a_refused_subscription_makes_the_run_partial_and_only_it_unconcluded,
    arm_throttling_is_honoured_without_a_429_storm,
    the_cloud_connection_test_names_each_step,
    an_endpoint_device_and_a_cloud_vm_are_linked,
    a_full_sync_under_faults_holds_exactly_the_truth_and_a_rerun_changes_nothing,
    after_the_clock_moves_a_full_sync_records_exactly_the_changes,
    a_delta_sync_ends_where_a_full_sync_would,
    a_failed_read_concludes_nothing,
    a_missing_role_fails_the_run_and_names_the_role,
    the_connection_test_names_the_failing_step_and_never_the_secret,
    a_files_sync_holds_exactly_the_truth_and_equals_a_pages_sync,
    a_files_sync_converges_through_cut_downloads_and_expired_links,
    auto_reads_files_from_the_threshold_up_and_pages_below,
);
