//! Client-side encryption of dumps with age (issue 18), end to end through the `ferry` binary:
//! a provider with `encrypt-*` keys must only ever hold ciphertext, for the dump and its record.
//!
//! The oracles are not ferry's code: the stored bytes are read straight from SeaweedFS with the
//! AWS SDK (or from the local store's folder) and searched for the plaintext; they are decrypted
//! with the age crate and decompressed with zstd to prove they are the dump; the restored rows
//! are read back with `psql` or rusqlite. Keys are generated here with the age crate (what
//! `age-keygen` prints). Every output (stdout, stderr, the log file) is searched for the
//! identity and the passphrase.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use age::secrecy::ExposeSecret;

mod common;
use common::db::{available, pg_base, psql, psql_try, with_db, Cleanup};
use common::oracle::sha256;
use common::sqlite::{make_sqlite, sqlite_rows};

/// What one `ferry` process printed, with its log file.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    log: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}\n{}\n{}", self.stdout, self.stderr, self.log)
    }
}

/// `ferry ARGS PLAN` with exactly `env` added (and a fresh log file at -vv).
fn ferry(dir: &Path, args: &[&str], plan: &Path, env: &[(&str, String)]) -> Out {
    let log = dir.join(format!("ferry-{}.log", common::oracle::nanos()));
    let mut cmd = Command::new(common::oracle::ferry_bin());
    cmd.args(args)
        .arg("-vv")
        .arg("--log-file")
        .arg(&log)
        .arg(plan)
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let o = Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        log: std::fs::read_to_string(&log).unwrap_or_default(),
    };
    eprintln!("ferry {args:?} -> {:?}\n{}", o.code, o.stderr);
    o
}

/// A fresh X25519 identity: (the identity file's text as `age-keygen` writes it, the secret
/// key alone, the recipient).
fn keypair() -> (String, String, String) {
    let id = age::x25519::Identity::generate();
    let secret = id.to_string().expose_secret().to_string();
    let public = id.to_public().to_string();
    (
        format!("# created: by tests/encryption.rs\n# public key: {public}\n{secret}\n"),
        secret,
        public,
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The SeaweedFS provider of these tests, with `extra` keys.
fn seaweed_provider(extra: &str) -> String {
    format!(
        "[providers.vault]\ntype = \"s3\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nbucket = \"ferry-a\"\n\
         path-style = true\nallow-http = true\naccess-key-id-env = \"ENC_KEY\"\nsecret-access-key-env = \"ENC_SECRET\"\n{extra}\n",
        common::env("FERRY_TEST_SEAWEED_ENDPOINT")
    )
}

/// Issue 18: a PostgreSQL dump to SeaweedFS through a provider with recipients. What the store
/// holds (dump and record) has none of the table's strings and no table name, and is age; it
/// decrypts (with the age crate) to the zstd-compressed dump, whose record names the SHA-256 of
/// the stored and of the raw bytes. A restore with the right identity brings back every row and
/// `verify` agrees; with a wrong identity, or none, it exits 2 and the target stays empty.
#[test]
fn postgres_dump_to_seaweed_is_ciphertext_and_restores_with_the_identity() {
    let base = pg_base();
    if !common::servers_available("postgres_dump_to_seaweed_is_ciphertext")
        || !available(
            "postgres_dump_to_seaweed",
            "PostgreSQL",
            psql_try(&base, "SELECT 1;").is_ok(),
        )
    {
        return;
    }
    let pid = std::process::id();
    let (s, d) = (format!("ferry_enc_src_{pid}"), format!("ferry_enc_dst_{pid}"));
    let prefix = format!("enc-{pid}-{}", common::oracle::nanos());
    let s3 = common::wire::s3_sdk("SEAWEED");
    let (admin, s2, d2, p2, c2) = (base.clone(), s.clone(), d.clone(), prefix.clone(), s3.clone());
    let _cleanup = Cleanup(Box::new(move || {
        let _ = psql_try(
            &admin,
            &format!("DROP DATABASE IF EXISTS {s2} WITH (FORCE); DROP DATABASE IF EXISTS {d2} WITH (FORCE);"),
        );
        for k in common::wire::s3_list(&c2, "ferry-a", &p2).unwrap_or_default() {
            common::wire::s3_delete(&c2, "ferry-a", &k);
        }
    }));
    psql(
        &base,
        &format!("DROP DATABASE IF EXISTS {s} WITH (FORCE); DROP DATABASE IF EXISTS {d} WITH (FORCE); CREATE DATABASE {s}; CREATE DATABASE {d};"),
    );
    let (src, dst) = (with_db(&base, &s), with_db(&base, &d));
    psql(
        &src,
        "CREATE TABLE secret_customers (id int PRIMARY KEY, v text);
         INSERT INTO secret_customers SELECT g, 'PLAINTEXT-MARKER-' || lpad(g::text, 4, '0') FROM generate_series(1, 1000) g;",
    );

    let dir = tempfile::tempdir().unwrap();
    let (id_file, secret, public) = keypair();
    let (wrong_file, wrong_secret, _) = keypair();
    write(dir.path(), "recipients.txt", &format!("# the backup key\n{public}\n"));
    write(dir.path(), "identity.txt", &id_file);
    write(dir.path(), "wrong.txt", &wrong_file);
    let job = format!(
        "[[databases]]\nname = \"main\"\nengine = \"postgres\"\nurl-env = \"ENC_SRC\"\nrestore-to-env = \"ENC_DST\"\n\
         to = \"vault:{prefix}/{{name}}/{{timestamp}}.dump\"\n"
    );
    let plan_with = |name: &str, identity: &str| {
        let keys = format!("encrypt-recipients-file = \"recipients.txt\"\n{identity}");
        write(dir.path(), name, &format!("{}\n{job}", seaweed_provider(&keys)))
    };
    let plan = plan_with("plan.toml", "decrypt-identity-file = \"identity.txt\"");
    let env = vec![
        ("ENC_SRC", src.clone()),
        ("ENC_DST", dst.clone()),
        ("ENC_KEY", common::env("FERRY_TEST_SEAWEED_KEY")),
        ("ENC_SECRET", common::env("FERRY_TEST_SEAWEED_SECRET")),
    ];
    let mut outputs = Vec::new();

    let out = ferry(dir.path(), &["run"], &plan, &env);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    outputs.push(out);

    // The stored bytes, straight from the store.
    let keys = common::wire::s3_list(&s3, "ferry-a", &prefix).unwrap();
    let dump_key = keys.iter().find(|k| k.ends_with(".dump")).expect("a dump").clone();
    let record_key = format!("{dump_key}.ferry.json");
    assert_eq!(keys, vec![dump_key.clone(), record_key.clone()]);
    let dump = common::wire::s3_get(&s3, "ferry-a", &dump_key).unwrap();
    let record = common::wire::s3_get(&s3, "ferry-a", &record_key).unwrap();
    for (what, bytes) in [("dump", &dump), ("record", &record)] {
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "{what} is not age");
        for needle in ["PLAINTEXT-MARKER", "secret_customers", "public.", "\"tables\""] {
            assert!(!contains(bytes, needle), "the stored {what} holds `{needle}`");
        }
    }
    eprintln!(
        "stored: dump {} bytes, record {} bytes; none holds PLAINTEXT-MARKER or secret_customers",
        dump.len(),
        record.len()
    );
    // They are the dump and its record, encrypted to the recipient.
    let raw = zstd::decode_all(&common::age_decrypt(&dump, &secret)[..]).unwrap();
    assert!(raw.starts_with(b"PGDMP") && contains(&raw, "PLAINTEXT-MARKER-0999"));
    let rec: serde_json::Value = serde_json::from_slice(&common::age_decrypt(&record, &secret)).unwrap();
    assert_eq!(rec["sha256"], sha256(&dump), "{rec}");
    assert_eq!(rec["sha256-raw"], sha256(&raw), "{rec}");
    assert_eq!(rec["tables"]["public.secret_customers"]["rows"], 1000, "{rec}");

    let empty = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public';";
    // A wrong identity: refused before anything is written.
    let wrong = plan_with("wrong.toml", "decrypt-identity-file = \"wrong.txt\"");
    let out = ferry(dir.path(), &["restore", "--database", "main"], &wrong, &env);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let want = format!("the dump `{dump_key}` is encrypted to other recipients: provider `vault`'s decrypt-identity-file does not match");
    assert!(out.stderr.contains(&want), "{}", out.stderr);
    assert_eq!(psql(&dst, empty).trim(), "0", "the target stays empty");
    outputs.push(out);
    // No identity at all.
    let none = plan_with("none.toml", "");
    let out = ferry(dir.path(), &["restore", "--database", "main"], &none, &env);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("provider `vault` has no `decrypt-identity-file`"),
        "{}",
        out.stderr
    );
    assert_eq!(psql(&dst, empty).trim(), "0", "the target stays empty");
    outputs.push(out);

    // The right identity.
    let out = ferry(dir.path(), &["restore", "--json", "--database", "main"], &plan, &env);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    outputs.push(out);
    let rows = "SELECT count(*), min(v), max(v), md5(string_agg(v, ',' ORDER BY id)) FROM secret_customers;";
    assert_eq!(psql(&dst, rows), psql(&src, rows));
    assert!(psql(&dst, rows).starts_with("1000|PLAINTEXT-MARKER-0001|PLAINTEXT-MARKER-1000|"));
    let out = ferry(dir.path(), &["verify"], &plan, &env);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    outputs.push(out);

    for o in &outputs {
        for s in [&secret, &wrong_secret] {
            assert!(!o.all().contains(s.as_str()), "an identity was printed:\n{}", o.all());
        }
    }
}

/// The same with SQLite into a local store, keys from variables: only ciphertext on disk, the
/// restore needs the identity, a wrong one or none exits 2 and creates no target.
#[test]
fn sqlite_local_recipients_from_variables() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let rows: Vec<(i64, String)> = (1..=500).map(|i| (i, format!("PLAINTEXT-MARKER-{i:04}"))).collect();
    let refs: Vec<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
    make_sqlite(&db, &refs);
    let (_, secret, public) = keypair();
    let (_, other_secret, other_public) = keypair();
    let plan = write(
        dir.path(),
        "plan.toml",
        "[providers.vault]\ntype = \"local\"\nroot = \"store\"\nencrypt-recipients-env = \"ENC_RCPT\"\n\
         decrypt-identity-env = \"ENC_ID\"\n\n[[databases]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n\
         restore-to-path = \"restored.db\"\nto = \"vault:db/{name}/{timestamp}.sqlite.zst\"\n",
    );
    // Two recipients: either identity reads the dump.
    let rcpt = format!("{public}\n# the second key\n{other_public}\n");
    let env = |id: &str| vec![("ENC_RCPT", rcpt.clone()), ("ENC_ID", id.to_string())];
    let mut outputs = vec![ferry(dir.path(), &["run"], &plan, &env(&secret))];
    assert_eq!(outputs[0].code, Some(0), "{}", outputs[0].stderr);

    let files = common::file_names(&dir.path().join("store"));
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let bytes = std::fs::read(dir.path().join("store").join(f)).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "{f}");
        for needle in ["PLAINTEXT-MARKER", "SQLite format", "\"t\""] {
            assert!(!contains(&bytes, needle), "{f} holds `{needle}`");
        }
    }
    let target = dir.path().join("restored.db");
    let (_, stranger, _) = keypair();
    let out = ferry(dir.path(), &["restore", "--database", "app"], &plan, &env(&stranger));
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("is encrypted to other recipients: provider `vault`'s decrypt-identity-env does not match"),
        "{}",
        out.stderr
    );
    assert!(!target.exists());
    outputs.push(out);
    let out = ferry(
        dir.path(),
        &["restore", "--database", "app"],
        &plan,
        &[("ENC_RCPT", rcpt.clone())],
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("`decrypt-identity-env` `ENC_ID`"), "{}", out.stderr);
    assert!(!target.exists());
    outputs.push(out);

    let out = ferry(
        dir.path(),
        &["restore", "--database", "app"],
        &plan,
        &env(&other_secret),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    outputs.push(out);
    assert_eq!(sqlite_rows(&target), rows);
    for o in &outputs {
        for s in [&secret, &other_secret, &stranger] {
            assert!(!o.all().contains(s.as_str()), "an identity was printed:\n{}", o.all());
        }
    }
}

/// A passphrase provider (scrypt): the dump is age to a passphrase, restores with it, and a
/// wrong passphrase exits 2 naming `encrypt-passphrase-env`. The passphrase is never printed.
#[test]
fn sqlite_local_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    make_sqlite(&db, &[(1, "PLAINTEXT-MARKER-one"), (2, "PLAINTEXT-MARKER-two")]);
    let plan = write(
        dir.path(),
        "plan.toml",
        "[providers.vault]\ntype = \"local\"\nroot = \"store\"\nencrypt-passphrase-env = \"ENC_PASS\"\n\n\
         [[databases]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\nrestore-to-path = \"restored.db\"\n\
         to = \"vault:db/{name}.sqlite.zst\"\n",
    );
    let pass = "correct horse battery staple 4711";
    let wrong = "incorrect horse battery staple 0815";
    let env = |p: &str| vec![("ENC_PASS", p.to_string())];
    let mut outputs = vec![ferry(dir.path(), &["run"], &plan, &env(pass))];
    assert_eq!(outputs[0].code, Some(0), "{}", outputs[0].stderr);
    let stored = std::fs::read(dir.path().join("store/db/app.sqlite.zst")).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    assert!(!contains(&stored, "PLAINTEXT-MARKER"));
    let record = std::fs::read(dir.path().join("store/db/app.sqlite.zst.ferry.json")).unwrap();
    assert!(record.starts_with(b"age-encryption.org/v1\n-> scrypt ") && !contains(&record, "\"tables\""));
    // The age crate opens it with the passphrase.
    let mut plain = Vec::new();
    let id = age::scrypt::Identity::new(pass.to_string().into());
    age::Decryptor::new(&stored[..])
        .unwrap()
        .decrypt(std::iter::once(&id as &dyn age::Identity))
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    assert!(zstd::decode_all(&plain[..]).unwrap().starts_with(b"SQLite format 3\0"));

    let target = dir.path().join("restored.db");
    let out = ferry(dir.path(), &["restore", "--database", "app"], &plan, &env(wrong));
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("provider `vault`'s encrypt-passphrase-env does not match"),
        "{}",
        out.stderr
    );
    assert!(!target.exists());
    outputs.push(out);
    let out = ferry(dir.path(), &["restore", "--database", "app"], &plan, &env(pass));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    outputs.push(out);
    assert_eq!(
        sqlite_rows(&target),
        vec![(1, "PLAINTEXT-MARKER-one".into()), (2, "PLAINTEXT-MARKER-two".into())]
    );
    for o in &outputs {
        for s in [pass, wrong] {
            assert!(!o.all().contains(s), "the passphrase was printed:\n{}", o.all());
        }
    }
}

/// An object job into a provider with recipients is a valid plan now (tests/encrypted_objects.rs
/// copies through one; passphrase providers are refused there). Keys in the plan itself are
/// refused.
#[test]
fn plans_take_object_jobs_into_recipients_and_refuse_keys_in_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let plan = write(
        dir.path(),
        "plan.toml",
        "[providers.src]\ntype = \"local\"\nroot = \"in\"\n\n[providers.vault]\ntype = \"local\"\nroot = \"out\"\n\
         encrypt-recipients-file = \"r.txt\"\n\n[[objects]]\nname = \"files\"\nfrom = \"src:\"\nto = \"vault:\"\n",
    );
    let out = ferry(dir.path(), &["check"], &plan, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!dir.path().join("out").exists());

    let (_, secret, _) = keypair();
    let plan = write(
        dir.path(),
        "keys.toml",
        &format!("[providers.vault]\ntype = \"local\"\nroot = \"out\"\nencrypt-recipients-file = \"r.txt\"\ndecrypt-identity-file = \"{secret}\"\n"),
    );
    let out = ferry(dir.path(), &["check"], &plan, &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`decrypt-identity-file` must name a file, not hold a key"),
        "{}",
        out.stderr
    );
    assert!(!out.all().contains(&secret));
}
