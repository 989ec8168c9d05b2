//! Issue 15: one signal task fires one cancellation token that every long step observes. Before,
//! each step waited on a fresh signal future, so a SIGTERM during a deep verify, the manifest
//! upload or between dumps reached no listener and the run went on.
//!
//! Each test starts the real binary with `-v` (job starts are shown on stderr), waits until the
//! step it means to stop has begun, sends SIGTERM (to the child's pid), and expects exit 130, the
//! `--json` document on stdout with `"interrupted": true`, and nothing half-written that looks
//! complete. A library test fires the token from the progress sink exactly between two steps
//! (after a copy, after a dump) through `run::Migration`, the front door the CLI uses.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::file_names as files;

struct Stopped {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    json: serde_json::Value,
}

/// Runs `ferry ARGS`, sends SIGTERM as soon as a stderr line contains `when`, and waits for the
/// exit (killing the child after 120 s).
fn term_when(args: &[&str], when: &str) -> Stopped {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut so = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        so.read_to_string(&mut s).ok();
        s
    });
    let (tx, rx) = mpsc::channel();
    let se = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(se).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let start = Instant::now();
    let mut signalled = false;
    while start.elapsed() < Duration::from_secs(120) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains(when) => {
                // SAFETY: kill(2) on the pid of our own child, which has not been waited for.
                assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
                signalled = true;
                break;
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if !signalled {
        child.kill().ok();
    }
    let status = child.wait().unwrap();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    eprintln!("ferry {args:?} -> {:?}\n{stderr}", status.code());
    assert!(signalled, "no stderr line contained `{when}`");
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    Stopped {
        code: status.code(),
        stdout,
        stderr,
        json,
    }
}

fn write_plan(dir: &Path, body: &str) -> String {
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, body).unwrap();
    plan.to_str().unwrap().to_string()
}

#[test]
fn sigterm_during_a_deep_verify_stops_the_run_with_130() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // 256 MiB in 64 files, verified one at a time: the deep verify re-reads and hashes all of it.
    const FILES: usize = 64;
    for i in 0..FILES {
        let body: Vec<u8> = (0..4u32 << 20)
            .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8 ^ i as u8)
            .collect();
        std::fs::write(src.join(format!("f{i:02}")), body).unwrap();
    }
    let plan = write_plan(
        dir.path(),
        &format!(
            "[providers.src]\ntype = \"local\"\nroot = \"{}\"\n\n[providers.dst]\ntype = \"local\"\nroot = \"{}\"\n\n\
             [[objects]]\nname = \"big\"\nfrom = \"src:\"\nto = \"dst:\"\nverify = \"deep\"\n",
            src.display(),
            dir.path().join("dst").display()
        ),
    );

    // `run`: the copy finishes, the manifest is written, the deep verify is stopped.
    let r = term_when(&["run", &plan, "-v", "--json", "--concurrency", "1"], "verify `big`");
    assert_eq!(r.code, Some(130), "{}", r.stdout);
    assert!(
        r.stderr.contains("terminated: stopped; progress is saved in"),
        "{}",
        r.stderr
    );
    let j = &r.json;
    assert_eq!(j["interrupted"], true, "{}", r.stdout);
    assert_eq!(j["signal"], "terminated");
    assert_eq!(j["exit_code"], 130);
    assert_eq!(j["ok"], false);
    assert_eq!(j["jobs"][0]["copied"]["objects"], FILES as u64, "{}", r.stdout);
    assert!(j["jobs"][0]["manifest"].is_string(), "{}", r.stdout);
    // Stopped in the verify, not after it: no verify report.
    assert_eq!(j["verify"], serde_json::json!([]), "{}", r.stdout);
    assert_eq!(
        files(&dir.path().join("dst")).len(),
        FILES + 1,
        "the objects and the manifest"
    );

    // `verify --deep` alone: stopped, nothing journaled, exit 130.
    let v = term_when(
        &["verify", &plan, "--deep", "-v", "--json", "--concurrency", "1"],
        "verify `big`",
    );
    assert_eq!(v.code, Some(130), "{}", v.stdout);
    assert!(v.stderr.contains("terminated: stopped during verify"), "{}", v.stderr);
    assert_eq!(v.json["interrupted"], true, "{}", v.stdout);
    assert_eq!(v.json["jobs"], serde_json::json!([]), "{}", v.stdout);
}

#[test]
fn sigterm_between_two_dumps_stops_the_run_with_130() {
    let dir = tempfile::tempdir().unwrap();
    for (name, rows) in [("first", 10), ("second", 160_000)] {
        // `second`: 160 MiB of random bytes, so its dump (a consistent copy, the table checksums,
        // zstd) is still running when the signal comes.
        let c = rusqlite::Connection::open(dir.path().join(format!("{name}.db"))).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB NOT NULL);
             WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows})
               INSERT INTO t SELECT n, randomblob(1024) FROM s;"
        ))
        .unwrap();
    }
    let dst = dir.path().join("dst");
    let mut body = format!("[providers.dst]\ntype = \"local\"\nroot = \"{}\"\n", dst.display());
    for name in ["first", "second"] {
        body.push_str(&format!(
            "\n[[databases]]\nname = \"{name}\"\nengine = \"sqlite\"\npath = \"{}\"\n\
             to = \"dst:db/{{name}}/{{timestamp}}.db.zst\"\n",
            dir.path().join(format!("{name}.db")).display()
        ));
    }
    let plan = write_plan(dir.path(), &body);

    // The second dump starts once the first is complete (dumps run one after the other).
    let r = term_when(&["run", &plan, "-v", "--json"], "dump `second`");
    assert_eq!(r.code, Some(130), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("terminated: stopped during dump `second`; its upload was not completed")
            || r.stderr.contains("terminated: stopped before dump `second`"),
        "{}",
        r.stderr
    );
    let j = &r.json;
    assert_eq!(j["interrupted"], true, "{}", r.stdout);
    assert_eq!(j["exit_code"], 130);
    let dumps = j["databases"].as_array().unwrap();
    assert_eq!(dumps.len(), 1, "only the first dump finished: {}", r.stdout);
    assert_eq!(dumps[0]["job"], "first");
    let first_key = dumps[0]["key"].as_str().unwrap();

    // The first dump is there with its record; of the second, nothing that looks complete: no
    // record (a dump without its record is never offered for restore) and no temporary file.
    let found = files(&dst);
    assert!(found.contains(&first_key.to_string()), "{found:?}");
    assert!(found.contains(&format!("{first_key}.ferry.json")), "{found:?}");
    assert!(!found.iter().any(|f| f.contains(".ferry-tmp")), "{found:?}");
    let second: Vec<&String> = found.iter().filter(|f| f.starts_with("db/second/")).collect();
    assert!(
        !second.iter().any(|f| f.ends_with(".ferry.json")),
        "the stopped dump has a record: {found:?}"
    );
    assert!(second.is_empty(), "the stopped dump's upload left {second:?}");
}

/// Cancels the token when `job` finishes: the next step is the one the token must stop.
struct CancelAfter {
    job: &'static str,
    token: ferry::run::CancellationToken,
}

impl ferry::progress::Progress for CancelAfter {
    fn job_finished(&self, job: &str) {
        if job == self.job {
            self.token.cancel();
        }
    }
}

/// Through the library's front door, with the token fired exactly in the gap after a step:
/// after a copy (the manifest is next) and after the first dump (the second is next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_stops_the_manifest_and_the_gap_between_dumps() {
    use ferry::run::{CancellationToken, Interrupted, Migration, Request};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    for name in ["first", "second"] {
        let c = rusqlite::Connection::open(dir.path().join(format!("{name}.db"))).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let dst = dir.path().join("dst");
    let mut body = format!(
        "[providers.src]\ntype = \"local\"\nroot = \"{}\"\n\n[providers.dst]\ntype = \"local\"\nroot = \"{}\"\n\n\
         [[objects]]\nname = \"files\"\nfrom = \"src:\"\nto = \"dst:files/\"\n",
        src.display(),
        dst.display()
    );
    for name in ["first", "second"] {
        body.push_str(&format!(
            "\n[[databases]]\nname = \"{name}\"\nengine = \"sqlite\"\npath = \"{}\"\nto = \"dst:db/{{name}}/{{timestamp}}.db\"\ncompression = \"none\"\n",
            dir.path().join(format!("{name}.db")).display()
        ));
    }
    let plan = ferry::plan::Plan::load(Path::new(&write_plan(dir.path(), &body))).unwrap();
    let request = |jobs: &[&str]| Request {
        jobs: jobs.iter().map(|j| j.to_string()).collect(),
        options: ferry::run::Options {
            concurrency: 4,
            part_size: 8 << 20,
            memory_limit: 64 << 20,
            server_side_copy: true,
            bandwidth: None,
        },
        state_dir: dir.path().join("state"),
        dry_run: false,
    };

    // After the copy: no manifest, here or at the destination, and no dump.
    let token = CancellationToken::new();
    let progress = std::sync::Arc::new(CancelAfter {
        job: "files",
        token: token.clone(),
    });
    let m = Migration::prepare(&plan, request(&[])).await.unwrap();
    let r = m.run(progress, &token).await;
    drop(m);
    assert_eq!(r.interrupted, Some(Interrupted::Objects), "{r:#?}");
    assert_eq!(r.jobs.len(), 1);
    assert_eq!(r.jobs[0].copied.objects, 1);
    assert_eq!(r.jobs[0].manifest, None);
    assert!(r.dumps.is_empty());
    assert!(!r.ok());
    assert_eq!(files(&dst), ["files/a.txt"]);

    // After the first dump: the second never starts.
    let token = CancellationToken::new();
    let progress = std::sync::Arc::new(CancelAfter {
        job: "first",
        token: token.clone(),
    });
    let m = Migration::prepare(&plan, request(&["first", "second"])).await.unwrap();
    let r = m.run(progress, &token).await;
    assert_eq!(r.interrupted, Some(Interrupted::BeforeDump("second".into())), "{r:#?}");
    assert_eq!(r.dumps.len(), 1);
    let key = r.dumps[0].key.clone().unwrap();
    let mut want = vec!["files/a.txt".to_string(), key.clone(), format!("{key}.ferry.json")];
    want.sort();
    assert_eq!(files(&dst), want);
}
