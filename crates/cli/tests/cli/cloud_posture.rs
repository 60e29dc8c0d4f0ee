//! Posture exports (need the store's posture side, being merged from `cloud-store`).

use crate::Env;

pub fn assert_posture_exports(_env: &Env) {
    // WORK IN PROGRESS: filled in with the cloud-store merge.
}
