//! Issue 7: between two buckets of one S3 service, ferry copies on the server (CopyObject up to
//! one part, UploadPartCopy above): a counting proxy in front of the server shows that no
//! object byte passes through ferry, and the copies equal their sources.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ferry::checksum::StreamHasher;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

mod common;
use common::{counting_proxy, env, servers_available, Traffic};

fn sha256(b: &[u8]) -> String {
    let mut h = StreamHasher::new(false);
    h.update(b);
    h.finish().sha256
}

/// SHA-256 of nothing: what the seeded objects' metadata claims, and none of them is empty.
const LYING_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

async fn server_side_copy_reads_nothing(test: &str, sizes: &[usize]) {
    if !servers_available(test) {
        return;
    }
    let endpoint = env("FERRY_TEST_SEAWEED_ENDPOINT");
    let store = |bucket: &str| {
        AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(env("FERRY_TEST_SEAWEED_KEY"))
            .with_secret_access_key(env("FERRY_TEST_SEAWEED_SECRET"))
            .with_allow_http(true)
            .build()
            .unwrap()
    };
    let (a, b) = (store("ferry-a"), store("ferry-b"));
    let prefix = format!("{test}-{}", std::process::id());
    let mut want = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let body: Vec<u8> = (0..*size)
            .map(|j| ((j as u64 * 2654435761) >> 7) as u8 ^ i as u8)
            .collect();
        let key = format!("{prefix}/obj-{i}.bin");
        // Seeded straight to the server (not through the proxy), in parts like any uploader,
        // with a `ferry-sha256` that lies: nothing ties metadata to the bytes, so a server-side
        // copy must not record it (deep verify below would then report the copy as damaged).
        let mut attributes = object_store::Attributes::new();
        attributes.insert(
            object_store::Attribute::Metadata(ferry::checksum::METADATA_KEY.into()),
            LYING_SHA256.into(),
        );
        let opts = object_store::PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let mut w = object_store::WriteMultipart::new_with_chunk_size(
            a.put_multipart_opts(&OsPath::from(key.as_str()), opts).await.unwrap(),
            8 << 20,
        );
        for c in body.chunks(8 << 20) {
            w.wait_for_capacity(4).await.unwrap();
            w.put(bytes::Bytes::copy_from_slice(c));
        }
        w.finish().await.unwrap();
        want.push((format!("obj-{i}.bin"), sha256(&body), body.len()));
    }
    b.put(&OsPath::from(format!("{prefix}/.probe")), PutPayload::from("x"))
        .await
        .unwrap();

    let traffic = Arc::new(Traffic::default());
    let port = counting_proxy(endpoint.trim_start_matches("http://").to_string(), traffic.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("p.toml");
    let provider = |bucket: &str| {
        format!(
            "type = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\n\
             allow-http = true\npath-style = true\naccess-key-id-env = \"FERRY_TEST_SEAWEED_KEY\"\n\
             secret-access-key-env = \"FERRY_TEST_SEAWEED_SECRET\"\n"
        )
    };
    std::fs::write(
        &plan,
        format!(
            "[settings]\npart-size = \"16MiB\"\n\n[providers.a]\n{}\n[providers.b]\n{}\n\
             [[objects]]\nname = \"copy\"\nfrom = \"a:{prefix}/\"\nto = \"b:{prefix}/copied/\"\nexclude = [\".probe\"]\n",
            provider("ferry-a"),
            provider("ferry-b")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--json"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let total: usize = sizes.iter().sum();
    let (sent, received) = (
        traffic.sent.load(Ordering::Relaxed),
        traffic.received.load(Ordering::Relaxed),
    );
    eprintln!(
        "{test}: {} objects, {} MiB copied on the server; through ferry: {sent} bytes sent, {received} bytes received (requests and XML only)",
        sizes.len(),
        total >> 20
    );
    // Headers and XML are a few KiB; one object part through ferry would be 16 MiB.
    assert!(
        sent + received < (1 << 20),
        "object bytes passed through ferry: {sent} sent, {received} received"
    );

    for (name, sha, len) in &want {
        let got = b
            .get(&OsPath::from(format!("{prefix}/copied/{name}")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.len(), *len, "{name}");
        assert_eq!(&sha256(&got), sha, "{name}");
    }
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--json"])
        .arg(&plan)
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(j["totals"]["copied"]["objects"], 0, "a re-run copies nothing");
    // The manifest at the destination, read with the test's own client: no checksum it lists
    // is the source metadata's unverified claim.
    let manifest = b
        .get(&OsPath::from(".ferry/manifests/copy.jsonl"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let manifest = String::from_utf8(manifest.to_vec()).unwrap();
    assert!(manifest.contains("obj-0.bin"), "{manifest}");
    assert!(
        !manifest.contains(LYING_SHA256),
        "an unverified checksum was recorded:\n{manifest}"
    );
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["verify", "--deep", "--quiet"])
        .arg(&plan)
        .status()
        .unwrap();
    assert_eq!(verify.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_copy_moves_no_byte_through_ferry() {
    // One object below a part (CopyObject), one of three parts (UploadPartCopy).
    server_side_copy_reads_nothing("server-copy", &[3 << 20, 40 << 20]).await;
}

/// The 6 GiB object (above CopyObject's 5 GiB limit). Heavy: run with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark-sized check: writes 6 GiB to the test server"]
async fn server_side_copy_of_a_6_gib_object() {
    server_side_copy_reads_nothing("server-copy-6gib", &[6 << 30]).await;
}
