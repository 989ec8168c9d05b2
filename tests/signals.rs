//! Issue 15: one signal task fires one cancellation token that every long step observes. Before,
//! each step waited on a fresh signal future, so a SIGTERM during a deep verify, the manifest
//! upload or between dumps reached no listener and the run went on.
//!
//! Each test starts the real binary with `-v` (job starts are shown on stderr), waits until the
//! step it means to stop has begun, sends SIGTERM (to the child's pid), and expects exit 130, the
//! `--json` document on stdout with `"interrupted": true`, and nothing half-written that looks
//! complete. A library test fires the token from the progress sink exactly between two steps
//! (after a copy, after a dump) through `run::Migration`, the front door the CLI uses.
//!
//! Issue 17 (must-show 4) adds the stops a pod eviction meets: mid-object in a 300 MiB copy to
//! SeaweedFS and mid-stream in a PostgreSQL dump to SeaweedFS, each signalled once a heartbeat
//! shows the bytes moving, each measured from the signal to the exit (5 s at most), each resumed
//! by a second run whose result is read back without ferry (the SDK, `pg_restore`); and a
//! second signal that ends a stop that cannot finish.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::file_names as files;
use common::oracle::{ferry, nanos, sha256, toml_str};
use common::{db, wire};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

struct Stopped {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    json: serde_json::Value,
    /// From the signal to the exit.
    after_signal: Duration,
}

/// Runs `ferry ARGS`, sends SIGTERM as soon as a stderr line contains `when`, and waits for the
/// exit (killing the child after 120 s).
fn term_when(args: &[&str], when: &str) -> Stopped {
    term_if(ferry_cmd(args), |line| line.contains(when))
}

fn ferry_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.args(args);
    c
}

/// Sends `signal` to our own child `pid`.
fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on the pid of our own child, which has not been waited for.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

/// Streams a child's stderr lines to a channel, and returns the whole text when it closes.
fn lines_of(se: std::process::ChildStderr) -> (mpsc::Receiver<String>, std::thread::JoinHandle<String>) {
    let (tx, rx) = mpsc::channel();
    let all = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(se).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (rx, all)
}

/// Waits (up to 120 s) for a line `when` accepts; false if none came.
fn wait_for(rx: &mpsc::Receiver<String>, when: impl Fn(&str) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if when(&line) => return true,
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return false,
        }
    }
    false
}

/// Starts `cmd` (ferry), sends SIGTERM at the first stderr line `when` accepts, and waits for
/// the exit (killing the child if no such line came within 120 s).
fn term_if(mut cmd: Command, when: impl Fn(&str) -> bool) -> Stopped {
    let what = format!("{cmd:?}");
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut so = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        so.read_to_string(&mut s).ok();
        s
    });
    let (rx, stderr) = lines_of(child.stderr.take().unwrap());
    let signalled = wait_for(&rx, when);
    let at = Instant::now();
    if signalled {
        signal(child.id(), libc::SIGTERM);
    } else {
        child.kill().ok();
    }
    let status = child.wait().unwrap();
    let after_signal = at.elapsed();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    eprintln!(
        "{what} -> {:?}, {after_signal:?} after the signal\n{stderr}",
        status.code()
    );
    assert!(signalled, "no stderr line said the step had begun");
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    Stopped {
        code: status.code(),
        stdout,
        stderr,
        json,
        after_signal,
    }
}

/// A heartbeat line (`… progress: job `big`: 0/1 objects, 30.00 MiB of 300.00 MiB (10%), …`)
/// at `pct` percent or more, short of 100: the transfer is under way and not about to end.
fn under_way(line: &str, pct: u64) -> bool {
    let done = line
        .split_once(" progress: ")
        .and_then(|(_, rest)| rest.split_once(" (")?.1.split_once("%)"))
        .and_then(|(p, _)| p.parse::<u64>().ok());
    done.is_some_and(|p| p >= pct && p < 100)
}

/// The exit-130 contract of a signal: within 5 s of it, the JSON document on stdout.
fn assert_stopped(r: &Stopped) {
    assert_eq!(r.code, Some(130), "{}", r.stdout);
    assert!(
        r.after_signal <= Duration::from_secs(5),
        "exited {:?} after SIGTERM",
        r.after_signal
    );
    assert_eq!(r.json["interrupted"], true, "{}", r.stdout);
    assert_eq!(r.json["signal"], "terminated", "{}", r.stdout);
    assert_eq!(r.json["exit_code"], 130, "{}", r.stdout);
    assert_eq!(r.json["ok"], false, "{}", r.stdout);
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

    // The second dump starts once the first is complete (dumps run one after the other). Its
    // SQLite copy lives in TMPDIR until the dump ends.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = ferry_cmd(&["run", &plan, "-v", "--json"]);
    cmd.env("TMPDIR", &tmp);
    let r = term_if(cmd, |l| l.contains("dump `second`"));
    assert_eq!(r.code, Some(130), "{}", r.stdout);
    assert!(r.after_signal <= Duration::from_secs(5), "{:?}", r.after_signal);
    assert_eq!(
        files(&tmp),
        Vec::<String>::new(),
        "a copy of a database was left behind"
    );
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
            concurrency: Some(4),
            part_size: 8 << 20,
            memory_limit: 64 << 20,
            server_side_copy: true,
            bandwidth: None,
        },
        state_dir: dir.path().join("state"),
        dry_run: false,
        restore: None,
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

/// `[providers.NAME]` for the SeaweedFS test server's bucket `ferry-a`.
fn seaweed(name: &str) -> String {
    format!(
        "[providers.{name}]\ntype = \"s3\"\nbucket = \"ferry-a\"\nendpoint = {}\nregion = \"us-east-1\"\n\
         allow-http = true\npath-style = true\naccess-key-id-env = \"FERRY_TEST_SEAWEED_KEY\"\n\
         secret-access-key-env = \"FERRY_TEST_SEAWEED_SECRET\"\n",
        toml_str(&common::env("FERRY_TEST_SEAWEED_ENDPOINT"))
    )
}

/// The multipart uploads open under `prefix`, as the server lists them: (key, upload id).
fn open_uploads(sdk: &aws_sdk_s3::Client, prefix: &str) -> Vec<(String, String)> {
    let r = wire::block_on(sdk.list_multipart_uploads().bucket("ferry-a").prefix(prefix).send()).unwrap();
    r.uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap_or("").to_string(),
                u.upload_id().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Issue 17: a pod eviction in the middle of one large object. The object is not completed, its
/// upload stays open and journaled (not unknown), and the next run continues it.
#[test]
fn sigterm_during_a_copy_exits_130_and_the_next_run_completes_it() {
    if !common::servers_available("sigterm_during_a_copy_exits_130_and_the_next_run_completes_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let body = common::data(300 << 20, 17);
    std::fs::write(src.join("big.bin"), &body).unwrap();
    let prefix = format!("sigterm-copy-{}-{}", std::process::id(), nanos());
    let plan = write_plan(
        dir.path(),
        &format!(
            "[providers.src]\ntype = \"local\"\nroot = {}\n\n{}\n[[objects]]\nname = \"big\"\nfrom = \"src:\"\nto = \"dst:{prefix}/\"\n",
            toml_str(&src.display().to_string()),
            seaweed("dst")
        ),
    );

    // 300 MiB at 20 MiB/s: 15 s of transfer, stopped once a heartbeat shows 5% of it sent.
    let args = [
        "run",
        &plan,
        "--json",
        "--bandwidth",
        "20MiB/s",
        "--progress-interval",
        "1",
    ];
    let r = term_if(ferry_cmd(&args), |l| under_way(l, 5));
    assert_stopped(&r);
    assert!(
        r.stderr.contains("terminated: stopped; progress is saved in"),
        "{}",
        r.stderr
    );

    // Nothing at the destination looks complete; the one upload open is the journaled one.
    let sdk = wire::s3_sdk("SEAWEED");
    let key = format!("{prefix}/big.bin");
    assert_eq!(wire::s3_list(&sdk, "ferry-a", &prefix).unwrap(), Vec::<String>::new());
    let journal = rusqlite::Connection::open(dir.path().join(".ferry/plan/journal.sqlite")).unwrap();
    let journaled: String = journal
        .query_row(
            "SELECT upload_id FROM objects WHERE key = 'big.bin' AND upload_id IS NOT NULL",
            [],
            |row| row.get(0),
        )
        .expect("the stopped upload is journaled");
    drop(journal);
    assert_eq!(open_uploads(&sdk, &prefix), [(key.clone(), journaled)]);

    // The next run continues the upload (not from the first part) and completes the object.
    let again = ferry(&["run", "--json"], Path::new(&plan), Duration::from_secs(300));
    assert_eq!(again.code, Some(0), "{}", again.summary());
    let job = again.job("big").unwrap();
    assert_eq!(job["copied"]["objects"], 1, "{job}");
    assert!(job["restarted_uploads"].is_null(), "{job}");
    let got = wire::s3_get(&sdk, "ferry-a", &key).unwrap();
    assert_eq!(got.len(), body.len(), "size of big.bin");
    assert_eq!(sha256(&got), sha256(&body), "content of big.bin");
    assert_eq!(
        open_uploads(&sdk, &prefix),
        [],
        "uploads left open after the resumed run"
    );
    wire::s3_delete(&sdk, "ferry-a", &key);
}

/// Issue 17: SIGTERM while a PostgreSQL dump streams (the server behind a proxy at 4 MiB/s, so
/// the dump is under way whatever the machine): nothing that looks like a dump is left, no
/// upload stays open (dumps are not journaled, so an open one would be unknown), and the next
/// run makes a complete dump that `pg_restore` reads.
#[test]
fn sigterm_during_a_dump_exits_130_and_the_next_run_dumps() {
    const NAME: &str = "sigterm_during_a_dump_exits_130_and_the_next_run_dumps";
    if !common::servers_available(NAME) {
        return;
    }
    let base = db::pg_base();
    if !db::available(NAME, "PostgreSQL", db::psql_try(&base, "SELECT 1;").is_ok()) {
        return;
    }
    let pid = std::process::id();
    let name = format!("ferry_sigterm_{pid}");
    let admin = base.clone();
    let n = name.clone();
    let _cleanup = db::Cleanup(Box::new(move || {
        let _ = db::psql_try(&admin, &format!("DROP DATABASE IF EXISTS {n} WITH (FORCE);"));
    }));
    db::psql(
        &base,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE); CREATE DATABASE {name};"),
    );
    let url = db::with_db(&base, &name);
    // 16 MiB of random bytes: about 32 MiB of dump (bytea as hex), 8 s through the proxy.
    db::psql(
        &url,
        "CREATE TABLE big (id int PRIMARY KEY, blob bytea NOT NULL);
         INSERT INTO big SELECT g, decode(string_agg(md5(random()::text || g::text || i::text), ''), 'hex')
         FROM generate_series(1, 16000) g, generate_series(1, 64) i GROUP BY g;",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, database) = rest.split_once('/').unwrap();
    let (user, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let port = rt.block_on(common::slow_proxy(hostport.to_string(), 4.0 * 1024.0 * 1024.0));
    let slow = format!("{scheme}://{user}@127.0.0.1:{port}/{database}");

    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("sigterm-dump-{pid}-{}", nanos());
    let var = format!("FERRY_SIGTERM_PG_{pid}");
    let plan = write_plan(
        dir.path(),
        &format!(
            "{}\n[[databases]]\nname = \"pg\"\nengine = \"postgres\"\nurl-env = \"{var}\"\n\
             to = \"dst:{prefix}/{{name}}/{{timestamp}}.dump.zst\"\n",
            seaweed("dst")
        ),
    );
    let mut cmd = ferry_cmd(&["run", &plan, "--json", "--progress-interval", "1"]);
    cmd.env(&var, &slow);
    let r = term_if(cmd, |l| under_way(l, 3));
    assert_stopped(&r);
    assert!(
        r.stderr.contains("terminated: stopped during dump `pg`"),
        "{}",
        r.stderr
    );
    assert_eq!(r.json["databases"], serde_json::json!([]), "{}", r.stdout);
    let sdk = wire::s3_sdk("SEAWEED");
    assert_eq!(
        wire::s3_list(&sdk, "ferry-a", &prefix).unwrap(),
        Vec::<String>::new(),
        "no dump and no record"
    );
    assert_eq!(
        open_uploads(&sdk, &prefix),
        [],
        "the stopped dump's upload is left open"
    );

    // The next run (straight to the server) dumps the database whole.
    std::env::set_var(&var, &url);
    let again = ferry(&["run", "--json"], Path::new(&plan), Duration::from_secs(300));
    assert_eq!(again.code, Some(0), "{}", again.summary());
    let dumped = &again.json.as_ref().unwrap()["databases"][0];
    let key = dumped["key"].as_str().unwrap().to_string();
    let record_key = format!("{key}.ferry.json");
    let mut want = vec![key.clone(), record_key.clone()];
    want.sort();
    assert_eq!(wire::s3_list(&sdk, "ferry-a", &prefix).unwrap(), want);
    assert_eq!(open_uploads(&sdk, &prefix), []);
    let stored = wire::s3_get(&sdk, "ferry-a", &key).unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&wire::s3_get(&sdk, "ferry-a", &record_key).unwrap()).unwrap();
    assert_eq!(record["sha256"], sha256(&stored), "{record}");
    // Complete: zstd's frame checksum holds, and pg_restore reads the archive to its table data.
    let archive = dir.path().join("pg.dump");
    std::fs::write(&archive, zstd::decode_all(&stored[..]).unwrap()).unwrap();
    let listed = Command::new("pg_restore").arg("--list").arg(&archive).output().unwrap();
    let toc = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(toc.contains("TABLE DATA public big"), "{toc}");
    for k in [&key, &record_key] {
        wire::s3_delete(&sdk, "ferry-a", k);
    }
}

/// A pipe whose buffer is already full: whoever writes to it next blocks until it is read.
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, which become owned here and nowhere else.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl and ioctl on descriptors owned above.
    let capacity = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) };
    assert!(capacity > 0);
    std::fs::File::from(w.try_clone().unwrap())
        .write_all(&vec![b'#'; capacity as usize])
        .unwrap();
    let mut queued: libc::c_int = 0;
    assert_eq!(unsafe { libc::ioctl(r.as_raw_fd(), libc::FIONREAD, &mut queued) }, 0);
    assert_eq!(queued, capacity, "the pipe is full");
    (r, w)
}

/// Issue 17: an orderly stop that cannot finish (here: its `--json` document goes to a stdout
/// nobody reads) is ended by a second signal, at once; the journal it saved still resumes.
#[test]
fn a_second_signal_ends_a_stop_that_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let body = common::data(64 << 20, 5);
    std::fs::write(src.join("big.bin"), &body).unwrap();
    let plan = write_plan(
        dir.path(),
        &format!(
            "[providers.src]\ntype = \"local\"\nroot = {}\n\n[providers.dst]\ntype = \"local\"\nroot = {}\n\n\
             [[objects]]\nname = \"big\"\nfrom = \"src:\"\nto = \"dst:\"\n",
            toml_str(&src.display().to_string()),
            toml_str(&dir.path().join("dst").display().to_string())
        ),
    );
    let (stdout, stdout_w) = full_pipe();
    let args = [
        "run",
        &plan,
        "--json",
        "--bandwidth",
        "8MiB/s",
        "--progress-interval",
        "1",
    ];
    let mut child = ferry_cmd(&args)
        .stdout(Stdio::from(stdout_w))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (rx, stderr) = lines_of(child.stderr.take().unwrap());
    assert!(wait_for(&rx, |l| under_way(l, 5)), "the copy never got under way");
    signal(child.id(), libc::SIGTERM);
    // The orderly stop says so on stderr, then blocks writing its document to the full stdout.
    assert!(
        wait_for(&rx, |l| l.contains("terminated: stopped; progress is saved in")),
        "the first signal did not stop the copy"
    );
    assert!(child.try_wait().unwrap().is_none(), "ferry exited with its stdout full");
    signal(child.id(), libc::SIGTERM);
    let at = Instant::now();
    // Bounded, so that a second signal ignored fails the test instead of hanging it.
    let mut status = None;
    while status.is_none() && at.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
        status = child.try_wait().unwrap();
    }
    let after = at.elapsed();
    if status.is_none() {
        child.kill().ok();
        child.wait().ok();
    }
    eprintln!("{}", stderr.join().unwrap());
    let status = status.expect("the second SIGTERM did not end ferry (killed after 30 s)");
    assert_eq!(status.code(), Some(130));
    assert!(
        after <= Duration::from_secs(5),
        "exited {after:?} after the second SIGTERM"
    );
    // Nothing was added after the filler: the document was never written.
    let mut out = Vec::new();
    std::fs::File::from(stdout).read_to_end(&mut out).unwrap();
    assert!(out.iter().all(|b| *b == b'#'), "{}", String::from_utf8_lossy(&out));

    // What the stopped run journaled resumes: the next run completes the copy.
    let again = ferry(&["run", "--json"], Path::new(&plan), Duration::from_secs(120));
    assert_eq!(again.code, Some(0), "{}", again.summary());
    let got = std::fs::read(dir.path().join("dst/big.bin")).unwrap();
    assert_eq!(sha256(&got), sha256(&body), "content of big.bin");
}

/// Issue 17: SIGTERM while a SQLite dump waits for a writer's lock (its online-backup copy
/// retries for up to 5 minutes): the copy sees the stop, the process exits 130 within 5 s, and
/// no copy of the database is left in TMPDIR; once the writer is gone the next run dumps it.
#[test]
fn sigterm_while_a_sqlite_dump_waits_for_a_lock_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locked.db");
    let writer = rusqlite::Connection::open(&db).unwrap();
    writer
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1); BEGIN EXCLUSIVE;")
        .unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let dst = dir.path().join("dst");
    let plan = write_plan(
        dir.path(),
        &format!(
            "[providers.dst]\ntype = \"local\"\nroot = {}\n\n[[databases]]\nname = \"locked\"\nengine = \"sqlite\"\n\
             path = {}\nto = \"dst:db/{{timestamp}}.db.zst\"\n",
            toml_str(&dst.display().to_string()),
            toml_str(&db.display().to_string())
        ),
    );
    let mut cmd = ferry_cmd(&["run", &plan, "--json", "--progress-interval", "1"]);
    cmd.env("TMPDIR", &tmp);
    // The copy's file exists (made just before the copy starts), checked at each heartbeat.
    let r = term_if(cmd, |_| !files(&tmp).is_empty());
    assert_stopped(&r);
    assert!(r.stderr.contains("stopped during dump `locked`"), "{}", r.stderr);
    assert_eq!(
        files(&tmp),
        Vec::<String>::new(),
        "a copy of the database was left behind"
    );
    assert_eq!(files(&dst), Vec::<String>::new());

    writer.execute_batch("COMMIT;").unwrap();
    drop(writer);
    let again = ferry(&["run", "--json"], Path::new(&plan), Duration::from_secs(120));
    assert_eq!(again.code, Some(0), "{}", again.summary());
    assert_eq!(files(&dst).len(), 2, "the dump and its record: {:?}", files(&dst));
}
