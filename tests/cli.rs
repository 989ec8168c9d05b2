//! End-to-end tests of the `ferry` binary: the README's demo, exit codes, the messages a user
//! sees, and memory use on a large object. Each test works on a copy of the demo in a temporary
//! directory, so the repository is never written to.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of configs/demo.toml and its data in a fresh directory laid out like the repository.
struct Demo {
    dir: tempfile::TempDir,
}

impl Demo {
    fn new() -> Demo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("configs")).unwrap();
        std::fs::copy(repo().join("configs/demo.toml"), dir.path().join("configs/demo.toml")).unwrap();
        common::copy_dir(&repo().join("configs/demo-data"), &dir.path().join("configs/demo-data"));
        Demo { dir }
    }
    fn plan(&self) -> PathBuf {
        self.dir.path().join("configs/demo.toml")
    }
    fn source(&self) -> PathBuf {
        self.dir.path().join("configs/demo-data")
    }
    fn dest(&self) -> PathBuf {
        self.dir.path().join(".demo-out/data")
    }
    fn run(&self, args: &[&str]) -> Output {
        let out = ferry().args(args).arg(self.plan()).output().unwrap();
        eprintln!(
            "ferry {args:?} -> {:?}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Every file under `dir`, relative path -> bytes.
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn demo_copies_byte_identical_and_verifies() {
    let d = Demo::new();
    let out = d.run(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let j = json(&out);
    assert_eq!(j["ok"], true);
    let src = tree(&d.source());
    assert!(src.len() >= 10);
    assert_eq!(j["totals"]["copied"]["objects"], src.len() as u64);
    assert_eq!(tree(&d.dest()), src, "destination differs from source");
    // The manifest lists every object with its SHA-256, locally and at the destination.
    let manifest = std::fs::read_to_string(d.dir.path().join(".demo-out/.ferry/manifests/demo.jsonl")).unwrap();
    assert_eq!(
        manifest.lines().filter(|l| l.contains("\"sha256\":\"")).count(),
        src.len()
    );
    assert_eq!(d.run(&["verify"]).status.code(), Some(0));
    assert_eq!(d.run(&["verify", "--deep"]).status.code(), Some(0));
}

#[test]
fn flipped_byte_is_named_by_deep_verify() {
    let d = Demo::new();
    assert_eq!(d.run(&["run"]).status.code(), Some(0));
    let victim = d.dest().join("photos/2024/img-003.jpg");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1000] ^= 0x20;
    std::fs::write(&victim, bytes).unwrap();
    let out = d.run(&["verify", "--deep", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let j = json(&out);
    let mism = j["jobs"][0]["mismatches"].as_array().unwrap();
    assert_eq!(mism.len(), 1, "{mism:?}");
    // Named as `run` names failures (issue 14): the source key, and where it is at the destination.
    assert_eq!(mism[0]["key"], "photos/2024/img-003.jpg");
    assert_eq!(mism[0]["destination_key"], "data/photos/2024/img-003.jpg");
    assert!(String::from_utf8_lossy(&out.stderr).contains("DIFFERS `photos/2024/img-003.jpg`: "));
}

#[test]
fn second_run_copies_nothing() {
    let d = Demo::new();
    assert_eq!(d.run(&["run"]).status.code(), Some(0));
    let out = d.run(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let j = json(&out);
    assert_eq!(j["totals"]["copied"], serde_json::json!({"objects": 0, "bytes": 0}));
    assert_eq!(j["totals"]["unchanged"]["objects"], tree(&d.source()).len() as u64);
}

#[test]
fn dry_run_predicts_and_writes_nothing() {
    // `run --dry-run` is `plan` (issue 17: users try it first).
    for args in [&["plan", "--json"][..], &["run", "--dry-run", "--json"][..]] {
        dry_run_writes_nothing(args);
    }
}

fn dry_run_writes_nothing(args: &[&str]) {
    let d = Demo::new();
    let out = d.run(args);
    assert_eq!(out.status.code(), Some(0));
    let j = json(&out);
    let src = tree(&d.source());
    assert_eq!(j["totals"]["new"]["objects"], src.len() as u64);
    assert_eq!(
        j["totals"]["new"]["bytes"],
        src.values().map(|v| v.len() as u64).sum::<u64>()
    );
    assert!(
        !d.dir.path().join(".demo-out").exists(),
        "a dry run created the destination"
    );
    assert!(
        !d.dir.path().join("configs/.ferry").exists(),
        "a dry run wrote a journal"
    );
}

#[test]
fn misspelled_key_exits_2_naming_line_and_key() {
    let d = Demo::new();
    let text = std::fs::read_to_string(d.plan())
        .unwrap()
        .replace("root = \"demo-data\"", "roots = \"demo-data\"");
    std::fs::write(d.plan(), &text).unwrap();
    let line = text.lines().position(|l| l.starts_with("roots")).unwrap() + 1;
    for cmd in ["check", "plan", "run", "verify"] {
        let out = d.run(&[cmd]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("demo.toml:{line}:")), "{cmd}: {err}");
        assert!(err.contains("unknown field `roots`"), "{cmd}: {err}");
    }
    assert!(!d.dir.path().join(".demo-out").exists(), "nothing may be written");
}

#[test]
fn missing_credential_variable_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/a.txt"), "a").unwrap();
    let plan = dir.path().join("p.toml");
    std::fs::write(
        &plan,
        r#"
[providers.src]
type = "local"
root = "src"

[providers.dst]
type = "s3"
bucket = "b"
endpoint = "http://127.0.0.1:9"
allow-http = true
access-key-id-env = "FERRY_TEST_SURELY_UNSET_KEY"
secret-access-key-env = "FERRY_TEST_SURELY_UNSET_SECRET"

[[objects]]
name = "j"
from = "src:"
to = "dst:"
"#,
    )
    .unwrap();
    let out = ferry().arg("run").arg(&plan).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("provider `dst`") && err.contains("FERRY_TEST_SURELY_UNSET_KEY"),
        "{err}"
    );
    assert!(!dir.path().join(".ferry").exists(), "no journal may be written");
}

#[test]
fn providers_catalog_lists_and_shows() {
    let out = ferry().args(["providers"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["aws", "gcs", "azure", "r2", "b2", "wasabi", "local"] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    let out = ferry()
        .args(["providers", "show", "wasabi", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&out)["name"], "wasabi");
    assert_eq!(
        ferry()
            .args(["providers", "show", "nope"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

/// Peak resident memory of the children this process has waited for.
fn children_peak_rss_kib() -> i64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) }, 0);
    ru.ru_maxrss
}

#[test]
fn large_object_local_to_local_stays_under_150_mib() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    let big = dir.path().join("src/big.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..300 {
            for c in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&block).unwrap();
        }
    }
    let plan = dir.path().join("p.toml");
    std::fs::write(
        &plan,
        "[providers.src]\ntype = \"local\"\nroot = \"src\"\n\n[providers.dst]\ntype = \"local\"\nroot = \"dst\"\n\n\
         [[objects]]\nname = \"big\"\nfrom = \"src:\"\nto = \"dst:\"\n",
    )
    .unwrap();
    let before = children_peak_rss_kib();
    let out = ferry().args(["run", "--quiet"]).arg(&plan).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let peak = children_peak_rss_kib();
    eprintln!("peak RSS copying 300 MiB local->local: {} MiB", peak / 1024);
    assert!(peak >= before);
    assert!(peak < 150 * 1024, "peak RSS {} MiB", peak / 1024);
    let a = std::fs::read(&big).unwrap();
    let b = std::fs::read(dir.path().join("dst/big.bin")).unwrap();
    assert!(a == b, "copy differs");
}

#[test]
fn database_job_dumps_restores_and_verifies_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, blob BLOB);
             INSERT INTO t(name, blob) VALUES ('a', x'00ff'), ('ü', NULL), (NULL, x'');",
        )
        .unwrap();
    }
    let plan = dir.path().join("p.toml");
    std::fs::write(
        &plan,
        "[providers.dst]\ntype = \"local\"\nroot = \"backup\"\n\n[[databases]]\nname = \"app\"\nengine = \"sqlite\"\n\
         path = \"app.db\"\nto = \"dst:db/{name}/{timestamp}.sqlite.zst\"\nrestore-to-path = \"restored.db\"\n",
    )
    .unwrap();
    let run = ferry().args(["run", "--json"]).arg(&plan).output().unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let j = json(&run);
    let key = j["databases"][0]["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("db/app/") && key.ends_with(".sqlite.zst"), "{key}");
    assert!(dir.path().join("backup").join(&key).exists());
    let restore = ferry()
        .args(["restore", "--database", "app"])
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(
        restore.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let verify = ferry().args(["verify", "--json"]).arg(&plan).output().unwrap();
    assert_eq!(verify.status.code(), Some(0));
    assert_eq!(json(&verify)["databases"][0]["tables"][0]["matches"], true);
    // A changed row in the restored copy is named by verify, exit 1.
    rusqlite::Connection::open(dir.path().join("restored.db"))
        .unwrap()
        .execute("UPDATE t SET name = 'b' WHERE id = 1", [])
        .unwrap();
    let verify = ferry().args(["verify", "--json"]).arg(&plan).output().unwrap();
    assert_eq!(verify.status.code(), Some(1));
    let t = &json(&verify)["databases"][0]["tables"][0];
    assert_eq!((t["table"].as_str(), t["matches"].as_bool()), (Some("t"), Some(false)));
}

/// Issue 4: a wrong database password exits 2 before anything is written, and the password
/// appears nowhere in the output.
#[test]
fn wrong_database_password_exits_2_and_is_never_shown() {
    if std::env::var("FERRY_TEST_SERVERS").map_or(true, |v| v != "1") {
        assert!(
            std::env::var("CI").map_or(true, |v| v.is_empty()),
            "CI needs the test servers"
        );
        eprintln!("SKIPPED wrong_database_password_exits_2_and_is_never_shown: no test servers");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("p.toml");
    std::fs::write(
        &plan,
        "[providers.dst]\ntype = \"local\"\nroot = \"backup\"\n\n[[databases]]\nname = \"orders\"\nengine = \"mysql\"\n\
         url-env = \"FERRY_TEST_BAD_MYSQL_URL\"\nto = \"dst:db/\"\n",
    )
    .unwrap();
    let secret = "Wr0ngPassw0rd-7731";
    let out = ferry()
        .args(["run", "--json", "-vv"])
        .arg(&plan)
        .env(
            "FERRY_TEST_BAD_MYSQL_URL",
            format!("mysql://root:{secret}@127.0.0.1:3306/test"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("database `orders`") && all.contains("Access denied"),
        "{all}"
    );
    assert!(!all.contains(secret), "password leaked: {all}");
    assert!(!dir.path().join("backup").exists(), "nothing may be written");
}

/// Regression (found by the benchmark): eight large objects at once under a small memory budget
/// deadlocked when each held budget for parts nobody was driving. Both upload paths: the SDK's
/// (S3) and object_store's (Azure).
#[test]
fn many_large_objects_under_a_small_memory_limit_finish() {
    if !common::servers_available("many_large_objects_under_a_small_memory_limit_finish") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let block: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for i in 0..8 {
        let mut body = Vec::with_capacity(30 << 20);
        for j in 0..30 {
            body.extend_from_slice(&block[(i * 7 + j) % 4096..]);
            body.truncate((j + 1) << 20);
        }
        std::fs::write(src.join(format!("big-{i}.bin")), body).unwrap();
    }
    let prefix = format!("lowmem-{}", std::process::id());
    let plan = dir.path().join("p.toml");
    std::fs::write(
        &plan,
        format!(
            "[settings]\nconcurrency = 8\npart-size = \"5MiB\"\nmemory-limit = \"48MiB\"\n\n\
             [providers.src]\ntype = \"local\"\nroot = \"src\"\n\n\
             [providers.s3]\ntype = \"s3\"\nbucket = \"ferry-b\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             allow-http = true\npath-style = true\naccess-key-id-env = \"FERRY_TEST_SEAWEED_KEY\"\n\
             secret-access-key-env = \"FERRY_TEST_SEAWEED_SECRET\"\n\n\
             [providers.az]\ntype = \"azure\"\naccount = \"devstoreaccount1\"\ncontainer = \"ferry-b\"\nendpoint = \"{}\"\n\
             allow-http = true\naccess-key-env = \"FERRY_TEST_AZURITE_KEY\"\n\n\
             [[objects]]\nname = \"to-s3\"\nfrom = \"src:\"\nto = \"s3:{prefix}/\"\n\n\
             [[objects]]\nname = \"to-azure\"\nfrom = \"src:\"\nto = \"az:{prefix}/\"\n",
            common::env("FERRY_TEST_SEAWEED_ENDPOINT"),
            common::env("FERRY_TEST_AZURITE_ENDPOINT")
        ),
    )
    .unwrap();
    let mut child = ferry().args(["run", "--quiet"]).arg(&plan).spawn().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(180) {
            let _ = child.kill();
            panic!("ferry run did not finish in 180 s: deadlocked on the memory budget?");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
    let verify = ferry()
        .args(["verify", "--deep", "--quiet"])
        .arg(&plan)
        .status()
        .unwrap();
    assert_eq!(verify.code(), Some(0));
}

/// Issue 14: `check --connect` creates nothing, not even a missing local destination root.
#[test]
fn check_connect_creates_no_local_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    let plan = dir.path().join("p.toml");
    std::fs::write(
        &plan,
        "[providers.src]\ntype = \"local\"\nroot = \"src\"\n[providers.dst]\ntype = \"local\"\nroot = \"out/x\"\n\
         [[objects]]\nname = \"j\"\nfrom = \"src:\"\nto = \"dst:\"\n",
    )
    .unwrap();
    let out = ferry().args(["check", "--connect"]).arg(&plan).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !dir.path().join("out").exists(),
        "check --connect created the destination root"
    );
}

/// Issue 17: shell completions and the manual page come from the same clap definitions as
/// --help, so every subcommand appears in both.
#[test]
fn completions_and_man_page_name_every_command() {
    let text = |args: &[&str]| {
        let out = ferry().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = text(&["completions", "bash"]);
    assert!(bash.contains("complete -F") && bash.contains("ferry"), "{bash}");
    let zsh = text(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef ferry"), "{zsh}");
    let man = text(&["man"]);
    assert!(
        man.starts_with(".ie") || man.starts_with(".TH"),
        "{}",
        &man[..200.min(man.len())]
    );
    for cmd in [
        "check",
        "plan",
        "run",
        "copy",
        "sync",
        "verify",
        "restore",
        "status",
        "providers",
    ] {
        assert!(bash.contains(cmd) && man.contains(cmd), "`{cmd}` missing");
    }
}
