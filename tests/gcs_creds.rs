//! Issue 16: GCS credentials as object_store's builder finds them, shown end to end. fake-gcs
//! accepts any token, so each test puts the fault proxy in front of it with `--header-regex`
//! and checks that every request ferry made carried the token the credential source issued:
//!
//! - the metadata server (GCE, GKE workload identity, Cloud Run): `tests/servers/gce_metadata.py`
//!   at `GCE_METADATA_HOST`, handing out `ya29.ferry-test-N`;
//! - a service-account key named by the plan's `service-account-env` (a JSON key with an RSA key
//!   made by openssl): a self-signed JWT (`Bearer eyJ…`), no token exchange;
//! - the same key as application default credentials (`GOOGLE_APPLICATION_CREDENTIALS`).
//!
//! Each run has a clean environment (`HOME` a temporary folder: no gcloud ADC file). The private
//! key never appears in the output. The local copy is read from the filesystem.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::oracle::{nanos, toml_str};
use common::proxy::Proxy;
use common::{env, servers_available, wire};

struct Case {
    dir: tempfile::TempDir,
    prefix: String,
}

impl Case {
    fn new() -> Case {
        let prefix = format!("gcscreds-{}/", nanos());
        let gcs = wire::GcsRaw::from_env();
        gcs.put("ferry-a", &format!("{prefix}a.txt"), b"alpha").unwrap();
        gcs.put("ferry-a", &format!("{prefix}sub/b.bin"), &common::data(2000, 8))
            .unwrap();
        Case {
            dir: tempfile::tempdir().unwrap(),
            prefix,
        }
    }

    /// A plan copying the prefix through `endpoint` to a local folder; `auth` ends the table.
    fn plan(&self, endpoint: &str, auth: &str) -> PathBuf {
        let plan = self.dir.path().join("p.toml");
        std::fs::write(
            &plan,
            format!(
                "[providers.src]\ntype = \"gcs\"\nbucket = \"ferry-a\"\nendpoint = \"{endpoint}\"\nallow-http = true\n{auth}\n\
                 [providers.dst]\ntype = \"local\"\nroot = {}\n\
                 [[objects]]\nname = \"j\"\nfrom = \"src:{}\"\nto = \"dst:\"\n",
                toml_str(&self.dir.path().join("dst").display().to_string()),
                self.prefix
            ),
        )
        .unwrap();
        plan
    }

    /// Runs the plan with `vars` through a proxy counting the requests whose `Authorization`
    /// matches `token`; asserts the copy, and that every request carried such a token.
    fn copies_with(&self, auth: &str, vars: &[(&str, String)], token: &str) -> String {
        let upstream = env("FERRY_TEST_GCS_ENDPOINT");
        let header = format!("Authorization={token}");
        let proxy = Proxy::start(
            upstream.trim_start_matches("http://"),
            &["--rate", "0", "--header-regex", &header],
        );
        let out = common::ferry_clean_env(self.dir.path(), &self.plan(&proxy.endpoint(), auth), vars);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{all}");
        let dst = self.dir.path().join("dst");
        assert_eq!(std::fs::read(dst.join("a.txt")).unwrap(), b"alpha");
        assert_eq!(std::fs::read(dst.join("sub/b.bin")).unwrap(), common::data(2000, 8));
        let stats = proxy.stats();
        let (requests, signed) = (stats["requests"].as_u64().unwrap(), stats["eligible"].as_u64().unwrap());
        assert!(requests >= 3, "{stats}");
        assert_eq!(signed, requests, "requests without the expected token: {stats}");
        std::fs::remove_dir_all(&dst).unwrap();
        std::fs::remove_dir_all(self.dir.path().join(".ferry")).ok();
        all
    }
}

#[test]
fn the_metadata_servers_token_signs_every_request() {
    if !servers_available("the_metadata_servers_token_signs_every_request") {
        return;
    }
    let case = Case::new();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/servers/gce_metadata.py");
    let mut md = Command::new("python3")
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(md.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let host = line.trim().trim_start_matches("listening ").to_string();
    case.copies_with(
        "",
        &[("GCE_METADATA_HOST", host.clone())],
        r"^Bearer ya29\.ferry-test-\d+$",
    );
    let tokens = {
        let mut s = std::net::TcpStream::connect(host.as_str()).unwrap();
        write!(s, "GET /__tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut t = String::new();
        s.read_to_string(&mut t).unwrap();
        t
    };
    let _ = md.kill();
    let _ = md.wait();
    assert!(
        tokens.contains("\"tokens\": 1") || tokens.contains("\"tokens\": 2"),
        "{tokens}"
    );
}

/// A service-account key file made here (openssl), in the shape the console downloads.
fn service_account_key(dir: &Path) -> (PathBuf, String) {
    let out = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8(out.stdout).unwrap();
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "ferry-test",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": "ferry@ferry-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    });
    let path = dir.join("sa.json");
    std::fs::write(&path, key.to_string()).unwrap();
    let body = pem.lines().find(|l| !l.starts_with("-----")).unwrap().to_string();
    (path, body)
}

#[test]
fn a_service_account_key_from_the_plan_or_adc_signs_every_request() {
    if !servers_available("a_service_account_key_from_the_plan_or_adc_signs_every_request") {
        return;
    }
    let case = Case::new();
    let (path, secret_line) = service_account_key(case.dir.path());
    let jwt = r"^Bearer eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$";
    // The plan's key, the variable holding the file's path, then its JSON.
    let all = case.copies_with(
        "service-account-env = \"FERRY_T_SA\"\n",
        &[("FERRY_T_SA", path.display().to_string())],
        jwt,
    );
    assert!(!all.contains(&secret_line), "the private key was printed");
    let json = std::fs::read_to_string(&path).unwrap();
    let all = case.copies_with("service-account-env = \"FERRY_T_SA\"\n", &[("FERRY_T_SA", json)], jwt);
    assert!(!all.contains(&secret_line), "the private key was printed");
    // Application default credentials: nothing in the plan.
    case.copies_with(
        "",
        &[("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string())],
        jwt,
    );
}
