//! The guards that run before a restore writes anything: the target is not the source (by what
//! the servers show, not by how the URLs are spelled), and the target is empty unless the job
//! or the command line says to replace it. Each guard either passes or returns the error that
//! names both databases and why; nothing here writes to a database.
//!
//! Identity is probed, not parsed. `127.0.0.1`, `localhost`, a missing default port, a socket
//! and a DNS alias all reach one server, and no spelling rule can know them all. So the probe
//! takes a lock with a random name through the source connection and, while holding it, asks
//! through the target connection whether that lock is held and which database the target is:
//!
//! - PostgreSQL: `pg_advisory_lock(k1, k2)` in the source session; `pg_locks` (every database of
//!   the server) through the target, where the lock's `database` column says whether the target
//!   is the very database the lock was taken in. (`system_identifier` is shared by clones, so it
//!   cannot tell a copy from the original.)
//! - MariaDB/MySQL: `GET_LOCK(name, …)` in the source session; `IS_USED_LOCK(name)` through the
//!   target (locks are server-wide), and `DATABASE()` on both sides (MariaDB has no
//!   `@@server_uuid`).
//! - SQLite: the device and inode of both files, which sees hard links, symlinks and bind mounts.
//!
//! The source session is a client process (`psql`, `mariadb`) kept open on its stdin for the
//! duration of the probe; closing stdin ends the session and with it the lock.

use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::database::{source, Database, Server};
use super::process::{my_base, pick_tool, query_command, run_query};
use super::tablesum::unhex;
use super::url::{DbUrl, MysqlUrl};
use super::DumpError;
use crate::plan::DatabaseJob;
use crate::redact::redact;

/// How long the source may take to connect and grant the probe's lock.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Tables named in a "not empty" message; the rest are counted.
const NAMES_SHOWN: usize = 5;

/// What the identity probe found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The target is the source database; why we know.
    Same(String),
    /// Another database (possibly on the same server).
    Different,
    /// The source could not be asked; why.
    SourceUnreachable(String),
}

/// Refuses a restore into the source database. A source that cannot be reached (its variable
/// unset, its server down, its file gone) is refused too, unless `source_unreachable_ok`: then
/// only an identical spelling is refused.
pub(crate) async fn ensure_not_source(
    job: &DatabaseJob,
    target: &Database,
    source_unreachable_ok: bool,
) -> Result<(), DumpError> {
    let (described, probed) = match source(job) {
        Ok(source) => (source.describe(), probe(&job.name, &source, target).await?),
        Err(e) => (source_name(job), Probe::SourceUnreachable(reason(&job.name, &e))),
    };
    match probed {
        Probe::Same(why) => Err(DumpError::TargetIsSource {
            job: job.name.clone(),
            source_db: described,
            target: target.describe(),
            why,
            refusal: "refusing to overwrite it",
        }),
        Probe::Different => Ok(()),
        Probe::SourceUnreachable(_) if source_unreachable_ok => Ok(()),
        Probe::SourceUnreachable(message) => Err(DumpError::SourceUnreachable {
            job: job.name.clone(),
            source_db: described,
            message,
        }),
    }
}

/// For `verify`: comparing a database with itself proves nothing, so the same identity probe.
/// A source that cannot be reached is left to the comparison to report.
pub(crate) async fn ensure_distinct(job: &DatabaseJob, source: &Database, target: &Database) -> Result<(), DumpError> {
    match probe(&job.name, source, target).await? {
        Probe::Same(why) => Err(DumpError::TargetIsSource {
            job: job.name.clone(),
            source_db: source.describe(),
            target: target.describe(),
            why,
            refusal: "comparing it with itself would prove nothing",
        }),
        // The comparison that follows fails on the source with its own message; this guard's
        // hint (--source-unreachable-ok) belongs to restore only.
        Probe::Different | Probe::SourceUnreachable(_) => Ok(()),
    }
}

/// The source as the plan names it, for when its URL could not even be read.
fn source_name(job: &DatabaseJob) -> String {
    match (&job.url_env, &job.path) {
        (Some(var), _) => format!("the URL in `{var}`"),
        (None, Some(p)) => p.display().to_string(),
        (None, None) => "the source".into(),
    }
}

/// An error's first line without its `database `job`: ` prefix, to quote inside another error.
fn reason(job: &str, e: &DumpError) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first
        .strip_prefix(&format!("database `{job}`: "))
        .unwrap_or(first)
        .to_string()
}

/// A query on the restore target, its failure naming the target and what was asked.
async fn ask_target(job: &str, target: Server<'_>, what: &'static str, sql: String) -> Result<String, DumpError> {
    run_query(job, target, sql).await.map_err(|e| {
        let text = e.to_string();
        DumpError::TargetQuery {
            job: job.into(),
            target: target.describe(),
            what,
            message: text
                .strip_prefix(&format!("database `{job}`: "))
                .unwrap_or(&text)
                .to_string(),
        }
    })
}

const ASK_SOURCE: &str = "whether it is the source";
const ASK_EMPTY: &str = "whether it is empty";

/// Whether `target` is `source`. Errors are the target's (it cannot be asked); a source that
/// cannot be asked is [`Probe::SourceUnreachable`].
pub(crate) async fn probe(job: &str, source: &Database, target: &Database) -> Result<Probe, DumpError> {
    if let Some(why) = same_spelling(source, target) {
        return Ok(Probe::Same(why));
    }
    match (source, target) {
        (Database::Sqlite(a), Database::Sqlite(b)) => Ok(sqlite_probe(a, b)),
        (Database::Postgres(a), Database::Postgres(b)) => pg_probe(job, a, b).await,
        (Database::Mysql(a), Database::Mysql(b)) => my_probe(job, a, b).await,
        _ => Ok(Probe::Different),
    }
}

/// The same connection written the same way (or the same path after resolving links): no
/// server needs to be asked.
fn same_spelling(source: &Database, target: &Database) -> Option<String> {
    let same = match (source, target) {
        (Database::Sqlite(a), Database::Sqlite(b)) => {
            let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            canon(a) == canon(b)
        }
        (Database::Postgres(a), Database::Postgres(b)) => a.same_spelling(b),
        // The database is outside `url` (equal spellings name equal databases).
        (Database::Mysql(a), Database::Mysql(b)) => a.database == b.database && a.url.same_spelling(&b.url),
        _ => false,
    };
    same.then(|| "both are spelled the same way".to_string())
}

fn sqlite_probe(source: &Path, target: &Path) -> Probe {
    use std::os::unix::fs::MetadataExt;
    let s = match std::fs::metadata(source) {
        Ok(m) => m,
        Err(e) => return Probe::SourceUnreachable(format!("`{}`: {e}", source.display())),
    };
    match std::fs::metadata(target) {
        Ok(t) if (t.dev(), t.ino()) == (s.dev(), s.ino()) => Probe::Same(format!(
            "both paths are one file (device {}, inode {})",
            s.dev(),
            s.ino()
        )),
        _ => Probe::Different,
    }
}

/// A random 64-bit value (the standard library's per-process random hasher keys, mixed with the
/// time): the probe's lock must not be one another session could hold.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A client session on the source that holds what it was given (the probe's lock, a dump's
/// snapshot) until released or dropped.
pub(super) struct Holder {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
}

impl Holder {
    /// Ends the session (end of input), which releases its lock or transaction.
    pub(super) async fn release(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Starts `cmd` (a client on the source), sends `sql` without closing stdin, and waits for the
/// line starting with `ferry-answer`: its other fields. The session stays open. Any failure
/// (no such tool, no connection, a refused lock, no answer) is the error, the client's own
/// words where it said any.
pub(super) async fn hold_session(cmd: std::process::Command, sql: String) -> Result<(Holder, Vec<String>), String> {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let errors = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let answer = async {
        stdin.write_all(sql.as_bytes()).await.map_err(|e| e.to_string())?;
        stdin.flush().await.map_err(|e| e.to_string())?;
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
            if let Some(rest) = line.strip_prefix("ferry-answer\t") {
                return Ok(Some(rest.split('\t').map(str::to_string).collect::<Vec<_>>()));
            }
        }
        Ok::<_, String>(None)
    };
    let fields = match tokio::time::timeout(PROBE_TIMEOUT, answer).await {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) => {
            drop(stdin);
            let status = child.wait().await.map_err(|e| e.to_string())?;
            let text = errors.await.unwrap_or_default();
            let text = text.trim();
            return Err(if text.is_empty() {
                format!("the client ended ({status}) without an answer")
            } else {
                redact(text)
            });
        }
        Ok(Err(e)) => return Err(redact(&e)),
        Err(_) => return Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    };
    Ok((
        Holder {
            child,
            stdin: Some(stdin),
        },
        fields,
    ))
}

async fn pg_probe(job: &str, source: &DbUrl, target: &DbUrl) -> Result<Probe, DumpError> {
    let r = random_u64();
    // Two int4 keys show in pg_locks as classid and objid with objsubid 2; positive, so that
    // their oid rendering is the same number.
    let (k1, k2) = ((r >> 32) as u32 & 0x7fff_ffff, r as u32 & 0x7fff_ffff);
    let (_, cmd) = query_command(Server::Postgres(source));
    let sql = format!(
        "SELECT 'ferry-answer', encode(convert_to(current_database(), 'UTF8'), 'hex'), pg_advisory_lock({k1}, {k2});\n"
    );
    let (holder, fields) = match hold_session(cmd, sql).await {
        Ok(x) => x,
        Err(e) => return Ok(Probe::SourceUnreachable(format!("`psql` on the source: {e}"))),
    };
    let lock =
        format!("l.locktype = 'advisory' AND l.classid = {k1} AND l.objid = {k2} AND l.objsubid = 2 AND l.granted");
    let asked = ask_target(
        job,
        Server::Postgres(target),
        ASK_SOURCE,
        format!(
            "SELECT encode(convert_to(current_database(), 'UTF8'), 'hex'), \
             EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE {lock}), \
             EXISTS (SELECT 1 FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_database d ON d.oid = l.database \
                     WHERE {lock} AND d.datname = current_database());\n"
        ),
    )
    .await;
    holder.release().await;
    let out = asked?;
    let f: Vec<&str> = out.trim().split('\t').collect();
    let (Some(db), [_, server, database]) = (unhex(f[0]), &f[..]) else {
        return Err(unexpected(job, "psql", &out));
    };
    let source_db = fields.first().and_then(|h| unhex(h)).unwrap_or_default();
    Ok(match (*server, *database) {
        ("t", "t") => Probe::Same(format!(
            "an advisory lock taken through the source connection shows through the target \
             connection, held in database `{db}`, the target's own"
        )),
        ("t", _) if db == source_db => Probe::Same(format!(
            "an advisory lock taken through the source connection shows through the target \
             connection, and both connections are to database `{db}`"
        )),
        _ => Probe::Different,
    })
}

async fn my_probe(job: &str, source: &MysqlUrl, target: &MysqlUrl) -> Result<Probe, DumpError> {
    let name = format!("ferry-probe-{:016x}", random_u64());
    let tool = pick_tool(&["mariadb", "mysql"]);
    let mut cmd = my_base(tool, source);
    // --unbuffered: the answer must arrive while the session (and its lock) stays open.
    cmd.args(["--batch", "--skip-column-names", "--unbuffered"]);
    cmd.arg(&source.database);
    let sql = format!("SELECT 'ferry-answer', HEX(DATABASE()), GET_LOCK('{name}', 10), CONNECTION_ID();\n");
    let (holder, fields) = match hold_session(cmd, sql).await {
        Ok(x) => x,
        Err(e) => return Ok(Probe::SourceUnreachable(format!("`{tool}` on the source: {e}"))),
    };
    if fields.get(1).map(String::as_str) != Some("1") {
        holder.release().await;
        return Ok(Probe::SourceUnreachable(format!(
            "`{tool}` on the source did not get the probe's lock `{name}`"
        )));
    }
    let asked = ask_target(
        job,
        Server::Mysql(target),
        ASK_SOURCE,
        format!("SELECT HEX(DATABASE()), COALESCE(IS_USED_LOCK('{name}'), 0), @@lower_case_table_names;\n"),
    )
    .await;
    holder.release().await;
    let out = asked?;
    let f: Vec<&str> = out.trim().split('\t').collect();
    let (Some(db), [_, holder_id, lower]) = (unhex(f[0]), &f[..]) else {
        return Err(unexpected(job, tool, &out));
    };
    let source_db = fields.first().and_then(|h| unhex(h)).unwrap_or_default();
    let same_db = if *lower == "0" {
        db == source_db
    } else {
        db.to_lowercase() == source_db.to_lowercase()
    };
    Ok(if *holder_id != "0" && same_db {
        Probe::Same(format!(
            "a lock taken through the source connection (connection {holder_id}) shows through the \
             target connection, and both connections are to database `{db}`"
        ))
    } else {
        Probe::Different
    })
}

fn unexpected(job: &str, tool: &str, out: &str) -> DumpError {
    DumpError::Io {
        job: job.into(),
        what: format!("reading the identity probe's answer from `{tool}`"),
        message: format!("unexpected output `{}`", redact(out.trim())),
    }
}

// ---------------------------------------------------------------------------------------------
// Empty targets.

/// Refuses a target that holds any user table or view (PostgreSQL: outside the system schemas,
/// not created by an extension; MySQL: in the URL's database; SQLite: an existing file that is
/// not an empty database).
pub(crate) async fn ensure_empty(job: &DatabaseJob, target: &Database) -> Result<(), DumpError> {
    let what = match target {
        Database::Postgres(u) => {
            let out = ask_target(
                &job.name,
                Server::Postgres(u),
                ASK_EMPTY,
                "SELECT encode(convert_to(n.nspname || '.' || c.relname, 'UTF8'), 'hex') \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname <> 'information_schema' \
                 AND n.nspname NOT LIKE 'pg\\_%' \
                 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass \
                                 AND d.objid = c.oid AND d.deptype = 'e') \
                 ORDER BY 1;\n"
                    .into(),
            )
            .await?;
            names(&job.name, "psql", &out)?
        }
        Database::Mysql(u) => {
            let out = ask_target(
                &job.name,
                Server::Mysql(u),
                ASK_EMPTY,
                "SELECT HEX(TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1;\n"
                    .into(),
            )
            .await?;
            names(&job.name, "mariadb", &out)?
        }
        Database::Sqlite(path) => {
            let p = path.clone();
            tokio::task::spawn_blocking(move || sqlite_contents(&p))
                .await
                .unwrap_or_else(|e| Some(e.to_string()))
        }
    };
    match what {
        None => Ok(()),
        Some(what) => Err(DumpError::TargetNotEmpty {
            job: job.name.clone(),
            target: target.describe(),
            what,
        }),
    }
}

/// Hex-encoded names, one a line, as [`listing`] describes them.
fn names(job: &str, tool: &str, out: &str) -> Result<Option<String>, DumpError> {
    let all: Vec<String> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| unhex(l).ok_or_else(|| unexpected(job, tool, l)))
        .collect::<Result<_, _>>()?;
    Ok(listing(all))
}

/// "it has 7 tables or views: `a`, `b`, … and 2 more"; `None` for none.
fn listing(all: Vec<String>) -> Option<String> {
    if all.is_empty() {
        return None;
    }
    let shown: Vec<String> = all.iter().take(NAMES_SHOWN).map(|n| format!("`{n}`")).collect();
    let more = all.len().saturating_sub(NAMES_SHOWN);
    Some(format!(
        "it has {} table{} or view{}: {}{}",
        all.len(),
        if all.len() == 1 { "" } else { "s" },
        if all.len() == 1 { "" } else { "s" },
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))
}

/// What a SQLite target file holds, `None` if there is nothing to lose (no file, an empty file,
/// a database without tables or views).
fn sqlite_contents(path: &Path) -> Option<String> {
    use rusqlite::{Connection, OpenFlags};
    let meta = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("it cannot be examined: {e}")),
        Ok(m) => m,
    };
    if meta.len() == 0 {
        return None;
    }
    let listed = (|| -> rusqlite::Result<Vec<String>> {
        let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut st = c.prepare(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )?;
        let rows = st.query_map([], |r| r.get(0))?;
        rows.collect()
    })();
    match listed {
        Ok(n) if n.is_empty() => None,
        Ok(n) => listing(n),
        Err(e) => Some(format!("it is not a SQLite database ferry can read ({e})")),
    }
}
