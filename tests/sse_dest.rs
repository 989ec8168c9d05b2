//! Issue 16: the destination's `sse`, `sse-kms-key-id` and `storage-class`, on every path ferry
//! writes an S3 object by: a single PUT and a multipart upload of bytes read from a local
//! folder, CopyObject and UploadPartCopy between two buckets of moto (server-side), a database
//! dump (object_store's `WriteMultipart`) with its record, and the job's manifest.
//!
//! moto (:5000) records the SSE headers, the KMS key id and the storage class it is sent (it
//! encrypts nothing, and its ETags stay MD5s). So for SSE-KMS everything runs through
//! `tests/faults/proxy.py --sse-etags kms`, which answers with ETags that are not the bytes'
//! MD5s, as S3 does for SSE-KMS objects: the run, `verify`, `verify --deep` and a second run
//! must all pass. The oracle is the test's own SDK client, HEADing moto directly.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::oracle::{ferry, nanos, toml_str, Ran};
use common::proxy::Proxy;
use common::wire::{block_on, s3_list, s3_put, s3_sdk};
use common::{data, env, servers_available};

const MIB: usize = 1 << 20;
const MINUTES: Duration = Duration::from_secs(300);

/// What a HEAD of one object says of how it is stored.
#[derive(Debug, PartialEq, Eq)]
struct Stored {
    sse: Option<String>,
    kms_key_id: Option<String>,
    class: Option<String>,
}

fn head(c: &aws_sdk_s3::Client, key: &str) -> Stored {
    let h = block_on(c.head_object().bucket("ferry-b").key(key).send())
        .unwrap_or_else(|e| panic!("HEAD `{key}`: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
    Stored {
        sse: h.server_side_encryption().map(|s| s.as_str().to_string()),
        kms_key_id: h.ssekms_key_id().map(str::to_string),
        class: h.storage_class().map(|s| s.as_str().to_string()),
    }
}

/// Seeds the server-side job's source in ferry-a: one object of one part, one of two.
fn seed(c: &aws_sdk_s3::Client, prefix: &str) {
    s3_put(c, "ferry-a", &format!("{prefix}small.bin"), &data(1000, 1)).unwrap();
    s3_put(c, "ferry-a", &format!("{prefix}mid.bin"), &data(6 * MIB + 3, 2)).unwrap();
}

/// `DIR/p.toml`: three jobs into `{id}/` of moto's ferry-b, reached at `endpoint`, whose
/// provider gets `write` (the keys under test). `local-{id}`: a folder of one small and one
/// multipart object; `server-{id}`: ferry-a to ferry-b on the server; `db`: a SQLite dump.
/// (Manifests go to `.ferry/manifests/JOB.jsonl` at the bucket's root: the job names are
/// unique so the manifests are this test's.)
fn plan(dir: &Path, endpoint: &str, id: &str, write: &str) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("small.bin"), data(2000, 3)).unwrap();
    std::fs::write(src.join("mid.bin"), data(6 * MIB + 5, 4)).unwrap();
    let db = dir.join("app.db");
    common::sqlite::make_sqlite(&db, &[(1, "one"), (2, "two")]);
    let s3 = |bucket: &str| {
        format!(
            "type = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
             allow-http = true\npath-style = true\naccess-key-id-env = \"FERRY_TEST_MOTO_KEY\"\n\
             secret-access-key-env = \"FERRY_TEST_MOTO_SECRET\"\n"
        )
    };
    let p = dir.join("p.toml");
    std::fs::write(
        &p,
        format!(
            "[settings]\npart-size = \"5MiB\"\nstate-dir = {state}\n\n\
             [providers.src]\ntype = \"local\"\nroot = {src}\n\n\
             [providers.seed]\n{seed}\n[providers.dst]\n{dst}{write}\n\n\
             [[objects]]\nname = \"local-{id}\"\nfrom = \"src:\"\nto = \"dst:{id}/local/\"\n\n\
             [[objects]]\nname = \"server-{id}\"\nfrom = \"seed:{id}/seed/\"\nto = \"dst:{id}/server/\"\n\n\
             [[databases]]\nname = \"db\"\nengine = \"sqlite\"\npath = {db}\nto = \"dst:{id}/db/{{timestamp}}.db.zst\"\n",
            state = toml_str(&dir.join("state").display().to_string()),
            src = toml_str(&src.display().to_string()),
            seed = s3("ferry-a"),
            dst = s3("ferry-b"),
            db = toml_str(&db.display().to_string()),
        ),
    )
    .unwrap();
    p
}

fn count(ran: &Ran, job: &str, what: &str) -> u64 {
    ran.job(job)
        .map(|j| j[what]["objects"].as_u64().unwrap_or(0))
        .unwrap_or(0)
}

/// Runs the plan (through `endpoint`) and checks that every object ferry wrote under `{id}/`
/// in ferry-b is stored as `want` says, HEADed on moto directly.
fn every_write_is_stored_so(test: &str, write: &str, want: Stored, sse_etags: bool) {
    if !servers_available(test) {
        return;
    }
    let c = s3_sdk("MOTO");
    let id = format!("{test}-{}", nanos() % 1_000_000_000_000);
    seed(&c, &format!("{id}/seed/"));
    let moto = env("FERRY_TEST_MOTO_ENDPOINT");
    let proxy = sse_etags.then(|| {
        Proxy::start(
            moto.trim_start_matches("http://"),
            &["--rate", "0", "--sse-etags", "kms"],
        )
    });
    let endpoint = proxy.as_ref().map_or(moto.clone(), Proxy::endpoint);
    let tmp = tempfile::tempdir().unwrap();
    let p = plan(tmp.path(), &endpoint, &id, write);

    let first = ferry(&["run", "--json", "-v"], &p, MINUTES);
    let verify = ferry(&["verify", "--json"], &p, MINUTES);
    let deep = ferry(&["verify", "--deep", "--json"], &p, MINUTES);
    let second = ferry(&["run", "--json"], &p, MINUTES);
    let rewritten = proxy
        .as_ref()
        .map(|p| p.stats()["etags_rewritten"].as_u64().unwrap_or(0));
    drop(proxy);

    let jobs = [format!("local-{id}"), format!("server-{id}")];
    let mut written = s3_list(&c, "ferry-b", &format!("{id}/")).unwrap();
    written.extend(jobs.iter().map(|j| format!(".ferry/manifests/{j}.jsonl")));
    let stored: Vec<(String, Stored)> = written.iter().map(|k| (k.clone(), head(&c, k))).collect();
    for k in s3_list(&c, "ferry-a", &format!("{id}/"))
        .unwrap()
        .iter()
        .chain(&written)
    {
        let bucket = if k.starts_with(&format!("{id}/seed/")) {
            "ferry-a"
        } else {
            "ferry-b"
        };
        common::wire::s3_delete(&c, bucket, k);
    }

    if let Some(n) = rewritten {
        assert!(n > 0, "the proxy rewrote no ETag");
    }
    assert_eq!(first.code, Some(0), "{}", first.summary());
    for job in &jobs {
        assert_eq!(count(&first, job, "copied"), 2, "{job}: {}", first.summary());
    }
    for (what, ran) in [("verify", &verify), ("verify --deep", &deep)] {
        assert_eq!(ran.code, Some(0), "{what}: {}", ran.summary());
        for job in &jobs {
            assert_eq!(count(ran, job, "matched"), 2, "{what} {job}: {}", ran.summary());
        }
    }
    assert_eq!(second.code, Some(0), "{}", second.summary());
    assert!(!second.stderr.contains("corrupted"), "{}", second.summary());
    // Every path wrote something: both jobs' objects, the dump and its record (and the two
    // manifests, HEADed by name: a missing one fails the HEAD).
    for expected in [
        "/local/small.bin",
        "/local/mid.bin",
        "/server/small.bin",
        "/server/mid.bin",
        ".db.zst",
        ".db.zst.ferry.json",
    ] {
        assert!(
            written.iter().any(|k| k.ends_with(expected)),
            "nothing written ends with `{expected}`: {written:?}"
        );
    }
    assert!(written.len() >= 8, "{written:?}");
    let wrong: Vec<_> = stored.iter().filter(|(_, got)| got != &want).collect();
    assert!(wrong.is_empty(), "stored otherwise than {want:?}: {wrong:#?}");
}

/// SSE-KMS with a key id and a storage class, through ETags that are not MD5s.
#[test]
fn sse_kms_with_key_id_and_storage_class_on_every_write() {
    every_write_is_stored_so(
        "sse-kms",
        "sse = \"aws:kms\"\nsse-kms-key-id = \"alias/ferry-test\"\nstorage-class = \"STANDARD_IA\"\n",
        Stored {
            sse: Some("aws:kms".into()),
            kms_key_id: Some("alias/ferry-test".into()),
            class: Some("STANDARD_IA".into()),
        },
        true,
    );
}

/// SSE-S3 and another class, straight to moto (SSE-S3 ETags are MD5s, and are checked as such).
#[test]
fn sse_s3_and_storage_class_on_every_write() {
    every_write_is_stored_so(
        "sse-s3",
        "sse = \"AES256\"\nstorage-class = \"ONEZONE_IA\"\n",
        Stored {
            sse: Some("AES256".into()),
            kms_key_id: None,
            class: Some("ONEZONE_IA".into()),
        },
        false,
    );
}
