//! Contract tests of the emulator against Microsoft's documented behaviour
//! (<https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-list>), over real HTTP.
//!
//! One test binary (one link on 2 cores); each module pins one part of that behaviour.

// Test code: a failed unwrap is a failed test with a backtrace, which is what we want.
#![allow(clippy::unwrap_used)]

mod arm;
mod arm_posture;
mod data;
mod delta;
mod entra;
mod exports;
mod faults;
mod helpers;
mod hostile;
mod limits;
mod machines;
mod perf;
mod vulns;
