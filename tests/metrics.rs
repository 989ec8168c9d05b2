//! Issue 17, must-show 6: `ferry run --metrics-file PATH` writes a Prometheus textfile that
//! node_exporter's textfile collector accepts. The oracle is not ferry's: every file is parsed by
//! Python's `prometheus_client.parser.text_string_to_metric_families` (installed by
//! tests/servers/up.sh, found through `FERRY_TEST_PYTHON`), and each value is checked against
//! what the test itself knows the run did (its own bytes, the dump file's size on disk).
//!
//! Three runs of one plan (two object jobs and a SQLite dump, local to local): the first copies
//! everything; the second fails one object of one job, so its exit code and failures show, and
//! the job's last success is the first run's (read back from the old file); the third runs only
//! a slow job, whose file is read while it runs (in progress, bytes moving, the other jobs'
//! series kept) and after.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;
use common::oracle::{ferry, toml_str};

/// One sample as the Python parser read it.
#[derive(Debug, Clone, serde::Deserialize)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One metric family as the Python parser read it.
#[derive(Debug, Clone, serde::Deserialize)]
struct Family {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    documentation: String,
    samples: Vec<Sample>,
}

/// Reads prometheus_client's parser's view of each text (an error message for a text it
/// refuses); None when the parser is not installed.
fn parse_all(texts: &[String]) -> Option<Vec<Result<Vec<Family>, String>>> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for text in json.load(sys.stdin):
    try:
        out.append({"ok": [{"name": f.name, "type": f.type, "documentation": f.documentation,
                            "samples": [{"name": s.name, "labels": s.labels, "value": s.value}
                                        for s in f.samples]}
                           for f in text_string_to_metric_families(text)]})
    except Exception as e:
        out.append({"error": repr(e)})
json.dump(out, sys.stdout)
"#;
    let python = common::python_with(
        "prometheus_client",
        "the_metrics_file_parses_and_says_what_each_run_did",
    )?;
    let mut child = Command::new(&python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), texts).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    Some(
        parsed
            .into_iter()
            .map(|p| match p.get("ok") {
                Some(ok) => Ok(serde_json::from_value(ok.clone()).unwrap()),
                None => Err(p["error"].to_string()),
            })
            .collect(),
    )
}

/// The value of `name` for `job` (None: the run-level series), from one parsed file.
fn value(families: &[Family], name: &str, job: Option<&str>) -> Option<f64> {
    let f = families.iter().find(|f| f.name == name)?;
    f.samples
        .iter()
        .find(|s| s.name == name && s.labels.get("job").map(String::as_str) == job && s.labels["plan"] == "nightly")
        .map(|s| s.value)
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn write_files(dir: &Path, files: &[(&str, usize)]) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    for (i, (name, len)) in files.iter().enumerate() {
        std::fs::write(dir.join(name), common::data(*len, i as u64 + 1)).unwrap();
    }
    files.iter().map(|(_, len)| *len as u64).sum()
}

#[test]
fn the_metrics_file_parses_and_says_what_each_run_did() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files_bytes = write_files(&d.join("src/files"), &[("a.txt", 1000), ("b.bin", 70_000), ("c", 5)]);
    let slow_bytes = write_files(&d.join("src/slow"), &[("big.bin", 24 << 20)]);
    common::sqlite::make_sqlite(&d.join("app.db"), &[(1, "one"), (2, "two")]);
    let plan = d.join("nightly.toml");
    let local = |name: &str, root: &Path| {
        format!(
            "[providers.{name}]\ntype = \"local\"\nroot = {}\n",
            toml_str(&root.display().to_string())
        )
    };
    std::fs::write(
        &plan,
        format!(
            "{}{}\n[[objects]]\nname = \"files\"\nfrom = \"src:files/\"\nto = \"dst:files/\"\n\n\
             [[objects]]\nname = \"slow\"\nfrom = \"src:slow/\"\nto = \"dst:slow/\"\n\n\
             [[databases]]\nname = \"app\"\nengine = \"sqlite\"\npath = {}\nto = \"dst:db/{{timestamp}}.db.zst\"\n",
            local("src", &d.join("src")),
            local("dst", &d.join("dst")),
            toml_str(&d.join("app.db").display().to_string()),
        ),
    )
    .unwrap();
    let metrics = d.join("textfile/ferry-nightly.prom");
    std::fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    let m = metrics.to_str().unwrap();
    let timeout = Duration::from_secs(120);

    // 1: everything copied.
    let before = now();
    let first = ferry(&["run", "--json", "--metrics-file", m], &plan, timeout);
    let after = now();
    assert_eq!(first.code, Some(0), "{}", first.summary());
    let text1 = std::fs::read_to_string(&metrics).unwrap();
    let dump = common::file_names(&d.join("dst/db"));
    assert_eq!(dump.len(), 2, "one dump and its record: {dump:?}");
    let dump_size = std::fs::metadata(d.join("dst/db").join(&dump[0])).unwrap().len() as f64;

    // 2: one object of `files` cannot be written (a folder in its way): exit 1.
    std::fs::write(d.join("src/files/new.txt"), b"new").unwrap();
    std::fs::create_dir_all(d.join("dst/files/new.txt")).unwrap();
    let second = ferry(&["run", "--json", "--metrics-file", m], &plan, timeout);
    assert_eq!(second.code, Some(1), "{}", second.summary());
    let text2 = std::fs::read_to_string(&metrics).unwrap();

    // 3: only `slow`, again (its destination removed), at 8 MiB/s: the file is read while it runs.
    std::fs::remove_dir_all(d.join("dst/slow")).unwrap();
    let mut child = Command::new(common::oracle::ferry_bin())
        .args([
            "run",
            "--job",
            "slow",
            "--bandwidth",
            "8MiB/s",
            "--progress-interval",
            "1",
            "--metrics-file",
            m,
        ])
        .arg(&plan)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut during = Vec::new();
    while child.try_wait().unwrap().is_none() {
        during.push(std::fs::read_to_string(&metrics).unwrap());
        std::thread::sleep(Duration::from_millis(250));
    }
    let third = child.wait().unwrap();
    assert_eq!(third.code(), Some(0));
    let text3 = std::fs::read_to_string(&metrics).unwrap();

    let mut texts = vec![text1.clone(), text2.clone(), text3.clone()];
    texts.extend(during.iter().cloned());
    let Some(parsed) = parse_all(&texts) else {
        return;
    };
    let parsed: Vec<Vec<Family>> = parsed
        .into_iter()
        .zip(&texts)
        .map(|(p, t)| p.unwrap_or_else(|e| panic!("the parser refused the file: {e}\n{t}")))
        .collect();
    let (one, two, three) = (&parsed[0], &parsed[1], &parsed[2]);
    eprintln!("{text1}\n{text2}\n{text3}");

    // Every family has its HELP and TYPE; all are gauges.
    for f in one {
        assert_eq!(f.kind, "gauge", "{f:?}");
        assert!(!f.documentation.is_empty(), "{f:?}");
    }
    for name in [
        "ferry_job_last_success_timestamp_seconds",
        "ferry_job_last_run_duration_seconds",
        "ferry_job_last_run_copied_objects",
        "ferry_job_last_run_copied_bytes",
        "ferry_job_last_run_failures",
        "ferry_last_run_exit_code",
    ] {
        assert!(one.iter().any(|f| f.name == name), "no {name}:\n{text1}");
    }

    // Run 1, against what the test wrote and what landed on disk.
    assert_eq!(value(one, "ferry_last_run_exit_code", None), Some(0.0));
    assert_eq!(value(one, "ferry_run_in_progress", None), Some(0.0));
    for (job, objects, bytes) in [
        ("files", 3.0, files_bytes as f64),
        ("slow", 1.0, slow_bytes as f64),
        ("app", 1.0, dump_size),
    ] {
        assert_eq!(
            value(one, "ferry_job_last_run_copied_objects", Some(job)),
            Some(objects),
            "{job}"
        );
        assert_eq!(
            value(one, "ferry_job_last_run_copied_bytes", Some(job)),
            Some(bytes),
            "{job}"
        );
        assert_eq!(value(one, "ferry_job_last_run_failures", Some(job)), Some(0.0), "{job}");
        let success = value(one, "ferry_job_last_success_timestamp_seconds", Some(job)).unwrap();
        assert!(before - 1.0 <= success && success <= after + 1.0, "{job}: {success}");
        let seconds = value(one, "ferry_job_last_run_duration_seconds", Some(job)).unwrap();
        assert!(seconds >= 0.0 && seconds <= after - before + 1.0, "{job}: {seconds}");
    }

    // Run 2: `files` failed one object; its last success is still run 1's.
    assert_eq!(value(two, "ferry_last_run_exit_code", None), Some(1.0));
    assert_eq!(value(two, "ferry_job_last_run_failures", Some("files")), Some(1.0));
    assert_eq!(
        value(two, "ferry_job_last_run_copied_objects", Some("files")),
        Some(0.0)
    );
    assert_eq!(
        value(two, "ferry_job_last_success_timestamp_seconds", Some("files")),
        value(one, "ferry_job_last_success_timestamp_seconds", Some("files")),
    );
    assert_eq!(value(two, "ferry_job_last_run_copied_objects", Some("slow")), Some(0.0));
    assert!(
        value(two, "ferry_job_last_success_timestamp_seconds", Some("slow"))
            > value(one, "ferry_job_last_success_timestamp_seconds", Some("slow"))
    );

    // Run 3, while it ran: in progress, bytes moving, the jobs it does not run as run 2 left them.
    let moving = parsed[3..].iter().find(|p| {
        value(p, "ferry_run_in_progress", None) == Some(1.0)
            && value(p, "ferry_run_progress_bytes", None).is_some_and(|b| b > 0.0 && b < slow_bytes as f64)
    });
    let moving = moving.unwrap_or_else(|| panic!("no file showed the run under way: {during:?}"));
    assert_eq!(
        value(moving, "ferry_last_run_exit_code", None),
        Some(1.0),
        "run 2's, until run 3 ends"
    );
    // And after: `slow` copied again, `files` and `app` untouched since run 2.
    assert_eq!(value(three, "ferry_last_run_exit_code", None), Some(0.0));
    assert_eq!(value(three, "ferry_run_in_progress", None), Some(0.0));
    assert_eq!(value(three, "ferry_run_progress_bytes", None), Some(slow_bytes as f64));
    assert_eq!(
        value(three, "ferry_job_last_run_copied_bytes", Some("slow")),
        Some(slow_bytes as f64)
    );
    for job in ["files", "app"] {
        for name in [
            "ferry_job_last_success_timestamp_seconds",
            "ferry_job_last_run_failures",
        ] {
            assert_eq!(
                value(three, name, Some(job)),
                value(two, name, Some(job)),
                "{name} {job}"
            );
        }
    }
    // Renamed into place: no temporary is left beside it.
    assert_eq!(common::file_names(metrics.parent().unwrap()), ["ferry-nightly.prom"]);
}
