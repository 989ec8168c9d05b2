//! Issue 18, "one pass for an evacuation": `ferry run --restore` streams each database job's
//! dump into the store and into its restore target at once, then verifies the target table by
//! table. Against the real PostgreSQL and MariaDB, and SQLite files.
//!
//! The oracles are not ferry's code: tables are compared with `psql`'s and `mariadb`'s own
//! output on both sides (an md5 of every row, or the rows themselves) and with rusqlite; the
//! stored dump is read from the local store's folder, its SHA-256 checked against the record
//! and its bytes decompressed with zstd and read by `pg_restore --list` / searched for the SQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

mod common;
use common::db::{
    available, mariadb_try, mysql_base, pg_base, pg_table_sums, psql, psql_try, with_db, Cleanup, KillPgDump,
};
use common::oracle::sha256;
use common::sqlite::{make_sqlite, sqlite_rows};
use common::Out;

use ferry::dump::{self, MoveOptions};
use ferry::plan::Plan;
use ferry::store::Store;

const PG_SEED: &str = "
CREATE SCHEMA other;
CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric(20,4), at timestamptz, photo bytea);
INSERT INTO orders SELECT g, 'customer-' || (g % 977) || ' Grüße ✓', g * 1.2345,
  '2026-01-01'::timestamptz + g * interval '1 minute', decode(md5(g::text), 'hex') FROM generate_series(1, 30000) g;
CREATE TABLE log (msg text, level int);
INSERT INTO log SELECT 'dup ' || (g % 50), g % 3 FROM generate_series(1, 20000) g;
CREATE TABLE other.blobs (id int PRIMARY KEY, b bytea NOT NULL);
INSERT INTO other.blobs SELECT g, decode(string_agg(md5(random()::text || g::text || i::text), ''), 'hex')
  FROM generate_series(1, 6000) g, generate_series(1, 64) i GROUP BY g;
CREATE TABLE empty_one (id int PRIMARY KEY);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 1000;
";
const PG_TABLES: [&str; 4] = ["public.orders", "public.log", "other.blobs", "public.empty_one"];

const MY_SEED: &str = "
CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(64), total DECIMAL(20,4), photo VARBINARY(16));
INSERT INTO orders SELECT seq, CONCAT('customer-', seq % 977, ' Grüße ✓'), seq * 1.2345, UNHEX(MD5(seq))
  FROM seq_1_to_20000;
CREATE TABLE log (msg TEXT, level INT);
INSERT INTO log SELECT CONCAT('dup ', seq % 50), seq % 3 FROM seq_1_to_5000;
";
const MY_TABLES: [&str; 2] = ["orders", "log"];

/// Each PostgreSQL table's row count and checksum, by `psql`.
fn pg_oracle(url: &str) -> BTreeMap<String, String> {
    pg_table_sums(url, &PG_TABLES)
}

/// Each MariaDB table's rows as the `mariadb` client prints them, in a fixed order.
fn my_oracle(url: &str) -> BTreeMap<String, String> {
    MY_TABLES
        .iter()
        .map(|t| {
            let rows = mariadb_try(url, &format!("SELECT * FROM {t} ORDER BY 1, 2;")).unwrap();
            (
                t.to_string(),
                format!("{} rows, sha256 {}", rows.lines().count(), sha256(rows.as_bytes())),
            )
        })
        .collect()
}

/// Scratch databases: PostgreSQL's `pg` and MariaDB's `my` names, dropped when this is dropped.
fn scratch(pg: &[&str], my: &[&str]) -> Cleanup {
    let (pbase, mbase) = (pg_base(), mysql_base());
    let pg_drop: String = pg
        .iter()
        .map(|n| format!("DROP DATABASE IF EXISTS {n} WITH (FORCE);"))
        .collect();
    let my_drop: String = my.iter().map(|n| format!("DROP DATABASE IF EXISTS {n};")).collect();
    if !pg.is_empty() {
        psql(&pbase, &pg_drop);
        psql(
            &pbase,
            &pg.iter().map(|n| format!("CREATE DATABASE {n};")).collect::<String>(),
        );
    }
    if !my.is_empty() {
        mariadb_try(&mbase, &my_drop).unwrap();
        mariadb_try(
            &mbase,
            &my.iter().map(|n| format!("CREATE DATABASE {n};")).collect::<String>(),
        )
        .unwrap();
    }
    Cleanup(Box::new(move || {
        if !pg_drop.is_empty() {
            let _ = psql_try(&pbase, &pg_drop);
        }
        if !my_drop.is_empty() {
            let _ = mariadb_try(&mbase, &my_drop);
        }
    }))
}

fn ready(test: &str, mariadb: bool) -> bool {
    available(test, "PostgreSQL", psql_try(&pg_base(), "SELECT 1;").is_ok())
        && (!mariadb || available(test, "MariaDB", mariadb_try(&mysql_base(), "SELECT 1;").is_ok()))
}

/// `ferry ARGS PLAN --json` with `env` added.
fn ferry(args: &[&str], plan: &Path, env: &[(&str, String)]) -> Out {
    let mut cmd = Command::new(common::oracle::ferry_bin());
    cmd.args(args).arg(plan).arg("--json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Out::of(args, &mut cmd)
}

/// Every file under `root`, relative, sorted.
fn stored(root: &Path) -> Vec<String> {
    common::file_names(root)
}

/// The dump `key` under `root`: its SHA-256 matches its record, and its bytes decompressed.
fn stored_dump(root: &Path, key: &str) -> Vec<u8> {
    let bytes = std::fs::read(root.join(key)).unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(format!("{key}.ferry.json"))).unwrap()).unwrap();
    assert_eq!(
        record["sha256"],
        sha256(&bytes),
        "the record describes the stored bytes"
    );
    zstd::decode_all(&bytes[..]).unwrap()
}

fn restore_of<'a>(doc: &'a serde_json::Value, job: &str) -> &'a serde_json::Value {
    doc["restores"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["job"] == job))
        .unwrap_or_else(|| panic!("no restore of `{job}`: {doc:#}"))
}

/// The restore report says every table matched the dump's record, verified in the same run.
fn assert_restored(doc: &serde_json::Value, job: &str, tables: usize) {
    let r = restore_of(doc, job);
    assert!(r["error"].is_null(), "{r:#}");
    assert_eq!(r["verified_against"], serde_json::json!(["dump-record"]), "{r:#}");
    let checked = r["tables"].as_array().unwrap();
    assert_eq!(checked.len(), tables, "{r:#}");
    assert!(checked.iter().all(|t| t["matches"] == true), "{r:#}");
    assert!(r["verify_seconds"].as_f64().is_some(), "{r:#}");
    let dump = doc["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["job"] == job)
        .unwrap();
    assert_eq!(
        r["key"], dump["key"],
        "the restore is of the dump just written: {doc:#}"
    );
}

#[test]
fn postgres_mariadb_and_sqlite_move_in_one_pass_with_the_restore_guards() {
    let test = "postgres_mariadb_and_sqlite_move_in_one_pass_with_the_restore_guards";
    if !ready(test, true) {
        return;
    }
    let pid = std::process::id();
    let (ps, pd) = (format!("ferry_move_src_{pid}"), format!("ferry_move_dst_{pid}"));
    let (ms, md) = (format!("ferry_move_src_{pid}"), format!("ferry_move_dst_{pid}"));
    let _dbs = scratch(&[&ps, &pd], &[&ms, &md]);
    let (psrc, pdst) = (with_db(&pg_base(), &ps), with_db(&pg_base(), &pd));
    let (msrc, mdst) = (with_db(&mysql_base(), &ms), with_db(&mysql_base(), &md));
    psql(&psrc, PG_SEED);
    mariadb_try(&msrc, MY_SEED).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (root, lite_src, lite_dst) = (
        dir.path().join("store"),
        dir.path().join("app.db"),
        dir.path().join("new/app.db"),
    );
    let lite_rows: Vec<(i64, String)> = (1..=3000).map(|i| (i, format!("row {i} ✓"))).collect();
    make_sqlite(
        &lite_src,
        &lite_rows.iter().map(|(i, v)| (*i, v.as_str())).collect::<Vec<_>>(),
    );
    let plan = dir.path().join("move.toml");
    std::fs::write(
        &plan,
        r#"[providers.disk]
type = "local"
root = "store"

[[databases]]
name = "pg"
engine = "postgres"
url-env = "MOVE_PG_SRC"
restore-to-env = "MOVE_PG_DST"
to = "disk:db/{name}/{timestamp}.dump"

[[databases]]
name = "my"
engine = "mysql"
url-env = "MOVE_MY_SRC"
restore-to-env = "MOVE_MY_DST"
to = "disk:db/{name}/{timestamp}.sql"

[[databases]]
name = "lite"
engine = "sqlite"
path = "app.db"
restore-to-path = "new/app.db"
to = "disk:db/{name}/{timestamp}.db"
"#,
    )
    .unwrap();
    let env = [
        ("MOVE_PG_SRC", psrc.clone()),
        ("MOVE_PG_DST", pdst.clone()),
        ("MOVE_MY_SRC", msrc.clone()),
        ("MOVE_MY_DST", mdst.clone()),
    ];

    // (1) One pass: every target equals its source, by the servers' own reading.
    let out = ferry(&["run", "--restore"], &plan, &env);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let doc = out.json();
    assert_restored(&doc, "pg", PG_TABLES.len());
    assert_restored(&doc, "my", MY_TABLES.len());
    assert_restored(&doc, "lite", 1);
    assert_eq!(pg_oracle(&pdst), pg_oracle(&psrc));
    assert_eq!(my_oracle(&mdst), my_oracle(&msrc));
    assert_eq!(sqlite_rows(&lite_dst), lite_rows);
    assert_eq!(
        psql(&pdst, "SELECT count(*) FROM big_orders;").trim(),
        psql(&psrc, "SELECT count(*) FROM big_orders;").trim(),
        "views come along"
    );

    // The dumps stored in the same pass are whole: their records' SHA-256, and readable.
    let key = |job: &str| {
        let d = doc["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["job"] == job)
            .unwrap();
        d["key"].as_str().unwrap().to_string()
    };
    let pg_dump = stored_dump(&root, &key("pg"));
    assert!(pg_dump.starts_with(b"PGDMP"), "a pg_dump custom archive");
    let archive = dir.path().join("pg.dump");
    std::fs::write(&archive, &pg_dump).unwrap();
    let list = Command::new("pg_restore").arg("--list").arg(&archive).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("TABLE DATA public orders") && list.contains("TABLE DATA other blobs"),
        "{list}"
    );
    let my_dump = String::from_utf8(stored_dump(&root, &key("my"))).unwrap();
    assert!(my_dump.contains("INSERT INTO `orders`") && my_dump.contains("INSERT INTO `log`"));
    let lite_dump = stored_dump(&root, &key("lite"));
    assert!(lite_dump.starts_with(b"SQLite format 3\0"));
    let files = stored(&root);
    assert_eq!(files.len(), 6, "three dumps and their records: {files:?}");

    // (2) The targets now have tables: without --replace, nothing is dumped or written (exit 2).
    psql(&pdst, "UPDATE orders SET customer = 'tampered' WHERE id = 7;");
    let out = ferry(&["run", "--restore"], &plan, &env);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("not dumped, the restore was refused"),
        "{}",
        out.stderr
    );
    assert_eq!(stored(&root), files, "a refused move writes nothing to the store");
    assert_eq!(
        psql(&pdst, "SELECT customer FROM orders WHERE id = 7;").trim(),
        "tampered"
    );

    // (3) --replace: the targets are replaced and equal their sources again.
    let out = ferry(&["run", "--restore", "--replace"], &plan, &env);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let doc = out.json();
    assert_restored(&doc, "pg", PG_TABLES.len());
    assert_eq!(pg_oracle(&pdst), pg_oracle(&psrc));
    assert_eq!(my_oracle(&mdst), my_oracle(&msrc));
    assert_eq!(stored(&root).len(), 12, "a second dump of each, with its record");

    // (4) A restore target that is the source is refused before anything is dumped.
    let same = [
        ("MOVE_PG_DST", psrc.clone()),
        ("MOVE_MY_DST", mdst.clone()),
        env[0].clone(),
        env[2].clone(),
    ];
    let out = ferry(&["run", "--restore", "--replace", "--job", "pg"], &plan, &same);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert_eq!(stored(&root).len(), 12, "nothing dumped");
    assert_eq!(pg_oracle(&psrc), pg_oracle(&pdst), "the source is untouched");
}

/// A plan with a local store under `dir` and one PostgreSQL job moving `src_var` to `dst_var`.
fn pg_job(dir: &Path, src_var: &str, dst_var: &str) -> (ferry::plan::DatabaseJob, Store) {
    let text = format!(
        "[providers.disk]\ntype = \"local\"\nroot = \"store\"\n\n[[databases]]\nname = \"pg\"\nengine = \"postgres\"\n\
         url-env = \"{src_var}\"\nrestore-to-env = \"{dst_var}\"\nto = \"disk:db/{{name}}/{{timestamp}}.dump\"\n"
    );
    let plan = Plan::from_str(&dir.join("plan.toml"), &text).unwrap();
    let store = Store::open(&plan.providers["disk"], true).unwrap();
    (plan.databases[0].clone(), store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_that_fails_half_way_restores_nothing_and_a_failed_restore_keeps_the_dump() {
    let test = "a_dump_that_fails_half_way_restores_nothing_and_a_failed_restore_keeps_the_dump";
    if !ready(test, false) {
        return;
    }
    let pid = std::process::id();
    let (ps, pd) = (format!("ferry_movefail_src_{pid}"), format!("ferry_movefail_dst_{pid}"));
    let _dbs = scratch(&[&ps, &pd], &[]);
    let (psrc, pdst) = (with_db(&pg_base(), &ps), with_db(&pg_base(), &pd));
    psql(&psrc, PG_SEED);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (src_var, dst_var) = (format!("FERRY_MOVEFAIL_SRC_{pid}"), format!("FERRY_MOVEFAIL_DST_{pid}"));
    let (job, store) = pg_job(dir.path(), &src_var, &dst_var);
    std::env::set_var(&dst_var, &pdst);
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'other');";

    // (1) pg_dump killed half-way: the restore is stopped inside its transaction, the target
    // has no table, and no dump is stored.
    let marker = format!("ferry_movekill_{pid}");
    std::env::set_var(&src_var, format!("{psrc}?application_name={marker}"));
    let killer = KillPgDump {
        marker,
        after: 4 << 20,
        seen: AtomicU64::new(0),
        killed: AtomicBool::new(false),
    };
    let never = tokio_util::sync::CancellationToken::new();
    let (dumped, restored) = dump::move_until(&job, &store, &killer, &never, &MoveOptions::default())
        .await
        .unwrap();
    assert!(
        killer.killed.load(Ordering::Relaxed),
        "the dump ended before it could be killed"
    );
    let dumped = dumped.unwrap();
    assert!(
        dumped.key.is_none() && dumped.error.as_deref().unwrap().contains("killed"),
        "{dumped:#?}"
    );
    let err = restored.error.clone().unwrap();
    assert!(
        err.contains("not restored") && err.contains("nothing was restored"),
        "{err}"
    );
    assert_eq!(psql(&pdst, tables).trim(), "0", "the target has no table");
    assert!(stored(&root).is_empty(), "no dump: {:?}", stored(&root));

    // (2) A restore that fails (the target refuses writes): the dump is complete and recorded,
    // and the restore's error names the tool and why.
    std::env::set_var(&src_var, &psrc);
    psql(
        &pg_base(),
        &format!("ALTER DATABASE {pd} SET default_transaction_read_only = on;"),
    );
    let (dumped, restored) = dump::move_until(&job, &store, &killer, &never, &MoveOptions::default())
        .await
        .unwrap();
    let dumped = dumped.unwrap();
    assert!(dumped.ok(), "{dumped:#?}");
    let key = dumped.key.clone().unwrap();
    assert!(stored_dump(&root, &key).starts_with(b"PGDMP"));
    let err = restored.error.clone().unwrap();
    assert!(err.contains("pg_restore") && err.contains("read-only"), "{err}");
    assert!(!restored.ok() && !restored.refused);
    psql(
        &pg_base(),
        &format!("ALTER DATABASE {pd} RESET default_transaction_read_only;"),
    );
    assert_eq!(psql(&pdst, tables).trim(), "0", "the failed restore left no table");

    // (3) That dump restores later, the usual way, and matches the source.
    let later = dump::restore(&job, &store, &dump::RestoreOptions::default()).await;
    assert!(later.ok(), "{later:#?}");
    assert_eq!(later.key, key);
    assert_eq!(pg_oracle(&pdst), pg_oracle(&psrc));
}
