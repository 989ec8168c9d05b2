//! Issue 18, "databases that fit the window": PostgreSQL dumps and restores with parallel
//! workers (`jobs = 4`: `pg_dump -Fd -j 4`, one object a file), and the server's globals
//! (`globals = true`: roles and memberships) restored before the database, end to end through
//! the `ferry` binary against the real PostgreSQL and SeaweedFS.
//!
//! The oracles are not ferry's code: what a dump stored is listed and read straight from
//! SeaweedFS with the AWS SDK, or from the local store's folder; each file's SHA-256 and size
//! are compared with the record, and its bytes decompressed with zstd; rows are compared with
//! `psql` on both sides; the restored roles are read with `psql` from a second PostgreSQL
//! server this test starts itself (`initdb`, `pg_ctl`), so that roles really come from the dump.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::db::{available, pg_base, psql, psql_try, with_db, Cleanup};
use common::oracle::sha256;
use common::Out;

/// `ferry ARGS PLAN` with `env` added and `TMPDIR` set to `tmp` (so that the test sees whether
/// ferry left a temporary folder behind).
fn ferry(args: &[&str], plan: &Path, env: &[(&str, String)], tmp: &Path) -> Out {
    std::fs::create_dir_all(tmp).unwrap();
    let mut cmd = Command::new(common::oracle::ferry_bin());
    cmd.args(args).arg(plan).env("TMPDIR", tmp);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Out::of(args, &mut cmd)
}

fn pg_ready(test: &str) -> bool {
    common::servers_available(test) && available(test, "PostgreSQL", psql_try(&pg_base(), "SELECT 1;").is_ok())
}

/// Eight tables of different shapes and sizes (one without a primary key, with duplicates; one
/// in a second schema; bytea, numeric, json, NULLs), enough rows that pg_dump's workers share them.
const SEED: &str = "
CREATE SCHEMA other;
CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric(20,4), at timestamptz);
INSERT INTO orders SELECT g, 'customer-' || (g % 977), g * 1.2345, '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 60000) g;
CREATE TABLE lines (order_id int, n int, sku text, qty int, PRIMARY KEY (order_id, n));
INSERT INTO lines SELECT g / 3, g % 3, 'sku-' || md5(g::text), g % 7 FROM generate_series(3, 90000) g;
CREATE TABLE blobs (id int PRIMARY KEY, b bytea);
INSERT INTO blobs SELECT g, decode(repeat(md5(g::text), 16), 'hex') FROM generate_series(1, 8000) g;
CREATE TABLE docs (id int PRIMARY KEY, j jsonb);
INSERT INTO docs SELECT g, jsonb_build_object('k', g, 'tags', jsonb_build_array('a', g % 5, NULL)) FROM generate_series(1, 20000) g;
CREATE TABLE log (msg text, level int);
INSERT INTO log SELECT 'dup ' || (g % 50), g % 3 FROM generate_series(1, 30000) g;
CREATE TABLE nulls (id int PRIMARY KEY, a text, b int);
INSERT INTO nulls SELECT g, CASE WHEN g % 2 = 0 THEN NULL ELSE 'x' || g END, NULLIF(g % 4, 0) FROM generate_series(1, 10000) g;
CREATE TABLE empty_one (id int PRIMARY KEY);
CREATE TABLE other.settings (k text PRIMARY KEY, v text);
INSERT INTO other.settings SELECT 'key-' || g, repeat('v', g % 100) FROM generate_series(1, 5000) g;
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 1000;
";

const TABLES: [&str; 8] = [
    "public.orders",
    "public.lines",
    "public.blobs",
    "public.docs",
    "public.log",
    "public.nulls",
    "public.empty_one",
    "other.settings",
];

/// Each table's row count and an order-independent checksum, computed by `psql` itself.
fn oracle(url: &str) -> BTreeMap<String, String> {
    common::db::pg_table_sums(url, &TABLES)
}

/// Scratch databases on the test server, dropped when this is dropped.
fn scratch(names: &[String]) -> Cleanup {
    let base = pg_base();
    let drop_all = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("DROP DATABASE IF EXISTS {n} WITH (FORCE);"))
            .collect::<String>()
    };
    let create: String = names.iter().map(|n| format!("CREATE DATABASE {n};")).collect();
    psql(&base, &format!("{}{create}", drop_all(names)));
    let (admin, sql) = (base.clone(), drop_all(names));
    Cleanup(Box::new(move || {
        let _ = psql_try(&admin, &sql);
    }))
}

/// Provider `name` at SeaweedFS's bucket `ferry-a`, its keys in `VAR_KEY` and `VAR_SECRET`,
/// with `extra` keys.
fn seaweed_provider(name: &str, var: &str, extra: &str) -> String {
    format!(
        "[providers.{name}]\ntype = \"s3\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nbucket = \"ferry-a\"\n\
         path-style = true\nallow-http = true\naccess-key-id-env = \"{var}_KEY\"\nsecret-access-key-env = \"{var}_SECRET\"\n{extra}",
        common::env("FERRY_TEST_SEAWEED_ENDPOINT")
    )
}

/// A fresh key prefix in SeaweedFS's bucket `ferry-a` (`STEM-PID-NANOS`), an AWS SDK client
/// for it, and a guard that deletes every object under the prefix.
fn seaweed_scratch(stem: &str) -> (String, aws_sdk_s3::Client, Cleanup) {
    let prefix = format!("{stem}-{}-{}", std::process::id(), common::oracle::nanos());
    let s3 = common::wire::s3_sdk("SEAWEED");
    let (c2, p2) = (s3.clone(), prefix.clone());
    let cleanup = Cleanup(Box::new(move || {
        for k in common::wire::s3_list(&c2, "ferry-a", &p2).unwrap_or_default() {
            common::wire::s3_delete(&c2, "ferry-a", &k);
        }
    }));
    (prefix, s3, cleanup)
}

/// The record and every file of the directory dump whose record is `record_bytes`, with
/// `read(key)` reading a stored object: each file's size and SHA-256 are the record's, every
/// file is under `KEY/`, and `toc.dat` decompresses to pg_dump's directory-format header.
fn check_stored_dump(keys: &[String], record_bytes: &[u8], read: impl Fn(&str) -> Vec<u8>) -> serde_json::Value {
    let mut keys = keys.to_vec();
    keys.sort();
    let rec: serde_json::Value = serde_json::from_slice(record_bytes).unwrap();
    let key = rec["key"].as_str().unwrap().to_string();
    assert!(
        !keys.contains(&key),
        "a directory dump has no object at its key: {keys:?}"
    );
    let files = rec["files"].as_array().unwrap();
    let mut want: Vec<String> = files.iter().map(|f| f["key"].as_str().unwrap().to_string()).collect();
    want.push(format!("{key}.ferry.json"));
    want.sort();
    assert_eq!(keys, want, "the store holds exactly the record and the files it lists");
    // pg_dump -Fd: toc.dat and one data file per non-empty table (seven here).
    let data_files = files.iter().filter(|f| f["name"] != "toc.dat").count();
    assert!(data_files >= 7, "{rec}");
    for f in files {
        let k = f["key"].as_str().unwrap();
        assert!(k.starts_with(&format!("{key}/")) && k.ends_with(".zst"), "{k}");
        let bytes = read(k);
        assert_eq!(bytes.len() as u64, f["bytes-stored"].as_u64().unwrap(), "{k}");
        assert_eq!(sha256(&bytes), f["sha256"], "{k}");
        let raw = zstd::decode_all(&bytes[..]).unwrap();
        assert_eq!(raw.len() as u64, f["bytes-raw"].as_u64().unwrap(), "{k}");
        if f["name"] == "toc.dat" {
            assert!(raw.starts_with(b"PGDMP"), "toc.dat is pg_dump's");
        }
    }
    for t in TABLES {
        assert!(rec["tables"][t]["rows"].is_u64(), "{t} recorded: {rec}");
    }
    rec
}

/// The restore report: exit 0, every table compared with the dump's record and the source.
fn check_restore_report(out: &Out, key: &str) {
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let r = &out.json()["restore"];
    assert_eq!(r["key"], key, "{r}");
    assert_eq!(
        r["verified_against"],
        serde_json::json!(["dump-record", "source"]),
        "{r}"
    );
    let tables = r["tables"].as_array().unwrap();
    assert_eq!(tables.len(), TABLES.len(), "{r}");
    assert!(tables.iter().all(|t| t["matches"] == true), "{r}");
}

/// A folder with a plan of one PostgreSQL job (`job`: its name, variables and options) dumping
/// to the local store `store/`: (the folder, ferry's TMPDIR in it, the plan).
fn local_plan(job: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    let text = format!(
        "[providers.disk]\ntype = \"local\"\nroot = \"store\"\n\n[[databases]]\nengine = \"postgres\"\n\
         to = \"disk:db/{{name}}/{{timestamp}}.dump\"\n{job}"
    );
    std::fs::write(&plan, text).unwrap();
    let tmp = dir.path().join("tmp");
    (dir, tmp, plan)
}

/// `ferry restore --replace` of job `job`'s newest dump: exit 0, the globals of the dump at
/// `key` restored, every table verified; the JSON document.
fn restore_with_globals(plan: &Path, job: &str, env: &[(&str, String)], tmp: &Path, key: &str) -> serde_json::Value {
    let out = ferry(&["restore", "--json", "--replace", "--database", job], plan, env, tmp);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let doc = out.json();
    let r = &doc["restore"];
    assert_eq!(r["globals"], format!("{key}.globals.sql"), "{r}");
    assert!(
        r["tables"].as_array().unwrap().iter().all(|t| t["matches"] == true),
        "{r}"
    );
    no_leftovers(tmp);
    doc
}

fn no_leftovers(tmp: &Path) {
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "ferry left {left:?} in its TMPDIR");
}

/// Issue 18: `jobs = 4` to SeaweedFS and to a local folder. The store holds the record and one
/// object per file of `pg_dump -Fd` (listed with the AWS SDK and the filesystem, each file's
/// SHA-256 and size as recorded); `restore` with `jobs = 4` into fresh databases passes ferry's
/// table-by-table verification, and `psql`'s own counts and checksums match the source.
/// Retention and `restore --at` count a directory dump as one dump; no temporary folder stays.
#[test]
fn postgres_jobs_4_to_seaweed_and_local_restore_in_parallel() {
    if !pg_ready("postgres_jobs_4_to_seaweed_and_local") {
        return;
    }
    let pid = std::process::id();
    let dbs: Vec<String> = ["src", "s3", "local", "at"]
        .iter()
        .map(|s| format!("ferry_pj_{s}_{pid}"))
        .collect();
    let _dbs = scratch(&dbs);
    let base = pg_base();
    let url = |i: usize| with_db(&base, &dbs[i]);
    psql(&url(0), SEED);
    let (prefix, s3, _objects) = seaweed_scratch("pj");
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "{}\n[providers.disk]\ntype = \"local\"\nroot = \"store\"\n\n\
             [[databases]]\nname = \"s3\"\nengine = \"postgres\"\nurl-env = \"PJ_SRC\"\nrestore-to-env = \"PJ_S3\"\n\
             to = \"sw:{prefix}/{{name}}/{{timestamp}}.dump\"\njobs = 4\n\n\
             [[databases]]\nname = \"local\"\nengine = \"postgres\"\nurl-env = \"PJ_SRC\"\nrestore-to-env = \"PJ_LOCAL\"\n\
             to = \"disk:db/{{name}}/{{timestamp}}.dump\"\njobs = 4\nkeep = 2\n",
            seaweed_provider("sw", "PJ", "")
        ),
    )
    .unwrap();
    let env = vec![
        ("PJ_SRC", url(0)),
        ("PJ_S3", url(1)),
        ("PJ_LOCAL", url(2)),
        ("PJ_KEY", common::env("FERRY_TEST_SEAWEED_KEY")),
        ("PJ_SECRET", common::env("FERRY_TEST_SEAWEED_SECRET")),
    ];
    let out = ferry(&["run", "--json"], &plan, &env, &tmp);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    no_leftovers(&tmp);

    // SeaweedFS, through the AWS SDK.
    let keys = common::wire::s3_list(&s3, "ferry-a", &prefix).unwrap();
    let rkey = keys
        .iter()
        .find(|k| k.ends_with(".ferry.json"))
        .expect("a record")
        .clone();
    let get = |k: &str| common::wire::s3_get(&s3, "ferry-a", k).unwrap();
    let rec = check_stored_dump(&keys, &get(&rkey), get);
    let s3_key = rec["key"].as_str().unwrap().to_string();
    // The local folder, through the filesystem.
    let root = dir.path().join("store");
    let local_keys = common::file_names(&root);
    let lrec = local_keys.iter().find(|k| k.ends_with(".ferry.json")).unwrap().clone();
    let read = |k: &str| std::fs::read(root.join(k)).unwrap();
    let lrec = check_stored_dump(&local_keys, &read(&lrec), read);
    let local_key = lrec["key"].as_str().unwrap().to_string();

    let source = oracle(&url(0));
    for (job, db, key) in [("s3", 1, &s3_key), ("local", 2, &local_key)] {
        let out = ferry(&["restore", "--json", "--database", job], &plan, &env, &tmp);
        check_restore_report(&out, key);
        assert_eq!(
            oracle(&url(db)),
            source,
            "psql's counts and checksums of `{job}`'s restore"
        );
        assert_eq!(
            psql(&url(db), "SELECT count(*) FROM big_orders;"),
            psql(&url(0), "SELECT count(*) FROM big_orders;")
        );
        no_leftovers(&tmp);
    }
    let out = ferry(&["verify", "--job", "local"], &plan, &env, &tmp);
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    // Two more dumps with `keep = 2`: the first dump goes, files and all; the folder lists two.
    let mut local_dumps = vec![local_key.clone()];
    for _ in 0..2 {
        let out = ferry(&["run", "--json", "--job", "local"], &plan, &env, &tmp);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        local_dumps.push(out.json()["databases"][0]["key"].as_str().unwrap().to_string());
    }
    let names = common::file_names(&root);
    assert!(
        !names.iter().any(|n| n.starts_with(&local_dumps[0])),
        "the oldest dump is gone: {names:?}"
    );
    assert!(!root.join(&local_dumps[0]).exists(), "its folder too");
    for kept in &local_dumps[1..] {
        assert!(names.contains(&format!("{kept}.ferry.json")), "{names:?}");
        assert!(
            names.iter().filter(|n| n.starts_with(&format!("{kept}/"))).count() >= 8,
            "{names:?}"
        );
    }
    // `--at` the second dump's time picks it (not the newest, not one of its files).
    let at = local_dumps[1]
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".dump")
        .to_string();
    let mut env_at = env.clone();
    env_at.retain(|(k, _)| *k != "PJ_LOCAL");
    env_at.push(("PJ_LOCAL", url(3)));
    let out = ferry(
        &["restore", "--json", "--database", "local", "--at", &at],
        &plan,
        &env_at,
        &tmp,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.json()["restore"]["key"], local_dumps[1].as_str());
    assert_eq!(oracle(&url(3)), source);

    // One flipped byte in one stored file: refused before pg_restore runs, target untouched.
    psql(&url(3), "DELETE FROM orders WHERE id <= 10;");
    let before = oracle(&url(3));
    let victim = names
        .iter()
        .find(|n| n.starts_with(&format!("{}/", local_dumps[2])) && !n.contains("toc.dat"))
        .unwrap();
    let mut bytes = std::fs::read(root.join(victim)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(root.join(victim), bytes).unwrap();
    let out = ferry(
        &["restore", "--json", "--replace", "--database", "local"],
        &plan,
        &env_at,
        &tmp,
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let err = out.json()["restore"]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        err.contains(victim.as_str()) && err.contains("database `local`"),
        "{err}"
    );
    assert_eq!(oracle(&url(3)), before, "pg_restore never ran");
    no_leftovers(&tmp);
}

/// Issue 18: `pg_dump -Fd` failing (the dumping role may not read one table) leaves nothing at
/// the destination, neither a record nor a file nor the globals taken before it, no temporary
/// folder, and an error that names the job and quotes pg_dump.
#[test]
fn failing_parallel_pg_dump_leaves_no_dump() {
    if !pg_ready("failing_parallel_pg_dump_leaves_no_dump") {
        return;
    }
    let pid = std::process::id();
    let dbs = vec![format!("ferry_pjf_src_{pid}")];
    let role = format!("ferry_pjf_reader_{pid}");
    let base = pg_base();
    let (admin, r2) = (base.clone(), role.clone());
    let _role = Cleanup(Box::new(move || {
        let _ = psql_try(&admin, &format!("DROP ROLE IF EXISTS {r2};"));
    }));
    let _dbs = scratch(&dbs);
    let src = with_db(&base, &dbs[0]);
    psql(&src, SEED);
    psql(
        &src,
        &format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN;
             GRANT USAGE ON SCHEMA other TO {role};
             GRANT SELECT ON ALL TABLES IN SCHEMA public, other TO {role};
             REVOKE SELECT ON other.settings FROM {role};"
        ),
    );
    // The same server and database, as the role that may not read `other.settings`.
    let (scheme, rest) = src.split_once("://").unwrap();
    let as_reader = format!("{scheme}://{role}@{}", rest.split_once('@').map_or(rest, |(_, h)| h));
    let (dir, tmp, plan) = local_plan("name = \"reader\"\nurl-env = \"PJF_SRC\"\njobs = 4\nglobals = true\n");
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let out = ferry(&["run", "--json"], &plan, &[("PJF_SRC", as_reader)], &tmp);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let err = out.json()["databases"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("database `reader`") && err.contains("pg_dump") && err.contains("permission denied"),
        "{err}"
    );
    assert_eq!(common::file_names(&dir.path().join("store")), Vec::<String>::new());
    no_leftovers(&tmp);
}

/// A PostgreSQL server of this test's own: `initdb` into a temporary folder (as the `postgres`
/// user when running as root, which initdb refuses), `pg_ctl start` on a free port; stopped
/// (immediate) when dropped, also when the test fails.
struct PrivatePg {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_root: bool,
    _dir: tempfile::TempDir,
}

impl PrivatePg {
    fn start() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .map(|e| e.unwrap().path().join("bin"))
            .filter(|b| b.join("initdb").is_file())
            .max()
            .expect("PostgreSQL's server binaries under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let as_root = std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
        if as_root {
            let id = |flag: &str| {
                let o = Command::new("id").args([flag, "postgres"]).output().unwrap();
                String::from_utf8_lossy(&o.stdout).trim().parse::<u32>().unwrap()
            };
            std::os::unix::fs::chown(dir.path(), Some(id("-u")), Some(id("-g"))).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePg {
            bin,
            data: dir.path().join("data"),
            port,
            as_root,
            _dir: dir,
        };
        let data = pg.data.to_string_lossy().into_owned();
        pg.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        );
        let opts = format!("-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off");
        let log = format!("{data}/server.log");
        pg.run(
            "pg_ctl",
            &["start", "-w", "-t", "60", "-D", &data, "-l", &log, "-o", &opts],
        );
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).current_dir("/").output().unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd
            .args(["stop", "-m", "immediate", "-w", "-D", &data])
            .current_dir("/")
            .output();
    }
}

/// Issue 18: `globals = true` stores the source server's roles beside the dump (without
/// password hashes) and `restore` creates them in a second, private PostgreSQL server before
/// the database, whose GRANT to one of them needs it. Roles already there (`postgres`, and
/// all of them on a second restore) are skipped, not failed.
#[test]
fn globals_restore_roles_into_a_private_server() {
    if !pg_ready("globals_restore_roles_into_a_private_server") {
        return;
    }
    let pid = std::process::id();
    let (ro, rw) = (format!("ferry_app_ro_{pid}"), format!("ferry_app_rw_{pid}"));
    let base = pg_base();
    let (admin, ro2, rw2) = (base.clone(), ro.clone(), rw.clone());
    let _roles = Cleanup(Box::new(move || {
        let _ = psql_try(
            &admin,
            &format!("DROP ROLE IF EXISTS {ro2}; DROP ROLE IF EXISTS {rw2};"),
        );
    }));
    let dbs = vec![format!("ferry_pjg_src_{pid}")];
    let _dbs = scratch(&dbs);
    let src = with_db(&base, &dbs[0]);
    psql(
        &base,
        &format!(
            "DROP ROLE IF EXISTS {ro}; DROP ROLE IF EXISTS {rw};
             CREATE ROLE {rw} NOLOGIN; CREATE ROLE {ro} LOGIN PASSWORD 'pw-SECRET-1234' CONNECTION LIMIT 7;
             GRANT {rw} TO {ro};"
        ),
    );
    psql(
        &src,
        &format!("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g; GRANT SELECT ON t TO {ro}; GRANT INSERT ON t TO {rw};"),
    );
    let private = PrivatePg::start();
    psql(&private.url("postgres"), "CREATE DATABASE target;");
    let (dir, tmp, plan) =
        local_plan("name = \"app\"\nurl-env = \"PJG_SRC\"\nrestore-to-env = \"PJG_DST\"\nglobals = true\n");
    let env = vec![("PJG_SRC", src.clone()), ("PJG_DST", private.url("target"))];
    let out = ferry(&["run", "--json"], &plan, &env, &tmp);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let key = out.json()["databases"][0]["key"].as_str().unwrap().to_string();
    let root = dir.path().join("store");
    let stored = std::fs::read_to_string(root.join(format!("{key}.globals.sql"))).unwrap();
    assert!(
        stored.contains(&format!("CREATE ROLE {ro};")) && stored.contains(&format!("GRANT {rw} TO {ro}")),
        "{stored}"
    );
    assert!(
        !stored.contains("SCRAM-SHA-256") && !stored.contains("PASSWORD '"),
        "no password hash is stored"
    );
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(format!("{key}.ferry.json"))).unwrap()).unwrap();
    assert_eq!(rec["globals"]["sha256"], sha256(stored.as_bytes()), "{rec}");
    assert_eq!(common::file_names(&root).len(), 3, "dump, record, globals");

    let roles = format!(
        "SELECT rolname, rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname IN ('{ro}', '{rw}') ORDER BY 1;
         SELECT count(*) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
          WHERE g.rolname = '{rw}' AND u.rolname = '{ro}';"
    );
    assert_eq!(psql(&private.url("postgres"), &roles), "0\n", "not there before");
    for round in 0..2 {
        let report = restore_with_globals(&plan, "app", &env, &tmp, &key);
        let r = &report["restore"];
        let skipped: Vec<&str> = r["globals_skipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(skipped.contains(&"postgres"), "{r}");
        assert_eq!(skipped.contains(&ro.as_str()), round == 1, "round {round}: {r}");
        let got = psql(&private.url("postgres"), &roles);
        assert_eq!(got, format!("{ro}|t|7\n{rw}|f|-1\n1\n"), "round {round}");
        let grants =
            format!("SELECT has_table_privilege('{ro}', 't', 'SELECT'), has_table_privilege('{rw}', 't', 'INSERT');");
        assert_eq!(psql(&private.url("target"), &grants).trim(), "t|t");
        no_leftovers(&tmp);
    }
}

/// Issue 18: SIGTERM while `pg_dump -Fd -j 4` runs (held deterministically: another session
/// holds a table locked, so pg_dump waits for it) stops ferry with exit 130; pg_dump is gone
/// from the server, the temporary folder that held the dump is removed, and the store is empty.
#[test]
fn sigterm_during_parallel_pg_dump_removes_its_folder() {
    use std::io::Write;
    if !pg_ready("sigterm_during_parallel_pg_dump_removes_its_folder") {
        return;
    }
    let pid = std::process::id();
    let dbs = vec![format!("ferry_pjk_src_{pid}")];
    let _dbs = scratch(&dbs);
    let src = with_db(&pg_base(), &dbs[0]);
    psql(&src, SEED);
    // A session that holds `orders` locked until this test ends (its stdin closed or killed).
    let mut locker = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &src])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut sql = locker.stdin.take().unwrap();
    writeln!(
        sql,
        "BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE; SELECT 'locked';"
    )
    .unwrap();
    sql.flush().unwrap();
    let locker = std::sync::Arc::new(std::sync::Mutex::new(locker));
    let l2 = locker.clone();
    let release = move || {
        let mut l = l2.lock().unwrap();
        let _ = l.kill();
        let _ = l.wait();
    };
    let _locker = Cleanup(Box::new(release.clone()));
    let (dir, tmp, plan) = local_plan("name = \"big\"\nurl-env = \"PJK_SRC\"\njobs = 4\n");
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let mut ferry = Command::new(common::oracle::ferry_bin())
        .args(["run", "--json"])
        .arg(&plan)
        .env("TMPDIR", &tmp)
        .env("PJK_SRC", &src)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // pg_dump's own lock request waits on the held lock (the sums' SELECT may wait too).
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%';",
        dbs[0]
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while psql(&pg_base(), &waiting).trim() == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "pg_dump never waited for the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let folders: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(folders.iter().any(|f| f.starts_with("ferry-pgdir-")), "{folders:?}");
    assert_eq!(
        Command::new("kill")
            .args(["-TERM", &ferry.id().to_string()])
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    let status = ferry.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(ferry.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    no_leftovers(&tmp);
    assert_eq!(common::file_names(&dir.path().join("store")), Vec::<String>::new());
    // No pg_dump (leader or worker) of this database is left running.
    let pg_dumps = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.starts_with("pg_dump") && c.contains(&dbs[0]))
            .count()
    };
    assert_eq!(pg_dumps(), 0, "pg_dump outlived ferry");
    // A backend waiting for a lock notices its client gone once the lock is released: then
    // none of ferry's sessions may be left.
    release();
    drop(locker);
    let dumping = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'ferry';",
        dbs[0]
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while psql(&pg_base(), &dumping).trim() != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "ferry's sessions (pg_dump) outlived it"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Issue 18: `globals = true` on MariaDB stores the server's accounts and grants beside the dump
/// (no password hash) and `restore` recreates them before the database. A second MariaDB server
/// costs too much here, so the accounts are restored into the same server after being dropped
/// (into another database); a second restore keeps the accounts that now exist, and says so.
#[test]
fn mariadb_users_and_grants_restored_after_being_dropped() {
    use common::db::{mariadb_try, mysql_base};
    let base = mysql_base();
    let test = "mariadb_users_and_grants_restored_after_being_dropped";
    if !common::servers_available(test) || !available(test, "MariaDB", mariadb_try(&base, "SELECT 1;").is_ok()) {
        return;
    }
    let maria = |url: &str, sql: &str| mariadb_try(url, sql).unwrap_or_else(|e| panic!("mariadb: {e}"));
    let pid = std::process::id();
    let (s, d, user) = (
        format!("ferry_pju_src_{pid}"),
        format!("ferry_pju_dst_{pid}"),
        format!("ferry_u_{pid}"),
    );
    let drop_all = format!(
        "DROP DATABASE IF EXISTS {s}; DROP DATABASE IF EXISTS {d}; DROP USER IF EXISTS '{user}'@'%', '{user}'@'localhost';"
    );
    let (admin, sql) = (base.clone(), drop_all.clone());
    let _cleanup = Cleanup(Box::new(move || {
        let _ = mariadb_try(&admin, &sql);
    }));
    maria(&base, &format!("{drop_all} CREATE DATABASE {s}; CREATE DATABASE {d};"));
    let (src, dst) = (with_db(&base, &s), with_db(&base, &d));
    maria(
        &src,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b');
             CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-SECRET-5678'; GRANT SELECT, INSERT ON `{s}`.* TO '{user}'@'%';
             CREATE USER '{user}'@'localhost' ACCOUNT LOCK; GRANT SELECT ON `{s}`.`t` TO '{user}'@'localhost';"
        ),
    );
    let grants = format!(
        "SHOW GRANTS FOR '{user}'@'%'; SHOW GRANTS FOR '{user}'@'localhost'; SHOW CREATE USER '{user}'@'localhost';"
    );
    let want = maria(&base, &grants);
    let (dir, tmp, plan) =
        local_plan("name = \"my\"\nurl-env = \"PJU_SRC\"\nrestore-to-env = \"PJU_DST\"\nglobals = true\n");
    let plan_text = std::fs::read_to_string(&plan)
        .unwrap()
        .replace("engine = \"postgres\"", "engine = \"mysql\"");
    std::fs::write(&plan, plan_text).unwrap();
    let env = vec![("PJU_SRC", src.clone()), ("PJU_DST", dst.clone())];
    let out = ferry(&["run", "--json"], &plan, &env, &tmp);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let key = out.json()["databases"][0]["key"].as_str().unwrap().to_string();
    let stored = std::fs::read_to_string(dir.path().join("store").join(format!("{key}.globals.sql"))).unwrap();
    assert!(
        stored.contains(&format!("CREATE USER IF NOT EXISTS `{user}`@`%`;")),
        "{stored}"
    );
    assert!(
        stored.contains(&format!("GRANT SELECT, INSERT ON `{s}`.* TO `{user}`@`%`;")),
        "{stored}"
    );
    assert!(
        !stored.contains("IDENTIFIED") && !stored.contains("PASSWORD '"),
        "no password hash: {stored}"
    );
    assert!(
        !stored.contains("`root`@"),
        "the server's own accounts are not dumped: {stored}"
    );

    maria(&base, &format!("DROP USER '{user}'@'%', '{user}'@'localhost';"));
    assert!(mariadb_try(&base, &grants).is_err(), "the accounts are gone");
    for round in 0..2 {
        let report = restore_with_globals(&plan, "my", &env, &tmp, &key);
        let r = &report["restore"];
        let skipped = r["globals_skipped"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            skipped.contains(&serde_json::json!(format!("'{user}'@'%'"))),
            round == 1,
            "round {round}: {r}"
        );
        // The grants as the server shows them, the password aside (not stored, so not restored).
        let got = maria(&base, &grants);
        let no_pw = |t: &str| {
            t.lines()
                .map(|l| l.split(" IDENTIFIED BY PASSWORD").next().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(no_pw(&got), no_pw(&want), "round {round}");
        assert!(got.contains("ACCOUNT LOCK"), "{got}");
    }
}

/// Issue 18: `jobs = 4` into a provider that encrypts: every stored file (and the record) is an
/// age file holding none of the table's text, read straight from SeaweedFS; a restore with
/// another identity exits 2 before the target is touched; with the right one every table is
/// back (`psql`'s counts and checksums) and verified.
#[test]
fn parallel_dump_to_an_encrypting_provider_is_ciphertext_file_by_file() {
    use age::secrecy::ExposeSecret;
    if !pg_ready("parallel_dump_to_an_encrypting_provider") {
        return;
    }
    let pid = std::process::id();
    let dbs: Vec<String> = ["src", "dst"].iter().map(|s| format!("ferry_pje_{s}_{pid}")).collect();
    let _dbs = scratch(&dbs);
    let base = pg_base();
    let (src, dst) = (with_db(&base, &dbs[0]), with_db(&base, &dbs[1]));
    psql(&src, SEED);
    psql(&src, "UPDATE other.settings SET v = 'PLAINTEXT-MARKER-' || k;");
    let (prefix, s3, _objects) = seaweed_scratch("pje");
    let id = age::x25519::Identity::generate();
    let other = age::x25519::Identity::generate();
    let work = tempfile::tempdir().unwrap();
    let keys = "encrypt-recipients-env = \"PJE_RCPT\"\ndecrypt-identity-env = \"PJE_ID\"\n";
    let tmp = work.path().join("tmp");
    let plan = work.path().join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "{}\n[[databases]]\nname = \"enc\"\nengine = \"postgres\"\nurl-env = \"PJE_SRC\"\nrestore-to-env = \"PJE_DST\"\n\
             to = \"vault:{prefix}/{{name}}/{{timestamp}}.dump\"\njobs = 4\n",
            seaweed_provider("vault", "PJE", keys)
        ),
    )
    .unwrap();
    let env_with = |identity: &age::x25519::Identity| {
        vec![
            ("PJE_SRC", src.clone()),
            ("PJE_DST", dst.clone()),
            ("PJE_KEY", common::env("FERRY_TEST_SEAWEED_KEY")),
            ("PJE_SECRET", common::env("FERRY_TEST_SEAWEED_SECRET")),
            ("PJE_RCPT", id.to_public().to_string()),
            ("PJE_ID", identity.to_string().expose_secret().to_string()),
        ]
    };
    let out = ferry(&["run", "--json"], &plan, &env_with(&id), &tmp);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let keys = common::wire::s3_list(&s3, "ferry-a", &prefix).unwrap();
    assert!(keys.len() >= 9, "a record and at least eight files: {keys:?}");
    for k in &keys {
        let bytes = common::wire::s3_get(&s3, "ferry-a", k).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "{k} is not age");
        for needle in [&b"PLAINTEXT-MARKER"[..], b"settings", b"PGDMP"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{k} holds plaintext");
        }
    }
    let empty = "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'other');";
    let out = ferry(
        &["restore", "--json", "--database", "enc"],
        &plan,
        &env_with(&other),
        &tmp,
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("encrypted to other recipients"), "{}", out.stderr);
    assert_eq!(psql(&dst, empty).trim(), "0", "the target stays empty");
    no_leftovers(&tmp);
    let out = ferry(&["restore", "--json", "--database", "enc"], &plan, &env_with(&id), &tmp);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.json()["restore"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["matches"] == true));
    assert_eq!(oracle(&dst), oracle(&src));
    no_leftovers(&tmp);
}
