//! Fault tests (issue 8): ferry between a hostile network and real servers, and integrity
//! checks that a flipped byte anywhere at a destination is found.
//!
//! - `mixed_faults_*`: `tests/faults/proxy.py` sits between ferry and SeaweedFS and faults 10% of
//!   requests (500, 503 SlowDown, 429, connection resets, truncated bodies, delays, mixed). A
//!   migration of 1,000+ objects with several multipart ones must complete in one run, and the
//!   destination must equal the source by SHA-256, read back directly from SeaweedFS.
//! - `truncated_*`: every read of two chosen objects is cut short; they must be reported as not
//!   copied, never written as complete, and copied intact by the next healthy run.
//! - `flipped_bytes_*`: one byte flipped at a random offset in destination objects on every
//!   provider (rewritten through the provider's API, or the file for local) is named by
//!   `ferry verify` (default level and `--deep`).
//!
//! Everything talks to the real servers from tests/servers/up.sh; without them each test says
//! SKIPPED (and fails under CI). Each test uses its own key prefix in the shared buckets.

mod common;
use common::proxy::Proxy;
use common::{data, env, s3_store, servers_available};

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

fn unique(test: &str) -> String {
    format!(
        "{}-{}-{}",
        test.replace('_', "-"),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    )
}

/// A small seeded PRNG for offsets and choices, so a failure can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed_from_env(var: &str) -> u64 {
    std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            % 1_000_000
            + 1
    })
}

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn ferry(args: &[&str], plan: &Path) -> Output {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .arg(plan)
        .output()
        .unwrap();
    eprintln!(
        "ferry {args:?} -> {:?} in {:.1}s\n{}",
        out.status.code(),
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

// ---------------------------------------------------------------------------------------------
// Direct access to the servers (not through ferry, not through the proxy).

fn seaweed_hostport() -> String {
    env("FERRY_TEST_SEAWEED_ENDPOINT")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

fn seaweed(bucket: &str) -> Arc<dyn ObjectStore> {
    s3_store(
        &env("FERRY_TEST_SEAWEED_ENDPOINT"),
        bucket,
        &env("FERRY_TEST_SEAWEED_KEY"),
        &env("FERRY_TEST_SEAWEED_SECRET"),
    )
}

fn seaweed_sdk() -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let creds = Credentials::new(
        env("FERRY_TEST_SEAWEED_KEY"),
        env("FERRY_TEST_SEAWEED_SECRET"),
        None,
        None,
        "test",
    );
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url(env("FERRY_TEST_SEAWEED_ENDPOINT"))
            .force_path_style(true)
            .build(),
    )
}

/// The `[providers.X]` body for SeaweedFS at `endpoint` (the proxy, or the server itself).
fn seaweed_snippet(endpoint: &str, bucket: &str) -> String {
    format!(
        "type = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
         allow-http = true\npath-style = true\n\
         access-key-id-env = \"FERRY_TEST_SEAWEED_KEY\"\nsecret-access-key-env = \"FERRY_TEST_SEAWEED_SECRET\"\n"
    )
}

/// Writes an object, as multipart (5 MiB parts) when `multipart`, so its ETag is not an MD5.
async fn put(store: &dyn ObjectStore, key: &str, body: Vec<u8>, multipart: bool) {
    let path = OsPath::parse(key).unwrap();
    if !multipart {
        store
            .put_opts(&path, PutPayload::from(body), PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("seeding `{key}`: {e}"));
        return;
    }
    let upload = store
        .put_multipart_opts(&path, PutMultipartOptions::default())
        .await
        .unwrap();
    let mut w = WriteMultipart::new_with_chunk_size(upload, 5 * MIB);
    for chunk in body.chunks(5 * MIB) {
        w.wait_for_capacity(4).await.unwrap();
        w.put(Bytes::copy_from_slice(chunk));
    }
    w.finish().await.unwrap();
}

/// Every object under `prefix`: key relative to the prefix -> SHA-256 and size.
async fn hashes(store: &dyn ObjectStore, prefix: &str) -> BTreeMap<String, (String, u64)> {
    let p = OsPath::parse(prefix.trim_end_matches('/')).unwrap();
    let listed: Vec<_> = store.list(Some(&p)).try_collect().await.unwrap();
    futures::stream::iter(listed)
        .map(|m| async move {
            let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
            assert_eq!(bytes.len() as u64, m.size, "listed size of `{}`", m.location);
            let rel = m.location.as_ref().strip_prefix(prefix).unwrap().to_string();
            (rel, (sha256(&bytes), m.size))
        })
        .buffer_unordered(16)
        .collect()
        .await
}

async fn delete_prefix(store: &dyn ObjectStore, prefix: &str) {
    let p = OsPath::parse(prefix.trim_end_matches('/')).unwrap();
    let listed: Vec<_> = match store.list(Some(&p)).try_collect().await {
        Ok(l) => l,
        Err(_) => return,
    };
    futures::stream::iter(listed)
        .for_each_concurrent(16, |m| async move {
            let _ = store.delete(&m.location).await;
        })
        .await;
}

/// Multipart uploads started under `prefix` and never completed or aborted.
async fn pending_uploads(bucket: &str, prefix: &str) -> Vec<String> {
    let out = seaweed_sdk()
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    out.uploads()
        .iter()
        .filter_map(|u| u.key().map(str::to_string))
        .collect()
}

/// Aborts what `pending_uploads` finds, so a test leaves no billed parts behind.
async fn abort_pending(bucket: &str, prefix: &str) {
    let c = seaweed_sdk();
    let Ok(out) = c.list_multipart_uploads().bucket(bucket).prefix(prefix).send().await else {
        return;
    };
    for u in out.uploads() {
        if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
            let _ = c
                .abort_multipart_upload()
                .bucket(bucket)
                .key(k)
                .upload_id(id)
                .send()
                .await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Must show 1: 10% of requests faulted, all kinds mixed, 1,000+ objects incl. multipart.

/// Objects seeded for the mixed-fault migration: (relative key, size, seeded as multipart).
fn mixed_fault_objects() -> Vec<(String, usize, bool)> {
    let mut v: Vec<(String, usize, bool)> = (0..1000usize)
        .map(|i| {
            // 0 B to ~64 KiB, a few empty ones.
            let size = if i % 97 == 0 { 0 } else { (i * 7919) % (64 * 1024) + 1 };
            (format!("d{}/obj-{i:04}.bin", i % 10), size, false)
        })
        .collect();
    // Several objects above ferry's default part size (16 MiB); the plan's part size is 5 MiB,
    // so each goes up as a multipart upload of 4-7 parts. One is multipart at the source too.
    v.push(("big/a.bin".into(), 16 * MIB + 1, false));
    v.push(("big/b.bin".into(), 20 * MIB + 12_345, false));
    v.push(("big/c.bin".into(), 24 * MIB, false));
    v.push(("big/d-multipart-source.bin".into(), 33 * MIB + 7, true));
    v
}

/// The plan text for one SeaweedFS bucket-to-bucket job through `endpoint`. Bytes must stream
/// through ferry (and the proxy) for read faults to mean anything: no server-side copy.
fn seaweed_plan(endpoint: &str, job: &str, from: &str, to: &str) -> String {
    format!(
        "[settings]\npart-size = \"5MiB\"\nstate-dir = \"state\"\nserver-side-copy = false\n\n\
         [providers.src]\n{}\n[providers.dst]\n{}\n\
         [[objects]]\nname = \"{job}\"\nfrom = \"src:{from}\"\nto = \"dst:{to}\"\n",
        seaweed_snippet(endpoint, "ferry-a"),
        seaweed_snippet(endpoint, "ferry-b"),
    )
}

/// The manifest ferry uploaded for `job` to ferry-b, as (key, sha256) pairs.
async fn remote_manifest(b: &dyn ObjectStore, job: &str) -> Vec<(String, String)> {
    // The manifest lives at the destination *store's* root (`.ferry/manifests/<job>.jsonl`),
    // not under the job's `to` prefix; each test uses its own job name.
    let manifest = b
        .get(&OsPath::parse(format!(".ferry/manifests/{job}.jsonl")).unwrap())
        .await
        .unwrap_or_else(|e| panic!("no manifest for `{job}` at the destination: {e}"))
        .bytes()
        .await
        .unwrap();
    String::from_utf8(manifest.to_vec())
        .unwrap()
        .lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Some((v["key"].as_str()?.into(), v["sha256"].as_str()?.into()))
        })
        .collect()
}

/// Seeds 1,004 objects, migrates them through the fault proxy at a 10% fault rate (plus
/// `proxy_args`), and checks the destination against the source by SHA-256.
///
/// `strict`: also require that no multipart upload is left open. A failed attempt's abort is
/// not retried today, so a faulted abort leaves an orphan (see
/// `failed_upload_is_aborted_even_when_the_abort_is_throttled`); the non-strict variant prints
/// the orphans instead.
async fn mixed_faults(test: &str, proxy_args: &[&str], strict: bool) {
    if !servers_available(test) {
        return;
    }
    let seed = seed_from_env("FERRY_FAULT_SEED");
    let id = unique(test);
    let job = format!("bulk-{}", &id[id.len() - 9..]);
    let (src_prefix, dst_prefix) = (format!("{id}/src/"), format!("{id}/dst/"));
    let (a, b) = (seaweed("ferry-a"), seaweed("ferry-b"));

    let objects = mixed_fault_objects();
    futures::stream::iter(objects.iter().enumerate())
        .for_each_concurrent(32, |(i, (rel, size, mp))| {
            let a = a.clone();
            let key = format!("{src_prefix}{rel}");
            async move { put(&*a, &key, data(*size, i as u64 + 1), *mp).await }
        })
        .await;

    let seed_arg = seed.to_string();
    let mut args = vec!["--rate", "0.1", "--seed", &seed_arg];
    args.extend_from_slice(proxy_args);
    let proxy = Proxy::start(&seaweed_hostport(), &args);
    let tmp = tempfile::tempdir().unwrap();
    let faulty = tmp.path().join("through-proxy.toml");
    std::fs::write(&faulty, seaweed_plan(&proxy.endpoint(), &job, &src_prefix, &dst_prefix)).unwrap();
    let direct = tmp.path().join("direct.toml");
    let endpoint = env("FERRY_TEST_SEAWEED_ENDPOINT");
    std::fs::write(&direct, seaweed_plan(&endpoint, &job, &src_prefix, &dst_prefix)).unwrap();

    let started = std::time::Instant::now();
    let out = ferry(&["run", "--json", "-v"], &faulty);
    let seconds = started.elapsed().as_secs_f64();
    let stats = proxy.stats();
    drop(proxy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let object_retries = stderr.lines().filter(|l| l.starts_with("retrying ")).count();
    let faults = &stats["faults"];
    println!(
        "FAULTS {test} (seed {seed}): {} of {} requests faulted in {seconds:.1}s: \
         500={} 503-SlowDown={} 429={} reset={} truncated-body={} delay={}; \
         retried: every fault but the delays (request retries in object_store and the AWS SDK), \
         plus {object_retries} whole-object retries by ferry",
        stats["faulted"],
        stats["requests"],
        faults["500"],
        faults["503"],
        faults["429"],
        faults["reset"],
        faults["truncate"],
        faults["delay"]
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the migration did not complete under 10% faults (replay with FERRY_FAULT_SEED={seed})"
    );
    let j = json(&out);
    assert_eq!(j["ok"], true);
    assert_eq!(j["totals"]["failed"], 0);
    assert_eq!(j["totals"]["copied"]["objects"], objects.len() as u64);
    for kind in ["500", "503", "429", "reset", "truncate", "delay"] {
        assert!(
            faults[kind].as_u64().unwrap() > 0,
            "no `{kind}` fault was injected: {stats}"
        );
    }
    let total = stats["requests"].as_u64().unwrap() as f64;
    let faulted = stats["faulted"].as_u64().unwrap() as f64;
    assert!(faulted / total > 0.07, "fault rate too low: {stats}");

    // The destination equals the source by SHA-256, read directly from SeaweedFS.
    let src = hashes(&*a, &src_prefix).await;
    let dst = hashes(&*b, &dst_prefix).await;
    assert_eq!(src.len(), objects.len());
    let differ: Vec<_> = src
        .iter()
        .filter(|(k, v)| dst.get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        differ.is_empty(),
        "{} objects differ or are missing: {:?}",
        differ.len(),
        &differ[..differ.len().min(10)]
    );
    assert_eq!(dst.len(), src.len(), "extra objects at the destination");

    // The manifest ferry wrote agrees with what is really there.
    let manifest = remote_manifest(&*b, &job).await;
    assert_eq!(manifest.len(), objects.len(), "manifest entries");
    for (key, sha) in &manifest {
        let rel = key.strip_prefix(&dst_prefix).unwrap();
        assert_eq!(dst[rel].0, *sha, "manifest entry for `{key}`");
    }

    // No multipart upload was left behind by the retried attempts.
    let orphans = pending_uploads("ferry-b", &dst_prefix).await;
    println!("ORPHANED multipart uploads: {} {orphans:?}", orphans.len());
    if strict {
        assert!(orphans.is_empty(), "orphaned multipart uploads: {orphans:?}");
    }
    abort_pending("ferry-b", &dst_prefix).await;

    // And ferry's own deep verify, without the proxy, agrees.
    let out = ferry(&["verify", "--deep", "--json"], &direct);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["jobs"][0]["checked"]["objects"], objects.len() as u64);
    assert_eq!(v["jobs"][0]["mismatches"], serde_json::json!([]));

    delete_prefix(&*a, &src_prefix).await;
    delete_prefix(&*b, &dst_prefix).await;
    let _ = b
        .delete(&OsPath::parse(format!(".ferry/manifests/{job}.jsonl")).unwrap())
        .await;
}

/// Must show 1, as the issue states it: every request may be faulted, listings included.
/// About one seed in ten faults a listing request in a way ferry does not survive yet; see the
/// `listing_*` tests below for which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_faults_10pct_1000_objects_complete_and_match() {
    mixed_faults("mixed_faults_10pct_1000_objects_complete_and_match", &[], true).await;
}

/// The same with listing requests spared (`GET /bucket?list-type=2`, a few per run; their
/// faults are covered one kind at a time by the `listing_*` tests below): every other request
/// (object reads, writes, multipart calls, aborts, the manifest upload) is eligible for every
/// fault kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_faults_10pct_1000_objects_complete_when_listings_are_spared() {
    mixed_faults(
        "mixed_faults_10pct_listings_spared",
        &["--path-regex", "^/ferry-[ab]/.+"],
        false,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Each fault kind on listing requests.

/// Two listing requests (`GET /bucket?list-type=2...`) get fault `kind`, after sparing the
/// first `skip`. ferry's reachability probes come first, one per provider, through
/// object_store; with `skip = 2` the faults land on the job's listings proper, which go through
/// the AWS SDK. The run must retry them and complete.
async fn listing_fault_is_retried(kind: &str, skip: usize) {
    let test = format!("listing_fault_is_retried_{kind}_skip{skip}");
    if !servers_available(&test) {
        return;
    }
    let id = unique(&test);
    let job = format!("list-{}", &id[id.len() - 9..]);
    let (src_prefix, dst_prefix) = (format!("{id}/src/"), format!("{id}/dst/"));
    let (a, b) = (seaweed("ferry-a"), seaweed("ferry-b"));
    for i in 0..3 {
        put(&*a, &format!("{src_prefix}o{i}"), data(1000 + i, i as u64), false).await;
    }
    let skip_arg = skip.to_string();
    let proxy = Proxy::start(
        &seaweed_hostport(),
        &[
            "--rate",
            "1.0",
            "--kinds",
            kind,
            "--path-regex",
            "^/ferry-[ab]/?$",
            "--methods",
            "GET",
            "--max-faults",
            "2",
            "--skip",
            &skip_arg,
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("p.toml");
    std::fs::write(&plan, seaweed_plan(&proxy.endpoint(), &job, &src_prefix, &dst_prefix)).unwrap();
    let out = ferry(&["run", "--json"], &plan);
    let stats = proxy.stats();
    drop(proxy);
    println!("LISTING FAULTS {kind} (skip {skip}): {}", stats["faults"]);
    assert!(stats["faulted"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(out.status.code(), Some(0), "a faulted listing must be retried");
    assert_eq!(json(&out)["totals"]["copied"]["objects"], 3);
    assert_eq!(hashes(&*b, &dst_prefix).await.len(), 3);
    delete_prefix(&*a, &src_prefix).await;
    delete_prefix(&*b, &dst_prefix).await;
    let _ = b
        .delete(&OsPath::parse(format!(".ferry/manifests/{job}.jsonl")).unwrap())
        .await;
}

macro_rules! listing_faults {
    ($($(#[$attr:meta])* $name:ident: $kind:literal, $skip:literal;)*) => {
        $(
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                listing_fault_is_retried($kind, $skip).await;
            }
        )*
    };
}

listing_faults! {
    probe_listing_fault_is_retried_500: "500", 0;
    probe_listing_fault_is_retried_503_slowdown: "503", 0;
    probe_listing_fault_is_retried_429: "429", 0;
    probe_listing_fault_is_retried_reset: "reset", 0;
    probe_listing_fault_is_retried_truncate: "truncate", 0;
    s3_listing_fault_is_retried_500: "500", 2;
    s3_listing_fault_is_retried_503_slowdown: "503", 2;
    s3_listing_fault_is_retried_429: "429", 2;
    s3_listing_fault_is_retried_reset: "reset", 2;
    s3_listing_fault_is_retried_truncate: "truncate", 2;
}

// ---------------------------------------------------------------------------------------------
// A truncated body never becomes a complete-looking object.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_reads_never_complete_an_object() {
    let test = "truncated_reads_never_complete_an_object";
    if !servers_available(test) {
        return;
    }
    let id = unique("truncated");
    let job = format!("trunc-{}", &id[id.len() - 9..]);
    let (src_prefix, dst_prefix) = (format!("{id}/src/"), format!("{id}/dst/"));
    let (a, b) = (seaweed("ferry-a"), seaweed("ferry-b"));
    // A single-part object (MD5 ETag), a multipart one written as multipart at the source (no
    // MD5 to check the read against: only the byte count can catch it), and a bystander.
    let objects = [
        ("victim-small.bin", 300_000usize, false),
        ("victim-multipart.bin", 12 * MIB + 5, true),
        ("bystander.bin", 200_000, false),
    ];
    for (i, (rel, size, mp)) in objects.iter().enumerate() {
        put(&*a, &format!("{src_prefix}{rel}"), data(*size, 100 + i as u64), *mp).await;
    }
    // Every GET of the two victims is cut in half, including object_store's ranged re-reads of
    // the rest; every other request passes.
    let proxy = Proxy::start(
        &seaweed_hostport(),
        &[
            "--rate",
            "1.0",
            "--kinds",
            "truncate",
            "--methods",
            "GET",
            "--path-regex",
            "/victim-[a-z]+\\.bin$",
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let plan = |name: &str, endpoint: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, seaweed_plan(endpoint, &job, &src_prefix, &dst_prefix)).unwrap();
        p
    };
    let faulty = plan("faulty.toml", &proxy.endpoint());
    let out = ferry(&["run", "--json"], &faulty);
    let stats = proxy.stats();
    drop(proxy);
    println!(
        "TRUNCATED bodies injected: {} (of {} requests)",
        stats["faults"]["truncate"], stats["requests"]
    );
    assert!(stats["faults"]["truncate"].as_u64().unwrap() >= 2);
    assert_eq!(out.status.code(), Some(1), "part of the job failed: exit 1");
    let j = json(&out);
    let failed = j["jobs"][0]["failed"].as_array().unwrap();
    let keys: Vec<_> = failed.iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            format!("{src_prefix}victim-multipart.bin"),
            format!("{src_prefix}victim-small.bin")
        ]
    );
    for f in failed {
        assert!(!f["reason"].as_str().unwrap().is_empty(), "{f}");
    }
    // Nothing complete-looking at the destination: only the bystander, and no upload pending.
    let dst = hashes(&*b, &dst_prefix).await;
    assert_eq!(dst.keys().collect::<Vec<_>>(), ["bystander.bin"], "{dst:?}");
    assert_eq!(pending_uploads("ferry-b", &dst_prefix).await, Vec::<String>::new());
    // The manifest lists only what was copied.
    let manifest = remote_manifest(&*b, &job).await;
    assert_eq!(manifest.len(), 1, "{manifest:?}");
    assert_eq!(manifest[0].0, format!("{dst_prefix}bystander.bin"));

    // A healthy network: the next run copies the two, intact.
    let direct = plan("healthy.toml", &env("FERRY_TEST_SEAWEED_ENDPOINT"));
    let out = ferry(&["run", "--json"], &direct);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["totals"]["copied"]["objects"], 2);
    let src = hashes(&*a, &src_prefix).await;
    assert_eq!(src, hashes(&*b, &dst_prefix).await);
    assert_eq!(remote_manifest(&*b, &job).await.len(), 3);

    delete_prefix(&*a, &src_prefix).await;
    delete_prefix(&*b, &dst_prefix).await;
    let _ = b
        .delete(&OsPath::parse(format!(".ferry/manifests/{job}.jsonl")).unwrap())
        .await;
}

/// A multipart copy of `victim.bin` whose every source read is cut short, with the
/// destination's upload-id requests (`?uploadId=`: ListParts, UploadPart, Complete, Abort)
/// faulted by `dst_faults`. Returns the destination prefix, the job's plan and its proxy stats.
async fn failing_multipart(
    test: &str,
    dst_faults: &[&str],
) -> (String, String, tempfile::TempDir, PathBuf, serde_json::Value) {
    let id = unique(test);
    let job = format!("abort-{}", &id[id.len() - 9..]);
    let (src_prefix, dst_prefix) = (format!("{id}/src/"), format!("{id}/dst/"));
    let a = seaweed("ferry-a");
    put(&*a, &format!("{src_prefix}victim.bin"), data(12 * MIB + 5, 5), true).await;
    let src_proxy = Proxy::start(
        &seaweed_hostport(),
        &[
            "--rate",
            "1.0",
            "--kinds",
            "truncate",
            "--methods",
            "GET",
            "--path-regex",
            "/victim\\.bin$",
        ],
    );
    let dst_proxy = Proxy::start(&seaweed_hostport(), dst_faults);
    let tmp = tempfile::tempdir().unwrap();
    let plan = |name: &str, src: &str, dst: &str| {
        let p = tmp.path().join(name);
        std::fs::write(
            &p,
            format!(
                "[settings]\npart-size = \"5MiB\"\nstate-dir = \"state\"\nserver-side-copy = false\n\n\
                 [providers.src]\n{}\n[providers.dst]\n{}\n\
                 [[objects]]\nname = \"{job}\"\nfrom = \"src:{src_prefix}\"\nto = \"dst:{dst_prefix}\"\n",
                seaweed_snippet(src, "ferry-a"),
                seaweed_snippet(dst, "ferry-b"),
            ),
        )
        .unwrap();
        p
    };
    let faulty = plan("faulty.toml", &src_proxy.endpoint(), &dst_proxy.endpoint());
    let direct = env("FERRY_TEST_SEAWEED_ENDPOINT");
    let healthy = plan("healthy.toml", &direct, &direct);
    let out = ferry(&["run", "--json", "-v"], &faulty);
    let stats = dst_proxy.stats();
    drop((src_proxy, dst_proxy));
    println!("{test}: destination faults {}", stats["faults"]);
    assert_eq!(out.status.code(), Some(1), "the victim cannot be read: exit 1");
    (dst_prefix, src_prefix, tmp, healthy, stats)
}

async fn cleanup_failing_multipart(dst_prefix: &str, src_prefix: &str) {
    abort_pending("ferry-b", dst_prefix).await;
    delete_prefix(&*seaweed("ferry-a"), src_prefix).await;
    delete_prefix(&*seaweed("ferry-b"), dst_prefix).await;
}

/// The upload a failed attempt left open (its abort was throttled) is resumed by the next
/// attempt, whose ListParts is throttled too: the recorded upload must then be aborted (or the
/// attempt fail), not silently replaced by a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_list_parts_does_not_orphan_the_journaled_upload() {
    let test = "throttled_list_parts_does_not_orphan_the_journaled_upload";
    if !servers_available(test) {
        return;
    }
    // The first Abort (DELETE ?uploadId=) and the next request with an upload id (the second
    // attempt's ListParts) get a 429.
    let (dst_prefix, src_prefix, _tmp, _healthy, stats) = failing_multipart(
        test,
        &[
            "--rate",
            "1.0",
            "--kinds",
            "429",
            "--methods",
            "DELETE,GET",
            "--url-regex",
            "uploadId=",
            "--max-faults",
            "2",
        ],
    )
    .await;
    let orphans = pending_uploads("ferry-b", &dst_prefix).await;
    cleanup_failing_multipart(&dst_prefix, &src_prefix).await;
    assert_eq!(stats["faults"]["429"], 2, "{stats}");
    assert!(orphans.is_empty(), "orphaned multipart uploads: {orphans:?}");
}

/// Every abort of the failed upload is throttled, so the run ends with it open; the next
/// (healthy) run must continue or abort it: no upload may stay open for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_left_open_by_failed_aborts_is_closed_by_the_next_run() {
    let test = "upload_left_open_by_failed_aborts_is_closed_by_the_next_run";
    if !servers_available(test) {
        return;
    }
    let (dst_prefix, src_prefix, _tmp, healthy, stats) =
        failing_multipart(test, &["--rate", "1.0", "--kinds", "429", "--methods", "DELETE"]).await;
    let left = pending_uploads("ferry-b", &dst_prefix).await;
    println!("{test}: open after the faulted run: {left:?}");
    let out = ferry(&["run", "--json"], &healthy);
    let orphans = pending_uploads("ferry-b", &dst_prefix).await;
    let copied = hashes(&*seaweed("ferry-b"), &dst_prefix).await;
    let source = hashes(&*seaweed("ferry-a"), &src_prefix).await;
    cleanup_failing_multipart(&dst_prefix, &src_prefix).await;
    assert!(stats["faults"]["429"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(copied, source, "the healthy run copies the victim intact");
    assert!(orphans.is_empty(), "orphaned multipart uploads: {orphans:?}");
}

// ---------------------------------------------------------------------------------------------
// Must show 4: every flipped byte is found by verify, on every provider.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Local,
    Seaweed,
    Moto,
    Azurite,
    Gcs,
}

impl Backend {
    fn snippet(self, root: &Path) -> String {
        match self {
            Backend::Local => format!("type = \"local\"\nroot = {:?}\n", root.display().to_string()),
            Backend::Seaweed => seaweed_snippet(&env("FERRY_TEST_SEAWEED_ENDPOINT"), "ferry-b"),
            Backend::Moto => format!(
                "type = \"s3\"\nbucket = \"ferry-b\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
                 allow-http = true\npath-style = true\n\
                 access-key-id-env = \"FERRY_TEST_MOTO_KEY\"\nsecret-access-key-env = \"FERRY_TEST_MOTO_SECRET\"\n",
                env("FERRY_TEST_MOTO_ENDPOINT")
            ),
            Backend::Azurite => format!(
                "type = \"azure\"\naccount = \"{}\"\ncontainer = \"ferry-b\"\nendpoint = \"{}\"\n\
                 allow-http = true\naccess-key-env = \"FERRY_TEST_AZURITE_KEY\"\n",
                env("FERRY_TEST_AZURITE_ACCOUNT"),
                env("FERRY_TEST_AZURITE_ENDPOINT")
            ),
            Backend::Gcs => format!(
                "type = \"gcs\"\nbucket = \"ferry-b\"\nendpoint = \"{}\"\nallow-http = true\nanonymous = true\n",
                env("FERRY_TEST_GCS_ENDPOINT")
            ),
        }
    }

    fn store(self, root: &Path) -> Arc<dyn ObjectStore> {
        match self {
            Backend::Local => Arc::new(LocalFileSystem::new_with_prefix(root).unwrap()),
            Backend::Seaweed => seaweed("ferry-b"),
            Backend::Moto => s3_store(
                &env("FERRY_TEST_MOTO_ENDPOINT"),
                "ferry-b",
                &env("FERRY_TEST_MOTO_KEY"),
                &env("FERRY_TEST_MOTO_SECRET"),
            ),
            Backend::Azurite => Arc::new(
                MicrosoftAzureBuilder::new()
                    .with_account(env("FERRY_TEST_AZURITE_ACCOUNT"))
                    .with_access_key(env("FERRY_TEST_AZURITE_KEY"))
                    .with_container_name("ferry-b")
                    .with_endpoint(env("FERRY_TEST_AZURITE_ENDPOINT"))
                    .with_allow_http(true)
                    .build()
                    .unwrap(),
            ),
            Backend::Gcs => {
                let base = env("FERRY_TEST_GCS_ENDPOINT");
                Arc::new(
                    GoogleCloudStorageBuilder::new()
                        .with_bucket_name("ferry-b")
                        .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
                        .with_service_account_key(
                            serde_json::json!({
                                "gcs_base_url": base, "disable_oauth": true,
                                "client_email": "", "private_key": "", "private_key_id": ""
                            })
                            .to_string(),
                        )
                        .build()
                        .unwrap(),
                )
            }
        }
    }
}

/// Objects copied for the integrity tests: (name, size). `multi.bin` goes up as a multipart
/// upload (5 MiB parts), so its destination carries no ferry checksum metadata.
const INTEGRITY_OBJECTS: [(&str, usize); 6] = [
    ("one-byte.bin", 1),
    ("small.txt", 100),
    ("page.bin", 4099),
    ("dir/medium.bin", 70_000),
    ("dir/sub/large.bin", MIB + 5),
    ("multi.bin", 6 * MIB + 1),
];

/// Copies local -> `backend`, flips one byte at a random offset in every object but
/// `page.bin` (the control), rewriting each through the provider's API with its metadata
/// (content-type, user metadata, ferry's checksum) carried over, as an in-place corruption
/// would look; then `ferry verify` at `level` must name exactly the flipped objects.
async fn flipped_bytes_found(backend: Backend, deep: bool) {
    let test = format!("flipped_bytes_{}_{backend:?}", if deep { "deep" } else { "default" });
    if backend != Backend::Local && !servers_available(&test) {
        return;
    }
    let seed = seed_from_env("FERRY_FLIP_SEED");
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let tmp = tempfile::tempdir().unwrap();
    let (src_root, dst_root) = (tmp.path().join("src"), tmp.path().join("dst"));
    std::fs::create_dir_all(&dst_root).unwrap();
    for (i, (name, size)) in INTEGRITY_OBJECTS.iter().enumerate() {
        let p = src_root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data(*size, 7 + i as u64)).unwrap();
    }
    let prefix = format!("{}/", unique(&test.to_lowercase()));
    let plan = tmp.path().join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "[settings]\npart-size = \"5MiB\"\n\n[providers.src]\ntype = \"local\"\nroot = \"src\"\n\n\
             [providers.dst]\n{}\n[[objects]]\nname = \"{job}\"\nfrom = \"src:\"\nto = \"dst:{prefix}\"\n",
            backend.snippet(&dst_root),
            job = prefix.trim_end_matches('/'),
        ),
    )
    .unwrap();
    let out = ferry(&["run", "--json"], &plan);
    assert_eq!(out.status.code(), Some(0));

    let store = backend.store(&dst_root);
    let mut flipped = Vec::new();
    for (name, size) in INTEGRITY_OBJECTS {
        if name == "page.bin" {
            continue;
        }
        let key = format!("{prefix}{name}");
        let offset = rng.below(size as u64) as usize;
        let bit = 1u8 << rng.below(8);
        if backend == Backend::Local {
            let p = dst_root.join(&key);
            let mut bytes = std::fs::read(&p).unwrap();
            bytes[offset] ^= bit;
            std::fs::write(&p, bytes).unwrap();
        } else {
            let path = OsPath::parse(&key).unwrap();
            let got = store.get(&path).await.unwrap();
            let attributes = got.attributes.clone();
            let mut bytes = got.bytes().await.unwrap().to_vec();
            bytes[offset] ^= bit;
            store
                .put_opts(
                    &path,
                    PutPayload::from(bytes),
                    PutOptions {
                        attributes,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
        flipped.push((key, offset, bit));
    }
    println!(
        "FLIPPED on {backend:?} (seed {seed}): {}",
        flipped
            .iter()
            .map(|(k, o, b)| format!("{k} @ {o} ^ {b:#04x}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let args: &[&str] = if deep {
        &["verify", "--deep", "--json"]
    } else {
        &["verify", "--json"]
    };
    let out = ferry(args, &plan);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let j = json(&out);
    let named: Vec<String> = j["jobs"][0]["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination_key"].as_str().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = flipped.iter().map(|f| f.0.clone()).collect();
    want.sort();
    println!(
        "VERIFY {} on {backend:?}: {} of {} flipped objects named",
        if deep { "--deep" } else { "(default)" },
        want.iter().filter(|k| named.contains(k)).count(),
        want.len()
    );
    assert_eq!(named, want, "verify must name exactly the flipped objects");
    assert_eq!(out.status.code(), Some(1));
    // stderr names them by source key, as `run` does (issue 14).
    for k in &want {
        let source_key = k.strip_prefix(&prefix).unwrap();
        assert!(
            stderr.contains(&format!("DIFFERS `{source_key}`")),
            "`{source_key}` not named on stderr"
        );
    }
    if backend != Backend::Local {
        delete_prefix(&*store, &prefix).await;
    }
}

/// Bit rot on a local disk that leaves size and mtime alone (so the ETag ferry journaled still
/// matches): only `--deep` can see it, and it must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_bit_rot_on_local_found_by_deep_verify() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("src")).unwrap();
    std::fs::write(tmp.path().join("src/a.bin"), data(50_000, 1)).unwrap();
    std::fs::write(tmp.path().join("src/b.bin"), data(50_000, 2)).unwrap();
    let plan = tmp.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[providers.src]\ntype = \"local\"\nroot = \"src\"\n\n[providers.dst]\ntype = \"local\"\nroot = \"dst\"\n\n\
         [[objects]]\nname = \"j\"\nfrom = \"src:\"\nto = \"dst:\"\n",
    )
    .unwrap();
    assert_eq!(ferry(&["run"], &plan).status.code(), Some(0));
    let victim = tmp.path().join("dst/b.bin");
    let before = std::fs::metadata(&victim).unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[31_337] ^= 0x01;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    // Put the modification time back: only the content changed.
    let f = std::fs::File::options().write(true).open(&victim).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    drop(f);
    let out = ferry(&["verify", "--deep", "--json"], &plan);
    assert_eq!(out.status.code(), Some(1));
    let j = json(&out);
    assert_eq!(j["jobs"][0]["mismatches"][0]["key"], "b.bin");
    assert_eq!(j["jobs"][0]["mismatches"].as_array().unwrap().len(), 1);
}

macro_rules! integrity {
    ($($(#[$attr:meta])* $name:ident: $backend:ident, $deep:expr;)*) => {
        $(
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                flipped_bytes_found(Backend::$backend, $deep).await;
            }
        )*
    };
}

integrity! {
    flipped_bytes_found_by_deep_verify_local: Local, true;
    flipped_bytes_found_by_deep_verify_seaweed: Seaweed, true;
    flipped_bytes_found_by_deep_verify_moto: Moto, true;
    flipped_bytes_found_by_deep_verify_azurite: Azurite, true;
    flipped_bytes_found_by_deep_verify_gcs: Gcs, true;
    flipped_bytes_found_by_default_verify_local: Local, false;
    flipped_bytes_found_by_default_verify_seaweed: Seaweed, false;
    flipped_bytes_found_by_default_verify_moto: Moto, false;
    flipped_bytes_found_by_default_verify_azurite: Azurite, false;
    flipped_bytes_found_by_default_verify_gcs: Gcs, false;
}

// ---------------------------------------------------------------------------------------------
// Throttling (issue 7): request concurrency backs off on 503 SlowDown and recovers.

/// The destination sits behind the proxy acting as a throttling server: any request that
/// arrives while 6 are being served gets 503 SlowDown, for the first 1,200 requests; after that
/// it takes whatever comes. ferry runs with `--concurrency 32`, so without a back-off most
/// first attempts would be refused. The run must complete with the destination equal to the
/// source; ferry must have seen exactly the 503s the proxy sent, halved its request
/// concurrency to at most the server's 6, kept the refusals a small share of all requests, and
/// grown back past 6 once the throttling stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_destination_backs_off_and_recovers() {
    let test = "throttled_destination_backs_off_and_recovers";
    if !servers_available(test) {
        return;
    }
    let id = unique(test);
    let job = format!("throttle-{}", &id[id.len() - 9..]);
    let (src_prefix, dst_prefix) = (format!("{id}/src/"), format!("{id}/dst/"));
    let (a, b) = (seaweed("ferry-a"), seaweed("ferry-b"));
    let mut objects: Vec<(String, usize)> = (0..2400)
        .map(|i| (format!("o/{i:05}.bin"), 1024 + (i * 7919) % 7168))
        .collect();
    // Two multipart objects (5 MiB parts), whose parts go through the AWS SDK's client.
    objects.push(("big/one.bin".into(), 12 * MIB + 5));
    objects.push(("big/two.bin".into(), 11 * MIB));
    futures::stream::iter(objects.iter().enumerate())
        .for_each_concurrent(32, |(i, (rel, size))| {
            let a = a.clone();
            let key = format!("{src_prefix}{rel}");
            async move { put(&*a, &key, data(*size, i as u64 + 7), false).await }
        })
        .await;

    let proxy = Proxy::start(
        &seaweed_hostport(),
        &["--rate", "0", "--throttle-above", "6", "--throttle-requests", "1200"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("throttled.toml");
    std::fs::write(
        &plan,
        format!(
            "[settings]\npart-size = \"5MiB\"\nstate-dir = \"state\"\nserver-side-copy = false\nconcurrency = 32\n\n\
             [providers.src]\n{}\n[providers.dst]\n{}\n\
             [[objects]]\nname = \"{job}\"\nfrom = \"src:{src_prefix}\"\nto = \"dst:{dst_prefix}\"\n",
            seaweed_snippet(&env("FERRY_TEST_SEAWEED_ENDPOINT"), "ferry-a"),
            seaweed_snippet(&proxy.endpoint(), "ferry-b"),
        ),
    )
    .unwrap();
    let out = ferry(&["run", "--json"], &plan);
    let stats = proxy.stats();
    drop(proxy);
    assert_eq!(
        out.status.code(),
        Some(0),
        "run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert_eq!(j["jobs"][0]["copied"]["objects"], objects.len() as u64);
    let t = &j["jobs"][0]["throttling"]["destination"];
    let (sent, requests) = (
        stats["throttled"].as_u64().unwrap(),
        stats["requests"].as_u64().unwrap(),
    );
    println!(
        "THROTTLE proxy: {sent} of {requests} requests refused, peak {} served at once; ferry: {t}",
        stats["peak_in_flight"]
    );
    assert!(sent > 0, "the proxy never throttled: {stats}");
    assert_eq!(
        t["throttled"].as_u64(),
        Some(sent),
        "ferry saw every 503 the proxy sent"
    );
    assert!(t["decreases"].as_u64().unwrap() >= 1);
    let lowest = t["lowest"].as_u64().unwrap();
    let last = t["limit"].as_u64().unwrap();
    assert!(lowest <= 6, "never went below the server's 6: {t}");
    assert!(
        (sent as f64) < 0.15 * requests as f64,
        "the back-off left too many requests refused ({sent} of {requests})"
    );
    assert!(
        last > 6 && last >= 2 * lowest,
        "did not recover once throttling stopped: {t}"
    );
    assert_eq!(
        j["jobs"][0]["throttling"]["source"]["throttled"], 0,
        "the source (not behind the proxy) was never throttled"
    );

    let src = hashes(&*a, &src_prefix).await;
    let dst = hashes(&*b, &dst_prefix).await;
    assert_eq!(src.len(), objects.len());
    assert_eq!(src, dst, "the destination equals the source");
    delete_prefix(&*a, &src_prefix).await;
    delete_prefix(&*b, &dst_prefix).await;
    let _ = b
        .delete(&OsPath::parse(format!(".ferry/manifests/{job}.jsonl")).unwrap())
        .await;
}
