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

/// Exactly the `archived` (key, class) pairs are failed, each "archived (CLASS): restore it
/// first"; returns the failures.
fn assert_failed<'a>(ran: &'a Ran, archived: &[(&str, &str)]) -> &'a Vec<serde_json::Value> {
    let failed = job(ran)["failed"].as_array().unwrap();
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
    failed
}

/// `run` copies the readable object, names each archived one as failed, and exits 1.
fn assert_ran(ran: &Ran, dir: &Path, archived: &[(&str, &str)], plain: (&str, &[u8])) {
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let failed = assert_failed(ran, archived);
    let j = job(ran);
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
    use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest, StorageClass, Tier};
    let prefix = format!("archived-{}/", nanos());
    let c = wire::s3_sdk("MOTO");
    let seeded = [
        ("plain.txt", StorageClass::Standard, 5usize),
        ("kept.bin", StorageClass::Standard, 400),
        ("cold.bin", StorageClass::Glacier, 1000),
        ("colder.bin", StorageClass::DeepArchive, 3000),
        ("thawed.bin", StorageClass::Glacier, 2000),
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
    // `thawed.bin` is restored: it still lists as GLACIER, and only a HEAD shows the restore.
    let restore = c
        .restore_object()
        .bucket(BUCKET)
        .key(format!("{prefix}thawed.bin"))
        .restore_request(
            RestoreRequest::builder()
                .days(1)
                .glacier_job_parameters(GlacierJobParameters::builder().tier(Tier::Standard).build().unwrap())
                .build(),
        );
    wire::block_on(restore.send()).unwrap();
    let head = wire::block_on(c.head_object().bucket(BUCKET).key(format!("{prefix}thawed.bin")).send()).unwrap();
    assert!(
        head.restore().is_some_and(|r| r.contains("ongoing-request=\"false\"")),
        "moto did not restore: {:?}",
        head.restore()
    );
    // The oracle: what moto itself lists for each key.
    let classes = |c: &aws_sdk_s3::Client| {
        let listed = wire::block_on(c.list_objects_v2().bucket(BUCKET).prefix(&prefix).send()).unwrap();
        listed
            .contents()
            .iter()
            .map(|o| {
                (
                    o.key().unwrap().trim_start_matches(&prefix).to_string(),
                    o.storage_class().cloned(),
                )
            })
            .collect::<std::collections::HashMap<_, _>>()
    };
    use aws_sdk_s3::types::ObjectStorageClass as Listed;
    let listed = classes(&c);
    assert_eq!(listed["cold.bin"], Some(Listed::Glacier), "{listed:?}");
    assert_eq!(listed["thawed.bin"], Some(Listed::Glacier), "{listed:?}");
    assert_eq!(listed["colder.bin"], Some(Listed::DeepArchive), "{listed:?}");

    let dir = tempfile::tempdir().unwrap();
    let upstream = common::env("FERRY_TEST_MOTO_ENDPOINT");
    // Only GETs of the archived objects that were not restored count.
    let regex = format!("^/{BUCKET}/{prefix}cold");
    let proxy = Proxy::start(
        upstream.trim_start_matches("http://"),
        &["--rate", "0", "--methods", "GET", "--path-regex", &regex],
    );
    let plan = plan(dir.path(), &moto_source(&proxy.endpoint()), &prefix);
    let t = Duration::from_secs(120);
    let planned = ferry(&["plan", "--json"], &plan, t);
    // Both GLACIER objects are archived by their listing; the plan HEADs them as `run` will and
    // names as failed only the one without a finished restore.
    let j = job(&planned);
    assert_eq!(j["archived"]["GLACIER"]["objects"], 2, "{}", planned.stdout);
    assert_eq!(j["archived"]["GLACIER"]["bytes"], 3000, "{}", planned.stdout);
    assert_eq!(j["archived"]["DEEP_ARCHIVE"]["objects"], 1, "{}", planned.stdout);
    assert!(planned
        .stderr
        .contains("2 objects, 3000 bytes are archived (GLACIER): restore them first"));
    assert_failed(&planned, &[("cold.bin", "GLACIER"), ("colder.bin", "DEEP_ARCHIVE")]);
    assert_eq!(planned.code, Some(1), "{}", planned.stderr);

    let ran = ferry(&["run", "--json"], &plan, t);
    assert_ran(
        &ran,
        dir.path(),
        &[("cold.bin", "GLACIER"), ("colder.bin", "DEEP_ARCHIVE")],
        ("plain.txt", &common::data(5, 7)),
    );
    assert_eq!(
        std::fs::read(dir.path().join("dst/thawed.bin")).unwrap(),
        common::data(2000, 7)
    );
    assert_eq!(
        std::fs::read(dir.path().join("dst/kept.bin")).unwrap(),
        common::data(400, 7)
    );
    assert_eq!(proxy.stats()["eligible"], 0, "an archived object was read");

    // `kept.bin` goes to GLACIER after it was copied (a lifecycle rule would do the same): it is
    // at the destination already, so the next run counts it unchanged, not failed.
    let to_glacier = c
        .copy_object()
        .bucket(BUCKET)
        .key(format!("{prefix}kept.bin"))
        .copy_source(format!("{BUCKET}/{prefix}kept.bin"))
        .storage_class(StorageClass::Glacier);
    wire::block_on(to_glacier.send()).unwrap();
    assert_eq!(classes(&c)["kept.bin"], Some(Listed::Glacier));
    let again = ferry(&["run", "--json"], &plan, t);
    assert_eq!(again.code, Some(1), "{}", again.stderr);
    assert_failed(&again, &[("cold.bin", "GLACIER"), ("colder.bin", "DEEP_ARCHIVE")]);
    let j = job(&again);
    assert_eq!(j["unchanged"]["objects"], 3, "plain, kept and thawed: {}", again.stdout);
    assert_eq!(j["copied"]["objects"], 0, "{}", again.stdout);
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
