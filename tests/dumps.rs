//! Database dumps (issue 4) against the real servers: PostgreSQL on 127.0.0.1:5432 and MariaDB on
//! 127.0.0.1:3306 (override with `FERRY_TEST_PG_URL` / `FERRY_TEST_MYSQL_URL`), and SQLite files.
//!
//! Each engine's test builds a scratch source database with awkward data (NULLs, unicode,
//! binary columns, JSON, long numerics, timestamps with zones, a table without a primary key,
//! views, triggers) and enough random bytes that the compressed dump spans several parts, then:
//! dumps it, restores it into a second scratch database and compares every table; changes one
//! row and expects exactly that table to be reported; makes the dump tool fail half-way and
//! expects no object at the destination and the tool's stderr in the error; and checks that a
//! password in the URL appears in no output. Scratch databases are dropped at the end, also when
//! a test fails. If a server is unreachable the test prints SKIPPED, or fails when `CI` is set.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

mod common;
use common::db::{available, mariadb_try, mysql_base, pg_base, psql, psql_try, with_db, Cleanup, KillPgDump};

use ferry::checksum::StreamHasher;
use ferry::dump::{self, DumpRecord, DumpReport, RestoreOptions, RestoreReport, DUMP_PART_SIZE, RECORD_SUFFIX};
use ferry::plan::{DatabaseJob, Plan};
use ferry::progress::{NoProgress, Progress};
use ferry::store::Store;

/// Rows of 1 KiB random bytes in each engine's big table: about 24 MiB that zstd cannot shrink,
/// so every dump spans several parts of `DUMP_PART_SIZE`.
const BIG_ROWS: u64 = 24_000;

// ---------------------------------------------------------------------------------------------
// Harness.

fn mariadb(url: &str, sql: &str) -> String {
    mariadb_try(url, sql).unwrap_or_else(|e| panic!("mariadb failed: {e}"))
}

/// A plan with a local destination under `dir` and one database job.
fn plan(dir: &Path, job_toml: &str) -> (DatabaseJob, Store) {
    let text = format!(
        r#"
[providers.dst]
type = "local"
root = "store"

[[databases]]
{job_toml}
"#
    );
    let plan = Plan::from_str(&dir.join("plan.toml"), &text).unwrap();
    let store = Store::open(&plan.providers["dst"], true).unwrap();
    (plan.databases[0].clone(), store)
}

/// A restore of `key` over a target that already holds a restored copy (issue 13: a non-empty
/// target is replaced only when asked).
fn replacing(key: Option<&String>) -> RestoreOptions<'_> {
    RestoreOptions {
        key: key.map(String::as_str),
        replace: true,
        ..Default::default()
    }
}

/// Every file under a local store's root, relative, sorted: staged multipart files included, so
/// an upload that was not cleaned up shows here.
fn files(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn sha256_of(path: &Path) -> String {
    let mut h = StreamHasher::new(false);
    h.update(&std::fs::read(path).unwrap());
    h.finish().sha256
}

/// A dump must be complete, multi-part and described by its record.
fn assert_dumped(r: &DumpReport, root: &Path) -> String {
    assert!(r.ok(), "dump failed: {r:#?}");
    let key = r.key.clone().unwrap();
    assert!(
        r.bytes_stored > 2 * DUMP_PART_SIZE,
        "the dump should span several parts: {} bytes stored",
        r.bytes_stored
    );
    let object = root.join(&key);
    assert_eq!(std::fs::metadata(&object).unwrap().len(), r.bytes_stored);
    assert_eq!(
        Some(sha256_of(&object)),
        r.sha256,
        "reported SHA-256 is the stored bytes'"
    );
    let record: DumpRecord =
        serde_json::from_slice(&std::fs::read(root.join(format!("{key}{RECORD_SUFFIX}"))).unwrap()).unwrap();
    assert_eq!(
        (record.key.as_str(), record.bytes_stored, Some(&record.sha256)),
        (key.as_str(), r.bytes_stored, r.sha256.as_ref())
    );
    key
}

/// Every table present on both sides with equal counts and checksums; returns rows per table.
fn assert_all_match(r: &RestoreReport, tables: &[(&str, u64)]) {
    assert!(r.ok(), "restore or verification failed: {r:#?}");
    for (name, rows) in tables {
        let t = r
            .tables
            .iter()
            .find(|t| t.table == *name)
            .unwrap_or_else(|| panic!("table `{name}` not checked: {r:#?}"));
        assert!(t.matches, "{t:#?}");
        assert_eq!(t.source_rows, Some(*rows), "{t:#?}");
        assert_eq!(t.restored_rows, Some(*rows), "{t:#?}");
        assert!(t.source_checksum.is_some() && t.source_checksum == t.restored_checksum);
    }
}

/// Exactly `table` differs; every other table still matches.
fn assert_only_mismatch(r: &RestoreReport, table: &str) {
    assert!(r.error.is_none(), "{r:#?}");
    assert!(!r.ok(), "a changed row must fail verification: {r:#?}");
    let bad: Vec<&str> = r
        .tables
        .iter()
        .filter(|t| !t.matches)
        .map(|t| t.table.as_str())
        .collect();
    assert_eq!(bad, vec![table], "{r:#?}");
    let t = r.tables.iter().find(|t| t.table == table).unwrap();
    assert_eq!(t.source_rows, t.restored_rows, "same count, different content");
    assert_ne!(t.source_checksum, t.restored_checksum);
}

/// Counts the raw bytes a dump reports.
#[derive(Default)]
struct Counting(AtomicU64);

impl Progress for Counting {
    fn bytes(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL.

const PG_SCHEMA: &str = r#"
CREATE SCHEMA other;
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric(40,20), tags jsonb,
                    created timestamptz, photo bytea);
INSERT INTO items (name, price, tags, created, photo) VALUES
  ('Grüße aus Köln — ✓ 東京', 12345678901234567890.12345678901234567890,
   '{"a": [1, 2, {"b": null}], "ü": "東京"}', '2024-02-29 23:59:59.123456+05:30', '\x00ff10'),
  (E'emoji 🚀 tab\t newline\n quote '' backslash \\', NULL, NULL, NULL, NULL),
  ('', 0, '[]', '1970-01-01 00:00:00+00', ''::bytea);
INSERT INTO items (name, price, tags, created, photo)
  SELECT 'item ' || g, g / 7.0, jsonb_build_object('g', g), timestamptz '2020-01-01 00:00+00' + g * interval '1 minute',
         decode(md5(g::text), 'hex')
  FROM generate_series(1, 2000) g;
CREATE TABLE other.events (at timestamptz, kind text, note text);
INSERT INTO other.events
  SELECT timestamptz '2024-01-01 00:00+00' - g * interval '1 hour', CASE WHEN g % 3 = 0 THEN NULL ELSE 'kind' || (g % 5) END,
         repeat('ж', g % 17)
  FROM generate_series(1, 3000) g;
INSERT INTO other.events VALUES ('2024-01-01', 'dup', 'same'), ('2024-01-01', 'dup', 'same');
CREATE TABLE big (id int PRIMARY KEY, blob bytea NOT NULL, label text);
INSERT INTO big
  SELECT g, decode(string_agg(md5(random()::text || g::text || i::text), ''), 'hex'), 'row ' || g
  FROM generate_series(1, 24000) g, generate_series(1, 64) i GROUP BY g;
CREATE VIEW item_names AS SELECT id, name FROM items;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN NEW.created := coalesce(NEW.created, now()); RETURN NEW; END $$;
CREATE TRIGGER items_touch BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION touch();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dump_restore_verify_and_failures() {
    let base = pg_base();
    if !available(
        "postgres_dump_restore_verify_and_failures",
        "PostgreSQL",
        psql_try(&base, "SELECT 1;").is_ok(),
    ) {
        return;
    }
    let pid = std::process::id();
    let (src_db, dst_db) = (format!("ferry_dump_src_{pid}"), format!("ferry_dump_dst_{pid}"));
    let admin = base.clone();
    let (s, d) = (src_db.clone(), dst_db.clone());
    let _cleanup = Cleanup(Box::new(move || {
        let _ = psql_try(
            &admin,
            &format!("DROP DATABASE IF EXISTS {s} WITH (FORCE); DROP DATABASE IF EXISTS {d} WITH (FORCE);"),
        );
    }));
    psql(
        &base,
        &format!("DROP DATABASE IF EXISTS {src_db} WITH (FORCE); DROP DATABASE IF EXISTS {dst_db} WITH (FORCE);"),
    );
    psql(&base, &format!("CREATE DATABASE {src_db}; CREATE DATABASE {dst_db};"));
    let src_url = with_db(&base, &src_db);
    let dst_url = with_db(&base, &dst_db);
    psql(&src_url, PG_SCHEMA);

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (src_var, dst_var) = (
        format!("FERRY_DUMPTEST_PG_SRC_{pid}"),
        format!("FERRY_DUMPTEST_PG_DST_{pid}"),
    );
    std::env::set_var(&src_var, &src_url);
    std::env::set_var(&dst_var, &dst_url);
    let (job, store) = plan(
        dir.path(),
        &format!(
            r#"name = "main"
engine = "postgres"
url-env = "{src_var}"
restore-to-env = "{dst_var}"
to = "dst:db/{{name}}/{{timestamp}}.dump""#
        ),
    );

    // (0) The estimate for `ferry plan` sees the data.
    let size = dump::estimate_size(&job).await.unwrap();
    assert!(size > BIG_ROWS * 1024, "pg_database_size: {size}");

    // (1) Dump, restore, compare every table.
    let progress = Counting::default();
    let r = dump::dump(&job, &store, &progress).await;
    let key = assert_dumped(&r, &root);
    assert!(key.starts_with("db/main/") && key.ends_with(".dump"), "{key}");
    assert_eq!(
        progress.0.load(Ordering::Relaxed),
        r.bytes_raw,
        "progress saw every raw byte"
    );
    let restored = dump::restore(&job, &store, &RestoreOptions::default()).await;
    assert_eq!(restored.key, key, "the newest dump is restored by default");
    assert_all_match(
        &restored,
        &[("public.items", 2003), ("other.events", 3002), ("public.big", BIG_ROWS)],
    );
    assert_eq!(
        psql(&dst_url, "SELECT count(*) FROM item_names;").trim(),
        "2003",
        "views come back"
    );
    assert_eq!(
        psql(
            &dst_url,
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'items_touch';"
        )
        .trim(),
        "1",
        "triggers come back"
    );
    assert_eq!(
        psql(&dst_url, "SELECT name FROM items WHERE id = 1;").trim(),
        "Grüße aus Köln — ✓ 東京"
    );

    // (5) One changed row in the restore target is reported on that table only.
    psql(&dst_url, "UPDATE other.events SET note = 'tampered' WHERE ctid = (SELECT ctid FROM other.events WHERE kind = 'dup' LIMIT 1);");
    assert_only_mismatch(&dump::verify_restored(&job).await, "other.events");

    // (2a) pg_dump killed half-way: the multipart upload is aborted, nothing new is stored.
    let before = files(&root);
    assert_eq!(before.len(), 2, "one dump and its record: {before:?}");
    let marker = format!("ferry_kill_{pid}");
    std::env::set_var(&src_var, format!("{src_url}?application_name={marker}"));
    let killer = KillPgDump {
        marker,
        after: 3 * DUMP_PART_SIZE,
        seen: AtomicU64::new(0),
        killed: AtomicBool::new(false),
    };
    let r = dump::dump(&job, &store, &killer).await;
    assert!(
        killer.killed.load(Ordering::Relaxed),
        "the dump finished before it could be killed"
    );
    let err = r.error.clone().expect("a killed dump fails");
    assert!(r.key.is_none() && r.sha256.is_none(), "{r:#?}");
    assert!(err.contains("pg_dump") && err.contains("killed"), "{err}");
    assert_eq!(files(&root), before, "a killed dump leaves no object, part or record");

    // (2b) pg_dump fails: its stderr is in the error; (3) the URL's password is nowhere.
    let missing = format!(
        "postgres://postgres:SeCrEt123@{}/ferry_dump_missing_{pid}",
        base_authority(&base)
    );
    std::env::set_var(&src_var, missing);
    let r = dump::dump(&job, &store, &NoProgress).await;
    let err = r.error.clone().expect("a dump of a missing database fails");
    assert!(
        err.contains("pg_dump") && err.contains("does not exist"),
        "the tool's stderr is shown: {err}"
    );
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("SeCrEt123") && !err.contains("SeCrEt123"), "{json}");
    assert_eq!(files(&root), before, "a failed dump leaves nothing");

    // (3) The same password on a dump that succeeds (trust auth ignores it): not in the report,
    // not in the record.
    std::env::set_var(&src_var, src_url.replace("postgres@", "postgres:SeCrEt123@"));
    let r = dump::dump(&job, &store, &NoProgress).await;
    let key2 = assert_dumped(&r, &root);
    let record = std::fs::read_to_string(root.join(format!("{key2}{RECORD_SUFFIX}"))).unwrap();
    assert!(
        !serde_json::to_string(&r).unwrap().contains("SeCrEt123") && !record.contains("SeCrEt123"),
        "{record}"
    );
    assert!(
        record.contains("postgres@"),
        "the record names the source without its password: {record}"
    );
    let restored = dump::restore(&job, &store, &replacing(Some(&key))).await;
    assert_eq!(restored.key, key, "an explicit key is restored");
    assert!(
        restored.ok(),
        "restoring the first dump over the tampered target repairs it: {restored:#?}"
    );
    assert!(!serde_json::to_string(&restored).unwrap().contains("SeCrEt123"));
}

/// `host:port` of a URL.
fn base_authority(url: &str) -> &str {
    let rest = url.split_once("://").map(|x| x.1).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority.rsplit_once('@').map(|x| x.1).unwrap_or(authority)
}

// ---------------------------------------------------------------------------------------------
// MariaDB / MySQL.

const MYSQL_SCHEMA: &str = r#"
CREATE TABLE customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(200) NOT NULL, email VARCHAR(200) NULL,
                        balance DECIMAL(40,20), data JSON, created TIMESTAMP NULL DEFAULT NULL, avatar BLOB)
  DEFAULT CHARSET=utf8mb4;
INSERT INTO customers (name, email, balance, data, created, avatar) VALUES
  ('Grüße aus Köln — ✓ 東京', NULL, 12345678901234567890.12345678901234567890, '{"a": [1, 2, {"b": null}], "ü": "東京"}',
   '2024-02-29 23:59:59', X'00FF27'),
  ('emoji 🚀 ''quoted'' \\ back\ttab', '', NULL, NULL, NULL, NULL),
  ('', 'x@y', 0, '[]', '1970-01-02 00:00:00', '');
INSERT INTO customers (name, email, balance, data, created, avatar)
  SELECT CONCAT('cust ', seq), IF(seq % 3 = 0, NULL, CONCAT('c', seq, '@example.com')), seq / 7, JSON_OBJECT('seq', seq),
         FROM_UNIXTIME(1600000000 + seq * 60), UNHEX(MD5(seq))
  FROM seq_1_to_2000;
CREATE TABLE log_no_pk (at DATETIME(6), msg TEXT) DEFAULT CHARSET=utf8mb4;
INSERT INTO log_no_pk SELECT '2024-01-01 00:00:00' + INTERVAL seq SECOND, IF(seq % 4 = 0, NULL, REPEAT('ж', seq % 17))
  FROM seq_1_to_3000;
INSERT INTO log_no_pk VALUES ('2024-01-01', 'dup'), ('2024-01-01', 'dup');
CREATE TABLE a_big (id INT PRIMARY KEY, payload LONGBLOB NOT NULL, label VARCHAR(50));
INSERT INTO a_big SELECT seq, RANDOM_BYTES(1024), CONCAT('row ', seq) FROM seq_1_to_24000;
CREATE VIEW v_customers AS SELECT id, name FROM customers;
CREATE TRIGGER customers_bi BEFORE INSERT ON customers FOR EACH ROW SET NEW.email = COALESCE(NEW.email, 'none');
CREATE TABLE zz_secret (id INT PRIMARY KEY, secret VARCHAR(20));
INSERT INTO zz_secret VALUES (1, 'hidden');
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_dump_restore_verify_and_failures() {
    let base = mysql_base();
    if !available(
        "mariadb_dump_restore_verify_and_failures",
        "MariaDB",
        mariadb_try(&base, "SELECT 1;").is_ok(),
    ) {
        return;
    }
    let pid = std::process::id();
    let (src_db, dst_db, ro_user) = (
        format!("ferry_dump_src_{pid}"),
        format!("ferry_dump_dst_{pid}"),
        format!("ferry_ro_{pid}"),
    );
    let admin = base.clone();
    let (s, d, u) = (src_db.clone(), dst_db.clone(), ro_user.clone());
    let _cleanup = Cleanup(Box::new(move || {
        let _ = mariadb_try(
            &admin,
            &format!("DROP DATABASE IF EXISTS {s}; DROP DATABASE IF EXISTS {d}; DROP USER IF EXISTS '{u}'@'%';"),
        );
    }));
    mariadb(
        &base,
        &format!(
            "DROP DATABASE IF EXISTS {src_db}; DROP DATABASE IF EXISTS {dst_db}; \
             CREATE DATABASE {src_db} CHARACTER SET utf8mb4; CREATE DATABASE {dst_db} CHARACTER SET utf8mb4;"
        ),
    );
    let src_url = with_db(&base, &src_db);
    let dst_url = with_db(&base, &dst_db);
    mariadb(&src_url, MYSQL_SCHEMA);

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (src_var, dst_var) = (
        format!("FERRY_DUMPTEST_MY_SRC_{pid}"),
        format!("FERRY_DUMPTEST_MY_DST_{pid}"),
    );
    std::env::set_var(&src_var, &src_url);
    std::env::set_var(&dst_var, &dst_url);
    let (job, store) = plan(
        dir.path(),
        &format!(
            r#"name = "shop"
engine = "mysql"
url-env = "{src_var}"
restore-to-env = "{dst_var}"
to = "dst:mysql/""#
        ),
    );

    // The estimate reads InnoDB's statistics, which lag behind fresh inserts until analysed.
    mariadb(&src_url, "ANALYZE TABLE a_big;");
    let size = dump::estimate_size(&job).await.unwrap();
    assert!(size > BIG_ROWS * 1024, "information_schema estimate: {size}");

    // (1) Dump, restore, compare every table.
    let r = dump::dump(&job, &store, &NoProgress).await;
    let key = assert_dumped(&r, &root);
    assert!(
        key.starts_with("mysql/shop-") && key.ends_with(".dump"),
        "default key template: {key}"
    );
    let restored = dump::restore(&job, &store, &RestoreOptions::default()).await;
    assert_eq!(restored.key, key);
    assert_all_match(
        &restored,
        &[
            ("customers", 2003),
            ("log_no_pk", 3002),
            ("a_big", BIG_ROWS),
            ("zz_secret", 1),
        ],
    );
    assert_eq!(
        mariadb(&dst_url, "SELECT COUNT(*) FROM v_customers;").trim(),
        "2003",
        "views come back"
    );
    assert_eq!(
        mariadb(
            &dst_url,
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE();"
        )
        .trim(),
        "1",
        "triggers come back"
    );
    assert_eq!(
        mariadb(&dst_url, "SELECT name FROM customers WHERE id = 1;").trim(),
        "Grüße aus Köln — ✓ 東京"
    );

    // (5) One changed row in the restore target is reported on that table only.
    mariadb(
        &dst_url,
        "UPDATE log_no_pk SET msg = 'tampered' WHERE msg = 'dup' LIMIT 1;",
    );
    assert_only_mismatch(&dump::verify_restored(&job).await, "log_no_pk");

    // (2) A user who may read every table but the last: mariadb-dump writes the big table, then
    // fails. The parts already uploaded are aborted; (3) the user's password is nowhere.
    let password = format!("RoPw{pid}Secret");
    mariadb(
        &base,
        &format!(
            "CREATE USER '{ro_user}'@'%' IDENTIFIED BY '{password}';
             GRANT SELECT ON {src_db}.a_big TO '{ro_user}'@'%';
             GRANT SELECT ON {src_db}.customers TO '{ro_user}'@'%';
             GRANT SELECT ON {src_db}.log_no_pk TO '{ro_user}'@'%';
             GRANT SELECT, SHOW VIEW ON {src_db}.v_customers TO '{ro_user}'@'%';
             GRANT INSERT ON {src_db}.zz_secret TO '{ro_user}'@'%';
             GRANT EVENT ON {src_db}.* TO '{ro_user}'@'%';"
        ),
    );
    let before = files(&root);
    std::env::set_var(
        &src_var,
        src_url.replacen("://root@", &format!("://{ro_user}:{password}@"), 1),
    );
    let progress = Counting::default();
    let r = dump::dump(&job, &store, &progress).await;
    let err = r.error.clone().expect("a dump that cannot read a table fails");
    assert!(r.key.is_none(), "{r:#?}");
    assert!(
        err.contains("SELECT command denied") && err.contains("zz_secret"),
        "the tool's stderr is shown: {err}"
    );
    assert!(
        progress.0.load(Ordering::Relaxed) > 2 * DUMP_PART_SIZE,
        "the tool failed half-way, after parts were uploaded"
    );
    assert!(!serde_json::to_string(&r).unwrap().contains(&password), "{r:#?}");
    assert_eq!(files(&root), before, "a failed dump leaves no object, part or record");
}

// ---------------------------------------------------------------------------------------------
// SQLite.

fn make_sqlite(path: &Path, big_rows: u64) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(&format!(
        r#"
        PRAGMA journal_mode = WAL;
        CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, tags TEXT, photo BLOB);
        INSERT INTO items (name, price, tags, photo) VALUES
          ('Grüße aus Köln — ✓ 東京', 1234567.891, '{{"a": [1, null]}}', x'00ff10'),
          ('emoji 🚀 ''quoted''', NULL, NULL, NULL),
          ('', 0.0, '[]', x'');
        CREATE TABLE log (at TEXT, msg TEXT);
        INSERT INTO log VALUES ('2024-01-01T00:00:00+05:30', 'dup'), ('2024-01-01T00:00:00+05:30', 'dup'), (NULL, NULL);
        CREATE TABLE big (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);
        WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {big_rows})
          INSERT INTO big SELECT n, randomblob(1024) FROM s;
        CREATE VIEW item_names AS SELECT id, name FROM items;
        CREATE TRIGGER log_items AFTER INSERT ON items BEGIN INSERT INTO log VALUES (datetime('now'), NEW.name); END;
        "#
    ))
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_dump_restore_verify_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    make_sqlite(&dir.path().join("app.db"), BIG_ROWS);
    let (job, store) = plan(
        dir.path(),
        r#"name = "app"
engine = "sqlite"
path = "app.db"
restore-to-path = "restored/app.db"
to = "dst:sqlite/{name}/{timestamp}.db.zst""#,
    );
    let size = dump::estimate_size(&job).await.unwrap();
    assert!(size > BIG_ROWS * 1024, "file size: {size}");

    // (1) Dump, restore, compare every table.
    let r = dump::dump(&job, &store, &NoProgress).await;
    let key = assert_dumped(&r, &root);
    let restored = dump::restore(&job, &store, &RestoreOptions::default()).await;
    assert_eq!(restored.key, key);
    assert_all_match(&restored, &[("items", 3), ("log", 3), ("big", BIG_ROWS)]);
    let target = dir.path().join("restored/app.db");
    let c = rusqlite::Connection::open(&target).unwrap();
    let views: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type IN ('view', 'trigger')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(views, 2, "views and triggers come back");

    // (5) One changed row in the restore target is reported on that table only.
    c.execute("UPDATE big SET payload = x'00' WHERE id = 7", []).unwrap();
    drop(c);
    assert_only_mismatch(&dump::verify_restored(&job).await, "big");

    // (2) A source that cannot be read: an error, and nothing stored.
    let before = files(&root);
    let (missing, _) = plan(
        dir.path(),
        r#"name = "app"
engine = "sqlite"
path = "no-such.db"
to = "dst:sqlite/{name}/{timestamp}.db.zst""#,
    );
    let r = dump::dump(&missing, &store, &NoProgress).await;
    assert!(r.error.as_deref().is_some_and(|e| e.contains("no-such.db")), "{r:#?}");
    assert_eq!(files(&root), before);

    // A damaged dump (one flipped byte in the middle) is refused, and the target is untouched.
    let mut bytes = std::fs::read(root.join(&key)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let bad_key = key.replace(".db.zst", "1.db.zst");
    std::fs::write(root.join(&bad_key), &bytes).unwrap();
    let record = std::fs::read_to_string(root.join(format!("{key}{RECORD_SUFFIX}"))).unwrap();
    std::fs::write(
        root.join(format!("{bad_key}{RECORD_SUFFIX}")),
        record.replace(&key, &bad_key),
    )
    .unwrap();
    let target_before = std::fs::read(&target).unwrap();
    let bad = dump::restore(&job, &store, &replacing(Some(&bad_key))).await;
    let err = bad.error.clone().expect("a damaged dump is refused");
    assert!(err.contains("damaged"), "{err}");
    assert!(
        std::fs::read(&target).unwrap() == target_before,
        "the target is left as it was"
    );
    let leftovers: Vec<String> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("ferry-restore"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file is left beside the target: {leftovers:?}"
    );
    for f in [bad_key.clone(), format!("{bad_key}{RECORD_SUFFIX}")] {
        std::fs::remove_file(root.join(f)).unwrap();
    }

    // Restoring again replaces the tampered file with the dump, atomically, and it verifies.
    let again = dump::restore(&job, &store, &replacing(Some(&key))).await;
    assert!(again.ok(), "{again:#?}");
}

// ---------------------------------------------------------------------------------------------
// Retention.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_two_and_nothing_else_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    make_sqlite(&dir.path().join("app.db"), 10);
    let (job, store) = plan(
        dir.path(),
        r#"name = "app"
engine = "sqlite"
path = "app.db"
restore-to-path = "restored.db"
to = "dst:db/{name}/{timestamp}.db.zst"
keep = 2"#,
    );
    // Neighbours that retention must never touch: another file in the folder, another job's dump.
    let bystanders = [
        "db/app/README.txt",
        "db/app-old/20200101T000000.000Z.db.zst",
        "db/app/20200101T000000.000Z.db",
    ];
    for b in bystanders {
        let p = root.join(b);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"not a dump of this job").unwrap();
    }

    let mut keys = Vec::new();
    let mut deleted = Vec::new();
    for _ in 0..4 {
        let r = dump::dump(&job, &store, &NoProgress).await;
        assert!(r.ok(), "{r:#?}");
        keys.push(r.key.clone().unwrap());
        deleted.push(r.deleted_old.clone());
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, keys, "keys sort by time");
    assert_eq!(
        deleted,
        vec![vec![], vec![], vec![keys[0].clone()], vec![keys[1].clone()]]
    );

    let mut expected: Vec<String> = bystanders.iter().map(|s| s.to_string()).collect();
    for k in &keys[2..] {
        expected.push(k.clone());
        expected.push(format!("{k}{RECORD_SUFFIX}"));
    }
    expected.sort();
    assert_eq!(
        files(&root),
        expected,
        "exactly the newest two dumps and their records remain"
    );

    // The newest is what restore picks.
    let restored = dump::restore(&job, &store, &RestoreOptions::default()).await;
    assert_eq!(restored.key, keys[3]);
    assert!(restored.ok(), "{restored:#?}");
    assert!(dir.path().join("restored.db").is_file());
}

// ---------------------------------------------------------------------------------------------
// Benchmark (issue 4, must-show 2 and 6): run with
// `cargo test --test dumps -- --ignored --nocapture large_postgres_dump`.

/// Peak resident memory of this process so far (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A PostgreSQL database of `FERRY_BENCH_DUMP_MIB` (default 512) MiB of incompressible rows is
/// dumped through ferry (peak RSS must stay under 200 MiB) and with `pg_dump -Fc -f FILE`
/// (the wall-time baseline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: builds a 512 MiB database"]
async fn large_postgres_dump_memory_is_bounded() {
    let base = pg_base();
    if !available(
        "large_postgres_dump_memory_is_bounded",
        "PostgreSQL",
        psql_try(&base, "SELECT 1;").is_ok(),
    ) {
        return;
    }
    let mib: u64 = std::env::var("FERRY_BENCH_DUMP_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let pid = std::process::id();
    let db = format!("ferry_dump_bench_{pid}");
    let admin = base.clone();
    let d = db.clone();
    let _cleanup = Cleanup(Box::new(move || {
        let _ = psql_try(&admin, &format!("DROP DATABASE IF EXISTS {d} WITH (FORCE);"));
    }));
    psql(&base, &format!("CREATE DATABASE {db};"));
    let url = with_db(&base, &db);
    let started = std::time::Instant::now();
    psql(
        &url,
        &format!(
            "CREATE TABLE big (id int PRIMARY KEY, blob bytea NOT NULL);
             INSERT INTO big SELECT g, decode(string_agg(md5(random()::text || g::text || i::text), ''), 'hex')
             FROM generate_series(1, {}) g, generate_series(1, 64) i GROUP BY g;",
            mib * 1024
        ),
    );
    let on_disk: u64 = psql(&url, "SELECT pg_database_size(current_database());")
        .trim()
        .parse()
        .unwrap();
    eprintln!("built {} MiB on disk in {:.1?}", on_disk >> 20, started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let var = format!("FERRY_DUMPTEST_BENCH_{pid}");
    std::env::set_var(&var, &url);
    let (job, store) = plan(
        dir.path(),
        &format!("name = \"bench\"\nengine = \"postgres\"\nurl-env = \"{var}\"\nto = \"dst:bench/\""),
    );
    let rss_before = peak_rss();
    let t = std::time::Instant::now();
    let r = dump::dump(&job, &store, &NoProgress).await;
    let ferry_secs = t.elapsed().as_secs_f64();
    assert!(r.ok(), "{r:#?}");
    let rss = peak_rss();

    let file = dir.path().join("baseline.dump");
    let t = std::time::Instant::now();
    let st = Command::new("pg_dump")
        .args(["-Fc", "-f"])
        .arg(&file)
        .arg(format!("--dbname={url}"))
        .status()
        .unwrap();
    let baseline_secs = t.elapsed().as_secs_f64();
    assert!(st.success());
    let baseline_bytes = std::fs::metadata(&file).unwrap().len();
    eprintln!(
        "database {} MiB on disk; ferry: {:.1} s, {} MiB raw -> {} MiB stored (zstd); \
         pg_dump -Fc -f: {:.1} s, {} MiB; ferry/pg_dump wall time {:.2}; peak RSS {} MiB (before the dump {} MiB)",
        on_disk >> 20,
        ferry_secs,
        r.bytes_raw >> 20,
        r.bytes_stored >> 20,
        baseline_secs,
        baseline_bytes >> 20,
        ferry_secs / baseline_secs,
        rss >> 20,
        rss_before >> 20
    );
    assert!(on_disk >= mib << 20, "the database is at least {mib} MiB on disk");
    assert!(rss < 200 << 20, "peak RSS {} MiB", rss >> 20);
}
