//! Encrypted object copies (issue 18, must-show 1): objects copied to a provider with
//! `encrypt-recipients-*` are stored as age files that ferry writes part by part
//! (src/crypt/objects.rs), so a killed upload resumes inside the object.
//!
//! The oracles share nothing with ferry's writer: the stored bytes are read straight from
//! SeaweedFS with the AWS SDK (or from the local folder) and decrypted by the Go `age` command
//! (filippo.io/age, installed by tests/servers/up.sh) and by the age crate's reader; the plaintext
//! is compared with the source files the test wrote. Keys are generated here (as `age-keygen`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use age::secrecy::ExposeSecret;

mod common;
use common::oracle::{sha256, toml_str};
use common::Out;

/// `ferry ARGS PLAN --json` in `dir`, with the SeaweedFS keys in its environment.
fn ferry(dir: &Path, args: &[&str], plan: &Path) -> Out {
    Out::of(
        args,
        Command::new(common::oracle::ferry_bin())
            .args(args)
            .arg("--json")
            .arg(plan)
            .current_dir(dir)
            // Unset for the plan-only test, which needs no server.
            .env("ENC_KEY", std::env::var("FERRY_TEST_SEAWEED_KEY").unwrap_or_default())
            .env(
                "ENC_SECRET",
                std::env::var("FERRY_TEST_SEAWEED_SECRET").unwrap_or_default(),
            ),
    )
}

/// A fresh identity: (its file's text, the secret key, the recipient).
fn keypair() -> (String, String, String) {
    let id = age::x25519::Identity::generate();
    let secret = id.to_string().expose_secret().to_string();
    let public = id.to_public().to_string();
    (format!("# public key: {public}\n{secret}\n"), secret, public)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `sealed` decrypted by the Go `age` command with the identity file `identity`.
fn go_age_decrypt(dir: &Path, sealed: &[u8], identity: &Path) -> Vec<u8> {
    let file = dir.join(format!("sealed-{}", common::oracle::nanos()));
    std::fs::write(&file, sealed).unwrap();
    let out = Command::new("age")
        .arg("--decrypt")
        .arg("--identity")
        .arg(identity)
        .arg(&file)
        .output()
        .expect("the `age` command (tests/servers/up.sh installs it)");
    assert!(
        out.status.success(),
        "age --decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&file).unwrap();
    out.stdout
}

/// The source tree: small files with a marker, an empty file, chunk-edge sizes and one file of
/// three 5 MiB parts (multipart, encrypted part by part). Name → content.
fn source_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        ("empty.txt".to_string(), Vec::new()),
        ("chunk.bin".to_string(), common::data(64 << 10, 3)),
        ("chunk-plus-one.bin".to_string(), common::data((64 << 10) + 1, 4)),
        ("big/multipart.bin".to_string(), {
            let mut b = common::data(12 << 20, 5);
            b[..24].copy_from_slice(b"PLAINTEXT-MARKER-BIGFILE");
            b
        }),
    ];
    for i in 0..5 {
        files.push((
            format!("docs/SECRET-NAME-{i}.txt"),
            format!("PLAINTEXT-MARKER-{i} customer record {i}\n")
                .repeat(50)
                .into_bytes(),
        ));
    }
    for (name, body) in &files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    files
}

struct Setup {
    dir: tempfile::TempDir,
    prefix: String,
    job: String,
    secret: String,
    s3: aws_sdk_s3::Client,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let n = common::oracle::nanos();
        let (id_file, secret, public) = keypair();
        let (wrong_file, _, _) = keypair();
        std::fs::write(dir.path().join("recipients.txt"), format!("{public}\n")).unwrap();
        std::fs::write(dir.path().join("identity.txt"), id_file).unwrap();
        std::fs::write(dir.path().join("wrong.txt"), wrong_file).unwrap();
        Setup {
            dir,
            prefix: format!("encobj-{}-{n}", std::process::id()),
            job: format!("files{n}"),
            secret,
            s3: common::wire::s3_sdk("SEAWEED"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A plan copying `src/` to SeaweedFS and to a local folder, both encrypting; `identity`:
    /// the `decrypt-identity-file` line, if any.
    fn plan(&self, name: &str, identity: &str, settings: &str) -> PathBuf {
        let text = format!(
            "[settings]\npart-size = \"5MiB\"\nstate-dir = \".ferry/enc\"\n{settings}\n\n\
             [providers.src]\ntype = \"local\"\nroot = \"src\"\n\n\
             [providers.vault]\ntype = \"s3\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nbucket = \"ferry-a\"\n\
             path-style = true\nallow-http = true\naccess-key-id-env = \"ENC_KEY\"\nsecret-access-key-env = \"ENC_SECRET\"\n\
             encrypt-recipients-file = \"recipients.txt\"\n{identity}\n\n\
             [providers.disk]\ntype = \"local\"\nroot = \"disk\"\nencrypt-recipients-file = \"recipients.txt\"\n{identity}\n\n\
             [[objects]]\nname = \"{job}\"\nfrom = \"src:\"\nto = \"vault:{prefix}/\"\n\n\
             [[objects]]\nname = \"{job}-disk\"\nfrom = \"src:\"\nto = \"disk:\"\n",
            common::env("FERRY_TEST_SEAWEED_ENDPOINT"),
            job = self.job,
            prefix = self.prefix,
        );
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn stored(&self, key: &str) -> Vec<u8> {
        common::wire::s3_get(&self.s3, "ferry-a", &format!("{}/{key}", self.prefix)).unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for k in common::wire::s3_list(&self.s3, "ferry-a", &self.prefix).unwrap_or_default() {
            common::wire::s3_delete(&self.s3, "ferry-a", &k);
        }
        for j in [self.job.clone(), format!("{}-disk", self.job)] {
            common::wire::s3_delete(&self.s3, "ferry-a", &format!(".ferry/manifests/{j}.jsonl"));
        }
    }
}

/// Issue 18, must-show 1 for objects: what SeaweedFS and the local folder hold is age
/// ciphertext with none of the plaintext; the Go `age` command and the age crate decrypt it to
/// the source files; the uploaded manifest is encrypted too; a second run copies nothing;
/// `verify` passes without the key and `verify --deep` with it; a wrong or missing key exits 2;
/// a stored object damaged in place is found without the key and repaired by the next run.
#[test]
fn objects_are_stored_as_age_and_verify_with_and_without_the_key() {
    if !common::servers_available("objects_are_stored_as_age") {
        return;
    }
    let s = Setup::new();
    let files = source_tree(&s.path("src"));
    let plan = s.plan("plan.toml", "decrypt-identity-file = \"identity.txt\"", "");
    let out = ferry(s.dir.path(), &["run"], &plan);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["jobs"][0]["copied"]["objects"], files.len(), "{j}");

    // Every stored object, read straight from the stores.
    let keys = common::wire::s3_list(&s.s3, "ferry-a", &s.prefix).unwrap();
    assert_eq!(keys.len(), files.len(), "{keys:?}");
    let identity = s.path("identity.txt");
    for (name, body) in &files {
        for (at, stored) in [
            ("seaweed", s.stored(name)),
            ("disk", std::fs::read(s.path("disk").join(name)).unwrap()),
        ] {
            assert!(stored.starts_with(b"age-encryption.org/v1\n"), "{at} {name} is not age");
            assert!(!contains(&stored, b"PLAINTEXT-MARKER"), "{at} {name} holds plaintext");
            assert!(!contains(&stored, b"customer record"), "{at} {name} holds plaintext");
            let go = go_age_decrypt(s.dir.path(), &stored, &identity);
            assert_eq!(sha256(&go), sha256(body), "{at} {name}: the age command's plaintext");
            assert_eq!(
                common::age_decrypt(&stored, &s.secret),
                *body,
                "{at} {name}: the age crate's plaintext"
            );
        }
    }
    // The manifest names every object and holds the plaintexts' hashes: encrypted too.
    let manifest = common::wire::s3_get(&s.s3, "ferry-a", &format!(".ferry/manifests/{}.jsonl", s.job)).unwrap();
    assert!(manifest.starts_with(b"age-encryption.org/v1\n"));
    assert!(!contains(&manifest, b"SECRET-NAME"));
    for (_, body) in &files {
        assert!(!contains(&manifest, sha256(body).as_bytes()));
    }
    let plain_manifest = String::from_utf8(common::age_decrypt(&manifest, &s.secret)).unwrap();
    assert!(plain_manifest.contains("SECRET-NAME-3") && plain_manifest.contains("stored_sha256"));
    eprintln!(
        "{} objects, {} manifest bytes: no plaintext marker in any; age and the age crate decrypt each",
        keys.len(),
        manifest.len()
    );

    let again = ferry(s.dir.path(), &["run"], &plan);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    let j = again.json();
    assert_eq!(j["jobs"][0]["copied"]["objects"], 0, "{j}");
    assert_eq!(j["jobs"][0]["unchanged"]["objects"], files.len(), "{j}");

    // Without the key: sizes and the stored bytes' SHA-256 from the journal.
    let keyless = s.plan("keyless.toml", "", "");
    let v = ferry(s.dir.path(), &["verify"], &keyless);
    assert_eq!(v.code, Some(0), "{}", v.stderr);
    let deep = ferry(s.dir.path(), &["verify", "--deep"], &plan);
    assert_eq!(deep.code, Some(0), "{}", deep.stderr);
    let d = deep.json();
    assert_eq!(d["jobs"][0]["matched"]["objects"], files.len(), "{d}");
    let wrong = s.plan("wrong.toml", "decrypt-identity-file = \"wrong.txt\"", "");
    let w = ferry(s.dir.path(), &["verify", "--deep"], &wrong);
    assert_eq!(w.code, Some(2), "{}", w.stderr);
    assert!(w.stderr.contains("is encrypted to other recipients"), "{}", w.stderr);
    let none = ferry(s.dir.path(), &["verify", "--deep"], &keyless);
    assert_eq!(none.code, Some(2), "{}", none.stderr);
    assert!(none.stderr.contains("decrypt-identity-file"), "{}", none.stderr);
    for o in [&out, &again, &v, &deep, &w, &none] {
        assert!(!o.stdout.contains(&s.secret) && !o.stderr.contains(&s.secret));
    }

    // One stored byte flipped in place (same size): found without the key, repaired by a run.
    let victim = "docs/SECRET-NAME-2.txt";
    let mut bad = s.stored(victim);
    let mid = bad.len() / 2;
    bad[mid] ^= 0x20;
    common::wire::s3_put(&s.s3, "ferry-a", &format!("{}/{victim}", s.prefix), &bad).unwrap();
    let v = ferry(s.dir.path(), &["verify", "--job", &s.job], &keyless);
    assert_eq!(v.code, Some(1), "{}", v.stderr);
    assert!(
        v.stdout.contains(victim) && v.stdout.contains("content differs"),
        "{}",
        v.stdout
    );
    let fixed = ferry(s.dir.path(), &["run"], &plan);
    assert_eq!(fixed.code, Some(0), "{}", fixed.stderr);
    assert_eq!(fixed.json()["jobs"][0]["copied"]["objects"], 1);
    let body = &files.iter().find(|(n, _)| n == victim).unwrap().1;
    assert_eq!(go_age_decrypt(s.dir.path(), &s.stored(victim), &identity), *body);
}

/// A 60 MiB file to SeaweedFS through a counting proxy, in 5 MiB encrypted parts: SIGKILLed once
/// 35 MiB went out, run again. The resumed run sends at most the parts that were in flight
/// again, and the object decrypts (Go `age`) to the file: the parts of both runs are one
/// age stream under one key.
#[test]
fn a_killed_encrypted_upload_resumes_inside_the_object() {
    if !common::servers_available("a_killed_encrypted_upload_resumes") {
        return;
    }
    const SIZE: usize = 60 << 20;
    let s = Setup::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let traffic = Arc::new(common::Traffic::default());
    let endpoint = common::env("FERRY_TEST_SEAWEED_ENDPOINT");
    let port = rt.block_on(common::counting_proxy(
        endpoint.trim_start_matches("http://").to_string(),
        traffic.clone(),
    ));
    let body = common::data(SIZE, 8);
    std::fs::create_dir_all(s.path("src")).unwrap();
    std::fs::write(s.path("src/big.bin"), &body).unwrap();
    let plan = s.path("resume.toml");
    std::fs::write(
        &plan,
        format!(
            "[settings]\npart-size = \"5MiB\"\n\n[providers.src]\ntype = \"local\"\nroot = {}\n\n\
             [providers.vault]\ntype = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\n\
             bucket = \"ferry-a\"\npath-style = true\nallow-http = true\naccess-key-id-env = \"ENC_KEY\"\n\
             secret-access-key-env = \"ENC_SECRET\"\nencrypt-recipients-file = \"recipients.txt\"\n\
             decrypt-identity-file = \"identity.txt\"\n\n\
             [[objects]]\nname = \"{}\"\nfrom = \"src:\"\nto = \"vault:{}/\"\n",
            toml_str(&s.path("src").display().to_string()),
            s.job,
            s.prefix
        ),
    )
    .unwrap();
    let mut child = Command::new(common::oracle::ferry_bin())
        .args(["run", "--json"])
        .arg(&plan)
        .current_dir(s.dir.path())
        .env("ENC_KEY", common::env("FERRY_TEST_SEAWEED_KEY"))
        .env("ENC_SECRET", common::env("FERRY_TEST_SEAWEED_SECRET"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let before = common::sigkill_once_sent(&mut child, &traffic, 35 << 20);
    child.wait().unwrap();

    let out = ferry(s.dir.path(), &["run"], &plan);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let after = traffic.sent.load(Ordering::Relaxed) - before;
    let stored_len = s.stored("big.bin").len() as u64;
    let resent = (before + after).saturating_sub(stored_len);
    let bound = ferry::sync::PARTS_IN_FLIGHT as u64 * (5 << 20) + (512 << 10);
    eprintln!(
        "{} MiB before the kill, {} MiB by the resumed run, {} KiB sent twice (bound {} MiB)",
        before >> 20,
        after >> 20,
        resent >> 10,
        bound >> 20
    );
    assert!(resent <= bound, "re-sent {resent} bytes: the upload was not resumed");
    let stored = s.stored("big.bin");
    assert!(!contains(&stored[..1 << 20], &body[..4096]));
    let plain = go_age_decrypt(s.dir.path(), &stored, &s.path("identity.txt"));
    assert_eq!(plain.len(), SIZE);
    assert_eq!(sha256(&plain), sha256(&body), "the resumed object's plaintext");
    let deep = ferry(s.dir.path(), &["verify", "--deep"], &plan);
    assert_eq!(deep.code, Some(0), "{}", deep.stderr);
}

/// Object copies encrypt to recipients only, and reading encrypted objects back out is not
/// built: both are refused when the plan is read, with its line, before anything is written.
#[test]
fn passphrase_destinations_and_encrypted_sources_are_refused_for_objects() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let passphrase =
        "[providers.src]\ntype = \"local\"\nroot = \"in\"\n\n[providers.vault]\ntype = \"local\"\nroot = \"out\"\n\
         encrypt-passphrase-env = \"PASS\"\n\n[[objects]]\nname = \"files\"\nfrom = \"src:\"\nto = \"vault:\"\n";
    let p = dir.path().join("pass.toml");
    std::fs::write(&p, passphrase).unwrap();
    let out = ferry(dir.path(), &["check"], &p);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("pass.toml:13") && out.stderr.contains("encrypts with a passphrase"),
        "{}",
        out.stderr
    );
    let reading = "[providers.vault]\ntype = \"local\"\nroot = \"in\"\nencrypt-recipients-file = \"r.txt\"\n\n\
         [providers.out]\ntype = \"local\"\nroot = \"out\"\n\n[[objects]]\nname = \"back\"\nfrom = \"vault:\"\nto = \"out:\"\n";
    let p = dir.path().join("back.toml");
    std::fs::write(&p, reading).unwrap();
    let out = ferry(dir.path(), &["check"], &p);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("back.toml:12")
            && out
                .stderr
                .contains("copying encrypted objects back out is not built yet"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("out").exists());
}
