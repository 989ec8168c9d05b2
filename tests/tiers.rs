//! Issue 16: a destination `storage-class` on Azure (an access tier) and GCS (a storage class),
//! on single PUTs and multipart uploads alike (a 12 MiB object in 5 MiB parts: Azure's Put
//! Block List, GCS's multipart initiate), and on everything else ferry writes under the job's
//! prefix. Read back through the test's own clients: Get Blob Properties on Azurite
//! (`x-ms-access-tier`), the JSON metadata on fake-gcs (`storageClass`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::oracle::{ferry, nanos, toml_str};
use common::{data, env, servers_available, wire};

/// A plan copying `src/` (one small, one multipart object) to `dst` under `prefix`.
fn plan(dir: &Path, dst: &str, prefix: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/small.txt"), data(1000, 1)).unwrap();
    std::fs::write(dir.join("src/large.bin"), data(12 << 20, 2)).unwrap();
    let plan = dir.join("p.toml");
    std::fs::write(
        &plan,
        format!(
            "[settings]\npart-size = \"5MiB\"\n\n[providers.src]\ntype = \"local\"\nroot = {}\n\n\
             [providers.dst]\n{dst}\n[[objects]]\nname = \"tiers\"\nfrom = \"src:\"\nto = \"dst:{prefix}\"\n",
            toml_str(&dir.join("src").display().to_string())
        ),
    )
    .unwrap();
    plan
}

fn copied(plan: &Path) {
    let ran = ferry(&["run", "--json"], plan, Duration::from_secs(300));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.job("tiers").unwrap()["copied"]["objects"], 2, "{}", ran.stdout);
}

#[test]
fn azure_access_tier_on_every_write() {
    if !servers_available("azure_access_tier_on_every_write") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("tiers-{}/", nanos());
    let dst = format!(
        "type = \"azure\"\naccount = \"{}\"\ncontainer = \"ferry-b\"\nendpoint = \"{}\"\nallow-http = true\n\
         access-key-env = \"FERRY_TEST_AZURITE_KEY\"\nstorage-class = \"Cool\"\n",
        env("FERRY_TEST_AZURITE_ACCOUNT"),
        env("FERRY_TEST_AZURITE_ENDPOINT")
    );
    let plan = plan(dir.path(), &dst, &prefix);
    copied(&plan);
    let az = wire::Azure::from_env();
    let names = az.list("ferry-b", &prefix).unwrap();
    assert!(names.len() >= 2, "{names:?}");
    for name in &names {
        assert_eq!(az.tier("ferry-b", name).unwrap(), "Cool", "`{name}`");
    }
    assert_eq!(
        az.get("ferry-b", &format!("{prefix}large.bin")).unwrap(),
        data(12 << 20, 2)
    );
}

#[test]
fn gcs_storage_class_on_every_write() {
    if !servers_available("gcs_storage_class_on_every_write") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("tiers-{}/", nanos());
    let dst = format!(
        "type = \"gcs\"\nbucket = \"ferry-b\"\nendpoint = \"{}\"\nallow-http = true\nanonymous = true\n\
         storage-class = \"NEARLINE\"\n",
        env("FERRY_TEST_GCS_ENDPOINT")
    );
    let plan = plan(dir.path(), &dst, &prefix);
    copied(&plan);
    let gcs = wire::GcsRaw::from_env();
    let names = gcs.list("ferry-b", &prefix).unwrap();
    assert!(names.len() >= 2, "{names:?}");
    for name in &names {
        assert_eq!(gcs.storage_class("ferry-b", name).unwrap(), "NEARLINE", "`{name}`");
    }
    assert_eq!(
        gcs.get("ferry-b", &format!("{prefix}large.bin")).unwrap(),
        data(12 << 20, 2)
    );
}
