//! The process's allocator: mimalloc, and the one setting Rampart changes in it.
//!
//! mimalloc instead of the system allocator: a sync allocates and frees millions of small strings
//! on several threads, where glibc's malloc spent a quarter of the CPU (see BENCHMARKS.md).

/// The global allocator of the `rampart` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (its `include/mimalloc.h`):
/// libmimalloc-sys binds no constant for it. The test below checks that this index is the option
/// that `MIMALLOC_PURGE_DELAY` sets.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory waits before mimalloc returns it to the OS, in milliseconds.
///
/// mimalloc v3 waits 1,000 ms (v2 waited 10). During a bulk sync, batches are freed on another
/// thread than the one that allocated them, and a second of them held back was 10-15 MiB more
/// peak RSS at the same speed (BENCHMARKS.md, "2026-12-07 (fourth)"). The cost of the short delay,
/// large buffers faulted in again batch after batch, is avoided where it mattered by reusing them
/// (rampart-sync's `pipeline::Batch`, rampart-microsoft's `RecordStream::give_back`); with them
/// reused, 1,000 ms was ~30 MiB more peak RSS and no faster ("2026-12-08 (twelfth)").
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Applies Rampart's allocator settings; call it first in `main`. An operator's
/// `MIMALLOC_PURGE_DELAY` still wins: mimalloc keeps an option its environment set.
pub(crate) fn tune() {
    // SAFETY: `mi_option_set_default` stores a number in mimalloc's option table (bounds-checked
    // by mimalloc itself); it takes no pointers and may be called at any time.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set_default(PURGE_DELAY, PURGE_DELAY_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What mimalloc holds for `PURGE_DELAY` now.
    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: reads a number from mimalloc's option table; no pointers.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_get(PURGE_DELAY)
        }
    }

    /// Run in a child process with `MIMALLOC_PURGE_DELAY=1234` by the test below; alone, it
    /// checks nothing.
    #[test]
    fn purge_delay_child() {
        if std::env::var_os("RAMPART_ALLOCATOR_CHILD").is_some() {
            assert_eq!(
                purge_delay(),
                1234,
                "index {PURGE_DELAY} is not purge_delay"
            );
            tune();
            assert_eq!(purge_delay(), 1234, "tune() overrode the environment");
        }
    }

    #[test]
    fn the_purge_delay_index_is_the_option_its_environment_variable_sets() {
        let exe = std::env::current_exe().expect("the test binary's path");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "allocator::tests::purge_delay_child",
                "--test-threads=1",
            ])
            .env("RAMPART_ALLOCATOR_CHILD", "1")
            .env("MIMALLOC_PURGE_DELAY", "1234")
            .output()
            .expect("the child test ran");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 passed"), "{stdout}");
    }

    #[test]
    fn tune_sets_the_delay_when_the_environment_does_not() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            tune();
            assert_eq!(purge_delay(), PURGE_DELAY_MS);
        }
    }
}
