//! Issue 16, versioned buckets: ferry copies current objects only. The noncurrent versions and
//! delete markers a versioned S3 source keeps under the job's prefix (and filters) are counted
//! by `plan` and `run` (`jobs[].versions_left`, and a line on stderr), so a move never leaves a
//! bucket's history behind without a word. An unversioned bucket reports nothing and costs no
//! version listing. Seeded on moto through the test's own SDK client; the destination is read
//! from the filesystem.

mod common;

use std::path::Path;
use std::time::Duration;

use common::oracle::{ferry, nanos, toml_str, Ran};
use common::{servers_available, wire};

fn plan(dir: &Path, bucket: &str) -> std::path::PathBuf {
    let plan = dir.join("p.toml");
    std::fs::write(
        &plan,
        format!(
            "[providers.src]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             allow-http = true\npath-style = true\naccess-key-id-env = \"FERRY_TEST_MOTO_KEY\"\n\
             secret-access-key-env = \"FERRY_TEST_MOTO_SECRET\"\n\
             [providers.dst]\ntype = \"local\"\nroot = {}\n\
             [[objects]]\nname = \"j\"\nfrom = \"src:data/\"\nto = \"dst:\"\nexclude = [\"tmp/**\"]\n",
            common::env("FERRY_TEST_MOTO_ENDPOINT"),
            toml_str(&dir.join("dst").display().to_string())
        ),
    )
    .unwrap();
    plan
}

fn versions(ran: &Ran) -> &serde_json::Value {
    &ran.json.as_ref().unwrap_or_else(|| panic!("no JSON: {}", ran.stdout))["jobs"][0]["versions_left"]
}

#[test]
fn noncurrent_versions_and_delete_markers_are_reported() {
    if !servers_available("noncurrent_versions_and_delete_markers_are_reported") {
        return;
    }
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let c = wire::s3_sdk("MOTO");
    let bucket = format!("ferry-versions-{}", nanos());
    wire::block_on(c.create_bucket().bucket(&bucket).send()).unwrap();
    let put = |key: &str, len: usize, seed: u64| wire::s3_put(&c, &bucket, key, &common::data(len, seed)).unwrap();

    // Unversioned: nothing to report.
    put("data/a.txt", 100, 1);
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), &bucket);
    let t = Duration::from_secs(120);
    let planned = ferry(&["plan", "--json"], &plan, t);
    assert_eq!(planned.code, Some(0), "{}", planned.stderr);
    assert!(versions(&planned).is_null(), "{}", planned.stdout);

    let on = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .build();
    wire::block_on(
        c.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(on)
            .send(),
    )
    .unwrap();
    put("data/a.txt", 150, 2); // the 100-byte version becomes noncurrent
    put("data/b.txt", 50, 3);
    wire::block_on(c.delete_object().bucket(&bucket).key("data/b.txt").send()).unwrap(); // a marker
    put("data/c d+e.txt", 10, 4); // current only
    put("data/c d+e.txt", 20, 5); // its 10 bytes noncurrent: the key is decoded, not mangled
    put("data/tmp/x", 30, 6); // excluded by the job, versions and all
    put("data/tmp/x", 40, 7);
    put("elsewhere/y", 60, 8); // outside the prefix
    put("elsewhere/y", 70, 9);

    // The oracle: what moto lists through the test's own client.
    let all = wire::block_on(c.list_object_versions().bucket(&bucket).prefix("data/").send()).unwrap();
    let noncurrent: Vec<_> = all
        .versions()
        .iter()
        .filter(|v| v.is_latest() == Some(false) && !v.key().unwrap().starts_with("data/tmp/"))
        .map(|v| (v.key().unwrap().to_string(), v.size().unwrap()))
        .collect();
    assert_eq!(noncurrent.len(), 3, "{noncurrent:?}");
    assert_eq!(noncurrent.iter().map(|(_, s)| s).sum::<i64>(), 160, "{noncurrent:?}");
    assert_eq!(all.delete_markers().len(), 1);

    for cmd in ["plan", "run"] {
        let ran = ferry(&[cmd, "--json"], &plan, t);
        assert_eq!(ran.code, Some(0), "{cmd}: {}", ran.stderr);
        let v = versions(&ran);
        assert_eq!(v["noncurrent"]["objects"], 3, "{cmd}: {}", ran.stdout);
        assert_eq!(v["noncurrent"]["bytes"], 160, "{cmd}: {}", ran.stdout);
        assert_eq!(v["delete_markers"], 1, "{cmd}: {}", ran.stdout);
        assert!(v["error"].is_null(), "{cmd}: {}", ran.stdout);
        let line = "3 noncurrent versions (160 B) and 1 delete markers at the source stay behind";
        assert!(ran.stderr.contains(line), "{cmd}: {line}\n{}", ran.stderr);
    }
    // Current objects only, as they are now.
    let dst = dir.path().join("dst");
    assert_eq!(std::fs::read(dst.join("a.txt")).unwrap(), common::data(150, 2));
    assert_eq!(std::fs::read(dst.join("c d+e.txt")).unwrap(), common::data(20, 5));
    assert!(!dst.join("b.txt").exists(), "a deleted object was copied");
    assert!(!dst.join("tmp").exists(), "an excluded object was copied");
}
