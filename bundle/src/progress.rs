//! Progress reporting for long work: a bar on a terminal, a plain line every
//! few seconds otherwise (logs, serial consoles), nothing when quiet.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub trait Progress: Sync {
    /// A new stage of `total` bytes begins.
    fn stage(&self, name: &str, total: u64);
    fn advance(&self, bytes: u64);
    fn finish(&self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn stage(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// Picks a bar on a terminal and plain lines on stderr otherwise.
pub fn for_stderr(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bar(ProgressBar::hidden()))
    } else {
        Box::new(Lines::default())
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn stage(&self, name: &str, total: u64) {
        self.0.finish();
        self.0.reset();
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_draw_target(ProgressDrawTarget::stderr());
        self.0.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        self.0.set_message(name.to_string());
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn finish(&self) {
        self.0.finish();
    }
}

#[derive(Default)]
struct Lines {
    state: Mutex<Option<(String, u64, Instant, Instant)>>,
    done: AtomicU64,
}

const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress for Lines {
    fn stage(&self, name: &str, total: u64) {
        let now = Instant::now();
        self.done.store(0, Ordering::Relaxed);
        eprintln!("{name}: {total} bytes");
        if let Ok(mut s) = self.state.lock() {
            *s = Some((name.to_string(), total, now, now));
        }
    }
    fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Ok(mut guard) = self.state.lock() {
            if let Some((name, total, _, last)) = guard.as_mut() {
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    eprintln!("{name}: {done}/{total} bytes");
                }
            }
        }
    }
    fn finish(&self) {
        if let Ok(mut guard) = self.state.lock() {
            if let Some((name, total, started, _)) = guard.take() {
                eprintln!(
                    "{name}: {total} bytes done in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
}
