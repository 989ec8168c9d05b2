//! Progress on stderr: an indicatif bar on a terminal; off a terminal (nohup, systemd,
//! `kubectl logs`) a heartbeat line every interval, whether or not an object finished, with a
//! timestamp, the job, objects and bytes done of those found, the rate over the last interval
//! and an ETA. The only place that knows indicatif; the library reports through the `Progress`
//! trait.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub(super) use indicatif::HumanBytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;
use crate::redact::redact;

/// With `--quiet` off a terminal, heartbeats are this far apart at least: a scheduler's log
/// still shows a run is alive without a line every few seconds.
const QUIET_INTERVAL: Duration = Duration::from_secs(60);

/// What the engine has reported so far, shared with the heartbeat thread.
#[derive(Default)]
struct Counters {
    found_objects: AtomicU64,
    found_bytes: AtomicU64,
    done_objects: AtomicU64,
    bytes: AtomicU64,
    job: Mutex<String>,
    stop: AtomicBool,
}

/// Progress on stderr: an indicatif bar on a terminal, heartbeat lines otherwise.
pub struct CliProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    verbose: u8,
    counters: Arc<Counters>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
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

    /// `quiet`: 0 bar or heartbeats and summaries; 1 no bar and no summary, heartbeats off a
    /// terminal at least a minute apart; 2 nothing but errors.
    pub(super) fn new(quiet: u8, verbose: u8, interval: Duration) -> CliProgress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (quiet == 0 && terminal).then(|| {
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
        let counters = Arc::new(Counters::default());
        let heartbeat = (!terminal && quiet < 2).then(|| {
            let every = if quiet == 1 {
                interval.max(QUIET_INTERVAL)
            } else {
                interval
            };
            let c = counters.clone();
            std::thread::spawn(move || beat(&c, every.max(Duration::from_millis(100))))
        });
        CliProgress {
            bar,
            quiet: quiet > 0,
            verbose,
            counters,
            heartbeat,
        }
    }

    fn update(&self) {
        if let Some(b) = &self.bar {
            let c = &self.counters;
            b.set_message(format!(
                "{}/{} objects",
                c.done_objects.load(Ordering::Relaxed),
                c.found_objects.load(Ordering::Relaxed)
            ));
        }
    }

    /// Objects finished and bytes moved so far.
    pub(super) fn done(&self) -> (u64, u64) {
        let c = &self.counters;
        (c.done_objects.load(Ordering::Relaxed), c.bytes.load(Ordering::Relaxed))
    }

    pub(super) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        self.counters.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for CliProgress {
    fn drop(&mut self) {
        self.counters.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
    }
}

/// The heartbeat thread: a line every `every` until stopped. It wakes often to stop promptly.
fn beat(c: &Counters, every: Duration) {
    let mut last = (Instant::now(), c.bytes.load(Ordering::Relaxed));
    loop {
        while last.0.elapsed() < every {
            if c.stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50).min(every));
        }
        let now = (Instant::now(), c.bytes.load(Ordering::Relaxed));
        let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64();
        last = now;
        let job = c.job.lock().expect("progress lock").clone();
        let line = heartbeat_line(
            SystemTime::now(),
            &job,
            (
                c.done_objects.load(Ordering::Relaxed),
                c.found_objects.load(Ordering::Relaxed),
            ),
            (now.1, c.found_bytes.load(Ordering::Relaxed)),
            rate,
        );
        eprintln!("{}", redact(&line));
        tracing::info!(target: "ferry::progress", "{}", line.split_once(' ').map_or(line.as_str(), |(_, l)| l));
    }
}

/// One heartbeat: `2026-11-30T03:00:10Z progress: job `nightly`: 120/4000 objects, 1.20 GiB of
/// 3.40 GiB (35%), 45.10 MiB/s, ETA 52s`; `listing…` while nothing has been found yet.
fn heartbeat_line(now: SystemTime, job: &str, objects: (u64, u64), bytes: (u64, u64), rate: f64) -> String {
    let at = humantime::format_rfc3339_seconds(now);
    let job = if job.is_empty() {
        String::new()
    } else {
        format!("job `{job}`: ")
    };
    let (done, found) = objects;
    if found == 0 {
        return format!("{at} progress: {job}listing…");
    }
    let (sent, total) = bytes;
    let pct = (sent.min(total) * 100).checked_div(total).unwrap_or(100);
    let eta = match (rate > 0.0, total.saturating_sub(sent)) {
        (_, 0) => "0s".to_string(),
        (true, left) => humantime::format_duration(Duration::from_secs((left as f64 / rate).ceil() as u64)).to_string(),
        (false, _) => "unknown (nothing moved in the last interval)".to_string(),
    };
    format!(
        "{at} progress: {job}{done}/{found} objects, {} of {} ({pct}%), {}/s, ETA {eta}",
        HumanBytes(sent),
        HumanBytes(total),
        HumanBytes(rate as u64)
    )
}

impl Progress for CliProgress {
    fn job_started(&self, job: &str, what: &str) {
        tracing::info!(job, "{what} `{job}` started");
        *self.counters.job.lock().expect("progress lock") = job.to_string();
        if self.verbose > 0 && !self.quiet {
            self.say(&format!("{what} `{job}`..."));
        }
    }
    fn job_finished(&self, job: &str) {
        tracing::info!(job, "job `{job}` finished");
    }
    fn found(&self, objects: u64, bytes: u64) {
        let c = &self.counters;
        c.found_objects.fetch_add(objects, Ordering::Relaxed);
        let total = c.found_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
        self.update();
    }
    fn bytes(&self, n: u64) {
        self.counters.bytes.fetch_add(n, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn object_done(&self) {
        self.counters.done_objects.fetch_add(1, Ordering::Relaxed);
        self.update();
    }
    fn skipped_bytes(&self, n: u64) {
        let c = &self.counters;
        let _ = c
            .found_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| Some(t.saturating_sub(n)));
        if let Some(b) = &self.bar {
            b.set_length(b.length().unwrap_or(0).saturating_sub(n));
        }
    }
    fn message(&self, text: &str) {
        tracing::info!("{text}");
        // Failures are listed in the summary; live lines are for -v.
        if self.verbose > 0 {
            self.say(text);
        }
    }
    fn warn(&self, text: &str) {
        tracing::warn!("{text}");
        self.say(&format!("warning: {text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_names_the_job_its_rate_and_eta() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mib = 1 << 20;
        let line = heartbeat_line(at, "nightly", (3, 10), (100 * mib, 400 * mib), 50.0 * mib as f64);
        assert_eq!(
            line,
            "2027-01-15T08:00:00Z progress: job `nightly`: 3/10 objects, 100.00 MiB of 400.00 MiB (25%), 50.00 MiB/s, ETA 6s"
        );
        assert_eq!(
            heartbeat_line(at, "j", (0, 0), (0, 0), 0.0),
            "2027-01-15T08:00:00Z progress: job `j`: listing…"
        );
        assert!(
            heartbeat_line(at, "j", (0, 1), (0, 10), 0.0).ends_with("ETA unknown (nothing moved in the last interval)")
        );
    }
}
