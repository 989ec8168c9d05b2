//! Issue 16: role credentials (AssumeRole through a profile or the plan's `role-arn`, the EC2
//! instance role through IMDSv2) against the moto that checks IAM (`FERRY_TEST_MOTO_IAM_*`):
//! a user allowed only `sts:AssumeRole`, a role allowed `s3:*`, so only the role's credentials
//! copy. With them, keys `a//b` and `dir/` are listed exactly and named as failed, as with static
//! keys, and a bucket-to-bucket copy runs on the server (the fault proxy in front of moto sees no GET of a source object).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::proxy::Proxy;
use common::wire::{s3_get, s3_list, s3_put};
use common::{env, servers_available};

/// An SDK client with moto-iam's admin keys: the test's own view of the buckets.
fn admin() -> aws_sdk_s3::Client {
    common::wire::s3_sdk("MOTO_IAM")
}

/// IAM set up with boto3 and the admin keys: a user that may only assume roles, with a key,
/// and a role that may do anything in S3. With `assume`, the role's credentials too.
fn iam(name: &str, assume: bool) -> serde_json::Value {
    let script = r#"
import json, sys, boto3
ep, key, secret, name, assume = sys.argv[1:6]
c = lambda s, k, p, t=None: boto3.client(s, endpoint_url=ep, region_name="us-east-1",
    aws_access_key_id=k, aws_secret_access_key=p, aws_session_token=t)
iam = c("iam", key, secret)
allow = lambda action: json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})
iam.create_user(UserName=name)
iam.put_user_policy(UserName=name, PolicyName="assume", PolicyDocument=allow("sts:AssumeRole"))
k = iam.create_access_key(UserName=name)["AccessKey"]
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
    "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]
iam.put_role_policy(RoleName=name, PolicyName="s3", PolicyDocument=allow("s3:*"))
out = {"key": k["AccessKeyId"], "secret": k["SecretAccessKey"], "role": role["Arn"]}
if assume == "1":
    r = c("sts", k["AccessKeyId"], k["SecretAccessKey"]).assume_role(
        RoleArn=role["Arn"], RoleSessionName="imds")["Credentials"]
    out["creds"] = {"AccessKeyId": r["AccessKeyId"], "SecretAccessKey": r["SecretAccessKey"],
        "Token": r["SessionToken"], "Expiration": r["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ")}
print(json.dumps(out))
"#;
    serde_json::from_str(&admin_script(script, &[name, if assume { "1" } else { "0" }])).unwrap()
}

/// Runs a Python `script` given moto-iam's endpoint, admin key and secret, then `args`; its
/// stdout.
fn admin_script(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .args([
            env("FERRY_TEST_MOTO_IAM_ENDPOINT"),
            env("FERRY_TEST_MOTO_IAM_KEY"),
            env("FERRY_TEST_MOTO_IAM_SECRET"),
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "IAM setup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// moto's SigV4 check (5.x) rejects any request whose query holds an encoded `/`
/// (`prefix=p%2F`; boto3 is refused the same): each case copies between two buckets of its own,
/// at their roots, so no listing needs a prefix.
struct Case {
    dir: tempfile::TempDir,
    src: String,
    dst: String,
}

impl Case {
    /// Two fresh buckets on moto-iam, the source seeded with keys object_store's `Path` cannot
    /// hold.
    fn new(test: &str) -> Case {
        let stem = format!(
            "{test}-{}-{}",
            std::process::id(),
            common::oracle::nanos() % 1_000_000_000
        );
        let (src, dst) = (format!("{stem}-a"), format!("{stem}-b"));
        let a = admin();
        for bucket in [&src, &dst] {
            common::wire::block_on(a.create_bucket().bucket(bucket).send()).unwrap();
        }
        for (key, body) in SEEDED {
            s3_put(&a, &src, key, body.as_bytes()).unwrap();
        }
        Case {
            dir: tempfile::tempdir().unwrap(),
            src,
            dst,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A user that may only assume a role allowed `s3:*` (see `iam`), in the AWS config file:
    /// profile `base` with the user's keys, profile `evac` assuming the role from `base`.
    /// Returns the user's secret and the role's ARN.
    fn profiles(&self, test: &str) -> (String, String) {
        let who = iam(&format!("{test}-{}", std::process::id()), false);
        let (key, secret, role) = (
            who["key"].as_str().unwrap(),
            who["secret"].as_str().unwrap(),
            who["role"].as_str().unwrap(),
        );
        std::fs::write(
            self.path("aws-config"),
            format!(
                "[profile base]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n\n\
                 [profile evac]\nrole_arn = {role}\nsource_profile = base\n"
            ),
        )
        .unwrap();
        (secret.to_string(), role.to_string())
    }

    /// A plan copying the source bucket to the destination at `endpoint`, both providers with
    /// `auth` lines.
    fn plan(&self, endpoint: &str, auth: &str) -> PathBuf {
        let p = |bucket: &str| {
            format!(
                "type = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
                 allow-http = true\npath-style = true\n{auth}\n"
            )
        };
        let plan = self.path("p.toml");
        std::fs::write(
            &plan,
            format!(
                "[providers.a]\n{}\n[providers.b]\n{}\n[[objects]]\nname = \"copy\"\nfrom = \"a:\"\nto = \"b:\"\n",
                p(&self.src),
                p(&self.dst),
            ),
        )
        .unwrap();
        plan
    }

    /// `ferry run` in a clean environment, STS at moto-iam.
    fn run(&self, plan: &Path, vars: &[(&str, String)]) -> Output {
        let sts = ("AWS_ENDPOINT_URL_STS", env("FERRY_TEST_MOTO_IAM_ENDPOINT"));
        common::ferry_clean_env(self.dir.path(), plan, &[vars, &[sts]].concat())
    }

    /// What a run with static keys does too (tests/odd_keys.rs): listed exactly, `a//b` and
    /// `dir/` are each named as failed with their reason (object_store's `Path` cannot hold
    /// them) rather than failing the listing or arriving mangled, and the rest arrives. Read
    /// with the admin's client.
    fn assert_copied_exactly(&self, out: &Output) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("`a//b`: not copied: source key has an empty segment"),
            "{err}"
        );
        assert!(err.contains("`dir/`: not copied: source key ends with `/`"), "{err}");
        assert!(err.contains("copied:      1 objects"), "{err}");
        let a = admin();
        let mut keys = s3_list(&a, &self.dst, "").unwrap();
        keys.retain(|k| !k.starts_with(".ferry/"));
        assert_eq!(keys, ["plain.txt"]);
        assert_eq!(s3_get(&a, &self.dst, "plain.txt").unwrap(), b"plain");
    }

    /// The fault proxy in front of moto-iam, counting GETs of objects in the source bucket (a
    /// server-side copy makes none).
    fn proxy(&self) -> Proxy {
        let upstream = env("FERRY_TEST_MOTO_IAM_ENDPOINT");
        let regex = format!("^/{}/.+", self.src);
        Proxy::start(
            upstream.trim_start_matches("http://"),
            &["--rate", "0", "--methods", "GET", "--path-regex", &regex],
        )
    }
}

const SEEDED: [(&str, &str); 3] = [("a//b", "double slash"), ("dir/", ""), ("plain.txt", "plain")];

fn assert_server_side(p: &Proxy) {
    let reads = p.stats()["eligible"].as_u64().unwrap();
    assert_eq!(
        reads, 0,
        "source objects were read through ferry: not a server-side copy"
    );
}

/// One of the stand-in servers in tests/servers (`imds.py`, `sts_webid.py`), started with
/// `args`; it prints `listening [on] 127.0.0.1:PORT` first. Killed when dropped.
struct Stub {
    child: std::process::Child,
    port: u16,
}

impl Stub {
    fn start(script: &str, args: &[String]) -> Stub {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/servers")
            .join(script);
        let mut child = Command::new("python3")
            .arg(path)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
        Stub { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The body of `GET path`.
    fn get(&self, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut t = String::new();
        std::io::Read::read_to_string(&mut s, &mut t).unwrap();
        t.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A run killed inside a multipart upload into `case`'s destination bucket resumes it part for
/// part with the credentials `auth` and `vars` give (see `common::resume`).
fn resumes(case: &Case, auth: &str, vars: Vec<(&'static str, String)>) {
    common::resume::Resume {
        dir: case.dir.path(),
        endpoint: env("FERRY_TEST_MOTO_IAM_ENDPOINT"),
        bucket: case.dst.clone(),
        prefix: String::new(),
        auth: auth.to_string(),
        vars,
        reader: admin(),
    }
    .killed_then_resumed();
}

/// AssumeRole from a profile (`role_arn` + `source_profile`), and from the plan's `role-arn`
/// over a profile: the copy works, exactly and on the server. The user's own keys, which may
/// not touch S3, fail with exit 2 naming the profile: only the role's credentials work.
#[test]
fn assume_role_from_a_profile_and_from_the_plan() {
    if !servers_available("assume_role_from_a_profile_and_from_the_plan") {
        return;
    }
    let case = Case::new("assume");
    let (secret, role) = case.profiles("assume");
    let (secret, role) = (secret.as_str(), role.as_str());
    let p = case.proxy();
    let out = case.run(&case.plan(&p.endpoint(), ""), &[("AWS_PROFILE", "base".into())]);
    let all = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "the user's own keys may not list: {all}");
    assert!(all.contains("profile `base`") && !all.contains(secret), "{all}");

    let out = case.run(&case.plan(&p.endpoint(), ""), &[("AWS_PROFILE", "evac".into())]);
    case.assert_copied_exactly(&out);
    assert_server_side(&p);

    // Again from the plan's keys, into a fresh destination.
    common::wire::s3_delete(&admin(), &case.dst, "plain.txt");
    let auth = format!("profile = \"base\"\nrole-arn = \"{role}\"\nrole-session-name = \"ferry-test\"");
    let out = case.run(&case.plan(&p.endpoint(), &auth), &[]);
    case.assert_copied_exactly(&out);
    assert_server_side(&p);
}

/// A role that may do nothing (no policy), trusted by anyone: its ARN.
fn role_without_s3(name: &str) -> String {
    let script = r#"
import json, sys, boto3
ep, key, secret, name = sys.argv[1:5]
iam = boto3.client("iam", endpoint_url=ep, region_name="us-east-1",
    aws_access_key_id=key, aws_secret_access_key=secret)
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
    "Principal": {"AWS": "*"}, "Action": "sts:AssumeRoleWithWebIdentity"}]})
print(iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"])
"#;
    admin_script(script, &[name]).trim().to_string()
}

/// Web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as EKS IRSA sets them), and
/// nothing else in the environment, against moto-iam (IAM checks on). Real STS takes
/// AssumeRoleWithWebIdentity unsigned; moto-iam answers 500 to unsigned calls, so STS is
/// reached through `tests/servers/sts_webid.py`, which signs that one call with the admin keys
/// and refuses any other. With the role allowed `s3:*` the copy works, exactly and on the
/// server; with a role allowed nothing it is refused (exit 2): only the role's credentials
/// work. The token is never printed.
#[test]
fn web_identity_token_file() {
    if !servers_available("web_identity_token_file") {
        return;
    }
    let case = Case::new("webid");
    let (_, role) = case.profiles("webid");
    let powerless = role_without_s3(&format!("webid-none-{}", std::process::id()));
    let sts = Stub::start(
        "sts_webid.py",
        &[
            env("FERRY_TEST_MOTO_IAM_ENDPOINT"),
            env("FERRY_TEST_MOTO_IAM_KEY"),
            env("FERRY_TEST_MOTO_IAM_SECRET"),
        ],
    );
    let token = format!("eyJ-ferry-web-identity-{}", common::oracle::nanos());
    std::fs::write(case.path("token"), &token).unwrap();
    let vars = |arn: &str| {
        [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", case.path("token").display().to_string()),
            ("AWS_ROLE_ARN", arn.to_string()),
            ("AWS_ROLE_SESSION_NAME", "ferry-test".to_string()),
            ("AWS_ENDPOINT_URL_STS", sts.url()),
        ]
    };
    let p = case.proxy();
    // No profile may be found: the AWS files hold none (case.profiles wrote `aws-config`).
    std::fs::remove_file(case.path("aws-config")).unwrap();
    let plan = case.plan(&p.endpoint(), "");
    let refused = common::ferry_clean_env(case.dir.path(), &plan, &vars(&powerless));
    let out = common::ferry_clean_env(case.dir.path(), &plan, &vars(&role));
    let calls = sts.get("/__calls");
    let refused_all = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a role without S3 rights copied: {refused_all}"
    );
    for o in [&refused, &out] {
        assert!(!String::from_utf8_lossy(&[o.stdout.clone(), o.stderr.clone()].concat()).contains(&token));
    }
    let actions: Vec<String> = serde_json::from_str(&calls).unwrap();
    assert!(
        !actions.is_empty() && actions.iter().all(|a| a == "AssumeRoleWithWebIdentity"),
        "{calls}"
    );
    case.assert_copied_exactly(&out);
    assert_server_side(&p);
    resumes(&case, "", vars(&role).to_vec());
}

/// The EC2 instance role through IMDSv2 (a local metadata server handing out the role's
/// credentials, with a session token): the copy works, exactly and on the server.
#[test]
fn instance_role_through_imdsv2() {
    if !servers_available("instance_role_through_imdsv2") {
        return;
    }
    let case = Case::new("imds");
    let who = iam(&format!("imds-{}", std::process::id()), true);
    let creds = case.path("imds-creds.json");
    std::fs::write(&creds, who["creds"].to_string()).unwrap();
    let imds = Stub::start("imds.py", &["--creds".into(), creds.display().to_string()]);
    let metadata = [("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url())];
    let p = case.proxy();
    let out = case.run(&case.plan(&p.endpoint(), ""), &metadata);
    let served = imds.get("/__imds");
    let token = who["creds"]["Token"].as_str().unwrap();
    assert!(!String::from_utf8_lossy(&[out.stdout.clone(), out.stderr.clone()].concat()).contains(token));
    case.assert_copied_exactly(&out);
    assert_server_side(&p);
    // Fetched from the metadata server, once per provider (each caches its own).
    let body: serde_json::Value = serde_json::from_str(&served).unwrap();
    let fetched = body["credentials"].as_u64().unwrap_or(0);
    assert!((1..=2).contains(&fetched), "{served}");
    resumes(&case, "", metadata.to_vec());
}

/// A run killed inside a multipart upload resumes it part for part with the role's credentials
/// (the plan's `role-arn` over a profile whose own keys may not touch S3), into a fresh
/// bucket's root (moto's encoded-`/` limit, see `Case`). See `common::resume`.
#[test]
fn a_killed_run_resumes_inside_an_object_with_an_assumed_role() {
    if !servers_available("a_killed_run_resumes_inside_an_object_with_an_assumed_role") {
        return;
    }
    let case = Case::new("resume-role");
    let (_, role) = case.profiles("resume");
    resumes(
        &case,
        &format!("profile = \"base\"\nrole-arn = \"{role}\""),
        vec![("AWS_ENDPOINT_URL_STS", env("FERRY_TEST_MOTO_IAM_ENDPOINT"))],
    );
}

/// Keys from a profile and from `credential_process` (the admin's, on moto-iam): `a//b` and
/// `dir/` listed exactly and named, the copy on the server, as with static keys.
#[test]
fn profile_and_process_keys_list_exactly_and_copy_on_the_server() {
    if !servers_available("profile_and_process_keys_list_exactly_and_copy_on_the_server") {
        return;
    }
    let case = Case::new("profile");
    let (key, secret) = (env("FERRY_TEST_MOTO_IAM_KEY"), env("FERRY_TEST_MOTO_IAM_SECRET"));
    std::fs::write(
        case.path("aws-credentials"),
        format!("[admin]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    let process = format!(
        "import json; print(json.dumps({{'Version': 1, 'AccessKeyId': {key:?}, 'SecretAccessKey': {secret:?}}}))"
    );
    std::fs::write(case.path("creds.py"), process).unwrap();
    std::fs::write(
        case.path("aws-config"),
        format!(
            "[profile proc]\ncredential_process = python3 {}\n",
            case.path("creds.py").display()
        ),
    )
    .unwrap();
    let p = case.proxy();
    for profile in ["admin", "proc"] {
        common::wire::s3_delete(&admin(), &case.dst, "plain.txt");
        let out = case.run(&case.plan(&p.endpoint(), ""), &[("AWS_PROFILE", profile.into())]);
        case.assert_copied_exactly(&out);
        assert_server_side(&p);
    }
}
