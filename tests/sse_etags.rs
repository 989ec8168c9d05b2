//! Issue 13, must-shows 3 and 4: ETags ferry must not be fooled by.
//!
//! - SSE-KMS and SSE-C objects have 32-hex ETags that are not MD5s. Neither moto nor SeaweedFS
//!   makes such ETags, so `tests/faults/proxy.py --sse-etags kms|c` rewrites every ETag
//!   SeaweedFS gives into a stand-in (not the MD5 of the bytes) and adds the SSE headers; ferry
//!   must copy through it (small and multipart objects), `verify` and `verify --deep` must pass,
//!   and a second run must exit 0 without calling anything corrupted.
//! - The same rewriting without the SSE headers (`none-headers`) is what a corrupted read looks
//!   like: the source ETag claims to be an MD5 and is not the bytes' MD5. Still caught: object
//!   failed, named, exit 1, nothing written. A PUT answered with a wrong MD5 ETag (only PUT
//!   answers rewritten) fails its object too, and the next healthy run copies it.
//! - A CompleteMultipartUpload that fails (every one answered 500 by the proxy) while an older
//!   object of the same size and part count sits at the key: the object is failed, its upload
//!   aborted (ListMultipartUploads, asked directly, shows none), and the next run copies it.
//!
//! Oracles read the servers directly through the AWS SDK, never through ferry's stores.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::oracle::{ferry, nanos, toml_str, Ran};
use common::proxy::Proxy;
use common::wire::{block_on, s3_get, s3_put, s3_sdk};
use common::{data, env, servers_available};

const MIB: usize = 1 << 20;
const MINUTES: Duration = Duration::from_secs(300);

/// One of the S3 test servers, by its servers.env name (`SEAWEED`, `MOTO`).
#[derive(Clone, Copy)]
struct Server(&'static str);

impl Server {
    fn endpoint(self) -> String {
        env(&format!("FERRY_TEST_{}_ENDPOINT", self.0))
    }
    fn hostport(self) -> String {
        self.endpoint()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    }
    fn sdk(self) -> aws_sdk_s3::Client {
        s3_sdk(self.0)
    }
    /// A `[providers.X]` body for `bucket` of this server, reached at `endpoint`.
    fn provider(self, endpoint: &str, bucket: &str) -> String {
        format!(
            "type = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
             allow-http = true\npath-style = true\naccess-key-id-env = \"FERRY_TEST_{0}_KEY\"\n\
             secret-access-key-env = \"FERRY_TEST_{0}_SECRET\"\n",
            self.0
        )
    }
    /// `proxy.py` in front of this server; changed requests are signed again for SeaweedFS.
    fn proxy(self, args: &[&str]) -> Proxy {
        let secret = format!("FERRY_TEST_{}_SECRET", self.0);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--resign-secret-env", &secret]);
        Proxy::start(&self.hostport(), &all)
    }
}

/// SeaweedFS and an SDK client for it, if the test servers are up.
fn seaweed(test: &str) -> Option<(Server, aws_sdk_s3::Client)> {
    servers_available(test).then(|| (Server("SEAWEED"), Server("SEAWEED").sdk()))
}

/// Writes `DIR/NAME`: 5 MiB parts, bytes through ferry (no server-side copy), one job `j`.
fn plan(dir: &Path, name: &str, src: &str, dst: &str, from: &str, to: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            "[settings]\npart-size = \"5MiB\"\nstate-dir = {}\nserver-side-copy = false\n\n\
             [providers.src]\n{src}\n[providers.dst]\n{dst}\n\
             [[objects]]\nname = \"j\"\nfrom = \"src:{from}\"\nto = \"dst:{to}\"\n",
            toml_str(&dir.join("state").display().to_string())
        ),
    )
    .unwrap();
    p
}

/// `DIR/p.toml`: bucket ferry-a to bucket ferry-b of `server`, each reached at its endpoint.
fn s3_plan(dir: &Path, server: Server, src_at: &str, dst_at: &str, from: &str, to: &str) -> PathBuf {
    let (src, dst) = (server.provider(src_at, "ferry-a"), server.provider(dst_at, "ferry-b"));
    plan(dir, "p.toml", &src, &dst, from, to)
}

/// A local folder `DIR/src` holding `files`, and two plans copying it to `to` in ferry-b of
/// `server`: `faulty.toml` through `via` (a proxy), `healthy.toml` straight to the server.
fn local_job(dir: &Path, server: Server, via: &str, to: &str, files: &[(&str, &[u8])]) -> (PathBuf, PathBuf) {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for (k, body) in files {
        std::fs::write(src.join(k), body).unwrap();
    }
    let local = format!("type = \"local\"\nroot = {}\n", toml_str(&src.display().to_string()));
    (
        plan(dir, "faulty.toml", &local, &server.provider(via, "ferry-b"), "", to),
        plan(
            dir,
            "healthy.toml",
            &local,
            &server.provider(&server.endpoint(), "ferry-b"),
            "",
            to,
        ),
    )
}

/// Seeds `key` as a multipart upload of `part`-byte parts (its ETag is then `…-N`).
fn put_multipart(c: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8], part: usize) {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    block_on(async {
        let id = c
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        let mut parts = Vec::new();
        for (i, chunk) in body.chunks(part).enumerate() {
            let n = i as i32 + 1;
            let out = c
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .body(chunk.to_vec().into())
                .send()
                .await
                .unwrap();
            parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(out.e_tag().unwrap())
                    .build(),
            );
        }
        // moto answers with an XML root the SDK refuses; the object is complete all the same.
        let _ = c
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await;
    });
}

fn head_etag(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<String> {
    block_on(c.head_object().bucket(bucket).key(key).send())
        .ok()
        .and_then(|h| h.e_tag().map(str::to_string))
}

/// Multipart uploads open under `prefix` (key, upload id), asked of the server directly.
fn open_uploads(c: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<(String, String)> {
    let out = block_on(c.list_multipart_uploads().bucket(bucket).prefix(prefix).send()).unwrap();
    out.uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap_or("").to_string(),
                u.upload_id().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn cleanup(c: &aws_sdk_s3::Client, bucket: &str, prefix: &str) {
    for (key, id) in open_uploads(c, bucket, prefix) {
        let _ = block_on(c.abort_multipart_upload().bucket(bucket).key(key).upload_id(id).send());
    }
    for key in common::wire::s3_list(c, bucket, prefix).unwrap_or_default() {
        common::wire::s3_delete(c, bucket, &key);
    }
}

fn failed_reason(ran: &Ran, key: &str) -> Option<String> {
    ran.job("j")?["failed"]
        .as_array()?
        .iter()
        .find(|f| f["key"] == key)
        .map(|f| f["reason"].as_str().unwrap_or("").to_string())
}

fn count(ran: &Ran, what: &str) -> u64 {
    ran.job("j")
        .map(|j| j[what]["objects"].as_u64().unwrap_or(0))
        .unwrap_or(0)
}

/// Objects seeded at the source: (relative key, bytes, seeded as multipart). With 5 MiB parts,
/// `mid.bin` is a single-part source object (an MD5 ETag to check the read against) copied as
/// a multipart upload; `multi.bin` is multipart on both sides.
fn sse_objects() -> Vec<(&'static str, Vec<u8>, bool)> {
    vec![
        ("small.bin", data(1000, 1), false),
        ("empty.bin", Vec::new(), false),
        ("mid.bin", data(6 * MIB + 3, 2), false),
        ("multi.bin", data(11 * MIB, 3), true),
    ]
}

fn seed(server: Server, bucket: &str, prefix: &str, objects: &[(&str, Vec<u8>, bool)]) {
    let c = server.sdk();
    for (key, body, multipart) in objects {
        let key = format!("{prefix}{key}");
        if *multipart {
            put_multipart(&c, bucket, &key, body, 5 * MIB);
        } else {
            s3_put(&c, bucket, &key, body).unwrap();
        }
    }
}

/// Must show 4: SSE-style ETags at both ends; copy, verify, verify --deep, run again, and
/// verify without the journal (a fresh state dir).
fn sse_etags_copy_and_verify(mode: &str) {
    let Some((server, c)) = seaweed(&format!("sse_etags_copy_and_verify_{mode}")) else {
        return;
    };
    let id = format!("sse-{mode}-{}", nanos());
    let (from, to) = (format!("{id}/src/"), format!("{id}/dst/"));
    let objects = sse_objects();
    seed(server, "ferry-a", &from, &objects);

    let proxy = server.proxy(&["--rate", "0", "--sse-etags", mode]);
    let tmp = tempfile::tempdir().unwrap();
    let p = s3_plan(tmp.path(), server, &proxy.endpoint(), &proxy.endpoint(), &from, &to);
    let first = ferry(&["run", "--json", "-v"], &p, MINUTES);
    let verify = ferry(&["verify", "--json"], &p, MINUTES);
    let deep = ferry(&["verify", "--deep", "--json"], &p, MINUTES);
    let second = ferry(&["run", "--json"], &p, MINUTES);
    // Without a journal: verify must prove what it can from both sides, not from ETags.
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let p_fresh = s3_plan(&fresh, server, &proxy.endpoint(), &proxy.endpoint(), &from, &to);
    let unjournaled = ferry(&["verify", "--json"], &p_fresh, MINUTES);
    let stats = proxy.stats();
    drop(proxy);

    let arrived: Vec<_> = objects
        .iter()
        .map(|(k, _, _)| s3_get(&c, "ferry-b", &format!("{to}{k}")).ok())
        .collect();
    cleanup(&c, "ferry-a", &from);
    cleanup(&c, "ferry-b", &to);

    assert!(stats["etags_rewritten"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(first.code, Some(0), "{}", first.summary());
    assert_eq!(count(&first, "copied"), objects.len() as u64, "{}", first.summary());
    for ((key, body, _), got) in objects.iter().zip(&arrived) {
        assert!(
            got.as_deref() == Some(&body[..]),
            "`{key}` did not arrive byte for byte"
        );
    }
    // Both ends were found out (said at -v): the source by a read whose MD5 disagreed, the
    // destination by a PUT whose answer did.
    for provider in ["src", "dst"] {
        assert!(
            first.stderr.contains(&format!("provider `{provider}`")) && first.stderr.contains("not MD5s"),
            "{}",
            first.summary()
        );
    }
    for (what, ran) in [
        ("verify", &verify),
        ("verify --deep", &deep),
        ("verify without journal", &unjournaled),
    ] {
        assert_eq!(ran.code, Some(0), "{what}: {}", ran.summary());
        assert_eq!(count(ran, "matched"), objects.len() as u64, "{what}: {}", ran.summary());
    }
    assert_eq!(second.code, Some(0), "{}", second.summary());
    assert!(second.failed("j").is_empty(), "{}", second.summary());
    assert_eq!(
        count(&second, "unchanged") + count(&second, "copied"),
        objects.len() as u64,
        "{}",
        second.summary()
    );
    assert!(!second.stderr.contains("corrupted"), "{}", second.summary());
}

#[test]
fn sse_kms_etags_copy_and_verify() {
    sse_etags_copy_and_verify("kms");
}

#[test]
fn sse_c_etags_copy_and_verify() {
    sse_etags_copy_and_verify("c");
}

/// A source whose ETags claim to be MD5s (no SSE header) and are not the bytes' MD5s: the
/// reads are corrupted as far as anyone can tell. Each object fails, named, nothing is written
/// and no upload is left open.
#[test]
fn real_md5_mismatch_is_still_caught() {
    let Some((server, c)) = seaweed("real_md5_mismatch_is_still_caught") else {
        return;
    };
    let id = format!("sse-mismatch-{}", nanos());
    let (from, to) = (format!("{id}/src/"), format!("{id}/dst/"));
    let objects = vec![
        ("small.bin", data(1000, 4), false),
        ("mid.bin", data(6 * MIB + 3, 5), false),
    ];
    seed(server, "ferry-a", &from, &objects);
    let proxy = server.proxy(&["--rate", "0", "--sse-etags", "none-headers"]);
    let tmp = tempfile::tempdir().unwrap();
    let p = s3_plan(tmp.path(), server, &proxy.endpoint(), &server.endpoint(), &from, &to);
    let ran = ferry(&["run", "--json"], &p, MINUTES);
    drop(proxy);
    let written: Vec<_> = objects
        .iter()
        .filter_map(|(k, _, _)| head_etag(&c, "ferry-b", &format!("{to}{k}")).map(|_| k))
        .collect();
    let open = open_uploads(&c, "ferry-b", &to);
    cleanup(&c, "ferry-a", &from);
    cleanup(&c, "ferry-b", &to);

    assert_eq!(ran.code, Some(1), "{}", ran.summary());
    for (key, _, _) in &objects {
        let reason = failed_reason(&ran, &format!("{from}{key}"))
            .unwrap_or_else(|| panic!("`{key}` not named as failed: {}", ran.summary()));
        assert!(
            reason.contains("do not match the source's MD5 ETag") && reason.contains("no server-side encryption"),
            "`{key}`: {reason}"
        );
    }
    assert!(written.is_empty(), "corrupted reads were written: {written:?}");
    assert!(open.is_empty(), "uploads left open: {open:?}");
}

/// Every PUT is answered with an MD5 ETag that is not the MD5 of the bytes sent (and no SSE
/// header): each object fails, named; the next run (healthy) copies them.
#[test]
fn put_answered_with_a_wrong_md5_fails_the_object() {
    let Some((server, c)) = seaweed("put_answered_with_a_wrong_md5_fails_the_object") else {
        return;
    };
    let to = format!("sse-put-{}/dst/", nanos());
    let tmp = tempfile::tempdir().unwrap();
    let objects = [("a.bin", data(2000, 6)), ("b.bin", data(70_000, 7))];
    let files: Vec<(&str, &[u8])> = objects.iter().map(|(k, b)| (*k, &b[..])).collect();
    let proxy = server.proxy(&["--rate", "0", "--sse-etags", "none-headers", "--sse-methods", "PUT"]);
    let (faulty, healthy) = local_job(tmp.path(), server, &proxy.endpoint(), &to, &files);
    let first = ferry(&["run", "--json"], &faulty, MINUTES);
    drop(proxy);
    let second = ferry(&["run", "--json"], &healthy, MINUTES);
    let arrived: Vec<_> = objects
        .iter()
        .map(|(k, _)| s3_get(&c, "ferry-b", &format!("{to}{k}")).ok())
        .collect();
    cleanup(&c, "ferry-b", &to);

    assert_eq!(first.code, Some(1), "{}", first.summary());
    for (key, _) in &objects {
        let reason =
            failed_reason(&first, key).unwrap_or_else(|| panic!("`{key}` not named as failed: {}", first.summary()));
        assert!(
            reason.contains("answered the PUT with the MD5 ETag"),
            "`{key}`: {reason}"
        );
    }
    assert_eq!(count(&first, "copied"), 0, "{}", first.summary());
    assert_eq!(second.code, Some(0), "{}", second.summary());
    assert_eq!(count(&second, "copied"), objects.len() as u64, "{}", second.summary());
    for ((key, body), got) in objects.iter().zip(&arrived) {
        assert!(
            got.as_deref() == Some(&body[..]),
            "`{key}` did not arrive byte for byte"
        );
    }
}

/// Must show 3: every CompleteMultipartUpload (POST `?uploadId=`) is answered 500 while an
/// older object of the same size and the same part count (3 parts of 5 MiB) sits at the key,
/// so a HEAD finds "the right size and part count". The object must fail (not be journaled as
/// done: the next run copies it), its uploads must all be aborted, and the next run must
/// leave the source's bytes at the key.
fn failed_complete_over_older_object(server: Server) {
    let test = format!("failed_complete_over_older_object_{}", server.0.to_lowercase());
    if !servers_available(&test) {
        return;
    }
    let c = server.sdk();
    let to = format!("complete-{}-{}/dst/", server.0.to_lowercase(), nanos());
    let key = format!("{to}victim.bin");
    let tmp = tempfile::tempdir().unwrap();
    let body = data(12 * MIB + 5, 8);
    let older = data(body.len(), 9);
    put_multipart(&c, "ferry-b", &key, &older, 5 * MIB);
    let older_etag = head_etag(&c, "ferry-b", &key).expect("older object seeded");
    assert!(
        older_etag.trim_matches('"').ends_with("-3"),
        "older object: {older_etag}"
    );

    let proxy = Proxy::start(
        &server.hostport(),
        &[
            "--rate",
            "1.0",
            "--kinds",
            "500",
            "--methods",
            "POST",
            "--url-regex",
            "uploadId=",
        ],
    );
    let (faulty, healthy) = local_job(tmp.path(), server, &proxy.endpoint(), &to, &[("victim.bin", &body)]);
    let first = ferry(&["run", "--json"], &faulty, MINUTES);
    let stats = proxy.stats();
    drop(proxy);
    let open_after_failure = open_uploads(&c, "ferry-b", &to);
    let at_key_after_failure = head_etag(&c, "ferry-b", &key);
    let status = ferry(&["status", "--json"], &faulty, MINUTES);
    let second = ferry(&["run", "--json"], &healthy, MINUTES);
    let arrived = s3_get(&c, "ferry-b", &key).ok();
    let open_at_end = open_uploads(&c, "ferry-b", &to);
    cleanup(&c, "ferry-b", &to);

    assert!(stats["faults"]["500"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(first.code, Some(1), "{}", first.summary());
    assert!(
        failed_reason(&first, "victim.bin").is_some(),
        "`victim.bin` not named as failed: {}",
        first.summary()
    );
    assert_eq!(count(&first, "copied"), 0, "{}", first.summary());
    let journal = &status.json.as_ref().expect("status --json")["jobs"][0]["journal"];
    assert_eq!(journal["done"], 0, "journaled as done: {journal}");
    assert!(
        open_after_failure.is_empty(),
        "uploads left open: {open_after_failure:?}"
    );
    assert_eq!(
        at_key_after_failure,
        Some(older_etag),
        "the older object is what the key holds"
    );
    assert_eq!(second.code, Some(0), "{}", second.summary());
    assert_eq!(count(&second, "copied"), 1, "{}", second.summary());
    assert!(
        arrived.as_deref() == Some(&body[..]),
        "the next run did not copy the source's bytes"
    );
    assert!(open_at_end.is_empty(), "uploads left open: {open_at_end:?}");
}

#[test]
fn failed_complete_over_older_object_seaweed() {
    failed_complete_over_older_object(Server("SEAWEED"));
}

#[test]
fn failed_complete_over_older_object_moto() {
    failed_complete_over_older_object(Server("MOTO"));
}
