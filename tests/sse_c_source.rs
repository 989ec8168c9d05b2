//! Issue 16: a source bucket whose objects were written with SSE-C (a customer-provided key) is
//! read with the key from the variable the plan's `sse-c-key-env` names. SeaweedFS enforces
//! SSE-C: a GET without the key is refused (InvalidArgument), with another key too
//! (AccessDenied), so a copy at all proves the key was sent, on whole and ranged reads alike.
//! Seeded and read back through the test's own SDK client; the local copy from the filesystem.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::oracle::{ferry_bin, nanos, toml_str};
use common::{env, servers_available, wire};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn key_b64(seed: u8) -> String {
    B64.encode([seed; 32])
}

/// PUTs `body` to SeaweedFS's `ferry-a` encrypted with SSE-C `key` (base64).
fn put_sse_c(c: &aws_sdk_s3::Client, key_name: &str, body: Vec<u8>, key: &str) {
    use md5::Digest;
    let md5 = B64.encode(md5::Md5::digest(B64.decode(key).unwrap()));
    let put = c
        .put_object()
        .bucket("ferry-a")
        .key(key_name)
        .sse_customer_algorithm("AES256")
        .sse_customer_key(key)
        .sse_customer_key_md5(md5)
        .body(body.into());
    wire::block_on(put.send()).unwrap();
}

/// A plan: job `local` copies the prefix to a folder, job `plain` to `ferry-b` on the same
/// server (a server-side copy cannot carry the key, so it streams through ferry). `auth` ends
/// the source's table.
fn plan(dir: &Path, prefix: &str, auth: &str) -> PathBuf {
    let s3 = |bucket: &str| {
        format!(
            "type = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nallow-http = true\n\
             path-style = true\naccess-key-id-env = \"FERRY_TEST_SEAWEED_KEY\"\n\
             secret-access-key-env = \"FERRY_TEST_SEAWEED_SECRET\"\n",
            env("FERRY_TEST_SEAWEED_ENDPOINT")
        )
    };
    let plan = dir.join("p.toml");
    std::fs::write(
        &plan,
        format!(
            "[settings]\npart-size = \"5MiB\"\n\n[providers.src]\n{}{auth}\n[providers.out]\n{}\n\
             [providers.dst]\ntype = \"local\"\nroot = {}\n\
             [[objects]]\nname = \"local\"\nfrom = \"src:{prefix}\"\nto = \"dst:\"\n\
             [[objects]]\nname = \"plain\"\nfrom = \"src:{prefix}\"\nto = \"out:{prefix}\"\n",
            s3("ferry-a"),
            s3("ferry-b"),
            toml_str(&dir.join("dst").display().to_string())
        ),
    )
    .unwrap();
    plan
}

fn run(dir: &Path, plan: &Path, key: Option<&str>) -> (Option<i32>, String, serde_json::Value) {
    let mut c = Command::new(ferry_bin());
    c.args(["run", "--json"]).arg(plan).current_dir(dir);
    if let Some(k) = key {
        c.env("FERRY_T_SSEC", k);
    }
    let out = c.output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("ferry -> {:?}\n{all}", out.status.code());
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), all, json)
}

#[test]
fn an_sse_c_source_is_read_with_its_key() {
    if !servers_available("an_sse_c_source_is_read_with_its_key") {
        return;
    }
    let c = wire::s3_sdk("SEAWEED");
    let prefix = format!("ssec-{}/", nanos());
    let key = key_b64(42);
    let small = common::data(1000, 3);
    // Larger than the 5 MiB part: read in ranged GETs, each needing the key.
    let large = common::data(12 << 20, 4);
    put_sse_c(&c, &format!("{prefix}small.txt"), small.clone(), &key);
    put_sse_c(&c, &format!("{prefix}large.bin"), large.clone(), &key);
    // The oracle holds: without the key SeaweedFS refuses the read.
    let refused = wire::s3_get(&c, "ferry-a", &format!("{prefix}small.txt"));
    assert!(refused.is_err(), "SeaweedFS served an SSE-C object without its key");

    // Without `sse-c-key-env`: every object fails, named, and nothing looks copied.
    let dir = tempfile::tempdir().unwrap();
    let (code, all, json) = run(dir.path(), &plan(dir.path(), &prefix, ""), None);
    assert_eq!(code, Some(1), "{all}");
    for job in json["jobs"].as_array().unwrap() {
        assert_eq!(job["failed"].as_array().unwrap().len(), 2, "{all}");
        assert_eq!(job["copied"]["objects"], 0, "{all}");
    }
    assert!(!dir.path().join("dst/small.txt").exists());

    // Another key: refused per object, the key never printed.
    let dir = tempfile::tempdir().unwrap();
    let wrong = key_b64(7);
    let plan_k = plan(dir.path(), &prefix, "sse-c-key-env = \"FERRY_T_SSEC\"\n");
    let (code, all, _) = run(dir.path(), &plan_k, Some(&wrong));
    assert_eq!(code, Some(1), "{all}");
    assert!(!all.contains(&wrong), "the key was printed: {all}");

    // The key: both jobs copy, and what arrives is the plaintext.
    let dir = tempfile::tempdir().unwrap();
    let plan_k = plan(dir.path(), &prefix, "sse-c-key-env = \"FERRY_T_SSEC\"\n");
    let (code, all, json) = run(dir.path(), &plan_k, Some(&key));
    assert_eq!(code, Some(0), "{all}");
    assert!(!all.contains(&key), "the key was printed: {all}");
    for job in json["jobs"].as_array().unwrap() {
        assert_eq!(job["copied"]["objects"], 2, "{all}");
    }
    assert_eq!(std::fs::read(dir.path().join("dst/small.txt")).unwrap(), small);
    assert_eq!(std::fs::read(dir.path().join("dst/large.bin")).unwrap(), large);
    assert_eq!(
        wire::s3_get(&c, "ferry-b", &format!("{prefix}small.txt")).unwrap(),
        small
    );
    assert_eq!(
        wire::s3_get(&c, "ferry-b", &format!("{prefix}large.bin")).unwrap(),
        large
    );
    // A second run: nothing to copy (sizes and ferry's own checksums, not the SSE-C ETags).
    let (code, all, json) = run(dir.path(), &plan_k, Some(&key));
    assert_eq!(code, Some(0), "{all}");
    for job in json["jobs"].as_array().unwrap() {
        assert_eq!(job["unchanged"]["objects"], 2, "{all}");
    }
}

/// A key that is not base64 of 32 bytes is named before anything is read (exit 2), and a
/// provider with an SSE-C key cannot be written to.
#[test]
fn a_bad_sse_c_key_or_an_sse_c_destination_is_refused() {
    if !servers_available("a_bad_sse_c_key_or_an_sse_c_destination_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plan_k = plan(dir.path(), "ssec-bad/", "sse-c-key-env = \"FERRY_T_SSEC\"\n");
    let short = B64.encode([1u8; 16]);
    let (code, all, _) = run(dir.path(), &plan_k, Some(&short));
    assert_eq!(code, Some(2), "{all}");
    assert!(
        all.contains("is 16 bytes; AES-256 needs 32") && !all.contains(&short),
        "{all}"
    );
    let (code, all, _) = run(dir.path(), &plan_k, Some("not base64!"));
    assert_eq!(code, Some(2), "{all}");
    assert!(
        all.contains("`FERRY_T_SSEC` (named by `sse-c-key-env`) is not base64"),
        "{all}"
    );

    let text = std::fs::read_to_string(&plan_k).unwrap().replace(
        "[providers.out]\n",
        "[providers.out]\nsse-c-key-env = \"FERRY_T_SSEC\"\n",
    );
    std::fs::write(&plan_k, text).unwrap();
    let (code, all, _) = run(dir.path(), &plan_k, Some(&key_b64(1)));
    assert_eq!(code, Some(2), "{all}");
    assert!(all.contains("an SSE-C key is for reading a source"), "{all}");
}
