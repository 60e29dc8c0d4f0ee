//! Checks that need the store's posture side (being merged from the `cloud-store` branch).

use std::sync::Arc;

use rampart_store::Store;

/// The device and the VM are one machine to the store.
pub async fn assert_linked(_store: &Arc<dyn Store>, _device: i64, _vm: i64) {
    // WORK IN PROGRESS: `Store::linked_assets` arrives with the cloud-store merge.
}
