//! The database servers' own clients (`psql`), for seeding and checking what ferry dumped
//! without ferry's code in between.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The PostgreSQL test server (tests/servers/up.sh exports `FERRY_TEST_PG_URL`).
pub fn pg_base() -> String {
    std::env::var("FERRY_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The same server, another database.
pub fn with_db(base: &str, db: &str) -> String {
    let (scheme, rest) = base.split_once("://").expect("a URL");
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    format!("{scheme}://{authority}/{db}")
}

/// Whether a server can be used; SKIPPED (or a failure under CI) when it cannot.
pub fn available(test: &str, what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {what} is unreachable and CI is set: start it with tests/servers/up.sh");
    }
    eprintln!("\n*** SKIPPED {test}: no test servers ({what} is unreachable; start it with tests/servers/up.sh) ***\n");
    false
}

/// Runs a client with `input` on its stdin: its stdout, or its stderr if it failed.
pub fn run(mut cmd: Command, input: &str) -> Result<String, String> {
    use std::io::Write;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn psql_try(url: &str, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"]);
    cmd.env("PGCONNECT_TIMEOUT", "3");
    run(cmd, sql)
}

pub fn psql(url: &str, sql: &str) -> String {
    psql_try(url, sql).unwrap_or_else(|e| panic!("psql failed: {e}"))
}

/// Runs cleanup when dropped, so scratch databases go away even when a test fails.
pub struct Cleanup(pub Box<dyn Fn()>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// The MariaDB test server (tests/servers/up.sh exports `FERRY_TEST_MYSQL_URL`).
pub fn mysql_base() -> String {
    std::env::var("FERRY_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// `sql` run by the `mariadb` client against `mysql://user[:password]@host:port/db` (the
/// password by environment): its tab-separated rows, or its stderr.
pub fn mariadb_try(url: &str, sql: &str) -> Result<String, String> {
    let rest = url.split_once("://").expect("a URL").1;
    let (userinfo, hostpart) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (hostport, db) = hostpart.split_once('/').unwrap_or((hostpart, ""));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    let mut cmd = Command::new("mariadb");
    cmd.arg(format!("--host={host}")).arg(format!("--port={port}")).args([
        "--batch",
        "--skip-column-names",
        "--connect-timeout=3",
        "--default-character-set=utf8mb4",
    ]);
    if !user.is_empty() {
        cmd.arg(format!("--user={user}"));
    }
    if !password.is_empty() {
        cmd.env("MYSQL_PWD", password);
    }
    if !db.is_empty() {
        cmd.arg(db);
    }
    run(cmd, sql)
}

/// Kills the `pg_dump` whose command line carries `marker` once `after` raw bytes have streamed,
/// as a crash or an operator would: the dump must then leave nothing behind.
pub struct KillPgDump {
    pub marker: String,
    pub after: u64,
    pub seen: AtomicU64,
    pub killed: AtomicBool,
}

impl ferry::progress::Progress for KillPgDump {
    fn bytes(&self, n: u64) {
        let total = self.seen.fetch_add(n, Ordering::Relaxed) + n;
        if total >= self.after && !self.killed.swap(true, Ordering::Relaxed) {
            let pid = find_process("pg_dump", &self.marker).expect("pg_dump is still running");
            let st = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
            assert!(st.success());
        }
    }
}

/// The process whose program name contains `program` and whose arguments contain `marker`.
pub fn find_process(program: &str, marker: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.contains(program)) && args.iter().any(|a| a.contains(marker)) {
            return Some(pid);
        }
    }
    None
}

/// Each of `tables`' row count and an order-independent checksum, computed by `psql` itself.
pub fn pg_table_sums(url: &str, tables: &[&str]) -> std::collections::BTreeMap<String, String> {
    tables
        .iter()
        .map(|t| {
            let sql = format!(
                "SELECT count(*) || ' ' || coalesce(md5(string_agg(md5(x::text), '' ORDER BY md5(x::text))), '-') FROM {t} x;"
            );
            (t.to_string(), psql(url, &sql).trim().to_string())
        })
        .collect()
}
