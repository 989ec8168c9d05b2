//! Progress on stderr: an indicatif bar on a terminal, a plain line every 10 s otherwise. The only
//! place that knows indicatif; the library reports through the `Progress` trait.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(super) use indicatif::HumanBytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;
use crate::redact::redact;
/// Progress on stderr: an indicatif bar on a terminal, a plain line every 10 s otherwise.
pub struct CliProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    verbose: u8,
    found_objects: AtomicU64,
    found_bytes: AtomicU64,
    done_objects: AtomicU64,
    bytes: AtomicU64,
    last_line: std::sync::Mutex<Instant>,
}

impl CliProgress {
    /// One line on stderr, above the progress bar, unless `--quiet`.
    fn say(&self, text: &str) {
        if self.quiet {
            return;
        }
        let text = redact(text);
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    pub(super) fn new(quiet: bool, verbose: u8) -> CliProgress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(5));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        CliProgress {
            bar,
            quiet,
            verbose,
            found_objects: AtomicU64::new(0),
            found_bytes: AtomicU64::new(0),
            done_objects: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_line: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn update(&self) {
        let (d, f) = (
            self.done_objects.load(Ordering::Relaxed),
            self.found_objects.load(Ordering::Relaxed),
        );
        if let Some(b) = &self.bar {
            b.set_message(format!("{d}/{f} objects"));
            return;
        }
        if self.quiet {
            return;
        }
        let mut last = self.last_line.lock().expect("progress lock");
        if last.elapsed() >= Duration::from_secs(10) {
            *last = Instant::now();
            eprintln!(
                "progress: {d}/{f} objects, {} of {}",
                HumanBytes(self.bytes.load(Ordering::Relaxed)),
                HumanBytes(self.found_bytes.load(Ordering::Relaxed))
            );
        }
    }

    pub(super) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for CliProgress {
    fn job_started(&self, job: &str, what: &str) {
        if self.verbose > 0 && !self.quiet {
            self.message(&format!("{what} `{job}`..."));
        }
    }
    fn found(&self, objects: u64, bytes: u64) {
        self.found_objects.fetch_add(objects, Ordering::Relaxed);
        let total = self.found_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
        self.update();
    }
    fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn object_done(&self) {
        self.done_objects.fetch_add(1, Ordering::Relaxed);
        self.update();
    }
    fn skipped_bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_length(b.length().unwrap_or(0).saturating_sub(n));
        }
    }
    fn message(&self, text: &str) {
        // Failures are listed in the summary; live lines are for -v.
        if self.verbose > 0 {
            self.say(text);
        }
    }
    fn warn(&self, text: &str) {
        self.say(&format!("warning: {text}"));
    }
}
