//! Issue 16, archived sources: objects in an archive class (S3 `GLACIER`, `DEEP_ARCHIVE`; Azure
//! `Archive`) need a restore before anyone can read them. `plan` counts them by class, with
//! their bytes; `run` names each as failed ("archived (CLASS): restore it first"), exit 1,
//! without a GET of it, and copies the rest. Seeded and read back through the test's own
//! clients (the AWS SDK, SharedKey REST for Azurite); GETs counted by the fault proxy.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::oracle::{ferry, nanos, toml_str, Ran};
use common::proxy::Proxy;
use common::{servers_available, wire};

const BUCKET: &str = "ferry-a";

/// A plan copying `source` (a provider table body) under `prefix` to the local folder `dst`.
fn plan(dir: &Path, source: &str, prefix: &str) -> PathBuf {
    let plan = dir.join("p.toml");
    std::fs::write(
        &plan,
        format!(
            "[providers.src]\n{source}\n[providers.dst]\ntype = \"local\"\nroot = {}\n\
             [[objects]]\nname = \"j\"\nfrom = \"src:{prefix}\"\nto = \"dst:\"\n",
            toml_str(&dir.join("dst").display().to_string())
        ),
    )
    .unwrap();
    plan
}

fn moto_source(endpoint: &str) -> String {
    format!(
        "type = \"s3\"\nbucket = \"{BUCKET}\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nallow-http = true\n\
         path-style = true\naccess-key-id-env = \"FERRY_TEST_MOTO_KEY\"\nsecret-access-key-env = \"FERRY_TEST_MOTO_SECRET\"\n"
    )
}

fn job(ran: &Ran) -> &serde_json::Value {
    &ran.json.as_ref().unwrap_or_else(|| panic!("no JSON: {}", ran.stdout))["jobs"][0]
}

/// `plan --json` lists the archived objects of each class with their count and bytes.
fn assert_planned(ran: &Ran, classes: &[(&str, u64)]) {
    let j = job(ran);
    for (class, bytes) in classes {
        assert_eq!(j["archived"][class]["objects"], 1, "{class}: {}", ran.stdout);
        assert_eq!(j["archived"][class]["bytes"], *bytes, "{class}: {}", ran.stdout);
        let line = format!("1 objects, {bytes} bytes are archived ({class}): restore them first");
        assert!(ran.stderr.contains(&line), "{line}\n{}", ran.stderr);
    }
    assert_eq!(
        j["new"]["objects"], 1,
        "only the readable object is new: {}",
        ran.stdout
    );
}

/// `run` copies the readable object, names each archived one as failed, and exits 1.
fn assert_ran(ran: &Ran, dir: &Path, archived: &[(&str, &str)], plain: (&str, &[u8])) {
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let j = job(ran);
    let failed = j["failed"].as_array().unwrap();
    assert_eq!(failed.len(), archived.len(), "{}", ran.stdout);
    for (key, class) in archived {
        let reason = format!("archived ({class}): restore it first");
        assert!(
            failed
                .iter()
                .any(|f| f["key"].as_str().is_some_and(|k| k.ends_with(key)) && f["reason"] == reason.as_str()),
            "`{key}` not failed with `{reason}`: {}",
            ran.stdout
        );
    }
    let source = j["source"]["objects"].as_u64().unwrap();
    let copied = j["copied"]["objects"].as_u64().unwrap();
    let unchanged = j["unchanged"]["objects"].as_u64().unwrap();
    assert_eq!(source, copied + unchanged + failed.len() as u64, "{}", ran.stdout);
    assert_eq!(std::fs::read(dir.join("dst").join(plain.0)).unwrap(), plain.1);
    for (key, _) in archived {
        assert!(!dir.join("dst").join(key).exists(), "`{key}` was written");
    }
}

#[test]
fn s3_glacier_and_deep_archive_are_flagged_and_never_read() {
    if !servers_available("s3_glacier_and_deep_archive_are_flagged_and_never_read") {
        return;
    }
    use aws_sdk_s3::types::StorageClass;
    let prefix = format!("archived-{}/", nanos());
    let c = wire::s3_sdk("MOTO");
    let seeded = [
        ("plain.txt", StorageClass::Standard, 5usize),
        ("cold.bin", StorageClass::Glacier, 1000),
        ("colder.bin", StorageClass::DeepArchive, 3000),
    ];
    for (key, class, len) in &seeded {
        let put = c
            .put_object()
            .bucket(BUCKET)
            .key(format!("{prefix}{key}"))
            .storage_class(class.clone())
            .body(common::data(*len, 7).into());
        wire::block_on(put.send()).unwrap();
    }
    // The oracle: what moto itself lists for each key.
    let listed = wire::block_on(c.list_objects_v2().bucket(BUCKET).prefix(&prefix).send()).unwrap();
    let classes: Vec<_> = listed
        .contents()
        .iter()
        .filter_map(|o| o.storage_class().cloned())
        .collect();
    assert!(
        classes.contains(&aws_sdk_s3::types::ObjectStorageClass::Glacier),
        "{classes:?}"
    );
    assert!(
        classes.contains(&aws_sdk_s3::types::ObjectStorageClass::DeepArchive),
        "{classes:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let upstream = common::env("FERRY_TEST_MOTO_ENDPOINT");
    // Only GETs of the archived objects count.
    let regex = format!("^/{BUCKET}/{prefix}cold");
    let proxy = Proxy::start(
        upstream.trim_start_matches("http://"),
        &["--rate", "0", "--methods", "GET", "--path-regex", &regex],
    );
    let plan = plan(dir.path(), &moto_source(&proxy.endpoint()), &prefix);
    let t = Duration::from_secs(120);
    let planned = ferry(&["plan", "--json"], &plan, t);
    assert_planned(&planned, &[("GLACIER", 1000), ("DEEP_ARCHIVE", 3000)]);
    let ran = ferry(&["run", "--json"], &plan, t);
    assert_ran(
        &ran,
        dir.path(),
        &[("cold.bin", "GLACIER"), ("colder.bin", "DEEP_ARCHIVE")],
        ("plain.txt", &common::data(5, 7)),
    );
    assert_eq!(proxy.stats()["eligible"], 0, "an archived object was read");
}

#[test]
fn azure_archive_tier_is_flagged() {
    if !servers_available("azure_archive_tier_is_flagged") {
        return;
    }
    let prefix = format!("archived-{}/", nanos());
    let az = wire::Azure::from_env();
    az.put(BUCKET, &format!("{prefix}plain.txt"), b"plain").unwrap();
    az.put(BUCKET, &format!("{prefix}cold.bin"), &common::data(700, 3))
        .unwrap();
    az.set_tier(BUCKET, &format!("{prefix}cold.bin"), "Archive").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "type = \"azure\"\naccount = \"{}\"\ncontainer = \"{BUCKET}\"\nendpoint = \"{}\"\nallow-http = true\n\
         access-key-env = \"FERRY_TEST_AZURITE_KEY\"\n",
        common::env("FERRY_TEST_AZURITE_ACCOUNT"),
        common::env("FERRY_TEST_AZURITE_ENDPOINT"),
    );
    let plan = plan(dir.path(), &source, &prefix);
    let t = Duration::from_secs(120);
    let planned = ferry(&["plan", "--json"], &plan, t);
    assert_planned(&planned, &[("Archive", 700)]);
    let ran = ferry(&["run", "--json"], &plan, t);
    assert_ran(&ran, dir.path(), &[("cold.bin", "Archive")], ("plain.txt", b"plain"));
}
