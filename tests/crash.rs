//! Issue 5: kill -9 at random moments, resume, and lose nothing.
//!
//! A migration of 2,000 small objects and three of 200 MiB, local disk to a real S3 server
//! (SeaweedFS), is killed with SIGKILL at 20 random moments and resumed each time. Between two
//! kills one large source object is rewritten: it must arrive whole in its new version, never
//! stitched from two. After every kill the journal must pass SQLite's integrity check. At the end
//! the destination equals the source object for object, SHA-256 for SHA-256, and `ferry verify
//! --deep` exits 0. A counting proxy in front of the server measures the bytes sent, so the test
//! prints how many were sent more than once.

mod common;
use common::servers_available;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry::checksum::StreamHasher;
use object_store::aws::AmazonS3Builder;
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

fn sha256(bytes: &[u8]) -> String {
    let mut h = StreamHasher::new(false);
    h.update(bytes);
    h.finish().sha256
}

/// Forwards 127.0.0.1:<returned port> to `upstream`, counting the bytes clients send.
async fn counting_proxy(upstream: String, sent: Arc<AtomicU64>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            let sent = sent.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = async {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        sent.fetch_add(n as u64, Ordering::Relaxed);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut sw).await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    port
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
    let env = |v: &str| std::env::var(v).unwrap();
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

    let sent = Arc::new(AtomicU64::new(0));
    let endpoint = env("FERRY_TEST_SEAWEED_ENDPOINT");
    let port = counting_proxy(endpoint.trim_start_matches("http://").to_string(), sent.clone()).await;
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
    let s3 = AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_bucket_name("ferry-a")
        .with_region("us-east-1")
        .with_access_key_id(env("FERRY_TEST_SEAWEED_KEY"))
        .with_secret_access_key(env("FERRY_TEST_SEAWEED_SECRET"))
        .with_allow_http(true)
        .build()
        .unwrap();
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
        let v: Vec<_> = object_store::ObjectStore::list(&s3, Some(&OsPath::from(prefix.as_str())))
            .try_collect()
            .await
            .unwrap();
        v.len()
    };
    assert_eq!(listed, files.len(), "extra or missing objects at the destination");
    // Every multipart upload the killed runs opened was completed or aborted.
    let sdk = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                env("FERRY_TEST_SEAWEED_KEY"),
                env("FERRY_TEST_SEAWEED_SECRET"),
                None,
                None,
                "test",
            ))
            .build(),
    );
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
    let bound = mid_run * LARGE as u64 * ferry::transfer::PARTS_IN_FLIGHT as u64 * PART;
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
        ferry::transfer::PARTS_IN_FLIGHT,
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
