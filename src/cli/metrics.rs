//! `run --metrics-file PATH` (or `settings.metrics-file`): a Prometheus textfile for
//! node_exporter's textfile collector, so the on-call sees when each backup job last worked.
//!
//! Written atomically (a temporary file in the same folder, renamed over PATH: the collector
//! never reads half a file, and the temporary's name does not end in `.prom`, so it is never
//! collected), every heartbeat interval while the run goes and once at its end. The file holds
//! the latest known value of every series: what this run did not set (a job it did not run, or
//! the last success of a job that failed now) keeps the value the previous file held, so one
//! failed night does not erase when a job last worked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::progress::CliProgress;
use crate::run::RunReport;

const LAST_SUCCESS: &str = "ferry_job_last_success_timestamp_seconds";
const DURATION: &str = "ferry_job_last_run_duration_seconds";
const COPIED_OBJECTS: &str = "ferry_job_last_run_copied_objects";
const COPIED_BYTES: &str = "ferry_job_last_run_copied_bytes";
const FAILURES: &str = "ferry_job_last_run_failures";
const EXIT_CODE: &str = "ferry_last_run_exit_code";
const ENDED: &str = "ferry_last_run_timestamp_seconds";
const IN_PROGRESS: &str = "ferry_run_in_progress";
const STARTED: &str = "ferry_run_started_timestamp_seconds";
const PROGRESS_BYTES: &str = "ferry_run_progress_bytes";
const PROGRESS_OBJECTS: &str = "ferry_run_progress_objects";

/// Every family the file holds, in the order written, with its HELP text (all gauges: each is a
/// value of the last or current run, not a count that only grows). Series of other names in an
/// older file are dropped.
const FAMILIES: &[(&str, &str)] = &[
    (
        LAST_SUCCESS,
        "When the job last finished with nothing failed (Unix time).",
    ),
    (DURATION, "Seconds the job took in its last run."),
    (
        COPIED_OBJECTS,
        "Objects the job copied in its last run (a database job: 1 per dump).",
    ),
    (
        COPIED_BYTES,
        "Bytes the job copied in its last run (a database job: the dump's stored bytes).",
    ),
    (
        FAILURES,
        "Objects that failed or differ in the job's last run; a job, guard or dump error counts 1.",
    ),
    (
        EXIT_CODE,
        "Exit code of the last finished run: 0 ok, 1 some failed, 2 fix the plan, 3 retry later, 130 interrupted.",
    ),
    (ENDED, "When the last run ended (Unix time)."),
    (IN_PROGRESS, "1 while a run is going, 0 once it ended."),
    (STARTED, "When the current or last run started (Unix time)."),
    (PROGRESS_BYTES, "Bytes moved so far by the current or last run."),
    (PROGRESS_OBJECTS, "Objects finished so far by the current or last run."),
];

/// A series: its family's name and its labels (sorted by name).
type Series = (String, Vec<(String, String)>);

/// The metrics file of one run of one plan.
pub(super) struct Metrics {
    path: PathBuf,
    plan: String,
    series: BTreeMap<Series, f64>,
    /// A write failed and was said: the next failures are not repeated.
    warned: bool,
}

/// The metrics, also when a writer panicked while holding them (they are plain values).
pub(super) fn lock(m: &Mutex<Metrics>) -> std::sync::MutexGuard<'_, Metrics> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes the run's progress every `every` until aborted (the first write is the caller's).
pub(super) async fn tick(m: Arc<Mutex<Metrics>>, progress: Arc<CliProgress>, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let (objects, bytes) = progress.done();
        let mut m = lock(&m);
        m.progress(objects, bytes);
        m.save();
    }
}

impl Metrics {
    /// Starts from what `path` holds (nothing if it is missing or unreadable), and marks a run
    /// of `plan` (the plan file's stem, the `plan` label) as started.
    pub(super) fn start(path: &Path, plan: &str) -> Metrics {
        let old = std::fs::read_to_string(path).unwrap_or_default();
        let mut m = Metrics {
            path: path.to_path_buf(),
            plan: plan.to_string(),
            series: parse(&old),
            warned: false,
        };
        m.set(STARTED, None, now());
        m.set(IN_PROGRESS, None, 1.0);
        m.progress(0, 0);
        m
    }

    fn set(&mut self, name: &str, job: Option<&str>, value: f64) {
        let mut labels = vec![("plan".to_string(), self.plan.clone())];
        if let Some(job) = job {
            labels.insert(0, ("job".to_string(), job.to_string()));
        }
        self.series.insert((name.to_string(), labels), value);
    }

    /// What the run has moved so far (the heartbeat's counters).
    pub(super) fn progress(&mut self, objects: u64, bytes: u64) {
        self.set(PROGRESS_OBJECTS, None, objects as f64);
        self.set(PROGRESS_BYTES, None, bytes as f64);
    }

    /// The run ended with `exit_code`; `report`: what it did, if it got as far as running.
    pub(super) fn finish(&mut self, report: Option<&RunReport>, exit_code: i32) {
        let at = now();
        for (job, seconds, copied, failures) in report.map(per_job).unwrap_or_default() {
            self.set(DURATION, Some(&job), seconds);
            self.set(COPIED_OBJECTS, Some(&job), copied.0 as f64);
            self.set(COPIED_BYTES, Some(&job), copied.1 as f64);
            self.set(FAILURES, Some(&job), failures as f64);
            // An interrupted run's last job may have stopped in its deep verify: no success is
            // claimed from it, and the earlier one stays.
            if failures == 0 && exit_code != crate::run::EXIT_INTERRUPTED {
                self.set(LAST_SUCCESS, Some(&job), at);
            }
        }
        self.set(EXIT_CODE, None, f64::from(exit_code));
        self.set(ENDED, None, at);
        self.set(IN_PROGRESS, None, 0.0);
    }

    /// Writes the file, and says so on stderr (once a run) if it cannot: the run goes on, since
    /// a backup is worth more than its metrics.
    pub(super) fn save(&mut self) {
        if let Err(e) = self.write() {
            if !std::mem::replace(&mut self.warned, true) {
                eprintln!("warning: cannot write the metrics file `{}`: {e}", self.path.display());
            }
        }
    }

    /// Writes the file: a temporary beside it, then renamed over it.
    fn write(&self) -> std::io::Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, render(&self.series))?;
        std::fs::rename(&tmp, &self.path).inspect_err(|_| drop(std::fs::remove_file(&tmp)))
    }
}

/// Each job of a report: name, seconds, (objects, bytes) copied, failures. A job with a deep
/// verify adds its mismatches; a dump is one object.
fn per_job(r: &RunReport) -> Vec<(String, f64, (u64, u64), u64)> {
    let mut out = Vec::new();
    for j in &r.jobs {
        let verify = r.verifies.iter().find(|v| v.job == j.job);
        let failures = j.failed.len() as u64
            + u64::from(j.error.is_some() || j.guard.is_some())
            + verify.map_or(0, |v| v.mismatches.len() as u64 + u64::from(v.error.is_some()));
        let seconds = j.seconds + verify.map_or(0.0, |v| v.seconds);
        out.push((j.job.clone(), seconds, (j.copied.objects, j.copied.bytes), failures));
    }
    for d in &r.dumps {
        let copied = if d.ok() { (1, d.bytes_stored) } else { (0, 0) };
        out.push((d.job.clone(), d.seconds, copied, u64::from(!d.ok())));
    }
    out
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}

/// The text format: for each family with series, `# HELP`, `# TYPE`, then one line a series.
fn render(series: &BTreeMap<Series, f64>) -> String {
    let mut out = String::new();
    for (family, help) in FAMILIES {
        let mut lines = series.iter().filter(|((name, _), _)| name == family).peekable();
        if lines.peek().is_none() {
            continue;
        }
        out.push_str(&format!("# HELP {family} {help}\n# TYPE {family} gauge\n"));
        for ((_, labels), value) in lines {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            out.push_str(&format!("{family}{{{}}} {value}\n", labels.join(",")));
        }
    }
    out
}

/// A label value as the text format quotes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The series of a file this module wrote (a line it cannot read, or of an unknown family, is
/// skipped).
fn parse(text: &str) -> BTreeMap<Series, f64> {
    let known = |n: &str| FAMILIES.iter().any(|(f, _)| *f == n);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_line)
        .filter(|((name, _), _)| known(name))
        .collect()
}

/// `name{k="v",…} value`.
fn parse_line(line: &str) -> Option<(Series, f64)> {
    let (name, rest) = line.split_once('{')?;
    let mut labels = Vec::new();
    let mut chars = rest.chars();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').to_string();
        if key.starts_with('}') || key.is_empty() {
            break;
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        labels.push((key, value));
        let rest = chars.as_str();
        if let Some(after) = rest.strip_prefix('}') {
            let value = after.split_whitespace().next()?.parse().ok()?;
            labels.sort();
            return Some(((name.to_string(), labels), value));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_rendered_parses_back_the_same() {
        let mut m = Metrics {
            path: PathBuf::from("m.prom"),
            plan: "odd \"plan\" \\ name\nx".into(),
            series: BTreeMap::new(),
            warned: false,
        };
        m.set(LAST_SUCCESS, Some("files"), 1_800_000_000.5);
        m.set(EXIT_CODE, None, 1.0);
        m.set(COPIED_BYTES, Some("db"), 12345.0);
        let text = render(&m.series);
        assert!(text.starts_with(&format!("# HELP {LAST_SUCCESS} ")), "{text}");
        assert!(
            text.contains("ferry_last_run_exit_code{plan=\"odd \\\"plan\\\" \\\\ name\\nx\"} 1\n"),
            "{text}"
        );
        assert_eq!(parse(&text), m.series);
        assert_eq!(
            parse("garbage\nferry_unknown{plan=\"p\"} 1\nferry_run_in_progress{plan=\"p\" 1"),
            BTreeMap::new()
        );
    }
}
