//! Running the database tools: which client a connection gets (`pg_dump`, `mariadb-dump`,
//! `pg_restore`, `mariadb`, `psql`, found on `PATH`), with what argv and environment, and what
//! becomes of the child (killed if dropped, its stderr kept for the message, redacted). Each
//! builder returns a `std::process::Command` so tests can inspect exactly what a child would get:
//! the password only ever in its environment, never in the argv `ps` shows every user.

use std::io::{self, Read};
use std::process::{Command, ExitStatus, Stdio};

use tokio::io::AsyncWriteExt;

use super::database::Server;
use super::url::{DbUrl, MysqlUrl};
use super::DumpError;
use crate::plan::Compression;
use crate::redact::redact;

/// How much of a tool's stderr is kept for the error message (the end is where the reason is).
const STDERR_KEEP: usize = 32 * 1024;
/// Connection timeout given to libpq when the user has not set `PGCONNECT_TIMEOUT`, so an
/// unreachable host fails in seconds rather than hanging a nightly run.
const CONNECT_TIMEOUT_SECS: &str = "10";
/// Session settings under which PostgreSQL renders a row as text for the checksum, so that both
/// sides render alike whatever their server defaults (time zone, date style, float digits).
const PG_CHECKSUM_OPTIONS: &str =
    "-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex";

/// Whether `name` is an executable file on `PATH`.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// The first of `names` found on `PATH`, or the first name (so the spawn error names it).
pub(super) fn pick_tool(names: &[&'static str]) -> &'static str {
    names.iter().copied().find(|n| on_path(n)).unwrap_or(names[0])
}

fn pg_base(tool: &str, url: &DbUrl) -> Command {
    let mut cmd = Command::new(tool);
    if let Some(p) = &url.password {
        cmd.env("PGPASSWORD", p.expose());
    }
    if let Some(f) = &url.service_file {
        cmd.env("PGSERVICEFILE", &f.0);
    }
    if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
        cmd.env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS);
    }
    if std::env::var_os("PGAPPNAME").is_none() {
        cmd.env("PGAPPNAME", "ferry");
    }
    cmd
}

/// A MySQL/MariaDB client's connection flags; the caller adds its own, then the database.
pub(super) fn my_base(tool: &str, my: &MysqlUrl) -> Command {
    let url = &my.url;
    let mut cmd = Command::new(tool);
    if let Some(p) = &url.password {
        cmd.env("MYSQL_PWD", p.expose());
    }
    if let Some(h) = &url.host {
        cmd.arg(format!("--host={h}"));
    }
    if let Some(p) = url.port {
        cmd.arg(format!("--port={p}"));
    }
    if let Some(u) = &url.user {
        cmd.arg(format!("--user={u}"));
    }
    for (k, v) in &url.params {
        match (k.as_str(), v.as_str()) {
            ("ssl" | "ssl-verify-server-cert", "false" | "0") => cmd.arg(format!("--skip-{k}")),
            ("ssl" | "ssl-verify-server-cert", _) => cmd.arg(format!("--{k}")),
            _ => cmd.arg(format!("--{k}={v}")),
        };
    }
    cmd.arg("--default-character-set=utf8mb4");
    cmd
}

/// The dump tool for a URL, and its name for messages. `snapshot`: PostgreSQL's exported
/// snapshot to dump (see [`PgSnapshot`](super::postgres::PgSnapshot)).
pub(super) fn dump_command(
    server: Server,
    compression: Compression,
    snapshot: Option<&str>,
) -> (&'static str, Command) {
    match server {
        Server::Postgres(url) => {
            let mut cmd = pg_base("pg_dump", url);
            cmd.args(["--format=custom", "--no-password"]);
            if let Some(id) = snapshot {
                cmd.arg(format!("--snapshot={id}"));
            }
            if compression == Compression::Zstd {
                // zstd compresses the stream; pg_dump's own zlib on top would only cost CPU.
                cmd.arg("--compress=0");
            }
            cmd.arg(format!("--dbname={}", url.conninfo()));
            ("pg_dump", cmd)
        }
        Server::Mysql(url) => {
            let tool = pick_tool(&["mariadb-dump", "mysqldump"]);
            let mut cmd = my_base(tool, url);
            cmd.args([
                "--single-transaction",
                "--routines",
                "--triggers",
                "--events",
                "--hex-blob",
                "--no-tablespaces",
            ]);
            cmd.arg(&url.database);
            (tool, cmd)
        }
    }
}

/// `pg_dump` writing a directory-format dump of `jobs` parallel workers into `dir` (which must
/// not exist), dumping `snapshot`. With zstd, pg_dump's own compression is off: ferry
/// compresses each file as it uploads it.
pub(super) fn dir_dump_command(
    url: &DbUrl,
    compression: Compression,
    snapshot: &str,
    jobs: u32,
    dir: &std::path::Path,
) -> Command {
    let mut cmd = pg_base("pg_dump", url);
    cmd.args(["--format=directory", "--no-password"]);
    cmd.arg(format!("--jobs={jobs}"));
    cmd.arg(format!("--snapshot={snapshot}"));
    if compression == Compression::Zstd {
        cmd.arg("--compress=0");
    }
    cmd.arg("--file").arg(dir);
    cmd.arg(format!("--dbname={}", url.conninfo()));
    cmd
}

/// `pg_restore` of the directory-format dump in `dir` with `jobs` workers. Parallel workers are
/// separate sessions, so there is no `--single-transaction`: the first error stops the restore
/// (`--exit-on-error`), and what was restored before it stays.
pub(super) fn dir_restore_command(url: &DbUrl, jobs: u32, dir: &std::path::Path) -> Command {
    let mut cmd = pg_base("pg_restore", url);
    cmd.args([
        "--clean",
        "--if-exists",
        "--no-owner",
        "--exit-on-error",
        "--no-password",
    ]);
    cmd.arg(format!("--jobs={jobs}"));
    cmd.arg(format!("--dbname={}", url.conninfo()));
    cmd.arg(dir);
    cmd
}

/// `pg_dumpall --globals-only`: the server's roles, memberships and tablespaces as SQL, without
/// the password hashes unless `passwords`.
pub(super) fn globals_command(url: &DbUrl, passwords: bool) -> Command {
    let mut cmd = pg_base("pg_dumpall", url);
    cmd.args(["--globals-only", "--no-password"]);
    if !passwords {
        cmd.arg("--no-role-passwords");
    }
    cmd.arg(format!("--dbname={}", url.conninfo()));
    cmd
}

/// The restore tool for a URL target; it reads the dump on stdin.
pub(super) fn restore_command(server: Server) -> (&'static str, Command) {
    match server {
        Server::Postgres(url) => {
            let mut cmd = pg_base("pg_restore", url);
            // One transaction: a restore that fails part-way leaves the target as it was.
            cmd.args([
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                "--no-password",
            ]);
            cmd.arg(format!("--dbname={}", url.conninfo()));
            ("pg_restore", cmd)
        }
        Server::Mysql(url) => {
            let tool = pick_tool(&["mariadb", "mysql"]);
            let mut cmd = my_base(tool, url);
            cmd.arg("--batch");
            cmd.arg(&url.database);
            (tool, cmd)
        }
    }
}

/// A command-line client that runs the SQL script given on stdin and prints tab-separated rows.
pub(super) fn query_command(server: Server) -> (&'static str, Command) {
    match server {
        Server::Postgres(url) => {
            let mut cmd = pg_base("psql", url);
            cmd.env("PGOPTIONS", PG_CHECKSUM_OPTIONS);
            cmd.args([
                "--no-psqlrc",
                "--quiet",
                "--no-align",
                "--tuples-only",
                "--field-separator=\t",
                "--set=ON_ERROR_STOP=1",
                "--no-password",
            ]);
            cmd.arg(format!("--dbname={}", url.conninfo()));
            cmd.arg("--file=-");
            ("psql", cmd)
        }
        Server::Mysql(url) => {
            let tool = pick_tool(&["mariadb", "mysql"]);
            let mut cmd = my_base(tool, url);
            cmd.args(["--batch", "--skip-column-names"]);
            cmd.arg(&url.database);
            (tool, cmd)
        }
    }
}

fn tool_hint(tool: &str) -> &'static str {
    if tool.starts_with("pg_") || tool == "psql" {
        "install the PostgreSQL client tools (Debian: postgresql-client) at least as new as the server"
    } else {
        "install the MariaDB or MySQL client tools (Debian: mariadb-client) so that the tool is on PATH"
    }
}

pub(super) fn spawn_error(job: &str, tool: &str, e: io::Error) -> DumpError {
    DumpError::ToolMissing {
        job: job.into(),
        tool: tool.into(),
        message: redact(&e.to_string()),
        hint: tool_hint(tool),
    }
}

pub(super) fn status_text(status: &ExitStatus) -> String {
    match status.code() {
        Some(c) => format!("exit status {c}"),
        None => format!("{status}, killed"),
    }
}

/// How a tool's run ended: `Ok` when it exited successfully, else the error naming the tool,
/// with its (redacted) stderr.
pub(super) fn tool_result(
    job: &str,
    tool: &str,
    status: io::Result<ExitStatus>,
    stderr: String,
) -> Result<(), DumpError> {
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(DumpError::Tool {
            job: job.into(),
            tool: tool.into(),
            status: status_text(&s),
            stderr,
        }),
        Err(e) => Err(DumpError::Io {
            job: job.into(),
            what: format!("waiting for `{tool}`"),
            message: e.to_string(),
        }),
    }
}

/// Runs a script through a command-line client and returns its stdout.
pub(super) async fn run_query(job: &str, server: Server<'_>, script: String) -> Result<String, DumpError> {
    let (tool, mut cmd) = query_command(server);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| spawn_error(job, tool, e))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Written while the output is read, so neither pipe can fill up and stall the other.
    let write = async move {
        let r = stdin.write_all(script.as_bytes()).await;
        drop(stdin);
        r
    };
    let (written, out) = tokio::join!(write, child.wait_with_output());
    let out = out.map_err(|e| DumpError::Io {
        job: job.into(),
        what: format!("waiting for `{tool}`"),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(DumpError::Tool {
            job: job.into(),
            tool: tool.into(),
            status: status_text(&out.status),
            stderr: redact(String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    written.map_err(|e| DumpError::Io {
        job: job.into(),
        what: format!("writing the query to `{tool}`"),
        message: e.to_string(),
    })?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A child process that is killed if the dump or restore is dropped before it was waited for.
pub(super) struct ChildGuard(pub(super) Option<std::process::Child>);

impl ChildGuard {
    pub(super) fn kill(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
        }
    }

    pub(super) async fn wait(&mut self) -> io::Result<ExitStatus> {
        let mut child = self.0.take().expect("a child is waited for once");
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads a child's stderr to the end, keeping the last [`STDERR_KEEP`] bytes, redacted.
pub(super) fn collect_stderr(mut r: impl Read + Send + 'static) -> tokio::task::JoinHandle<String> {
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let mut cut = false;
        loop {
            match r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 2 * STDERR_KEEP {
                        buf.drain(..buf.len() - STDERR_KEEP);
                        cut = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        redact(&if cut { format!("[...] {text}") } else { text.to_string() })
    })
}

/// The first line a tool prints for `--version`, for the dump record.
pub(super) async fn tool_version(tool: &str) -> String {
    let out = tokio::process::Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or(tool)
            .trim()
            .to_string(),
        _ => tool.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::testing::{args_of, env_of};
    use crate::dump::url::parse_db_url;
    use crate::plan::DbEngine;

    #[test]
    fn passwords_reach_children_by_environment_only() {
        let pg = parse_db_url(DbEngine::Postgres, "postgres://postgres:SeCrEt123@127.0.0.1:5432/test").unwrap();
        let my = parse_db_url(DbEngine::Mysql, "mysql://root:MyS3cret!@127.0.0.1:3306/test").unwrap();
        let my = MysqlUrl::new(my).unwrap();
        let (pg, my) = (Server::Postgres(&pg), Server::Mysql(&my));
        let cmds = [
            (
                "PGPASSWORD",
                "SeCrEt123",
                dump_command(pg, Compression::Zstd, Some("00000003-0000001B-1")).1,
            ),
            ("PGPASSWORD", "SeCrEt123", restore_command(pg).1),
            ("PGPASSWORD", "SeCrEt123", query_command(pg).1),
            ("MYSQL_PWD", "MyS3cret!", dump_command(my, Compression::Zstd, None).1),
            ("MYSQL_PWD", "MyS3cret!", restore_command(my).1),
            ("MYSQL_PWD", "MyS3cret!", query_command(my).1),
        ];
        let Server::Postgres(pg_url) = pg else { unreachable!() };
        let dir = std::path::Path::new("/tmp/ferry-pgdir-x/dump");
        for cmd in [
            dir_dump_command(pg_url, Compression::Zstd, "00000003-0000001B-1", 4, dir),
            dir_restore_command(pg_url, 4, dir),
            globals_command(pg_url, false),
        ] {
            let args = args_of(&cmd);
            assert!(args.iter().all(|a| !a.contains("SeCrEt123")), "{args:?}");
            assert_eq!(env_of(&cmd, "PGPASSWORD").as_deref(), Some("SeCrEt123"));
        }
        let dir_args = args_of(&dir_dump_command(
            pg_url,
            Compression::Zstd,
            "00000003-0000001B-1",
            4,
            dir,
        ));
        for flag in [
            "--format=directory",
            "--jobs=4",
            "--snapshot=00000003-0000001B-1",
            "--compress=0",
        ] {
            assert!(dir_args.contains(&flag.to_string()), "{flag} missing from {dir_args:?}");
        }
        assert!(args_of(&dir_restore_command(pg_url, 4, dir)).contains(&"--jobs=4".to_string()));
        assert!(args_of(&globals_command(pg_url, false)).contains(&"--no-role-passwords".to_string()));
        assert!(!args_of(&globals_command(pg_url, true)).contains(&"--no-role-passwords".to_string()));
        for (var, pw, cmd) in &cmds {
            let args = args_of(cmd);
            assert!(args.iter().all(|a| !a.contains(pw)), "{args:?}");
            assert_eq!(env_of(cmd, var).as_deref(), Some(*pw));
        }
        let dump_args = args_of(&cmds[0].2);
        assert!(dump_args.contains(&"--format=custom".to_string()));
        assert!(dump_args.contains(&"--compress=0".to_string()));
        assert!(dump_args.contains(&"--snapshot=00000003-0000001B-1".to_string()));
        assert!(dump_args.contains(&"--dbname=postgres://postgres@127.0.0.1:5432/test".to_string()));
        let my_args = args_of(&cmds[3].2);
        for flag in [
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--user=root",
            "--port=3306",
        ] {
            assert!(my_args.contains(&flag.to_string()), "{flag} missing from {my_args:?}");
        }
        assert_eq!(my_args.last().map(String::as_str), Some("test"));
    }
}
