//! The crate's one integration-test binary: the reference's example payloads against the wire types
//! (`examples`), the client against the emulator over real HTTP (`sim`), and against small canned
//! servers that misbehave in ways the emulator does not (`canned`).

mod canned;
mod cloud;
mod cloud_pacing;
mod emulator;
mod examples;
mod real_tenants;
mod sim;
