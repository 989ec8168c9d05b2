//! Issue 5: kill -9 at random moments, resume, and lose nothing.
//!
//! A migration of 2,000 small objects and three of 200 MiB, local disk to a real S3 server
//! (SeaweedFS), is killed with SIGKILL at 20 random moments and resumed each time. Between two
//! kills one large source object is rewritten: it must arrive whole in its new version, never
//! stitched from two. After every kill the journal must pass SQLite's integrity check. At the end
//! the destination equals the source object for object, SHA-256 for SHA-256, and `ferry verify
//! --deep` exits 0. A counting proxy in front of the server measures the bytes sent, so the test
//! prints how many were sent more than once.
//!
//! Resuming inside one object is shown on both S3 servers (issue 13): SeaweedFS, and moto, whose
//! ListParts answer the AWS SDK refuses. A run killed in the middle of a large object's upload is
//! resumed and must not send again the parts the server already holds; a resume whose upload is
//! gone must say so, naming the object and the reason.

mod common;
use common::oracle::{ferry, sha256, toml_str};
use common::{counting_proxy, env, servers_available, wire, Traffic};

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as OsPath;
use object_store::ObjectStoreExt;

const SMALL: usize = 2000;
const LARGE: usize = 3;
const LARGE_SIZE: usize = 200 << 20;
const PART: u64 = 16 << 20;
const KILLS: usize = 20;

/// A tiny deterministic generator, so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn fill(path: &Path, len: usize, seed: u64) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut r = Rng(seed | 1);
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for c in block.chunks_mut(8) {
            c.copy_from_slice(&r.next().to_le_bytes());
        }
        let n = left.min(block.len());
        f.write_all(&block[..n]).unwrap();
        left -= n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_twenty_times_then_resume_loses_nothing() {
    if !servers_available("sigkill_twenty_times_then_resume_loses_nothing") {
        return;
    }
    let seed: u64 = std::env::var("FERRY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d);
    eprintln!("seed {seed} (FERRY_CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for i in 0..SMALL {
        let len = 100 + (i * 37) % 4000;
        fill(&src.join(format!("small/{:02}/{i:04}.bin", i % 40)), len, i as u64 + 1);
    }
    for i in 0..LARGE {
        fill(&src.join(format!("large/{i}.bin")), LARGE_SIZE, 1000 + i as u64);
    }
    let total_bytes: u64 = walk(&src).iter().map(|(_, len)| *len).sum();

    let traffic = Arc::new(Traffic::default());
    let sent = &traffic.sent;
    let endpoint = env("FERRY_TEST_SEAWEED_ENDPOINT");
    let port = counting_proxy(endpoint.trim_start_matches("http://").to_string(), traffic.clone()).await;
    let prefix = format!("crash-{}-{}", std::process::id(), rng.next() % 1_000_000);
    let plan = dir.path().join("crash.toml");
    std::fs::write(
        &plan,
        format!(
            "[settings]\nconcurrency = 16\npart-size = \"16MiB\"\n\n[providers.src]\ntype = \"local\"\nroot = \"src\"\n\n\
             [providers.dst]\ntype = \"s3\"\nbucket = \"ferry-a\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
             region = \"us-east-1\"\nallow-http = true\npath-style = true\n\
             access-key-id-env = \"FERRY_TEST_SEAWEED_KEY\"\nsecret-access-key-env = \"FERRY_TEST_SEAWEED_SECRET\"\n\n\
             [[objects]]\nname = \"crash\"\nfrom = \"src:\"\nto = \"dst:{prefix}/\"\n"
        ),
    )
    .unwrap();
    let journal = dir.path().join(".ferry/crash/journal.sqlite");

    let mut changed_at = None;
    let mut mid_run = 0u64;
    for kill in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["run", "--quiet"])
            .arg(&plan)
            .spawn()
            .unwrap();
        // Kill after a random 2 to 34 MiB has gone out (or 4 s), so every kill lands mid-run
        // whatever the machine's speed: during small objects, large parts, or the listing.
        let before = sent.load(Ordering::Relaxed);
        let target = (2 << 20) + rng.next() % (32 << 20);
        let started = std::time::Instant::now();
        while sent.load(Ordering::Relaxed) - before < target
            && started.elapsed() < Duration::from_secs(4)
            && child.try_wait().unwrap().is_none()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let wait_ms = started.elapsed().as_millis();
        let still_running = child.try_wait().unwrap().is_none();
        if still_running {
            mid_run += 1;
        }
        // SIGKILL: no chance to flush, close uploads or say goodbye.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let status = child.wait().unwrap();
        eprintln!(
            "kill {:2}: after {wait_ms} ms ({}), {} MiB sent so far",
            kill + 1,
            if still_running {
                "killed mid-run"
            } else {
                "had already finished"
            },
            sent.load(Ordering::Relaxed) >> 20
        );
        let _ = status;
        if journal.exists() {
            let c =
                rusqlite::Connection::open_with_flags(&journal, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
            let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(check, "ok", "journal damaged after kill {}", kill + 1);
        }
        if kill == KILLS / 2 {
            // Rewrite a large source object between a kill and the resume: same size, new bytes.
            fill(&src.join("large/0.bin"), LARGE_SIZE, 4242);
            changed_at = Some(sent.load(Ordering::Relaxed));
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--json"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("final run: copied {} objects", report["totals"]["copied"]["objects"]);

    let verify = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["verify", "--deep", "--quiet"])
        .arg(&plan)
        .status()
        .unwrap();
    assert_eq!(verify.code(), Some(0), "verify --deep");

    // The destination, read straight from the server, equals the source object for object.
    let s3 = common::s3_store(
        &endpoint,
        "ferry-a",
        &env("FERRY_TEST_SEAWEED_KEY"),
        &env("FERRY_TEST_SEAWEED_SECRET"),
    );
    let files = walk(&src);
    assert_eq!(files.len(), SMALL + LARGE);
    for (rel, _) in &files {
        let want = std::fs::read(src.join(rel)).unwrap();
        let got = s3
            .get(&OsPath::from(format!("{prefix}/{rel}")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.len(), want.len(), "size of {rel}");
        assert_eq!(sha256(&got), sha256(&want), "content of {rel}");
    }
    let listed = {
        use futures::TryStreamExt;
        let v: Vec<_> = s3
            .list(Some(&OsPath::from(prefix.as_str())))
            .try_collect()
            .await
            .unwrap();
        v.len()
    };
    assert_eq!(listed, files.len(), "extra or missing objects at the destination");
    // Every multipart upload the killed runs opened was completed or aborted.
    let sdk = wire::s3_sdk("SEAWEED");
    // First prove the server lists open uploads at all, so the check below can fail.
    let probe = format!("{prefix}-probe/x");
    let id = sdk
        .create_multipart_upload()
        .bucket("ferry-a")
        .key(&probe)
        .send()
        .await
        .unwrap();
    let id = id.upload_id().unwrap().to_string();
    let seen = sdk
        .list_multipart_uploads()
        .bucket("ferry-a")
        .prefix(&probe)
        .send()
        .await
        .unwrap();
    assert_eq!(seen.uploads().len(), 1, "the server does not list open uploads");
    sdk.abort_multipart_upload()
        .bucket("ferry-a")
        .key(&probe)
        .upload_id(id)
        .send()
        .await
        .unwrap();
    let open = sdk
        .list_multipart_uploads()
        .bucket("ferry-a")
        .prefix(format!("{prefix}/"))
        .send()
        .await
        .unwrap();
    let open: Vec<_> = open.uploads().iter().filter_map(|u| u.key()).collect();
    eprintln!("multipart uploads left open: {}", open.len());
    assert!(open.is_empty(), "uploads left open: {open:?}");

    let total_sent = sent.load(Ordering::Relaxed);
    let necessary = total_bytes + LARGE_SIZE as u64; // the rewritten object legitimately goes twice
    let resent = total_sent.saturating_sub(necessary);
    // Each kill can lose the parts in flight: PARTS_IN_FLIGHT per large object being uploaded.
    let bound = mid_run * LARGE as u64 * ferry::sync::PARTS_IN_FLIGHT as u64 * PART;
    let one_part_each = mid_run * LARGE as u64 * PART;
    eprintln!(
        "bytes: source {} MiB; sent {} MiB (incl. request headers); necessary {} MiB (the rewritten 200 MiB object \
         twice); sent more than once: {} MiB over {mid_run} mid-run kills = {:.1} MiB a kill; one part per large object \
         in flight would be {} MiB in all, the hard bound ({} parts in flight each) {} MiB; source rewritten after {} MiB",
        total_bytes >> 20,
        total_sent >> 20,
        necessary >> 20,
        resent >> 20,
        resent as f64 / mid_run.max(1) as f64 / 1048576.0,
        one_part_each >> 20,
        ferry::sync::PARTS_IN_FLIGHT,
        bound >> 20,
        changed_at.unwrap_or(0) >> 20
    );
    assert!(
        mid_run >= KILLS as u64 / 2,
        "only {mid_run} of {KILLS} kills landed mid-run"
    );
    assert!(
        resent <= bound,
        "re-sent {resent} bytes, more than the in-flight parts could explain ({bound})"
    );
    assert!(
        resent <= one_part_each,
        "re-sent {resent} bytes: more than one part per large object in flight per kill ({one_part_each})"
    );
}

const RESUME_SIZE: usize = 60 << 20;
const RESUME_PART: u64 = 5 << 20;
/// Sent before the kill: more than a full restart could hide under the in-flight bound below.
const RESUME_KILL_AT: u64 = 35 << 20;

/// What happens to the killed run's upload before the resume.
#[derive(Clone, Copy, PartialEq)]
enum Between {
    /// Nothing: the resume continues it.
    Nothing,
    /// It is aborted behind ferry's back: the resume must start over and say why.
    UploadAborted,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_inside_an_object_sends_no_part_twice_on_seaweedfs() {
    resume_inside_an_object("SEAWEED", Between::Nothing).await;
}

/// moto answers ListParts with a `ListPartsResponse` root the AWS SDK refuses; the resume used to
/// abort the upload and send every part again, silently (issue 13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_inside_an_object_sends_no_part_twice_on_moto() {
    resume_inside_an_object("MOTO", Between::Nothing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_that_must_restart_says_why_on_seaweedfs() {
    resume_inside_an_object("SEAWEED", Between::UploadAborted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_that_must_restart_says_why_on_moto() {
    resume_inside_an_object("MOTO", Between::UploadAborted).await;
}

/// One 60 MiB object, local disk to S3 server `which` in 5 MiB parts through a counting proxy:
/// the run is killed (SIGKILL) once 35 MiB have gone out, then run again.
async fn resume_inside_an_object(which: &str, between: Between) {
    let name = format!("resume_inside_an_object({which})");
    if !servers_available(&name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let body = common::data(RESUME_SIZE, 13);
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/big.bin"), &body).unwrap();
    let traffic = Arc::new(Traffic::default());
    let endpoint = env(&format!("FERRY_TEST_{which}_ENDPOINT"));
    let port = counting_proxy(endpoint.trim_start_matches("http://").to_string(), traffic.clone()).await;
    let prefix = format!("resume-{}-{}", std::process::id(), common::oracle::nanos());
    let plan = dir.path().join("resume.toml");
    std::fs::write(
        &plan,
        format!(
            "[settings]\npart-size = \"5MiB\"\n\n[providers.src]\ntype = \"local\"\nroot = {}\n\n\
             [providers.dst]\ntype = \"s3\"\nbucket = \"ferry-a\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
             region = \"us-east-1\"\nallow-http = true\npath-style = true\n\
             access-key-id-env = \"FERRY_TEST_{which}_KEY\"\nsecret-access-key-env = \"FERRY_TEST_{which}_SECRET\"\n\n\
             [[objects]]\nname = \"resume\"\nfrom = \"src:\"\nto = \"dst:{prefix}/\"\n",
            toml_str(&dir.path().join("src").display().to_string())
        ),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--quiet"])
        .arg(&plan)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while traffic.sent.load(Ordering::Relaxed) < RESUME_KILL_AT
        && started.elapsed() < Duration::from_secs(120)
        && child.try_wait().unwrap().is_none()
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first run ended before the kill"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let before = traffic.sent.load(Ordering::Relaxed);
    assert!(before >= RESUME_KILL_AT, "killed after only {before} bytes");

    // The killed run journaled its upload before the first part: there is something to resume.
    let journal = rusqlite::Connection::open(dir.path().join(".ferry/resume/journal.sqlite")).unwrap();
    let upload_id: String = journal
        .query_row(
            "SELECT upload_id FROM objects WHERE key = 'big.bin' AND upload_id IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(journal);
    let key = format!("{prefix}/big.bin");
    let sdk = wire::s3_sdk(which);
    if between == Between::UploadAborted {
        sdk.abort_multipart_upload()
            .bucket("ferry-a")
            .key(&key)
            .upload_id(&upload_id)
            .send()
            .await
            .unwrap();
    }

    let plan2 = plan.clone();
    let ran = tokio::task::spawn_blocking(move || ferry(&["run", "--json"], &plan2, Duration::from_secs(300)))
        .await
        .unwrap();
    assert_eq!(ran.code, Some(0), "{}", ran.summary());
    let after = traffic.sent.load(Ordering::Relaxed) - before;

    // The object arrived whole, read straight from the server.
    let got = sdk.get_object().bucket("ferry-a").key(&key).send().await.unwrap();
    let got = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(got.len(), body.len(), "size of big.bin");
    assert_eq!(sha256(&got), sha256(&body), "content of big.bin");

    let restarted = &ran.job("resume").unwrap()["restarted_uploads"];
    let resent = (before + after).saturating_sub(RESUME_SIZE as u64);
    // At most the parts in flight at the kill go twice (their requests' headers are a few KB).
    let bound = ferry::sync::PARTS_IN_FLIGHT as u64 * RESUME_PART + (256 << 10);
    eprintln!(
        "{which}: {} MiB sent before the kill, {} MiB by the resumed run; sent more than once: {} MiB (bound {} MiB)",
        before >> 20,
        after >> 20,
        resent >> 20,
        bound >> 20
    );
    match between {
        Between::Nothing => {
            assert!(
                !ran.stderr.contains("could not be resumed"),
                "the resume gave up: {}",
                ran.summary()
            );
            assert!(restarted.is_null(), "restarted: {restarted}");
            assert!(
                resent <= bound,
                "re-sent {resent} bytes, more than the parts in flight at the kill could explain ({bound})"
            );
        }
        Between::UploadAborted => {
            // Said at the default verbosity, naming the object and the server's reason.
            let warning = ran
                .stderr
                .lines()
                .find(|l| l.starts_with("warning:") && l.contains("`big.bin`"))
                .unwrap_or_else(|| panic!("no warning naming `big.bin`: {}", ran.summary()));
            assert!(warning.contains("NoSuchUpload"), "{warning}");
            assert!(warning.contains(&upload_id), "{warning}");
            assert_eq!(restarted[0]["key"], "big.bin", "{restarted}");
            assert!(
                restarted[0]["reason"].as_str().unwrap().contains("NoSuchUpload"),
                "{restarted}"
            );
            // Started over: the whole object went again.
            assert!(after >= RESUME_SIZE as u64, "sent only {after} bytes after the restart");
        }
    }
}

/// Every file under `dir`: relative path and size, sorted.
fn walk(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let len = p.metadata().unwrap().len();
                out.push((p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(), len));
            }
        }
    }
    out.sort();
    out
}
