//! Issue 16: S3 credentials from the AWS SDK's chain, against servers that check them.
//!
//! Each test gives ferry a clean environment (no `AWS_*` but what it sets, `HOME` and the AWS
//! config files in a temporary folder, never the real `~/.aws`) and reads the destination back
//! through an SDK client of its own with the servers' static keys.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::proxy::Proxy;
use common::wire::{s3_get, s3_sdk};
use common::{env, servers_available};

/// A temporary folder with a source file tree, the AWS files, and ferry's plan.
struct Setup {
    dir: tempfile::TempDir,
    prefix: String,
}

impl Setup {
    fn new(test: &str, files: &[(&str, Vec<u8>)]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            let p = dir.path().join("src").join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let prefix = format!("{test}-{}-{}", std::process::id(), common::oracle::nanos());
        Setup { dir, prefix }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A plan copying `src/` to `ferry-b` under this test's prefix; `s3` is the rest of the S3
    /// provider's table (`endpoint = …` or nothing), `settings` the `[settings]` body.
    fn plan(&self, s3: &str, settings: &str) -> PathBuf {
        let plan = self.path("p.toml");
        std::fs::write(
            &plan,
            format!(
                "[settings]\n{settings}\n[providers.src]\ntype = \"local\"\nroot = \"src\"\n\n\
                 [providers.dst]\ntype = \"s3\"\nbucket = \"ferry-b\"\nregion = \"us-east-1\"\n\
                 allow-http = true\npath-style = true\n{s3}\n\n\
                 [[objects]]\nname = \"copy\"\nfrom = \"src:\"\nto = \"dst:{}/\"\n",
                self.prefix
            ),
        )
        .unwrap();
        plan
    }

    fn run(&self, plan: &Path, vars: &[(&str, String)]) -> Output {
        common::ferry_clean_env(self.dir.path(), plan, vars)
    }

    /// The copy of `name` as SeaweedFS holds it, read with the test's own client.
    fn copied(&self, name: &str) -> Result<Vec<u8>, String> {
        s3_get(&s3_sdk("SEAWEED"), "ferry-b", &format!("{}/{name}", self.prefix))
    }
}

fn seaweed() -> String {
    format!("endpoint = \"{}\"", env("FERRY_TEST_SEAWEED_ENDPOINT"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A profile in a shared credentials file, chosen by `AWS_PROFILE`, with no `*-env` key in the
/// plan: SeaweedFS checks the signature, so only those keys copy. A wrong secret in another
/// profile stops the run with exit 2 naming the profile, and the secret is not printed.
#[test]
fn aws_profile_from_a_shared_credentials_file() {
    if !servers_available("aws_profile_from_a_shared_credentials_file") {
        return;
    }
    let s = Setup::new("profile", &[("a.txt", b"profile keys".to_vec())]);
    let wrong = "wrong-Secret-Profile-4711";
    std::fs::write(
        s.path("aws-credentials"),
        format!(
            "[evac]\naws_access_key_id = {}\naws_secret_access_key = {}\n\n\
             [stale]\naws_access_key_id = {}\naws_secret_access_key = {wrong}\n",
            env("FERRY_TEST_SEAWEED_KEY"),
            env("FERRY_TEST_SEAWEED_SECRET"),
            env("FERRY_TEST_SEAWEED_KEY")
        ),
    )
    .unwrap();
    let plan = s.plan(&seaweed(), "");
    let out = s.run(&plan, &[("AWS_PROFILE", "evac".into())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(s.copied("a.txt").unwrap(), b"profile keys");

    let out = s.run(&plan, &[("AWS_PROFILE", "stale".into())]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("provider `dst`") && all.contains("profile `stale`"),
        "{all}"
    );
    assert!(!all.contains(wrong), "the wrong secret was printed: {all}");

    // The plan's `profile` key wins over AWS_PROFILE.
    let plan = s.plan(&format!("{}\nprofile = \"evac\"", seaweed()), "");
    let out = s.run(&plan, &[("AWS_PROFILE", "stale".into())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A profile that is in neither file, named by the plan or by `AWS_PROFILE`: exit 2, and the
/// error names the profile and the files read (not the instance metadata service, where the
/// SDK's chain ends up when the files hold no profile at all), before any object is written.
#[test]
fn a_profile_that_does_not_exist_is_named_with_the_files_read() {
    if !servers_available("a_profile_that_does_not_exist_is_named_with_the_files_read") {
        return;
    }
    let s = Setup::new("noprofile", &[("a.txt", b"never copied".to_vec())]);
    let config = s.path("aws-config").display().to_string();
    let credentials = s.path("aws-credentials").display().to_string();
    // No files at all: the SDK counts that as "no profiles" and goes on down its chain.
    let plan = s.plan(&seaweed(), "");
    let out = s.run(&plan, &[("AWS_PROFILE", "evac".into())]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains(&format!("profile `evac` was not found in the AWS config file `{config}`, which does not exist or the credentials file `{credentials}`, which does not exist (they define no profile)")), "{all}");
    // Files with other profiles; the plan's `profile` names a missing one.
    std::fs::write(s.path("aws-config"), "[profile other]\nregion = us-east-1\n").unwrap();
    std::fs::write(
        s.path("aws-credentials"),
        "[default]\naws_access_key_id = k\naws_secret_access_key = s\n",
    )
    .unwrap();
    let plan = s.plan(&format!("{}\nprofile = \"evac\"", seaweed()), "");
    let out = s.run(&plan, &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains(&format!("profile `evac` was not found in the AWS config file `{config}` or the credentials file `{credentials}` (profiles there: default, other)")), "{all}");
    for unrelated in ["IMDS", "instance", "metadata"] {
        assert!(!all.contains(unrelated), "`{unrelated}` in: {all}");
    }
    assert!(s.copied("a.txt").is_err(), "an object was written");
}

/// Writes a `credential_process` script handing out SeaweedFS's keys (or `secret`) that expire
/// `lifetime` seconds after each call, and counting its calls in `calls`. No session token:
/// SeaweedFS takes a key with one for a key of its own STS, and refuses it.
fn credential_process(s: &Setup, secret: &str, lifetime: u64) -> PathBuf {
    let script = s.path("creds.py");
    let calls = s.path("calls");
    std::fs::write(
        &script,
        format!(
            "import datetime, json\n\
             open({calls:?}, 'a').write('x\\n')\n\
             t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds={lifetime})\n\
             print(json.dumps({{'Version': 1, 'AccessKeyId': {key:?}, 'SecretAccessKey': {secret:?},\n\
                               'Expiration': t.strftime('%Y-%m-%dT%H:%M:%SZ')}}))\n",
            calls = calls.display().to_string(),
            key = env("FERRY_TEST_SEAWEED_KEY"),
        ),
    )
    .unwrap();
    calls
}

fn calls(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

/// `credential_process` keys that expire every 2 seconds, in a run made to last about 6 (a
/// bandwidth cap of 1 MiB/s over 6 MiB): ferry replaces them after half their lifetime (see
/// `store/aws_creds`), so the script is called again mid-run and every object arrives.
#[test]
fn credential_process_keys_are_refreshed_during_the_run() {
    if !servers_available("credential_process_keys_are_refreshed_during_the_run") {
        return;
    }
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("part-{i}.bin"), common::data(3 << 19, i)))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let s = Setup::new("process", &refs);
    let counter = credential_process(&s, &env("FERRY_TEST_SEAWEED_SECRET"), 2);
    std::fs::write(
        s.path("aws-config"),
        format!(
            "[profile proc]\ncredential_process = python3 {}\n",
            s.path("creds.py").display()
        ),
    )
    .unwrap();
    let plan = s.plan(
        &format!("{}\nprofile = \"proc\"", seaweed()),
        "bandwidth = \"1MiB/s\"\nconcurrency = 1",
    );
    let started = std::time::Instant::now();
    let out = s.run(&plan, &[]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (name, body) in &files {
        assert_eq!(&s.copied(name).unwrap(), body, "{name}");
    }
    let n = calls(&counter);
    eprintln!("run took {took:?}; credential_process called {n} times");
    assert!(
        took.as_secs_f64() > 4.5,
        "the run must outlast the first keys ({took:?})"
    );
    // Fetched at the start, and again at least every second of a run of over 4.5 s.
    assert!(
        n >= 3,
        "credential_process called {n} times in {took:?}: the keys were not refreshed"
    );

    // A wrong secret from the process: exit 2, naming the profile, the secret unprinted.
    let wrong = "wrong-Secret-Process-4711";
    credential_process(&s, wrong, 3600);
    let out = s.run(&plan, &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("profile `proc`"), "{all}");
    assert!(!all.contains(wrong), "{all}");
}

/// With no `endpoint` in the plan, `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_S3` above it)
/// sends every request of both clients there: the SDK's listing and object_store's upload both
/// pass the counting proxy in front of SeaweedFS, and the run succeeds with nothing else
/// reachable (IMDS off, no network: a request elsewhere would fail the run).
#[test]
fn aws_endpoint_url_reaches_both_clients() {
    if !servers_available("aws_endpoint_url_reaches_both_clients") {
        return;
    }
    let s = Setup::new("endpoint", &[("a.txt", b"through the proxy".to_vec())]);
    let upstream = env("FERRY_TEST_SEAWEED_ENDPOINT");
    let proxy = Proxy::start(
        upstream.trim_start_matches("http://"),
        &["--rate", "0", "--url-regex", "list-type=2"],
    );
    let keys = [
        ("AWS_ACCESS_KEY_ID", env("FERRY_TEST_SEAWEED_KEY")),
        ("AWS_SECRET_ACCESS_KEY", env("FERRY_TEST_SEAWEED_SECRET")),
    ];
    let plan = s.plan("", "");
    let dead = "http://127.0.0.1:1".to_string();
    for (i, vars) in [
        vec![("AWS_ENDPOINT_URL", proxy.endpoint())],
        vec![
            ("AWS_ENDPOINT_URL", dead.clone()),
            ("AWS_ENDPOINT_URL_S3", proxy.endpoint()),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        // A new object each run, so each run uploads through object_store.
        std::fs::write(s.path(&format!("src/new-{i}.txt")), b"new").unwrap();
        let before = proxy.stats();
        let out = s.run(&plan, &[keys.to_vec(), vars.clone()].concat());
        assert_eq!(out.status.code(), Some(0), "{vars:?}: {}", text(&out));
        let after = proxy.stats();
        let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
        let lists = n(&after, "eligible") - n(&before, "eligible");
        let others = n(&after, "requests") - n(&before, "requests") - lists;
        eprintln!("{vars:?}: {lists} listings, {others} other requests through the proxy");
        assert!(lists >= 1, "the SDK client's listings did not pass the proxy ({lists})");
        assert!(others >= 1, "object_store's requests did not pass the proxy ({others})");
    }
    assert_eq!(s.copied("a.txt").unwrap(), b"through the proxy");

    // The plan's endpoint wins over both variables.
    let plan = s.plan(&seaweed(), "");
    let out = s.run(
        &plan,
        &[
            keys.to_vec(),
            vec![("AWS_ENDPOINT_URL", dead.clone()), ("AWS_ENDPOINT_URL_S3", dead)],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A run killed inside a multipart upload resumes it, part for part, with a profile's keys and
/// with `credential_process` keys (see `common::resume`): the client that lists the upload's
/// parts is built whatever the credential source.
#[test]
fn a_killed_run_resumes_inside_an_object_with_profile_and_process_keys() {
    if !servers_available("a_killed_run_resumes_inside_an_object_with_profile_and_process_keys") {
        return;
    }
    let resume = |s: &Setup, profile: &str| {
        common::resume::Resume {
            dir: s.dir.path(),
            endpoint: env("FERRY_TEST_SEAWEED_ENDPOINT"),
            bucket: "ferry-b".into(),
            prefix: format!("{}/", s.prefix),
            auth: String::new(),
            vars: vec![("AWS_PROFILE", profile.into())],
            reader: s3_sdk("SEAWEED"),
        }
        .killed_then_resumed()
    };
    let s = Setup::new("resume-profile", &[]);
    std::fs::write(
        s.path("aws-credentials"),
        format!(
            "[evac]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            env("FERRY_TEST_SEAWEED_KEY"),
            env("FERRY_TEST_SEAWEED_SECRET"),
        ),
    )
    .unwrap();
    resume(&s, "evac");

    let s = Setup::new("resume-process", &[]);
    let counted = credential_process(&s, &env("FERRY_TEST_SEAWEED_SECRET"), 900);
    std::fs::write(
        s.path("aws-config"),
        format!(
            "[profile proc]\ncredential_process = python3 {}\n",
            s.path("creds.py").display()
        ),
    )
    .unwrap();
    resume(&s, "proc");
    assert!(
        calls(&counted) >= 2,
        "the process was not what signed (one call per run at least)"
    );
}
