//! Crash points: places in apply where a test may kill the process with
//! SIGKILL, to prove that a crash at any of them leaves the old or the new
//! state. Compiled in only with the `crash-points` feature (test builds);
//! then `OWUI_CRASH_AT=N` kills the process at the N-th point it reaches.

#[cfg(feature = "crash-points")]
mod enabled {
    use std::sync::atomic::{AtomicU64, Ordering};

    static REACHED: AtomicU64 = AtomicU64::new(0);

    pub fn point(name: &str) {
        let n = REACHED.fetch_add(1, Ordering::SeqCst) + 1;
        let target = std::env::var("OWUI_CRASH_AT")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        if target == Some(n) {
            eprintln!("crash point {n} ({name}): SIGKILL");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[cfg(feature = "crash-points")]
pub use enabled::point;

#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &str) {}
