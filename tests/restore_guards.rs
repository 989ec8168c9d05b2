//! Guards on the destructive paths of database jobs (issue 13): a restore never overwrites the
//! source, whatever the spelling of its URL; a restore never replaces a non-empty target unless
//! asked to; a dump is restored only by the job that wrote it; two jobs cannot share dump keys.
//! (Fixed-key dumps that fail keep the previous dump: tests/fixed_key_dumps.rs.)
//!
//! PostgreSQL and MariaDB tests run against the real servers (127.0.0.1:5432 and :3306,
//! overridable with `FERRY_TEST_PG_URL` / `FERRY_TEST_MYSQL_URL`), through the `ferry` binary,
//! and check rows with `psql`/`mariadb` directly. Each test creates its own databases
//! (`ferry_rg_<test>_<pid>`), dropped at the end also when it fails. SQLite and plan tests need
//! no server. If a server cannot be reached, the test prints SKIPPED, or fails when `CI` is set.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::db::{self, available, pg_base, Cleanup};
use common::sqlite::{make_sqlite, sqlite_rows};

// ---------------------------------------------------------------------------------------------
// Harness.

fn mysql_base() -> String {
    std::env::var("FERRY_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// `(scheme, userinfo@ or "", host, port)` of a server URL.
fn parts(url: &str) -> (String, String, String, u16) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let (host, port) = hostport.rsplit_once(':').expect("the test URL names its port");
    (scheme.into(), user, host.into(), port.parse().unwrap())
}

fn with_db(base: &str, db: &str) -> String {
    let (scheme, user, host, port) = parts(base);
    format!("{scheme}://{user}{host}:{port}/{db}")
}

/// `psql`'s answer, trimmed.
fn psql_try(url: &str, sql: &str) -> Result<String, String> {
    db::psql_try(url, sql).map(|out| out.trim().to_string())
}

fn psql(url: &str, sql: &str) -> String {
    psql_try(url, sql).unwrap_or_else(|e| panic!("psql failed: {e}"))
}

fn mariadb_try(url: &str, sql: &str) -> Result<String, String> {
    let (_, user, host, port) = parts(url);
    let database = url.rsplit_once('/').map(|x| x.1).unwrap_or("");
    let mut cmd = Command::new("mariadb");
    cmd.args([
        format!("--host={host}"),
        format!("--port={port}"),
        "--batch".into(),
        "--skip-column-names".into(),
        "--connect-timeout=3".into(),
    ]);
    let user = user.trim_end_matches('@');
    if !user.is_empty() {
        cmd.arg(format!("--user={user}"));
    }
    if !database.is_empty() {
        cmd.arg(database);
    }
    db::run(cmd, sql).map(|out| out.trim().to_string())
}

fn mariadb(url: &str, sql: &str) -> String {
    mariadb_try(url, sql).unwrap_or_else(|e| panic!("mariadb failed: {e}"))
}

/// The `ferry` binary with exactly the given variables added (`None`: removed).
fn ferry(args: &[&str], plan: &Path, env: &[(&str, Option<&str>)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(args).arg(plan);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A plan with a local store `dst` at `DIR/store` and the given database jobs.
fn write_plan(dir: &Path, name: &str, jobs: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!("[providers.dst]\ntype = \"local\"\nroot = \"store\"\n\n{jobs}"),
    )
    .unwrap();
    p
}

/// Row count and a digest of every row of `t`, ordered.
fn pg_rows(url: &str) -> String {
    psql(
        url,
        "SELECT count(*) || ' ' || coalesce(md5(string_agg(id || ':' || v, ',' ORDER BY id)), '-') FROM t;",
    )
}

fn my_rows(url: &str) -> String {
    mariadb(
        url,
        "SELECT CONCAT(COUNT(*), ' ', COALESCE(MD5(GROUP_CONCAT(id, ':', v ORDER BY id SEPARATOR ',')), '-')) FROM t;",
    )
}

// ---------------------------------------------------------------------------------------------
// Restore over the source, spelled differently (issue 13).

/// Issue 13: a restore target that is the source under another spelling (default port omitted,
/// `localhost` for `127.0.0.1`, `postgresql://`, an extra parameter) is refused with exit 2, and
/// the source keeps its rows. So is a restore whose source variable is unset.
#[test]
fn postgres_restore_into_the_source_under_another_spelling_is_refused() {
    let base = pg_base();
    if !available(
        "postgres_restore_into_the_source",
        "PostgreSQL",
        psql_try(&base, "SELECT 1;").is_ok(),
    ) {
        return;
    }
    let pid = std::process::id();
    let (db, other) = (format!("ferry_rg_pgsame_{pid}"), format!("ferry_rg_pgsame_dst_{pid}"));
    let admin = base.clone();
    let (d1, d2) = (db.clone(), other.clone());
    let _cleanup = Cleanup(Box::new(move || {
        let _ = psql_try(
            &admin,
            &format!("DROP DATABASE IF EXISTS {d1} WITH (FORCE); DROP DATABASE IF EXISTS {d2} WITH (FORCE);"),
        );
    }));
    psql(
        &base,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE); DROP DATABASE IF EXISTS {other} WITH (FORCE); CREATE DATABASE {db}; CREATE DATABASE {other};"),
    );
    let src = with_db(&base, &db);
    psql(&src, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'old ' || g FROM generate_series(1, 3) g;");

    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        "plan.toml",
        "[[databases]]\nname = \"main\"\nengine = \"postgres\"\nurl-env = \"RG_SRC\"\nrestore-to-env = \"RG_DST\"\n\
         to = \"dst:db/{name}/{timestamp}.dump\"\n",
    );
    let out = ferry(&["run"], &plan, &[("RG_SRC", Some(&src)), ("RG_DST", None)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The source moves on after the dump: an older dump restored over it would lose rows.
    psql(
        &src,
        "INSERT INTO t SELECT g, 'new ' || g FROM generate_series(4, 6) g;",
    );
    let before = pg_rows(&src);
    assert!(before.starts_with("6 "), "{before}");

    let (_, user, host, port) = parts(&base);
    let mut spellings = vec![
        format!("postgres://{user}localhost:{port}/{db}"),
        format!("postgresql://{user}{host}:{port}/{db}?application_name=ferry_rg"),
        format!("postgres://{user}localhost:{port}/{db}?connect_timeout=5"),
    ];
    if port == 5432 {
        spellings.push(format!("postgres://{user}{host}/{db}"));
        spellings.push(format!("postgres://{user}localhost/{db}"));
    }
    for target in &spellings {
        let out = ferry(
            &["restore", "--json", "--database", "main"],
            &plan,
            &[("RG_SRC", Some(&src)), ("RG_DST", Some(target))],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "target `{target}` must be refused: {err}");
        assert!(err.contains("is the source"), "{err}");
        assert!(
            err.contains(target.as_str()) && err.contains(&src),
            "the message names both: {err}"
        );
        assert_eq!(pg_rows(&src), before, "the source is unchanged after `{target}`");
    }

    // The source variable unset at restore time: refused, unless the flag says the source is gone.
    let target = format!("postgres://{user}localhost:{port}/{db}");
    let out = ferry(
        &["restore", "--database", "main"],
        &plan,
        &[("RG_SRC", None), ("RG_DST", Some(&target))],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("RG_SRC") && err.contains("--source-unreachable-ok"),
        "{err}"
    );
    assert_eq!(pg_rows(&src), before);

    // The restore target variable unset: a configuration error, exit 2.
    let out = ferry(
        &["restore", "--database", "main"],
        &plan,
        &[("RG_SRC", Some(&src)), ("RG_DST", None)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("RG_DST"), "{}", stderr(&out));

    // A different database on the same server is not the source: restored (a control).
    let out = ferry(
        &["restore", "--database", "main"],
        &plan,
        &[("RG_SRC", Some(&src)), ("RG_DST", Some(&with_db(&base, &other)))],
    );
    // The source changed after the dump, so verification reports `t`: exit 1, not 2.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(pg_rows(&with_db(&base, &other)).starts_with("3 "));
    assert_eq!(pg_rows(&src), before);

    // With the source gone (variable unset) and the flag: restored into an empty target, and
    // verified against the counts and checksums recorded with the dump.
    psql(&with_db(&base, &other), "DROP TABLE t;");
    let out = ferry(
        &["restore", "--database", "main", "--source-unreachable-ok"],
        &plan,
        &[("RG_SRC", None), ("RG_DST", Some(&with_db(&base, &other)))],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("verified against the counts and checksums recorded with the dump"),
        "{}",
        stderr(&out)
    );
    assert!(pg_rows(&with_db(&base, &other)).starts_with("3 "));
}

/// Issue 13: the same on MariaDB: `127.0.0.1` without the port, `localhost` (the client then
/// uses the local socket), `mariadb://`.
#[test]
fn mariadb_restore_into_the_source_under_another_spelling_is_refused() {
    let base = mysql_base();
    if !available(
        "mariadb_restore_into_the_source",
        "MariaDB",
        mariadb_try(&base, "SELECT 1;").is_ok(),
    ) {
        return;
    }
    let pid = std::process::id();
    let db = format!("ferry_rg_mysame_{pid}");
    let admin = base.clone();
    let d = db.clone();
    let _cleanup = Cleanup(Box::new(move || {
        let _ = mariadb_try(&admin, &format!("DROP DATABASE IF EXISTS {d};"));
    }));
    mariadb(&base, &format!("DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db};"));
    let src = with_db(&base, &db);
    mariadb(
        &src,
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t SELECT seq, CONCAT('old ', seq) FROM seq_1_to_3;",
    );

    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        "plan.toml",
        "[[databases]]\nname = \"main\"\nengine = \"mysql\"\nurl-env = \"RG_SRC\"\nrestore-to-env = \"RG_DST\"\n\
         to = \"dst:db/{name}/{timestamp}.sql\"\n",
    );
    let out = ferry(&["run"], &plan, &[("RG_SRC", Some(&src)), ("RG_DST", None)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    mariadb(&src, "INSERT INTO t SELECT seq, CONCAT('new ', seq) FROM seq_4_to_6;");
    let before = my_rows(&src);
    assert!(before.starts_with("6 "), "{before}");

    let (_, user, host, port) = parts(&base);
    let mut spellings = vec![
        format!("mysql://{user}localhost:{port}/{db}"),
        format!("mariadb://{user}{host}:{port}/{db}"),
        format!("mysql://{user}localhost/{db}"),
    ];
    if port == 3306 {
        spellings.push(format!("mysql://{user}{host}/{db}"));
    }
    for target in &spellings {
        let out = ferry(
            &["restore", "--json", "--database", "main"],
            &plan,
            &[("RG_SRC", Some(&src)), ("RG_DST", Some(target))],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "target `{target}` must be refused: {err}");
        assert!(err.contains("is the source"), "{err}");
        assert!(
            err.contains(target.as_str()) && err.contains(&src),
            "the message names both: {err}"
        );
        assert_eq!(my_rows(&src), before, "the source is unchanged after `{target}`");
    }
    let out = ferry(
        &["restore", "--database", "main"],
        &plan,
        &[("RG_SRC", None), ("RG_DST", Some(&spellings[0]))],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--source-unreachable-ok"), "{}", stderr(&out));
    assert_eq!(my_rows(&src), before);
}

// ---------------------------------------------------------------------------------------------
// The source gone: verified against what the dump recorded (issue 13).

/// What differs between PostgreSQL and MariaDB in [`source_gone_scenario`].
struct Server {
    name: &'static str,
    engine: &'static str,
    base: String,
    /// Runs a script, panicking on failure (`psql`, `mariadb`).
    sql: fn(&str, &str) -> String,
    try_sql: fn(&str, &str) -> Result<String, String>,
    /// Drops (if it exists) and creates database `{db}`; drops it (cleanup).
    recreate: &'static str,
    drop: &'static str,
    /// Makes `t` (3 rows) and `busy` (20,000 rows).
    fill: &'static str,
    /// Rows added to `busy` one transaction at a time, sent again and again while the dump runs:
    /// PostgreSQL's checksums are taken in the dump's own snapshot, so they must still match
    /// the restored rows.
    writer: Option<&'static str>,
    rows: fn(&str) -> String,
    /// The record's names for `t` and `busy`.
    tables: [&'static str; 2],
}

/// Issue 13: the source is dropped after the dump; `restore --source-unreachable-ok` verifies
/// the target against the row counts and checksums recorded with the dump (exit 0, the report
/// says so), the rows checked with the server's own client. A record whose checksum for `t`
/// does not describe the dump is reported as a mismatch: exit 1.
fn source_gone_scenario(s: Server) {
    if !available(s.name, s.engine, (s.try_sql)(&s.base, "SELECT 1;").is_ok()) {
        return;
    }
    let pid = std::process::id();
    let (db, other) = (format!("ferry_rg_gone_{pid}"), format!("ferry_rg_gone_dst_{pid}"));
    let (admin, d1, d2, drop, try_sql) = (s.base.clone(), db.clone(), other.clone(), s.drop, s.try_sql);
    let _cleanup = Cleanup(Box::new(move || {
        let _ = try_sql(&admin, &drop.replace("{db}", &d1));
        let _ = try_sql(&admin, &drop.replace("{db}", &d2));
    }));
    (s.sql)(&s.base, &s.recreate.replace("{db}", &db));
    (s.sql)(&s.base, &s.recreate.replace("{db}", &other));
    let (src, dst) = (with_db(&s.base, &db), with_db(&s.base, &other));
    (s.sql)(&src, s.fill);

    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        "plan.toml",
        &format!(
            "[[databases]]\nname = \"main\"\nengine = \"{}\"\nurl-env = \"RG_SRC\"\nrestore-to-env = \"RG_DST\"\n\
             to = \"dst:db/{{name}}/{{timestamp}}.dump\"\n",
            s.engine
        ),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = s.writer.map(|insert| {
        let (stop, src, sql) = (stop.clone(), src.clone(), s.try_sql);
        // One client a hundred inserts (a client a row would insert only every few dozen ms).
        let script = insert.repeat(100);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 100 * sql(&src, &script).is_ok() as u32;
            }
            n
        })
    });
    let out = ferry(&["run"], &plan, &[("RG_SRC", Some(&src)), ("RG_DST", None)]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(w) = writer {
        eprintln!("{} rows written into `busy` during the dump", w.join().unwrap());
    }
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let before = (s.rows)(&src);
    assert!(before.starts_with("3 "), "{before}");

    // The record holds every table's rows and checksum.
    let folder = dir.path().join("store/db/main");
    let record_path = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".ferry.json"))
        .expect("a dump record");
    let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    let [t, busy] = s.tables;
    assert_eq!(record["tables"][t]["rows"], 3, "{record:#}");
    let busy_rows = record["tables"][busy]["rows"].as_u64().unwrap();
    assert!(busy_rows >= 20_000, "{record:#}");

    // The source is gone for good.
    (s.sql)(&s.base, &s.drop.replace("{db}", &db));
    let gone = [("RG_SRC", Some(src.as_str())), ("RG_DST", Some(dst.as_str()))];
    let out = ferry(
        &["restore", "--json", "--database", "main", "--source-unreachable-ok"],
        &plan,
        &gone,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let restored = &report["restore"];
    assert_eq!(
        restored["verified_against"],
        serde_json::json!(["dump-record"]),
        "{report:#}"
    );
    assert!(restored["source_not_compared"].is_string(), "{report:#}");
    let tables = restored["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2, "{report:#}");
    assert!(tables.iter().all(|t| t["matches"] == true), "{report:#}");
    // Checked with the server's own client: the dumped rows, as many in `busy` as recorded.
    assert_eq!((s.rows)(&dst), before);
    assert_eq!((s.sql)(&dst, "SELECT COUNT(*) FROM busy;"), busy_rows.to_string());

    // A record whose checksum of `t` is not the dump's: the restore is reported as differing.
    record["tables"][t]["checksum"] = "0:0".into();
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    let out = ferry(
        &[
            "restore",
            "--json",
            "--database",
            "main",
            "--source-unreachable-ok",
            "--replace",
        ],
        &plan,
        &gone,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let differs: Vec<&serde_json::Value> = report["restore"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["matches"] == false)
        .map(|x| &x["table"])
        .collect();
    assert_eq!(differs, [t], "{report:#}");
    assert!(stderr(&out).contains("DIFFERS"), "{}", stderr(&out));
}

#[test]
fn postgres_restore_with_the_source_gone_is_verified_against_the_dump_record() {
    source_gone_scenario(Server {
        name: "postgres_restore_with_the_source_gone",
        engine: "postgres",
        base: pg_base(),
        sql: psql,
        try_sql: psql_try,
        recreate: "DROP DATABASE IF EXISTS {db} WITH (FORCE); CREATE DATABASE {db};",
        drop: "DROP DATABASE IF EXISTS {db} WITH (FORCE);",
        fill: "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v ' || g FROM generate_series(1, 3) g;\
               CREATE TABLE busy (id serial PRIMARY KEY, v text); \
               INSERT INTO busy (v) SELECT repeat('x', 200) FROM generate_series(1, 20000);",
        writer: Some("INSERT INTO busy (v) VALUES ('during the dump'); SELECT pg_sleep(0.001);\n"),
        rows: pg_rows,
        tables: ["public.t", "public.busy"],
    });
}

#[test]
fn mariadb_restore_with_the_source_gone_is_verified_against_the_dump_record() {
    source_gone_scenario(Server {
        name: "mariadb_restore_with_the_source_gone",
        engine: "mysql",
        base: mysql_base(),
        sql: mariadb,
        try_sql: mariadb_try,
        recreate: "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db};",
        drop: "DROP DATABASE IF EXISTS {db};",
        fill:
            "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t SELECT seq, CONCAT('v ', seq) FROM seq_1_to_3;\
               CREATE TABLE busy (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT); \
               INSERT INTO busy (v) SELECT REPEAT('x', 200) FROM seq_1_to_20000;",
        // Its checksums come from a transaction of their own, begun with the dump's, not from
        // the dump's snapshot: a write between the two would be a (reported) mismatch.
        writer: None,
        rows: my_rows,
        tables: ["t", "busy"],
    });
}

// ---------------------------------------------------------------------------------------------
// Non-empty targets.

/// Issue 13: a target that has tables is not restored into without `--replace`; it is left
/// exactly as it was. With `--replace` it is restored and verified.
#[test]
fn postgres_non_empty_target_needs_replace() {
    let base = pg_base();
    if !available(
        "postgres_non_empty_target_needs_replace",
        "PostgreSQL",
        psql_try(&base, "SELECT 1;").is_ok(),
    ) {
        return;
    }
    let pid = std::process::id();
    let (s, d) = (
        format!("ferry_rg_pgfull_src_{pid}"),
        format!("ferry_rg_pgfull_dst_{pid}"),
    );
    let admin = base.clone();
    let (s2, d2) = (s.clone(), d.clone());
    let _cleanup = Cleanup(Box::new(move || {
        let _ = psql_try(
            &admin,
            &format!("DROP DATABASE IF EXISTS {s2} WITH (FORCE); DROP DATABASE IF EXISTS {d2} WITH (FORCE);"),
        );
    }));
    psql(
        &base,
        &format!("DROP DATABASE IF EXISTS {s} WITH (FORCE); DROP DATABASE IF EXISTS {d} WITH (FORCE); CREATE DATABASE {s}; CREATE DATABASE {d};"),
    );
    let (src, dst) = (with_db(&base, &s), with_db(&base, &d));
    psql(&src, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'src ' || g FROM generate_series(1, 5) g;");
    psql(
        &dst,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (99, 'precious');",
    );
    let target_before = pg_rows(&dst);

    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        "plan.toml",
        "[[databases]]\nname = \"main\"\nengine = \"postgres\"\nurl-env = \"RG_SRC\"\nrestore-to-env = \"RG_DST\"\n\
         to = \"dst:db/{name}/{timestamp}.dump\"\n",
    );
    let env = [("RG_SRC", Some(src.as_str())), ("RG_DST", Some(dst.as_str()))];
    let out = ferry(&["run"], &plan, &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = ferry(&["restore", "--database", "main"], &plan, &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not empty") && err.contains("public.t") && err.contains("--replace"),
        "{err}"
    );
    assert_eq!(pg_rows(&dst), target_before, "the target is unchanged");

    let out = ferry(&["restore", "--json", "--database", "main", "--replace"], &plan, &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["restore"]["tables"][0]["matches"], true, "{j}");
    assert_eq!(pg_rows(&dst), pg_rows(&src));
    assert!(pg_rows(&dst).starts_with("5 "));
}

/// Issue 13: the same on MariaDB, with the plan key `restore-replace = true` as the opt-in.
#[test]
fn mariadb_non_empty_target_needs_replace() {
    let base = mysql_base();
    if !available(
        "mariadb_non_empty_target_needs_replace",
        "MariaDB",
        mariadb_try(&base, "SELECT 1;").is_ok(),
    ) {
        return;
    }
    let pid = std::process::id();
    let (s, d) = (
        format!("ferry_rg_myfull_src_{pid}"),
        format!("ferry_rg_myfull_dst_{pid}"),
    );
    let admin = base.clone();
    let (s2, d2) = (s.clone(), d.clone());
    let _cleanup = Cleanup(Box::new(move || {
        let _ = mariadb_try(
            &admin,
            &format!("DROP DATABASE IF EXISTS {s2}; DROP DATABASE IF EXISTS {d2};"),
        );
    }));
    mariadb(
        &base,
        &format!("DROP DATABASE IF EXISTS {s}; DROP DATABASE IF EXISTS {d}; CREATE DATABASE {s}; CREATE DATABASE {d};"),
    );
    let (src, dst) = (with_db(&base, &s), with_db(&base, &d));
    mariadb(
        &src,
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t SELECT seq, CONCAT('src ', seq) FROM seq_1_to_5;",
    );
    mariadb(
        &dst,
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (99, 'precious');",
    );
    let target_before = my_rows(&dst);

    let dir = tempfile::tempdir().unwrap();
    let job = "[[databases]]\nname = \"main\"\nengine = \"mysql\"\nurl-env = \"RG_SRC\"\nrestore-to-env = \"RG_DST\"\n\
               to = \"dst:db/{name}/{timestamp}.sql\"\n";
    let plan = write_plan(dir.path(), "plan.toml", job);
    let env = [("RG_SRC", Some(src.as_str())), ("RG_DST", Some(dst.as_str()))];
    let out = ferry(&["run"], &plan, &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = ferry(&["restore", "--database", "main"], &plan, &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not empty") && err.contains("`t`") && err.contains("restore-replace"),
        "{err}"
    );
    assert_eq!(my_rows(&dst), target_before, "the target is unchanged");

    let replacing = write_plan(dir.path(), "replacing.toml", &format!("{job}restore-replace = true\n"));
    let out = ferry(&["restore", "--database", "main"], &replacing, &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(my_rows(&dst), my_rows(&src));
    assert!(my_rows(&dst).starts_with("5 "));
}

// ---------------------------------------------------------------------------------------------
// SQLite, plans, records (no server needed).

fn sha256_file(path: &Path) -> String {
    let mut h = ferry::checksum::StreamHasher::new(false);
    h.update(&std::fs::read(path).unwrap());
    h.finish().sha256
}

/// Issue 13: a SQLite restore target that is the source file under another name (a hard link,
/// a symlinked folder, `..` in the path) is refused; a non-empty target needs `--replace`.
#[test]
fn sqlite_restore_guards() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    make_sqlite(&p.join("app.db"), &[(1, "a"), (2, "b")]);
    std::fs::create_dir(p.join("sub")).unwrap();
    std::fs::hard_link(p.join("app.db"), p.join("sub/hard.db")).unwrap();
    std::os::unix::fs::symlink(p, p.join("linkdir")).unwrap();
    let job = |name: &str, target: &str| {
        format!(
            "[[databases]]\nname = \"{name}\"\nengine = \"sqlite\"\npath = \"app.db\"\nrestore-to-path = \"{target}\"\n\
             to = \"dst:db/{name}/{{timestamp}}.sqlite.zst\"\n\n"
        )
    };
    let plan = write_plan(
        p,
        "plan.toml",
        &[
            job("hard", "sub/hard.db"),
            job("linked", "linkdir/app.db"),
            job("dotdot", "sub/../app.db"),
            job("full", "full.db"),
        ]
        .concat(),
    );
    let out = ferry(&["run"], &plan, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The source moves on after the dump.
    make_sqlite(&p.join("app.db"), &[(1, "a"), (2, "b"), (3, "c")]);
    let before = sha256_file(&p.join("app.db"));
    for (name, flags) in [
        ("hard", &[][..]),
        ("linked", &[]),
        ("dotdot", &[]),
        ("hard", &["--replace"]),
    ] {
        let out = ferry(&[&["restore", "--database", name][..], flags].concat(), &plan, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "`{name}` must be refused: {err}");
        assert!(err.contains("is the source"), "{err}");
        assert_eq!(
            sha256_file(&p.join("app.db")),
            before,
            "`{name}`: the source is unchanged"
        );
        assert_eq!(
            sqlite_rows(&p.join("sub/hard.db")).len(),
            3,
            "`{name}`: the link still is the source"
        );
    }

    // A non-empty target file: refused and untouched; with --replace, restored.
    make_sqlite(&p.join("full.db"), &[(9, "precious")]);
    let target_before = sha256_file(&p.join("full.db"));
    let out = ferry(&["restore", "--database", "full"], &plan, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not empty") && err.contains("--replace"), "{err}");
    assert_eq!(sha256_file(&p.join("full.db")), target_before);
    let out = ferry(&["restore", "--database", "full", "--replace"], &plan, &[]);
    // Restored from the dump (2 rows); the source has 3 by now, so verification says exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        sqlite_rows(&p.join("full.db")),
        vec![(1, "a".to_string()), (2, "b".to_string())]
    );
}

/// Issue 13: `restore --dump KEY` with another job's dump is refused (its record names the
/// other job), and nothing is written.
#[test]
fn restore_refuses_a_dump_of_another_job() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    make_sqlite(&p.join("a.db"), &[(1, "from a")]);
    make_sqlite(&p.join("b.db"), &[(1, "from b")]);
    let plan = write_plan(
        p,
        "plan.toml",
        "[[databases]]\nname = \"a\"\nengine = \"sqlite\"\npath = \"a.db\"\nto = \"dst:db/{name}/{timestamp}.sqlite.zst\"\n\n\
         [[databases]]\nname = \"b\"\nengine = \"sqlite\"\npath = \"b.db\"\nrestore-to-path = \"b-restored.db\"\n\
         to = \"dst:db/{name}/{timestamp}.sqlite.zst\"\n",
    );
    let out = ferry(&["run", "--json"], &plan, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a_key = j["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["job"] == "a")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let out = ferry(&["restore", "--database", "b", "--dump", &a_key], &plan, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("job `a`"), "{err}");
    assert!(!p.join("b-restored.db").exists(), "nothing was written");
}

/// Issue 13: two database jobs whose key templates can produce the same key (the retention of
/// one would delete the other's dumps) are refused at plan time, naming the line and column;
/// jobs that merely share a folder are not.
#[test]
fn overlapping_database_keys_are_refused_at_plan_time() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let db = |name: &str, provider: &str, to: &str| {
        format!(
            "[[databases]]\nname = \"{name}\"\nengine = \"sqlite\"\npath = \"{name}.db\"\nto = \"{provider}:{to}\"\n\n"
        )
    };
    let refused = [
        (
            "same_template",
            [
                db("a", "dst", "db/{timestamp}.dump"),
                db("b", "dst", "db/{timestamp}.dump"),
            ]
            .concat(),
        ),
        (
            "same_fixed_key",
            [db("a", "dst", "db/{name}b.dump"), db("b", "dst", "db/a{name}.dump")].concat(),
        ),
        (
            "second_provider_same_directory",
            format!(
                "[providers.alias]\ntype = \"local\"\nroot = \"store/db\"\n\n{}",
                [
                    db("a", "dst", "db/{timestamp}.dump"),
                    db("b", "alias", "{timestamp}.dump")
                ]
                .concat()
            ),
        ),
    ];
    for (case, jobs) in refused {
        let plan = write_plan(p, &format!("{case}.toml"), &jobs);
        let out = ferry(&["check"], &plan, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{case}: {err}");
        assert!(
            err.contains(&format!("{case}.toml:")),
            "{case}: names the plan line: {err}"
        );
        assert!(
            err.contains("`a`") && err.contains("`b`"),
            "{case}: names both jobs: {err}"
        );
    }
    let accepted = [
        (
            "own_folders",
            [
                db("a", "dst", "db/{name}/{timestamp}.dump"),
                db("b", "dst", "db/{name}/{timestamp}.dump"),
            ]
            .concat(),
        ),
        (
            "default_names_with_common_start",
            [db("app", "dst", "db/"), db("app-archive", "dst", "db/")].concat(),
        ),
    ];
    for (case, jobs) in accepted {
        let plan = write_plan(p, &format!("{case}.toml"), &jobs);
        let out = ferry(&["check"], &plan, &[]);
        assert_eq!(out.status.code(), Some(0), "{case}: {}", stderr(&out));
    }
}
