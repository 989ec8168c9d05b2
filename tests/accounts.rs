//! Whole accounts (issue 17): a provider with `bucket = "*"` moves every chosen bucket of an
//! account. Source buckets are made and destinations read back through each server's own API
//! (the AWS SDK, Azure SharedKey REST, fake-gcs JSON, the filesystem), never through ferry.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::oracle::{ferry, nanos};
use common::wire::{block_on, s3_get, s3_put, s3_sdk, s3_sdk_at, Azure, GcsRaw};
use common::{env, servers_available};

const T: Duration = Duration::from_secs(180);

/// A moto server of its own on a free port: an account that holds no bucket at all.
struct EmptyMoto {
    child: Child,
    endpoint: String,
}

impl EmptyMoto {
    fn start() -> EmptyMoto {
        let python = std::env::var("FERRY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto (tests/servers/up.sh installs it)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        EmptyMoto { child, endpoint }
    }

    fn client(&self) -> aws_sdk_s3::Client {
        s3_sdk_at(&self.endpoint, "k", "s")
    }
}

impl Drop for EmptyMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn buckets(c: &aws_sdk_s3::Client) -> Vec<String> {
    let out = block_on(c.list_buckets().send()).expect("ListBuckets");
    let mut names: Vec<String> = out
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Every key of an S3 bucket with its bytes.
fn s3_contents(c: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, Vec<u8>> {
    let listed = block_on(c.list_objects_v2().bucket(bucket).send()).expect("ListObjectsV2");
    listed
        .contents()
        .iter()
        .map(|o| {
            let key = o.key().unwrap().to_string();
            let body = s3_get(c, bucket, &key).unwrap();
            (key, body)
        })
        .collect()
}

/// The objects of source bucket number `i`: a few sizes, a nested key, a key with a space.
fn objects(i: usize) -> Vec<(String, Vec<u8>)> {
    vec![
        (format!("top-{i}.txt"), format!("bucket {i}\n").into_bytes()),
        ("dir/nested file.bin".into(), common::data(70_000 + i * 1000, i as u64)),
        ("dir/sub/empty".into(), Vec::new()),
    ]
}

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, text).unwrap();
    plan
}

#[test]
fn a_whole_account_moves_into_an_empty_account() {
    if !servers_available("a_whole_account_moves_into_an_empty_account") {
        return;
    }
    let src = s3_sdk("SEAWEED");
    let tag = format!("acct{}", nanos() % 1_000_000_000);
    let chosen: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|s| format!("{tag}-{s}")).collect();
    let left_out = format!("{tag}-skip");
    for (i, b) in chosen.iter().chain([&left_out]).enumerate() {
        block_on(src.create_bucket().bucket(b).send()).expect("CreateBucket on SeaweedFS");
        for (k, v) in objects(i) {
            s3_put(&src, b, &k, &v).unwrap();
        }
    }
    let dst = EmptyMoto::start();
    let moto = dst.client();
    assert!(buckets(&moto).is_empty(), "a fresh moto holds no bucket");

    let dir = tempfile::tempdir().unwrap();
    let providers = format!(
        r#"
[providers.old]
type = "s3"
endpoint = "{}"
bucket = "*"
path-style = true
allow-http = true
access-key-id-env = "SRC_KEY"
secret-access-key-env = "SRC_SECRET"

[providers.new]
type = "s3"
endpoint = "{}"
region = "eu-west-1"
bucket = "*"
path-style = true
allow-http = true
access-key-id-env = "SRC_KEY"
secret-access-key-env = "SRC_SECRET"
"#,
        env("FERRY_TEST_SEAWEED_ENDPOINT"),
        dst.endpoint
    );
    std::env::set_var("SRC_KEY", env("FERRY_TEST_SEAWEED_KEY"));
    std::env::set_var("SRC_SECRET", env("FERRY_TEST_SEAWEED_SECRET"));
    let job = |extra: &str| {
        format!(
            "{providers}\n[[objects]]\nname = \"evac\"\nfrom = \"old:\"\nto = \"new:\"\nbuckets-include = [\"{tag}-*\"]\nbuckets-exclude = [\"*-skip\"]\n{extra}\n"
        )
    };

    // Without create-buckets, the first missing bucket is named and nothing is written.
    let plan = write(dir.path(), &job(""));
    let r = ferry(&["run"], &plan, T);
    assert_eq!(r.code, Some(2), "{}", r.summary());
    assert!(
        r.stderr.contains(&format!("destination bucket `{tag}-a`")) && r.stderr.contains("create-buckets = true"),
        "{}",
        r.summary()
    );
    // A glob that chooses nothing is an error, not an empty success.
    let typo = write(dir.path(), &job("").replace(&format!("{tag}-*"), &format!("{tag}x-*")));
    let r = ferry(&["plan"], &typo, T);
    assert_eq!(r.code, Some(2), "{}", r.summary());
    assert!(r.stderr.contains("is chosen"), "{}", r.summary());
    assert!(buckets(&moto).is_empty());

    // `plan` lists the buckets and creates none.
    let plan = write(dir.path(), &job("create-buckets = true"));
    let r = ferry(&["plan", "--json"], &plan, T);
    assert_eq!(r.code, Some(0), "{}", r.summary());
    let doc = r.json.clone().expect("plan --json");
    let listed: Vec<(String, bool)> = doc["accounts"][0]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["source"].as_str().unwrap().to_string(),
                b["create"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, chosen.iter().map(|b| (b.clone(), true)).collect::<Vec<_>>());
    assert!(
        doc["accounts"][0]["skipped"].to_string().contains(&left_out),
        "{}",
        doc["accounts"]
    );
    assert!(r.stderr.contains("(bucket to create)"), "{}", r.summary());
    let planned = doc["totals"]["new"]["objects"].as_u64();
    assert_eq!(planned, Some(15), "{}", doc["totals"]);
    assert!(buckets(&moto).is_empty(), "plan created a bucket");

    // `run` creates the five buckets in the provider's region and fills them.
    let r = ferry(&["run", "--json"], &plan, T);
    assert_eq!(r.code, Some(0), "{}", r.summary());
    assert_eq!(buckets(&moto), chosen, "exactly the chosen buckets are created");
    for (i, b) in chosen.iter().enumerate() {
        let want: BTreeMap<String, Vec<u8>> = objects(i).into_iter().collect();
        assert_eq!(s3_contents(&src, b), want, "the source bucket `{b}` as made");
        let got = s3_contents(&moto, b);
        let data: BTreeMap<_, _> = got.into_iter().filter(|(k, _)| !k.starts_with(".ferry/")).collect();
        assert_eq!(data, want, "bucket `{b}` arrived byte for byte");
    }
    let location = block_on(moto.get_bucket_location().bucket(&chosen[0]).send()).unwrap();
    assert_eq!(
        location
            .location_constraint()
            .map(|c| c.as_str().to_string())
            .as_deref(),
        Some("eu-west-1"),
        "created in the provider's region"
    );
    let doc = r.json.clone().unwrap();
    let copied = doc["totals"]["copied"]["objects"].as_u64();
    assert_eq!(copied, Some(15), "{}", doc["totals"]);
    eprintln!(
        "plan counted {planned:?} objects; run copied {copied:?} into {} new buckets",
        chosen.len()
    );

    // `status` shows each bucket's job from the journal, without listing the account.
    let r = ferry(&["status", "--json", "--job", "evac"], &plan, T);
    assert_eq!(r.code, Some(0), "{}", r.summary());
    let jobs: Vec<(String, u64)> = r.json.as_ref().unwrap()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["job"].as_str().unwrap().to_string(),
                j["journal"]["done"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        jobs,
        chosen.iter().map(|b| (format!("evac.{b}"), 3)).collect::<Vec<_>>()
    );

    // A second run (of the job by name) finds everything there: nothing copied or created.
    let r = ferry(&["run", "--json", "--job", "evac"], &plan, T);
    assert_eq!(r.code, Some(0), "{}", r.summary());
    let doc = r.json.clone().unwrap();
    assert_eq!(
        doc["totals"]["copied"]["objects"].as_u64(),
        Some(0),
        "{}",
        doc["totals"]
    );
    assert_eq!(
        doc["totals"]["unchanged"]["objects"].as_u64(),
        Some(15),
        "{}",
        doc["totals"]
    );
    assert!(
        doc["accounts"][0]["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["create"] == false),
        "{}",
        doc["accounts"]
    );
}

#[test]
fn a_gcs_account_into_azure_containers_and_into_local_folders() {
    if !servers_available("a_gcs_account_into_azure_containers_and_into_local_folders") {
        return;
    }
    let gcs = GcsRaw::from_env();
    let azure = Azure::from_env();
    let tag = format!("g{}", nanos() % 1_000_000_000);
    let chosen: Vec<String> = ["one", "two", "three"].iter().map(|s| format!("{tag}-{s}")).collect();
    for (i, b) in chosen.iter().enumerate() {
        gcs.create_bucket(b).unwrap();
        for (k, v) in objects(i) {
            gcs.put(b, &k, &v).unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = write(
        dir.path(),
        &format!(
            r#"
[providers.old]
type = "gcs"
endpoint = "{}"
allow-http = true
anonymous = true
bucket = "*"
project = "test"

[providers.az]
type = "azure"
account = "{}"
endpoint = "{}"
allow-http = true
access-key-env = "AZ_KEY"
container = "*"

[providers.disk]
type = "local"
root = "backup"

[[objects]]
name = "to-azure"
from = "old:"
to = "az:moved/"
buckets-include = ["{tag}-*"]
bucket-name = "m-{{bucket}}"
create-buckets = true

[[objects]]
name = "to-disk"
from = "old:"
to = "disk:gcs/{{bucket}}/"
buckets-include = ["{tag}-*"]
"#,
            env("FERRY_TEST_GCS_RAW_ENDPOINT"),
            env("FERRY_TEST_AZURITE_ACCOUNT"),
            env("FERRY_TEST_AZURITE_ENDPOINT"),
        ),
    );
    std::env::set_var("AZ_KEY", env("FERRY_TEST_AZURITE_KEY"));
    let r = ferry(&["run", "--json"], &plan, T);
    assert_eq!(r.code, Some(0), "{}", r.summary());
    let containers = azure.containers().unwrap();
    for (i, b) in chosen.iter().enumerate() {
        let want: BTreeMap<String, Vec<u8>> = objects(i).into_iter().collect();
        let container = format!("m-{b}");
        assert!(
            containers.contains(&container),
            "container `{container}` created: {containers:?}"
        );
        let mut names = azure.list(&container, "moved/").unwrap();
        names.sort();
        let got: BTreeMap<String, Vec<u8>> = names
            .iter()
            .filter(|n| !n.starts_with("moved/.ferry/"))
            .map(|n| (n["moved/".len()..].to_string(), azure.get(&container, n).unwrap()))
            .collect();
        assert_eq!(got, want, "container `{container}`");
        let folder = dir.path().join("backup/gcs").join(b);
        let on_disk: BTreeMap<String, Vec<u8>> = want
            .keys()
            .map(|k| (k.clone(), std::fs::read(folder.join(k)).unwrap_or_default()))
            .collect();
        assert_eq!(on_disk, want, "folder `{}`", folder.display());
    }
}

#[test]
fn account_keys_that_cannot_work_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = r#"
[providers.a]
type = "s3"
bucket = "*"
endpoint = "http://127.0.0.1:1"
allow-http = true

[providers.b]
type = "s3"
bucket = "one"
endpoint = "http://127.0.0.1:2"
allow-http = true
"#;
    for (job, want) in [
        ("from = \"a:\"\nto = \"b:\"", "does not hold `{bucket}`"),
        (
            "from = \"b:\"\nto = \"b:x/\"\ncreate-buckets = true",
            "applies only to a job whose `from`",
        ),
        ("from = \"a:\"\nto = \"a:\"", "every bucket would copy onto itself"),
        (
            "from = \"a:\"\nto = \"b:{bucket}/\"\ncreate-buckets = true",
            "applies only when `to` is a whole account",
        ),
        ("from = \"a:p/\"\nto = \"b:{bucket}/\"", "from each bucket's root"),
    ] {
        let plan = write(dir.path(), &format!("{base}\n[[objects]]\nname = \"j\"\n{job}\n"));
        let r = ferry(&["check"], &plan, T);
        assert_eq!(r.code, Some(2), "{job}: {}", r.summary());
        assert!(
            r.stderr.contains(want) && r.stderr.contains("plan.toml:"),
            "{job}: {}",
            r.summary()
        );
    }
}
