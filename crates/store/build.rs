//! `sqlx::migrate!` reads `migrations/` while the crate compiles, but Cargo does not know it
//! did: without this, a new migration file is left out of the build until some source file of the
//! crate changes (what `sqlx migrate build-script` generates, see
//! <https://docs.rs/sqlx/latest/sqlx/macro.migrate.html>).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
