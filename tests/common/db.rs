//! The database servers' own clients (`psql`), for seeding and checking what ferry dumped
//! without ferry's code in between.

use std::process::{Command, Stdio};

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
