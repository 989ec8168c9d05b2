//! Issue 6: what `ferry plan` predicts is exactly what `ferry run` then does, on a real S3
//! server, with a destination that partly matches, partly differs and partly misses; and the
//! dry run writes nothing, neither at the destination nor in the journal.

mod common;
use common::servers_available;

use std::path::Path;
use std::process::Command;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn ferry_json(args: &[&str], plan: &Path) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .arg(plan)
        .arg("--json")
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, v)
}

async fn listing(store: &dyn ObjectStore, prefix: &str) -> Vec<(String, u64, Option<String>)> {
    let mut v: Vec<_> = store
        .list(Some(&OsPath::from(prefix)))
        .map_ok(|m| (m.location.to_string(), m.size, m.e_tag))
        .try_collect()
        .await
        .unwrap();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_predicts_run_exactly_on_5000_objects() {
    if !servers_available("plan_predicts_run_exactly_on_5000_objects") {
        return;
    }
    let env = |v: &str| std::env::var(v).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let prefix = format!(
        "audit-{}-{}",
        std::process::id(),
        std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos() % 1_000_000_000
    );
    let write = |i: usize, tag: &str| {
        let p = src.join(format!("d{:02}/f{i:05}.txt", i % 50));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{tag} object {i} {}", "x".repeat(i % 500))).unwrap();
    };
    for i in 0..5000 {
        write(i, "v1");
    }
    let plan = dir.path().join("audit.toml");
    std::fs::write(
        &plan,
        format!(
            "[providers.src]\ntype = \"local\"\nroot = \"src\"\n\n[providers.dst]\ntype = \"s3\"\nbucket = \"ferry-b\"\n\
             endpoint = \"{}\"\nregion = \"us-east-1\"\nallow-http = true\npath-style = true\n\
             access-key-id-env = \"FERRY_TEST_SEAWEED_KEY\"\nsecret-access-key-env = \"FERRY_TEST_SEAWEED_SECRET\"\n\n\
             [[objects]]\nname = \"audit\"\nfrom = \"src:\"\nto = \"dst:{prefix}/\"\n",
            env("FERRY_TEST_SEAWEED_ENDPOINT")
        ),
    )
    .unwrap();
    let (code, first) = ferry_json(&["run"], &plan);
    assert_eq!(code, 0, "{first}");
    assert_eq!(first["totals"]["copied"]["objects"], 5000);

    // Drift: 600 sources rewritten (changed), 700 destination objects deleted (missing),
    // 400 new sources, 50 extraneous destination objects.
    for i in 0..600 {
        write(i, "v2");
    }
    for i in 5000..5400 {
        write(i, "v1");
    }
    let s3 = AmazonS3Builder::new()
        .with_endpoint(env("FERRY_TEST_SEAWEED_ENDPOINT"))
        .with_bucket_name("ferry-b")
        .with_region("us-east-1")
        .with_access_key_id(env("FERRY_TEST_SEAWEED_KEY"))
        .with_secret_access_key(env("FERRY_TEST_SEAWEED_SECRET"))
        .with_allow_http(true)
        .build()
        .unwrap();
    for i in 1000..1700 {
        s3.delete(&OsPath::from(format!("{prefix}/d{:02}/f{i:05}.txt", i % 50)))
            .await
            .unwrap();
    }
    for i in 0..50 {
        s3.put(
            &OsPath::from(format!("{prefix}/stale/{i}.txt")),
            PutPayload::from("old"),
        )
        .await
        .unwrap();
    }

    let before = listing(&s3, &prefix).await;
    let journal = dir.path().join(".ferry/audit/journal.sqlite");
    let journal_before = std::fs::read(&journal).unwrap();
    let (code, planned) = ferry_json(&["plan"], &plan);
    assert_eq!(code, 0, "{planned}");
    assert_eq!(
        listing(&s3, &prefix).await,
        before,
        "the dry run changed the destination"
    );
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        journal_before,
        "the dry run wrote the journal"
    );

    let p = &planned["jobs"][0];
    assert_eq!(p["new"]["objects"], 700 + 400);
    assert_eq!(p["changed"]["objects"], 600);
    assert_eq!(p["unchanged"]["objects"], 5400 - 700 - 400 - 600);
    assert_eq!(p["extraneous"]["objects"], 50);

    let (code, ran) = ferry_json(&["run"], &plan);
    assert_eq!(code, 0, "{ran}");
    let r = &ran["jobs"][0];
    let moved = |k: &str| p["new"][k].as_u64().unwrap() + p["changed"][k].as_u64().unwrap();
    assert_eq!(r["copied"]["objects"].as_u64().unwrap(), moved("objects"));
    assert_eq!(r["copied"]["bytes"].as_u64().unwrap(), moved("bytes"));
    for k in ["source", "new", "changed", "unchanged", "extraneous"] {
        assert_eq!(r[k], p[k], "{k}: plan and run disagree");
    }
    assert_eq!(
        r["requests"], p["requests"],
        "requests predicted differ from requests made"
    );
    eprintln!(
        "plan predicted {} objects / {} bytes; run copied {} / {}",
        moved("objects"),
        moved("bytes"),
        r["copied"]["objects"],
        r["copied"]["bytes"]
    );
    let (code, _) = ferry_json(&["verify"], &plan);
    assert_eq!(code, 0);
}

/// Issue 16: an audit before the destination exists. A bucket that is not there yet, and a
/// preset destination whose endpoint does not answer, are priced as empty from the preset:
/// `plan` exits 0, says so on stderr and in `estimates[0].destination_not_reached`, and every
/// source object is new; `run` still refuses (2: no such bucket; 3: no answer).
#[test]
fn plan_prices_a_destination_that_does_not_exist_yet() {
    if !servers_available("plan_prices_a_destination_that_does_not_exist_yet") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join(format!("src/f{i}.txt")), format!("object {i}")).unwrap();
    }
    let missing_bucket = format!(
        "type = \"s3\"\nbucket = \"ferry-no-such-bucket-{}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
         allow-http = true\npath-style = true\naccess-key-id-env = \"FERRY_TEST_SEAWEED_KEY\"\n\
         secret-access-key-env = \"FERRY_TEST_SEAWEED_SECRET\"\n",
        std::process::id(),
        std::env::var("FERRY_TEST_SEAWEED_ENDPOINT").unwrap()
    );
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let no_answer = "preset = \"minio\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9\"\nallow-http = true\n\
                     access-key-id-env = \"FERRY_TEST_SEAWEED_KEY\"\nsecret-access-key-env = \"FERRY_TEST_SEAWEED_SECRET\"\n";
    for (dst, run_exit) in [(missing_bucket.as_str(), 2), (no_answer, 3)] {
        let plan = dir.path().join("audit.toml");
        std::fs::write(
            &plan,
            format!(
                "[providers.src]\ntype = \"local\"\nroot = \"src\"\n\n[providers.dst]\n{dst}\n\
                 [[objects]]\nname = \"audit\"\nfrom = \"src:\"\nto = \"dst:x/\"\n"
            ),
        )
        .unwrap();
        let (code, planned) = ferry_json(&["plan"], &plan);
        assert_eq!(code, 0, "{planned}");
        assert_eq!(planned["jobs"][0]["new"]["objects"], 3, "{planned}");
        let why = planned["estimates"][0]["destination_not_reached"].as_str().unwrap();
        assert!(
            why.starts_with("destination `dst` not reached: priced from the preset alone; nothing listed there"),
            "{why}"
        );
        let human = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["plan"])
            .arg(&plan)
            .output()
            .unwrap();
        assert_eq!(human.status.code(), Some(0));
        let stderr = String::from_utf8_lossy(&human.stderr);
        assert!(
            stderr.contains("warning: destination `dst` not reached: priced from the preset alone"),
            "{stderr}"
        );
        let (code, ran) = ferry_json(&["run"], &plan);
        assert_eq!(code, run_exit, "{ran}");
    }
}
