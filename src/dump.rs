//! Database dumps: one `[[databases]]` job streamed out of PostgreSQL, MySQL/MariaDB or SQLite into
//! a store, and streamed back into a restore target, verified table by table.
//!
//! This module owns how a job becomes tool invocations (`pg_dump`, `mariadb-dump`, `pg_restore`,
//! `mariadb`, `psql`, SQLite's online backup API), the dump key template (`{name}`,
//! `{timestamp}`), the JSON record written beside each dump (`KEY.ferry.json`), retention, and the
//! per-table checksums that prove a restore. It does not own stores (`provider`), hashing
//! (`checksum`) or the command line (`cli`). docs/databases.md is the user-facing description.
//!
//! The shape of a dump: the tool's stdout is read on a blocking thread, compressed with zstd and
//! hashed there, and handed in chunks through a small channel to the uploader, which fills parts
//! of a multipart upload. Memory is bounded by `(DUMP_PARTS_IN_FLIGHT + 1) x part size` plus the
//! channel, whatever the database size. The upload is completed only after the tool has exited
//! successfully; anything else aborts it, so a dump object that exists is a complete dump.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::{Path as FsPath, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest as _, Md5};
use object_store::{Attribute, Attributes, MultipartUpload, ObjectStoreExt, PutMultipartOptions, PutPayload};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

mod guard;
mod record;
pub(crate) mod template;

use record::{read_record, record_key};
pub use record::{DumpRecord, PreviousDump};
use template::{timestamp_now, KeyTemplate};

use crate::checksum::{Digest, StreamHasher};
use crate::plan::{Compression, DatabaseJob, DbEngine};
use crate::progress::Progress;
use crate::provider::{key_to_path, Store};
use crate::redact::{self, redact, Secret};
use crate::transfer::{body_stream, part_size};

/// Multipart part size for dumps before scaling: above S3's 5 MiB minimum part
/// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html), and small because a dump's
/// parts are produced one after another, not read in parallel. Raised by
/// [`crate::transfer::part_size`] when the database estimate needs more than 10,000 parts.
pub const DUMP_PART_SIZE: u64 = 8 << 20;
/// Parts uploading while the next one fills. Two keep the link busy while the tool is writing;
/// more would only buy memory, because the dump tool, not the upload, is usually the bottleneck.
pub const DUMP_PARTS_IN_FLIGHT: usize = 2;
/// Suffix of the record written beside each dump: `db/main/20250101T000000.000Z.dump.ferry.json`.
pub const RECORD_SUFFIX: &str = ".ferry.json";
/// Version of the record's JSON layout.
pub const RECORD_FORMAT: u32 = 1;
/// zstd's default level: about the speed of `pg_dump` itself, so compression does not slow a dump.
const ZSTD_LEVEL: i32 = 3;
/// Compressed bytes per message from the compressing thread to the uploader.
const CHUNK: usize = 1 << 20;
/// Messages queued between the compressing thread and the uploader (bounded: memory stays flat).
const CHANNEL_DEPTH: usize = 4;
/// Read size from a tool's stdout or a file.
const READ_BUF: usize = 256 * 1024;
/// How much of a tool's stderr is kept for the error message (the end is where the reason is).
const STDERR_KEEP: usize = 32 * 1024;
/// The first bytes of a zstd frame, to recognise a dump written without a record.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Connection timeout given to libpq when the user has not set `PGCONNECT_TIMEOUT`, so an
/// unreachable host fails in seconds rather than hanging a nightly run.
const CONNECT_TIMEOUT_SECS: &str = "10";
/// Session settings under which PostgreSQL renders a row as text for the checksum, so that both
/// sides render alike whatever their server defaults (time zone, date style, float digits).
const PG_CHECKSUM_OPTIONS: &str =
    "-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex";

// ---------------------------------------------------------------------------------------------
// Reports and errors.

/// What one dump did. `key` is set only when a complete dump was written.
#[derive(Debug, Clone, Serialize)]
pub struct DumpReport {
    pub job: String,
    /// The object written (complete and recorded), if any.
    pub key: Option<String>,
    /// Bytes the dump tool produced (for SQLite: the size of the consistent copy).
    pub bytes_raw: u64,
    /// Bytes stored at the destination (after compression).
    pub bytes_stored: u64,
    /// SHA-256 of the stored bytes.
    pub sha256: Option<String>,
    /// Older dumps (and their records) deleted by `keep = N`.
    pub deleted_old: Vec<String>,
    /// Why the dump (or, after a written dump, its retention) failed; passwords removed.
    pub error: Option<String>,
    pub seconds: f64,
}

impl DumpReport {
    /// Whether the dump was written and retention (if any) succeeded.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.key.is_some()
    }
}

/// One table of a restore target compared with the source database and/or with what the
/// dump's record says the table held when the dump was taken.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    /// `schema.table` for PostgreSQL, the table name for MySQL and SQLite.
    pub table: String,
    pub source_rows: Option<u64>,
    pub restored_rows: Option<u64>,
    pub source_checksum: Option<String>,
    pub restored_checksum: Option<String>,
    /// As recorded at dump time (none when the record was not compared or lacks the table).
    pub recorded_rows: Option<u64>,
    pub recorded_checksum: Option<String>,
    /// The target has the table, with the same row count and content checksum as every
    /// reference compared ([`RestoreReport::verified_against`]).
    pub matches: bool,
}

/// What a restore target was compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reference {
    /// The source database as it is at verification time.
    Source,
    /// The row counts and checksums recorded in the dump's record, taken with the dump.
    DumpRecord,
}

/// What a restore (or a verification of a restore target) found.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub job: String,
    /// The dump restored; empty for [`verify_restored`] and when no dump could be chosen.
    pub key: String,
    pub tables: Vec<TableCheck>,
    /// What the tables were compared with; empty when nothing was compared.
    pub verified_against: Vec<Reference>,
    /// Why the source was not compared (it could not be reached and `--source-unreachable-ok`
    /// said to go on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_not_compared: Option<String>,
    pub error: Option<String>,
    /// The restore stopped before anything was written to the target: a configuration error
    /// (a variable not set, no dump to restore) or a guard (the target is the source, it is not
    /// empty, the dump is another job's, the source cannot be reached). The CLI exits 2.
    pub refused: bool,
    pub seconds: f64,
}

impl RestoreReport {
    /// No error, and every table matches.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.tables.iter().all(|t| t.matches)
    }

    fn new(job: &DatabaseJob, refused: bool) -> RestoreReport {
        RestoreReport {
            job: job.name.clone(),
            key: String::new(),
            tables: Vec::new(),
            verified_against: Vec::new(),
            source_not_compared: None,
            error: None,
            refused,
            seconds: 0.0,
        }
    }
}

/// Why a dump, restore or verification could not be done. Every message names the job and what
/// to fix; text quoted from tools has passwords removed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("database `{job}`: environment variable `{var}` (named by `{key}`) is not set\nhint: export {var}=... before running ferry")]
    MissingEnv {
        job: String,
        var: String,
        key: &'static str,
    },
    #[error("database `{job}`: the connection URL in `{var}` is not usable: {message}\nhint: {hint}")]
    BadUrl {
        job: String,
        var: String,
        message: String,
        hint: &'static str,
    },
    #[error("database `{job}`: no restore target\nhint: set `restore-to-env` (postgres, mysql) or `restore-to-path` (sqlite) in the plan")]
    NoRestoreTarget { job: String },
    #[error("database `{job}`: the restore target `{target}` is the source `{source_db}`: {why}; {refusal}\nhint: point `restore-to-env`/`restore-to-path` at a different database")]
    TargetIsSource {
        job: String,
        source_db: String,
        target: String,
        why: String,
        /// What is refused: overwriting it (restore), or comparing it with itself (verify).
        refusal: &'static str,
    },
    #[error("database `{job}`: cannot reach the source ({source_db}) to make sure the restore target is not the source: {message}\nhint: if the source is gone for good, pass --source-unreachable-ok (the restore is then not verified against it)")]
    SourceUnreachable {
        job: String,
        source_db: String,
        message: String,
    },
    #[error("database `{job}`: cannot ask the restore target `{target}` {what}: {message}")]
    TargetQuery {
        job: String,
        target: String,
        what: &'static str,
        message: String,
    },
    #[error("database `{job}`: the restore target `{target}` is not empty ({what}); refusing to overwrite it\nhint: to replace what it holds, pass --replace or set `restore-replace = true` on the job; otherwise restore into an empty database")]
    TargetNotEmpty { job: String, target: String, what: String },
    #[error("database `{job}`: dump `{key}` is not this job's: {message}\nhint: restore it through the job that wrote it, or name one of this job's dumps with --dump KEY")]
    WrongDump { job: String, key: String, message: String },
    #[error("database `{job}`: cannot run `{tool}`: {message}\nhint: {hint}")]
    ToolMissing {
        job: String,
        tool: String,
        message: String,
        hint: &'static str,
    },
    #[error("database `{job}`: `{tool}` failed ({status}){}", stderr_block(.stderr))]
    Tool {
        job: String,
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("database `{job}`: key template `{template}`: {message}\nhint: {{name}} and {{timestamp}} are the placeholders; keys may not start or end with `/`")]
    Template {
        job: String,
        template: String,
        message: String,
    },
    #[error("database `{job}`: provider `{provider}`, key `{key}`: {message}")]
    Store {
        job: String,
        provider: String,
        key: String,
        message: String,
    },
    #[error("database `{job}`: no complete dump under `{provider}:{prefix}` matching `{template}`\nhint: run `ferry run` first, or name a dump with --dump KEY")]
    NoDump {
        job: String,
        provider: String,
        prefix: String,
        template: String,
    },
    #[error("database `{job}`: dump `{key}` is damaged: {message}")]
    Corrupt { job: String, key: String, message: String },
    #[error("database `{job}`: {what}: {message}")]
    Io { job: String, what: String, message: String },
    #[error("database `{job}`: sqlite `{}`: {message}", path.display())]
    Sqlite {
        job: String,
        path: PathBuf,
        message: String,
    },
}

fn stderr_block(stderr: &str) -> String {
    if stderr.is_empty() {
        " and wrote nothing to stderr".into()
    } else {
        format!(
            ":\n{}",
            stderr.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Connections.

/// A database URL taken apart. The password and every other secret parameter are [`Secret`]s
/// (registered with `redact` when parsed) and never reach a child's argv, where `ps` shows them
/// to every user: the password travels in the child's environment (`PGPASSWORD`, `MYSQL_PWD`),
/// the secrets libpq reads from no variable (`sslpassword`, ...) in a [`ServiceFile`].
#[derive(Debug, Clone)]
struct DbUrl {
    /// The URL as written minus its password and secret parameters: what messages and dump
    /// records may show, and (with [`DbUrl::conninfo`]) what libpq gets.
    without_password: String,
    user: Option<String>,
    password: Option<Secret>,
    /// Secret query parameters other than the password (`sslpassword`, `oauth_client_secret`).
    secret_params: Vec<(String, Secret)>,
    /// Where `secret_params` are written for libpq; set by [`url_from_env`] when there are any.
    service_file: Option<std::sync::Arc<ServiceFile>>,
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
    params: Vec<(String, String)>,
}

/// Where a database lives.
#[derive(Debug, Clone)]
enum Conn {
    Pg(DbUrl),
    My(DbUrl),
    Sqlite(PathBuf),
}

impl Conn {
    /// A description safe to show (no password).
    fn describe(&self) -> String {
        match self {
            Conn::Pg(u) | Conn::My(u) => u.without_password.clone(),
            Conn::Sqlite(p) => p.display().to_string(),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `scheme://[user[:password]@]host[:port][/database][?k=v&...]`. The password is
/// registered for redaction before anything else can fail, so no error can quote it.
fn parse_db_url(engine: DbEngine, raw: &str) -> Result<DbUrl, String> {
    let raw = raw.trim();
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err("not a URL (expected `scheme://user:password@host:port/database`)".into());
    };
    // The last `@` ends the user info: an unencoded `/` or `?` in a password must not move it.
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let (user, mut password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pw)) => {
                redact::register(pw);
                (Some(user), Some(Secret::new(percent_decode(pw))))
            }
            None => (Some(u), None),
        },
        None => (None, None),
    };
    let schemes: &[&str] = match engine {
        DbEngine::Postgres => &["postgres", "postgresql"],
        DbEngine::Mysql => &["mysql", "mariadb"],
        DbEngine::Sqlite => &[],
    };
    let lower = scheme.to_ascii_lowercase();
    if !schemes.contains(&lower.as_str()) {
        return Err(format!(
            "scheme `{scheme}://` is not one of {}",
            schemes.join("://, ") + "://"
        ));
    }
    let (before_query, query) = match hostpart.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (hostpart, None),
    };
    let (hostport, path) = match before_query.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (before_query, None),
    };
    let mut params = Vec::new();
    let mut secret_params = Vec::new();
    let mut kept_query = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // libpq decodes a key as it decodes a value: `pass%77ord` is `password`.
        let key = percent_decode(k);
        if key == "password" {
            // libpq accepts `?password=`; it is moved to the environment like the other form.
            redact::register(v);
            if password.is_none() {
                password = Some(Secret::new(percent_decode(v)));
            }
            continue;
        }
        if SECRET_PARAMS.contains(&key.as_str()) {
            redact::register(v);
            secret_params.push((key, Secret::new(percent_decode(v))));
            continue;
        }
        params.push((percent_decode(k), percent_decode(v)));
        kept_query.push(pair);
    }
    let (host, port) = split_host_port(hostport)?;
    let mut without_password = format!("{scheme}://");
    if let Some(u) = user {
        without_password.push_str(u);
        without_password.push('@');
    }
    without_password.push_str(hostport);
    if let Some(p) = path {
        without_password.push('/');
        without_password.push_str(p);
    }
    if !kept_query.is_empty() {
        without_password.push('?');
        without_password.push_str(&kept_query.join("&"));
    }
    Ok(DbUrl {
        without_password,
        user: user.filter(|u| !u.is_empty()).map(percent_decode),
        password: password.filter(|p| !p.expose().is_empty()),
        secret_params,
        service_file: None,
        host,
        port,
        database: path.map(percent_decode).filter(|d| !d.is_empty()),
        params,
    })
}

/// Query parameters that hold a secret, besides `password`: libpq's `sslpassword` (the client
/// key's passphrase) and `oauth_client_secret` (PostgreSQL 18). They are taken out of the URL;
/// https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS lists them.
const SECRET_PARAMS: &[&str] = &["sslpassword", "oauth_client_secret"];

/// The section ferry writes in its service file, and names with `service=` in the URL it gives.
const SERVICE_NAME: &str = "ferry";

/// A libpq connection service file (https://www.postgresql.org/docs/current/libpq-pgservice.html)
/// holding the secret parameters no environment variable carries, created with mode 0600 in the
/// temporary directory and removed when the last connection using it is dropped. Children find
/// it through `PGSERVICEFILE`; their argv only says `service=ferry`.
#[derive(Debug)]
struct ServiceFile(PathBuf);

impl ServiceFile {
    fn create(params: &[(String, Secret)]) -> io::Result<ServiceFile> {
        use std::os::unix::fs::OpenOptionsExt;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "ferry-pgservice-{}-{}-{nanos}.conf",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut text = format!("[{SERVICE_NAME}]\n");
        for (k, v) in params {
            text.push_str(&format!("{k}={}\n", v.expose()));
        }
        // create_new: never follow a link another user planted at that name.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let file = ServiceFile(path);
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        Ok(file)
    }
}

impl Drop for ServiceFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl DbUrl {
    /// The connection string a PostgreSQL tool gets in its argv: no secret, and `service=ferry`
    /// when the secrets wait in the service file.
    fn conninfo(&self) -> String {
        match self.service_file {
            None => self.without_password.clone(),
            Some(_) => {
                let sep = if self.without_password.contains('?') { '&' } else { '?' };
                format!("{}{sep}service={SERVICE_NAME}", self.without_password)
            }
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(Option<String>, Option<u16>), String> {
    if hostport.is_empty() || hostport.contains(',') {
        // Empty: the client's default (a local socket). Several hosts: libpq's failover list,
        // passed through untouched in the URL.
        return Ok((None, None));
    }
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed `[` in an IPv6 host")?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("port `{p}` is not a number"))?),
        None => None,
    };
    Ok((Some(percent_decode(host)).filter(|h| !h.is_empty()), port))
}

fn url_from_env(job: &DatabaseJob, var: &str, key: &'static str) -> Result<Conn, DumpError> {
    let raw = match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => {
            return Err(DumpError::MissingEnv {
                job: job.name.clone(),
                var: var.into(),
                key,
            })
        }
    };
    let bad = |message: String, hint: &'static str| DumpError::BadUrl {
        job: job.name.clone(),
        var: var.into(),
        message: redact(&message),
        hint,
    };
    match job.engine {
        DbEngine::Postgres => {
            let mut u = parse_db_url(DbEngine::Postgres, &raw).map_err(|m| {
                bad(
                    m,
                    "postgres://user:password@host:5432/database (percent-encode special characters)",
                )
            })?;
            if let Some((k, _)) = u.secret_params.first() {
                if u.params.iter().any(|(p, _)| p == "service") {
                    return Err(bad(
                        format!("`{k}` cannot be combined with `service`: ferry passes `{k}` to the tools through a service file of its own"),
                        "put the secret in your service file instead of the URL",
                    ));
                }
                if u.secret_params.iter().any(|(_, v)| v.expose().contains(['\n', '\r'])) {
                    return Err(bad(
                        format!("the value of `{k}` holds a line break"),
                        "a libpq parameter value is one line",
                    ));
                }
                let file = ServiceFile::create(&u.secret_params).map_err(|e| DumpError::Io {
                    job: job.name.clone(),
                    what: format!(
                        "cannot write the connection service file for `{k}` in `{}`",
                        std::env::temp_dir().display()
                    ),
                    message: redact(&e.to_string()),
                })?;
                u.service_file = Some(std::sync::Arc::new(file));
            }
            Ok(Conn::Pg(u))
        }
        DbEngine::Mysql => {
            let u = parse_db_url(DbEngine::Mysql, &raw).map_err(|m| {
                bad(
                    m,
                    "mysql://user:password@host:3306/database (percent-encode special characters)",
                )
            })?;
            if let Some((k, _)) = u.secret_params.first() {
                return Err(bad(
                    format!("parameter `{k}` is PostgreSQL's, not MySQL's"),
                    "known parameters: socket, ssl, ssl-ca, ssl-cert, ssl-key, ssl-verify-server-cert",
                ));
            }
            if u.database.is_none() {
                return Err(bad(
                    "it names no database".into(),
                    "add the database: mysql://user@host:3306/DATABASE",
                ));
            }
            for (k, _) in &u.params {
                if !MYSQL_PARAMS.contains(&k.as_str()) {
                    return Err(bad(
                        format!("unknown parameter `{k}`"),
                        "known parameters: socket, ssl, ssl-ca, ssl-cert, ssl-key, ssl-verify-server-cert",
                    ));
                }
            }
            Ok(Conn::My(u))
        }
        DbEngine::Sqlite => unreachable!("sqlite jobs use a path"),
    }
}

/// URL query parameters understood for MySQL/MariaDB, each passed as `--NAME[=VALUE]`.
const MYSQL_PARAMS: &[&str] = &[
    "socket",
    "ssl",
    "ssl-ca",
    "ssl-cert",
    "ssl-key",
    "ssl-verify-server-cert",
];

/// The database a job dumps.
fn source(job: &DatabaseJob) -> Result<Conn, DumpError> {
    match job.engine {
        DbEngine::Sqlite => Ok(Conn::Sqlite(job.path.clone().expect("validated: sqlite has a path"))),
        _ => url_from_env(
            job,
            job.url_env.as_deref().expect("validated: url-env is set"),
            "url-env",
        ),
    }
}

/// The database a job restores into.
fn target(job: &DatabaseJob) -> Result<Conn, DumpError> {
    let none = || DumpError::NoRestoreTarget { job: job.name.clone() };
    match job.engine {
        DbEngine::Sqlite => Ok(Conn::Sqlite(job.restore_to_path.clone().ok_or_else(none)?)),
        _ => url_from_env(job, job.restore_to_env.as_deref().ok_or_else(none)?, "restore-to-env"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tool invocations. Each builder returns a `std::process::Command` so tests can inspect exactly
// what a child would get: the password only ever in its environment.

/// Whether `name` is an executable file on `PATH`.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// The first of `names` found on `PATH`, or the first name (so the spawn error names it).
fn pick_tool(names: &[&'static str]) -> &'static str {
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

fn my_base(tool: &str, url: &DbUrl) -> Command {
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
/// snapshot to dump (see [`PgSnapshot`]).
fn dump_command(conn: &Conn, compression: Compression, snapshot: Option<&str>) -> (&'static str, Command) {
    match conn {
        Conn::Pg(url) => {
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
        Conn::My(url) => {
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
            cmd.arg(url.database.as_deref().expect("validated: mysql URL names a database"));
            (tool, cmd)
        }
        Conn::Sqlite(_) => unreachable!("sqlite is dumped through the backup API"),
    }
}

/// The restore tool for a URL target; it reads the dump on stdin.
fn restore_command(conn: &Conn) -> (&'static str, Command) {
    match conn {
        Conn::Pg(url) => {
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
        Conn::My(url) => {
            let tool = pick_tool(&["mariadb", "mysql"]);
            let mut cmd = my_base(tool, url);
            cmd.arg("--batch");
            cmd.arg(url.database.as_deref().expect("validated: mysql URL names a database"));
            (tool, cmd)
        }
        Conn::Sqlite(_) => unreachable!("sqlite is restored by writing the file"),
    }
}

/// A command-line client that runs the SQL script given on stdin and prints tab-separated rows.
fn query_command(conn: &Conn) -> (&'static str, Command) {
    match conn {
        Conn::Pg(url) => {
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
        Conn::My(url) => {
            let tool = pick_tool(&["mariadb", "mysql"]);
            let mut cmd = my_base(tool, url);
            cmd.args(["--batch", "--skip-column-names"]);
            cmd.arg(url.database.as_deref().expect("validated: mysql URL names a database"));
            (tool, cmd)
        }
        Conn::Sqlite(_) => unreachable!("sqlite is queried in-process"),
    }
}

fn tool_hint(tool: &str) -> &'static str {
    if tool.starts_with("pg_") || tool == "psql" {
        "install the PostgreSQL client tools (Debian: postgresql-client) at least as new as the server"
    } else {
        "install the MariaDB or MySQL client tools (Debian: mariadb-client) so that the tool is on PATH"
    }
}

fn spawn_error(job: &str, tool: &str, e: io::Error) -> DumpError {
    DumpError::ToolMissing {
        job: job.into(),
        tool: tool.into(),
        message: redact(&e.to_string()),
        hint: tool_hint(tool),
    }
}

fn status_text(status: &ExitStatus) -> String {
    match status.code() {
        Some(c) => format!("exit status {c}"),
        None => format!("{status}, killed"),
    }
}

/// Runs a script through a command-line client and returns its stdout.
async fn run_query(job: &str, conn: &Conn, script: String) -> Result<String, DumpError> {
    let (tool, mut cmd) = query_command(conn);
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
struct ChildGuard(Option<std::process::Child>);

impl ChildGuard {
    fn kill(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
        }
    }

    async fn wait(&mut self) -> io::Result<ExitStatus> {
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
fn collect_stderr(mut r: impl Read + Send + 'static) -> tokio::task::JoinHandle<String> {
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
async fn tool_version(tool: &str) -> String {
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

/// A dump found at the destination.
#[derive(Debug, Clone)]
struct Found {
    key: String,
    sort: String,
    has_record: bool,
}

/// Every dump of the job at the store, newest first.
async fn list_dumps(job: &DatabaseJob, store: &Store, template: &KeyTemplate) -> Result<Vec<Found>, DumpError> {
    let prefix = template.list_prefix();
    let mut dumps = Vec::new();
    let mut records = BTreeSet::new();
    let mut listing = store.list(&prefix);
    while let Some(item) = listing.try_next().await.map_err(|e| DumpError::Store {
        job: job.name.clone(),
        provider: store.name().into(),
        key: prefix.clone(),
        message: format!("cannot list: {}", redact(&e.to_string())),
    })? {
        // A link or special file where dumps live is not a dump: never kept, never deleted.
        if item.problem.is_some() {
            continue;
        }
        if let Some(dump) = item.key.strip_suffix(RECORD_SUFFIX) {
            records.insert(dump.to_string());
        } else if let Some(sort) = template.matches(&item.key) {
            dumps.push(Found {
                key: item.key,
                sort,
                has_record: false,
            });
        }
    }
    for d in &mut dumps {
        d.has_record = records.contains(&d.key);
    }
    dumps.sort_by(|a, b| b.sort.cmp(&a.sort).then_with(|| b.key.cmp(&a.key)));
    Ok(dumps)
}

// ---------------------------------------------------------------------------------------------
// Dump.

/// Dumps one job's database to `dst`: streamed, compressed, hashed, uploaded as a multipart
/// upload that is completed only if the dump tool succeeded; then the record is written beside
/// it and `keep = N` retention applied. Never panics on a failed dump: the report says why.
pub async fn dump(job: &DatabaseJob, dst: &Store, progress: &dyn Progress) -> DumpReport {
    let started = Instant::now();
    progress.job_started(&job.name, "dump");
    let mut report = DumpReport {
        job: job.name.clone(),
        key: None,
        bytes_raw: 0,
        bytes_stored: 0,
        sha256: None,
        deleted_old: Vec::new(),
        error: None,
        seconds: 0.0,
    };
    if let Err(e) = dump_inner(job, dst, progress, &mut report).await {
        report.error = Some(redact(&e.to_string()));
    }
    progress.object_done();
    report.seconds = started.elapsed().as_secs_f64();
    progress.job_finished(&job.name);
    report
}

async fn dump_inner(
    job: &DatabaseJob,
    dst: &Store,
    progress: &dyn Progress,
    report: &mut DumpReport,
) -> Result<(), DumpError> {
    let conn = source(job)?;
    let template = KeyTemplate::new(job)?;
    let serr = |key: &str, message: String| DumpError::Store {
        job: job.name.clone(),
        provider: dst.name().into(),
        key: key.into(),
        message,
    };

    // A fresh key: with `{timestamp}` a taken key means two dumps in one millisecond; wait it out
    // rather than overwrite, and never overwrite. Without `{timestamp}` each dump replaces the
    // last, record first (see `record`), so that a failure keeps the previous one.
    let mut key = template.render(&timestamp_now());
    if template.has_timestamp() {
        let mut taken = true;
        for _ in 0..5 {
            let path = key_to_path(&key).map_err(|e| serr(&key, e.to_string()))?;
            // Only "exists" counts: a store that refuses HEAD (write-only credentials) is not
            // a reason to fail, and the timestamp makes a clash all but impossible.
            if dst.inner.head(&path).await.is_err() {
                taken = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            key = template.render(&timestamp_now());
        }
        if taken {
            return Err(serr(
                &key,
                "the key is taken by another dump; not overwriting it".into(),
            ));
        }
    }
    let path = key_to_path(&key).map_err(|e| serr(&key, e.to_string()))?;

    // The estimate sizes the parts (10,000 of them must hold the dump) and the progress bar.
    // Uncompressed text dumps of binary columns can be twice the on-disk size, hence the 2x.
    let estimate = estimate_conn(&job.name, &conn).await.ok();
    if let Some(e) = estimate {
        progress.found(1, e);
    }
    let limits = dst.caps.limits;
    let hint = estimate.unwrap_or(0).saturating_mul(2).min(limits.max_object_size);
    let part = part_size(hint, DUMP_PART_SIZE, &limits).map_err(|m| serr(&key, m))?;

    let mut attributes = Attributes::new();
    if dst.caps.content_type {
        let ct = match job.compression {
            Compression::Zstd => "application/zstd",
            Compression::None => "application/octet-stream",
        };
        attributes.insert(Attribute::ContentType, ct.into());
    }
    dst.mark_private(&mut attributes);

    // The input: a dump tool's stdout, or a consistent copy of the SQLite file.
    let DumpInput {
        reader: input,
        mut child,
        tool: tool_name,
        version: tool,
        tmp,
        snapshot,
    } = open_input(job, &conn).await?;

    let mut upload = match dst
        .inner
        .put_multipart_opts(
            &path,
            PutMultipartOptions {
                attributes,
                ..Default::default()
            },
        )
        .await
    {
        Ok(u) => u,
        Err(e) => {
            if let Some((c, _)) = &mut child {
                c.kill();
            }
            return Err(serr(
                &key,
                format!("cannot start the upload: {}", redact(&e.to_string())),
            ));
        }
    };

    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let compression = job.compression;
    let producer = tokio::task::spawn_blocking(move || produce(input, compression, tx));
    // The record's table checksums, taken while the dump runs, from what it dumps: SQLite's
    // copy itself; PostgreSQL's exported snapshot; for MySQL/MariaDB, which cannot share a
    // snapshot between sessions, a consistent-snapshot transaction begun as the dump's was
    // (a write committed between the two would show as a mismatch at restore, never as a
    // false match).
    let copy = tmp.as_ref().map(|t| Conn::Sqlite(t.path.clone()));
    let at = ReadAt::Dump(snapshot.as_ref().map(|s| s.id.as_str()));
    let sums = table_sums(&job.name, copy.as_ref().unwrap_or(&conn), at);
    let (sent, sums) = tokio::join!(upload_parts(&mut upload, &mut rx, part, progress), sums);
    drop(rx); // a stopped upload makes the producer's next send fail, so it ends
    if sent.is_err() {
        if let Some((c, _)) = &mut child {
            c.kill();
        }
    }
    let produced = producer.await.unwrap_or_else(|e| Err(io::Error::other(e)));
    let tool_outcome = match &mut child {
        Some((c, stderr)) => {
            let status = c.wait().await;
            let stderr = stderr.await.unwrap_or_default();
            Some((status, stderr))
        }
        None => None,
    };
    if let Some(s) = snapshot {
        s.session.release().await;
    }

    // The first cause wins: an upload failure kills the tool, so its status would mislead.
    let failure = if let Err(e) = &sent {
        Some(serr(&key, format!("upload failed: {}", redact(&e.to_string()))))
    } else if let Some((status, stderr)) = &tool_outcome {
        match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(DumpError::Tool {
                job: job.name.clone(),
                tool: tool_name.to_string(),
                status: status_text(s),
                stderr: stderr.clone(),
            }),
            Err(e) => Some(DumpError::Io {
                job: job.name.clone(),
                what: format!("waiting for `{tool_name}`"),
                message: e.to_string(),
            }),
        }
    } else {
        None
    };
    let failure = failure.or_else(|| {
        produced.as_ref().err().map(|e| DumpError::Io {
            job: job.name.clone(),
            what: format!("reading and compressing the output of `{tool_name}`"),
            message: e.to_string(),
        })
    });
    // A dump whose tables could not be summed cannot prove a restore once the source is gone.
    let (failure, tables) = match sums {
        Ok(t) => (failure, Some(t)),
        Err(e) => (failure.or(Some(e)), None),
    };
    if let Some(f) = failure {
        // Never leave a partial dump behind to be mistaken for a complete one (or billed).
        let _ = upload.abort().await;
        return Err(f);
    }
    let produced = produced.expect("checked above");
    let mut record = DumpRecord {
        format: RECORD_FORMAT,
        job: job.name.clone(),
        engine: job.engine,
        key: key.clone(),
        compression: job.compression,
        sha256: produced.digest.sha256.clone(),
        bytes_stored: produced.digest.bytes,
        bytes_raw: produced.raw,
        created: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        tool: redact(&tool),
        source: redact(&conn.describe()),
        tables,
        previous: Vec::new(),
    };
    let rkey = record_key(&key);
    if template.has_timestamp() {
        // A new key: complete, then record. A dump without its record is never offered.
        if let Err(e) = upload.complete().await {
            let _ = upload.abort().await;
            return Err(serr(
                &key,
                format!("completing the upload failed: {}", redact(&e.to_string())),
            ));
        }
        if let Err(e) = record::write_record(dst, &record).await {
            // Without its record the dump is unverifiable; remove it rather than leave it half-known.
            let _ = dst.inner.delete(&path).await;
            return Err(serr(
                &rkey,
                format!("writing the dump record failed (the dump was removed): {e}"),
            ));
        }
    } else {
        // The key holds the previous dump: record first, naming it, then complete.
        let switch = match record::write_record_first(job, dst, &mut record).await {
            Ok(s) => s,
            Err(e) => {
                let _ = upload.abort().await;
                return Err(e);
            }
        };
        if let Err(e) = upload.complete().await {
            let _ = upload.abort().await;
            record::undo_record_first(job, dst, &record, switch).await;
            return Err(serr(
                &key,
                format!(
                    "completing the upload failed: {}; the key keeps a complete dump and a record that describes it",
                    redact(&e.to_string())
                ),
            ));
        }
        record::finish_record(dst, &mut record).await;
    }
    progress.skipped_bytes(estimate.unwrap_or(0).saturating_sub(produced.raw));
    report.key = Some(key.clone());
    report.bytes_raw = produced.raw;
    report.bytes_stored = produced.digest.bytes;
    report.sha256 = Some(produced.digest.sha256);

    if let Some(keep) = job.keep {
        let (deleted, error) = retain(job, dst, &template, &key, keep).await;
        report.deleted_old = deleted;
        if let Some(e) = error {
            report.error = Some(format!("dump `{key}` was written, but retention failed: {e}"));
        }
    }
    Ok(())
}

/// What a dump reads: a tool's stdout (the tool running, its stderr being collected), or a
/// consistent copy of a SQLite file (removed when this is dropped).
struct DumpInput {
    reader: Box<dyn Read + Send>,
    child: Option<(ChildGuard, tokio::task::JoinHandle<String>)>,
    /// The tool's name, for messages.
    tool: &'static str,
    /// The tool's version line, for the record.
    version: String,
    tmp: Option<TempFile>,
    /// PostgreSQL: the snapshot `pg_dump` reads, held until the table checksums are taken in it.
    snapshot: Option<PgSnapshot>,
}

/// A PostgreSQL transaction held open (a `psql` session) for the length of a dump, whose
/// exported snapshot `pg_dump --snapshot` dumps and the checksum queries import
/// (`SET TRANSACTION SNAPSHOT`), so the recorded checksums describe exactly the dumped rows.
/// <https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION>
struct PgSnapshot {
    id: String,
    session: guard::Holder,
}

impl PgSnapshot {
    async fn export(job: &str, conn: &Conn) -> Result<PgSnapshot, DumpError> {
        let (tool, cmd) = query_command(conn);
        let sql = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n\
                   SELECT 'ferry-answer', pg_export_snapshot();\n";
        let failed = |message: String| DumpError::Tool {
            job: job.into(),
            tool: tool.into(),
            status: "exporting the snapshot `pg_dump` is to dump".into(),
            stderr: message,
        };
        let (session, fields) = guard::hold_session(cmd, sql.into()).await.map_err(failed)?;
        match fields.first() {
            // Snapshot ids are hex digits and dashes (`00000003-0000001B-1`).
            Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') => Ok(PgSnapshot {
                id: id.clone(),
                session,
            }),
            _ => {
                session.release().await;
                Err(failed(format!("unexpected answer {fields:?}")))
            }
        }
    }
}

async fn open_input(job: &DatabaseJob, conn: &Conn) -> Result<DumpInput, DumpError> {
    match conn {
        Conn::Sqlite(src) => {
            let tmp = TempFile::new(&std::env::temp_dir(), "ferry-sqlite-dump").map_err(|e| DumpError::Io {
                job: job.name.clone(),
                what: "creating a temporary file for the SQLite copy".into(),
                message: e.to_string(),
            })?;
            let (from, to) = (src.clone(), tmp.path.clone());
            tokio::task::spawn_blocking(move || sqlite_backup(&from, &to))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                .map_err(|message| DumpError::Sqlite {
                    job: job.name.clone(),
                    path: src.clone(),
                    message: redact(&message),
                })?;
            let file = std::fs::File::open(&tmp.path).map_err(|e| DumpError::Io {
                job: job.name.clone(),
                what: "reading the SQLite copy".into(),
                message: e.to_string(),
            })?;
            Ok(DumpInput {
                reader: Box::new(file),
                child: None,
                tool: "sqlite",
                version: format!("sqlite {} online backup API", rusqlite::version()),
                tmp: Some(tmp),
                snapshot: None,
            })
        }
        Conn::Pg(_) | Conn::My(_) => {
            let snapshot = match conn {
                Conn::Pg(_) => Some(PgSnapshot::export(&job.name, conn).await?),
                _ => None,
            };
            let (tool, mut cmd) = dump_command(conn, job.compression, snapshot.as_ref().map(|s| s.id.as_str()));
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let version = tool_version(tool).await;
            let mut c = cmd.spawn().map_err(|e| spawn_error(&job.name, tool, e))?;
            let stdout = c.stdout.take().expect("stdout is piped");
            let stderr = collect_stderr(c.stderr.take().expect("stderr is piped"));
            Ok(DumpInput {
                reader: Box::new(stdout),
                child: Some((ChildGuard(Some(c)), stderr)),
                tool,
                version,
                tmp: None,
                snapshot,
            })
        }
    }
}

/// What the producer read and stored.
struct Produced {
    raw: u64,
    digest: Digest,
}

/// Reads `input` to the end on a blocking thread, compresses and hashes it, and sends
/// `(stored bytes, raw bytes consumed)` chunks to the uploader.
fn produce(
    mut input: Box<dyn Read + Send>,
    compression: Compression,
    tx: mpsc::Sender<(Bytes, u64)>,
) -> io::Result<Produced> {
    let mut hasher = StreamHasher::new(false);
    let mut raw = 0u64;
    let mut buf = vec![0u8; READ_BUF];
    let send = |data: Vec<u8>, raw: u64, hasher: &mut StreamHasher| -> io::Result<()> {
        hasher.update(&data);
        tx.blocking_send((Bytes::from(data), raw))
            .map_err(|_| io::Error::other("the upload stopped"))
    };
    match compression {
        Compression::None => loop {
            let n = read_full(&mut input, &mut buf)?;
            if n == 0 {
                break;
            }
            raw += n as u64;
            send(buf[..n].to_vec(), n as u64, &mut hasher)?;
        },
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(Vec::with_capacity(CHUNK * 2), ZSTD_LEVEL)?;
            // The frame checksum lets the decoder catch corruption before a restore finishes.
            enc.include_checksum(true)?;
            let mut pending = 0u64;
            loop {
                let n = match input.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    break;
                }
                raw += n as u64;
                pending += n as u64;
                enc.write_all(&buf[..n])?;
                // Also flush on raw volume, so highly compressible data still reports progress.
                if enc.get_ref().len() >= CHUNK || pending >= 8 * CHUNK as u64 {
                    let out = std::mem::replace(enc.get_mut(), Vec::with_capacity(CHUNK * 2));
                    send(out, pending, &mut hasher)?;
                    pending = 0;
                }
            }
            let out = enc.finish()?;
            send(out, pending, &mut hasher)?;
        }
    }
    Ok(Produced {
        raw,
        digest: hasher.finish(),
    })
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Fills parts from the channel and uploads them, at most [`DUMP_PARTS_IN_FLIGHT`] at a time,
/// driving the uploads while waiting for more data. Every part but the last is exactly `part`.
async fn upload_parts(
    upload: &mut Box<dyn MultipartUpload>,
    rx: &mut mpsc::Receiver<(Bytes, u64)>,
    part: u64,
    progress: &dyn Progress,
) -> object_store::Result<()> {
    let mut inflight = FuturesUnordered::new();
    let mut buf: Vec<Bytes> = Vec::new();
    let mut buf_len = 0u64;
    let mut parts = 0u64;
    loop {
        let msg = tokio::select! {
            Some(r) = inflight.next(), if !inflight.is_empty() => {
                r?;
                continue;
            }
            m = rx.recv() => m,
        };
        let Some((mut chunk, raw)) = msg else { break };
        progress.bytes(raw);
        while buf_len + chunk.len() as u64 >= part {
            buf.push(chunk.split_to((part - buf_len) as usize));
            inflight.push(upload.put_part(PutPayload::from_iter(std::mem::take(&mut buf))));
            parts += 1;
            buf_len = 0;
            if inflight.len() >= DUMP_PARTS_IN_FLIGHT {
                inflight.next().await.transpose()?;
            }
        }
        if !chunk.is_empty() {
            buf_len += chunk.len() as u64;
            buf.push(chunk);
        }
    }
    if buf_len > 0 || parts == 0 {
        inflight.push(upload.put_part(PutPayload::from_iter(buf)));
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    Ok(())
}

/// Deletes dumps of this job beyond the newest `keep`, never `just_written`, never a key that
/// does not match the job's template. Returns what was deleted and the first error.
async fn retain(
    job: &DatabaseJob,
    dst: &Store,
    template: &KeyTemplate,
    just_written: &str,
    keep: usize,
) -> (Vec<String>, Option<String>) {
    let mut deleted = Vec::new();
    let dumps = match list_dumps(job, dst, template).await {
        Ok(d) => d,
        Err(e) => return (deleted, Some(redact(&e.to_string()))),
    };
    // The dump just written always counts as kept, even if a listing does not show it yet.
    let mut kept = 1usize;
    let mut error = None;
    for d in dumps {
        if d.key == just_written {
            continue;
        }
        if kept < keep.max(1) {
            kept += 1;
            continue;
        }
        let mut ok = true;
        for k in [d.key.clone(), record_key(&d.key)] {
            let r = match key_to_path(&k) {
                Ok(p) => match dst.inner.delete(&p).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(redact(&e.to_string())),
                },
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = r {
                ok = false;
                error.get_or_insert(format!("cannot delete old dump `{k}`: {e}"));
                break;
            }
        }
        if ok {
            deleted.push(d.key);
        }
    }
    (deleted, error)
}

// ---------------------------------------------------------------------------------------------
// SQLite files.

/// A file removed when dropped (with any SQLite `-wal`, `-shm`, `-journal` beside it).
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Creates an empty file readable only by this user: a copy of a database is as sensitive as
    /// the database.
    fn new(dir: &FsPath, stem: &str) -> io::Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{stem}-{}-{nanos}-{n}", std::process::id()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        opts.open(&path)?;
        Ok(TempFile { path })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

/// A consistent copy of `src` into the (empty) file `dst` through SQLite's online backup API, in
/// one step: the copy is one read transaction, so it is a snapshot even while writers run (in WAL
/// mode they are not blocked; in rollback mode they wait for the copy).
fn sqlite_backup(src: &FsPath, dst: &FsPath) -> Result<(), String> {
    use rusqlite::backup::{Backup, StepResult};
    use rusqlite::{Connection, OpenFlags};
    if !src.is_file() {
        return Err("no such file".into());
    }
    let from = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| e.to_string())?;
    from.busy_timeout(Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let mut to = Connection::open(dst).map_err(|e| e.to_string())?;
    {
        let backup = Backup::new(&from, &mut to).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            match backup.step(-1).map_err(|e| e.to_string())? {
                StepResult::Done => break,
                StepResult::More => continue,
                StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => return Err("the database stayed locked for 5 minutes".into()),
            }
        }
    }
    to.close().map_err(|(_, e)| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Restore.

/// How `ferry restore` was asked to restore.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions<'a> {
    /// A dump key to restore instead of the newest dump that has a record.
    pub key: Option<&'a str>,
    /// Restore into a target that already has tables (`--replace`; the job's `restore-replace`
    /// says the same).
    pub replace: bool,
    /// Restore even though the source cannot be reached to prove the target is not the source
    /// (`--source-unreachable-ok`). Identical spellings are still refused.
    pub source_unreachable_ok: bool,
}

/// Restores a dump (the newest complete one, or `opts.key`) into the job's restore target, then
/// verifies the target table by table: against the row counts and checksums the dump's record
/// holds (taken with the dump), and against the source database as it is now. A source that
/// cannot be reached is left out only with `opts.source_unreachable_ok` (it may be gone: that is
/// why one restores); the record then proves the restore alone. Before anything is written, the
/// guards run: the target is not the source (probed, see `guard`), it is empty unless replacing
/// is allowed, and the dump was written by this job. A refusal sets [`RestoreReport::refused`].
pub async fn restore(job: &DatabaseJob, src: &Store, opts: &RestoreOptions<'_>) -> RestoreReport {
    let started = Instant::now();
    let mut report = RestoreReport::new(job, true);
    match restore_inner(job, src, opts, &mut report).await {
        Err(e) => report.error = Some(redact(&e.to_string())),
        Ok(recorded) => {
            if let Err(e) = check_restore(job, opts, recorded, &mut report).await {
                report.error = Some(redact(&format!("restored `{}`, but cannot verify it: {e}", report.key)));
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}

/// Compares the restore target with the dump's recorded tables (when its record has them) and
/// with the live source (unless it cannot be reached and that was allowed).
async fn check_restore(
    job: &DatabaseJob,
    opts: &RestoreOptions<'_>,
    recorded: Option<BTreeMap<String, TableSum>>,
    report: &mut RestoreReport,
) -> Result<(), DumpError> {
    let target = target(job)?;
    let live = async {
        match source(job) {
            Ok(s) => table_sums(&job.name, &s, ReadAt::Now).await,
            Err(e) => Err(e),
        }
    };
    let (restored, live) = tokio::join!(table_sums(&job.name, &target, ReadAt::Now), live);
    let restored = restored?;
    let live = match live {
        Ok(sums) => Some(sums),
        Err(e) if opts.source_unreachable_ok => {
            report.source_not_compared = Some(redact(&e.to_string()));
            None
        }
        Err(e) => return Err(e),
    };
    if live.is_none() && recorded.is_none() {
        return Err(DumpError::Io {
            job: job.name.clone(),
            what: "verifying the restore".into(),
            message: "the source cannot be reached and the dump's record holds no table checksums \
                      (it was written before ferry recorded them)"
                .into(),
        });
    }
    report.verified_against = [
        recorded.as_ref().map(|_| Reference::DumpRecord),
        live.as_ref().map(|_| Reference::Source),
    ]
    .into_iter()
    .flatten()
    .collect();
    report.tables = compare_tables(&restored, live.as_ref(), recorded.as_ref());
    Ok(())
}

/// Restores the dump; returns the tables its record says it holds, if the record has them.
async fn restore_inner(
    job: &DatabaseJob,
    src: &Store,
    opts: &RestoreOptions<'_>,
    report: &mut RestoreReport,
) -> Result<Option<BTreeMap<String, TableSum>>, DumpError> {
    let dst = target(job)?;
    guard::ensure_not_source(job, &dst, opts.source_unreachable_ok).await?;
    if !(opts.replace || job.restore_replace) {
        guard::ensure_empty(job, &dst).await?;
    }
    let template = KeyTemplate::new(job)?;
    let key = match opts.key {
        Some(k) => k.to_string(),
        None => {
            let dumps = list_dumps(job, src, &template).await?;
            dumps
                .into_iter()
                .find(|d| d.has_record)
                .ok_or_else(|| DumpError::NoDump {
                    job: job.name.clone(),
                    provider: src.name().into(),
                    prefix: template.list_prefix(),
                    template: template.raw.clone(),
                })?
                .key
        }
    };
    report.key = key.clone();
    let serr = |message: String| DumpError::Store {
        job: job.name.clone(),
        provider: src.name().into(),
        key: key.clone(),
        message,
    };
    let record = read_record(job, src, &key).await?;
    match &record {
        Some(r) => r.check_owner(job, &key)?,
        // Only a dump whose record could not be written lacks one; its key must at least be
        // one this job writes.
        None if template.matches(&key).is_none() => {
            return Err(DumpError::WrongDump {
                job: job.name.clone(),
                key: key.clone(),
                message: format!(
                    "it has no record, and its key is not one the job's template `{}` writes",
                    template.raw
                ),
            })
        }
        None => {}
    }
    let path = key_to_path(&key).map_err(|e| serr(e.to_string()))?;
    let got = src.inner.get(&path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => serr("no such dump".into()),
        e => serr(redact(&e.to_string())),
    })?;
    // A fixed key's record may describe two dumps (see `record`): the object's size says which.
    let candidates = record
        .as_ref()
        .map(|r| r.candidates(Some(got.meta.size)))
        .unwrap_or_default();
    let mut body = body_stream(got);
    let first = match body.next().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(serr(format!("download failed: {}", redact(&e.to_string())))),
        None => Bytes::new(),
    };
    let compression = match &candidates[..] {
        [c, rest @ ..] if rest.iter().all(|r| r.compression == c.compression) => c.compression,
        _ if first.starts_with(&ZSTD_MAGIC) => Compression::Zstd,
        _ => Compression::None,
    };
    // From here on the target may be written to.
    report.refused = false;

    // The sink: a restore tool's stdin, or a temporary file beside the SQLite target.
    let mut child = None;
    let mut tool = "sqlite".to_string();
    let mut tmp = None;
    let sink: Box<dyn Write + Send> = match &dst {
        Conn::Sqlite(target_path) => {
            let dir = target_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(FsPath::new("."));
            let io_err = |what: &str, e: io::Error| DumpError::Io {
                job: job.name.clone(),
                what: format!("{what} `{}`", dir.display()),
                message: e.to_string(),
            };
            std::fs::create_dir_all(dir).map_err(|e| io_err("creating", e))?;
            let stem = format!(
                ".{}.ferry-restore",
                target_path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            );
            let t = TempFile::new(dir, &stem).map_err(|e| io_err("creating a temporary file in", e))?;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&t.path)
                .map_err(|e| io_err("opening a temporary file in", e))?;
            tmp = Some(t);
            Box::new(io::BufWriter::with_capacity(READ_BUF, file))
        }
        Conn::Pg(_) | Conn::My(_) => {
            let (t, mut cmd) = restore_command(&dst);
            tool = t.to_string();
            cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
            let mut c = cmd.spawn().map_err(|e| spawn_error(&job.name, t, e))?;
            let stdin = c.stdin.take().expect("stdin is piped");
            let stderr = collect_stderr(c.stderr.take().expect("stderr is piped"));
            child = Some((ChildGuard(Some(c)), stderr));
            Box::new(stdin)
        }
    };

    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let consumer = tokio::task::spawn_blocking(move || consume(rx, compression, sink));
    let mut download_error = None;
    // An empty first chunk is skipped, not taken for the end of the object.
    if first.is_empty() || tx.send(first).await.is_ok() {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) => {
                    if tx.send(b).await.is_err() {
                        break; // the consumer stopped; its error says why
                    }
                }
                Err(e) => {
                    download_error = Some(redact(&e.to_string()));
                    break;
                }
            }
        }
    }
    drop(tx);
    let (consumed, digest, sink) = consumer.await.expect("the restore writer does not panic");
    let sha_mismatch = match &digest {
        Some(got) if !candidates.is_empty() && candidates.iter().all(|c| c.sha256 != got.sha256) => Some((
            candidates
                .iter()
                .map(|c| c.sha256.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
            got.sha256.clone(),
        )),
        _ => None,
    };
    let failed = download_error.is_some() || consumed.is_err() || sha_mismatch.is_some();
    if failed {
        // Kill before closing stdin: a client that saw end-of-input would apply a truncated dump.
        if let Some((c, _)) = &mut child {
            c.kill();
        }
    }
    drop(sink);
    let tool_outcome = match &mut child {
        Some((c, stderr)) => Some((c.wait().await, stderr.await.unwrap_or_default())),
        None => None,
    };

    if let Some(e) = download_error {
        return Err(serr(format!("download failed: {e}")));
    }
    if let Err(ConsumeError::Input(e)) = &consumed {
        return Err(DumpError::Corrupt {
            job: job.name.clone(),
            key: key.clone(),
            message: format!("cannot decompress: {e}"),
        });
    }
    if let Some((status, stderr)) = tool_outcome {
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                return Err(DumpError::Tool {
                    job: job.name.clone(),
                    tool,
                    status: status_text(&s),
                    stderr,
                })
            }
            Err(e) => {
                return Err(DumpError::Io {
                    job: job.name.clone(),
                    what: format!("waiting for `{tool}`"),
                    message: e.to_string(),
                })
            }
        }
    }
    // The tool's own failure (above) explains a broken pipe better than the pipe does.
    if let Err(ConsumeError::Sink(e) | ConsumeError::Input(e)) = consumed {
        let what = match &dst {
            Conn::Sqlite(_) => "writing the temporary SQLite file".to_string(),
            _ => format!("writing to `{tool}`"),
        };
        return Err(DumpError::Io {
            job: job.name.clone(),
            what,
            message: e.to_string(),
        });
    }
    if let Some((want, got)) = sha_mismatch {
        return Err(DumpError::Corrupt {
            job: job.name.clone(),
            key: key.clone(),
            message: format!("SHA-256 of the stored bytes is {got}, the record says {want}"),
        });
    }
    // The dump restored is the candidate whose SHA-256 the bytes have (a fixed key's record may
    // describe two).
    let recorded = digest
        .as_ref()
        .and_then(|d| candidates.into_iter().find(|c| c.sha256 == d.sha256))
        .and_then(|c| c.tables);
    if let (Conn::Sqlite(target_path), Some(t)) = (&dst, tmp.take()) {
        let tpath = t.path.clone();
        let target_path2 = target_path.clone();
        let placed = tokio::task::spawn_blocking(move || place_sqlite(t, &target_path2))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        placed.map_err(|message| DumpError::Sqlite {
            job: job.name.clone(),
            path: tpath,
            message,
        })?;
    }
    Ok(recorded)
}

/// Reads the stored bytes from the channel on a blocking thread, hashes them, decompresses them
/// into `sink`. Returns the sink unclosed, so the caller can kill a restore tool before it sees
/// end-of-input when anything went wrong.
fn consume(
    mut rx: mpsc::Receiver<Bytes>,
    compression: Compression,
    mut sink: Box<dyn Write + Send>,
) -> (Result<u64, ConsumeError>, Option<Digest>, Box<dyn Write + Send>) {
    let mut hasher = StreamHasher::new(false);
    let mut sink_failed = false;
    let result = (|| -> io::Result<u64> {
        let mut counter = CountingWriter {
            inner: &mut sink,
            count: 0,
            failed: &mut sink_failed,
        };
        match compression {
            Compression::None => {
                while let Some(b) = rx.blocking_recv() {
                    hasher.update(&b);
                    counter.write_all(&b)?;
                }
                counter.flush()?;
            }
            Compression::Zstd => {
                let mut dec = zstd::stream::write::Decoder::new(&mut counter)?;
                while let Some(b) = rx.blocking_recv() {
                    hasher.update(&b);
                    dec.write_all(&b)?;
                }
                // Errors on a truncated frame, and the frame checksum catches corrupted bytes.
                dec.flush()?;
                dec.finish()?;
                counter.flush()?;
            }
        }
        Ok(counter.count)
    })();
    let digest = result.is_ok().then(|| hasher.finish());
    let result = result.map_err(|e| {
        if sink_failed {
            ConsumeError::Sink(e)
        } else {
            ConsumeError::Input(e)
        }
    });
    (result, digest, sink)
}

/// Where a restore stream broke: in the stored bytes (decompression), or writing them out.
#[derive(Debug)]
enum ConsumeError {
    Input(io::Error),
    Sink(io::Error),
}

/// Counts what reaches the sink, and remembers whether the sink (not the decoder) failed.
struct CountingWriter<'a> {
    inner: &'a mut Box<dyn Write + Send>,
    count: u64,
    failed: &'a mut bool,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf).inspect_err(|_| *self.failed = true)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| *self.failed = true)
    }
}

/// Checks the restored SQLite file and moves it over the target. Stale `-wal`/`-shm` files of
/// the old target are removed first: SQLite would otherwise replay the old log into the new file.
fn place_sqlite(tmp: TempFile, target_path: &FsPath) -> Result<(), String> {
    use rusqlite::{Connection, OpenFlags};
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&tmp.path)
            .map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
        let c = Connection::open_with_flags(&tmp.path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| e.to_string())?;
        let check: String = c
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if check != "ok" {
            return Err(format!("the restored file fails `PRAGMA quick_check`: {check}"));
        }
    }
    // Opening a WAL-mode file read-only leaves an empty `-wal` and `-shm` beside it; they belong
    // to the temporary name and would be orphaned by the rename.
    for suffix in ["-wal", "-shm"] {
        let mut p = tmp.path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    if let Ok(meta) = std::fs::metadata(target_path) {
        let _ = std::fs::set_permissions(&tmp.path, meta.permissions());
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = target_path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(&p)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove stale `{}`: {e}", PathBuf::from(p).display())),
        }
    }
    std::fs::rename(&tmp.path, target_path)
        .map_err(|e| format!("cannot move into place at `{}`: {e}", target_path.display()))?;
    // The rename succeeded: nothing left for the guard to delete.
    std::mem::forget(tmp);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Verification.

/// Compares the job's source database with its restore target, table by table, without
/// restoring anything.
pub async fn verify_restored(job: &DatabaseJob) -> RestoreReport {
    let started = Instant::now();
    let mut report = RestoreReport::new(job, false);
    let result = async {
        let s = source(job)?;
        let t = target(job)?;
        // A database compared with itself always "matches".
        guard::ensure_distinct(job, &s, &t).await?;
        let (s, t) = tokio::join!(
            table_sums(&job.name, &s, ReadAt::Now),
            table_sums(&job.name, &t, ReadAt::Now)
        );
        Ok::<_, DumpError>(compare_tables(&t?, Some(&s?), None))
    }
    .await;
    match result {
        Ok(tables) => {
            report.tables = tables;
            report.verified_against = vec![Reference::Source];
        }
        Err(e) => report.error = Some(redact(&e.to_string())),
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}

/// Row count and content checksum of one table, as compared after a restore and as kept in a
/// dump's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TableSum {
    pub rows: u64,
    pub checksum: String,
}

/// The restored tables against each reference given: every table any side has, matching when
/// the target has it and every reference holds the same rows and checksum.
fn compare_tables(
    restored: &BTreeMap<String, TableSum>,
    source: Option<&BTreeMap<String, TableSum>>,
    recorded: Option<&BTreeMap<String, TableSum>>,
) -> Vec<TableCheck> {
    let names: BTreeSet<&String> = restored
        .keys()
        .chain(source.into_iter().flat_map(|m| m.keys()))
        .chain(recorded.into_iter().flat_map(|m| m.keys()))
        .collect();
    names
        .into_iter()
        .map(|name| {
            let (a, b, r) = (
                source.and_then(|m| m.get(name)),
                restored.get(name),
                recorded.and_then(|m| m.get(name)),
            );
            let agrees = |reference: Option<&BTreeMap<String, TableSum>>| reference.is_none_or(|m| m.get(name) == b);
            TableCheck {
                table: name.clone(),
                source_rows: a.map(|x| x.rows),
                restored_rows: b.map(|x| x.rows),
                source_checksum: a.map(|x| x.checksum.clone()),
                restored_checksum: b.map(|x| x.checksum.clone()),
                recorded_rows: r.map(|x| x.rows),
                recorded_checksum: r.map(|x| x.checksum.clone()),
                matches: b.is_some() && agrees(source) && agrees(recorded),
            }
        })
        .collect()
}

/// Which state of the database the checksum queries read.
#[derive(Debug, Clone, Copy)]
enum ReadAt<'a> {
    /// Whatever is committed when each query runs.
    Now,
    /// PostgreSQL: the snapshot a held transaction exported (`pg_export_snapshot()`), the one
    /// `pg_dump --snapshot` dumps. MySQL/MariaDB: a consistent-snapshot transaction of its own,
    /// begun as the dump's is (a server cannot share one between sessions).
    Dump(Option<&'a str>),
}

impl ReadAt<'_> {
    /// The statements a checksum script starts with.
    fn prelude(self, conn: &Conn) -> String {
        match (self, conn) {
            (ReadAt::Now, _) | (_, Conn::Sqlite(_)) => String::new(),
            (ReadAt::Dump(Some(id)), Conn::Pg(_)) => format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSET TRANSACTION SNAPSHOT '{}';\n",
                id.replace('\'', "''")
            ),
            (ReadAt::Dump(None), Conn::Pg(_)) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n".into(),
            (ReadAt::Dump(_), Conn::My(_)) => "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ;\n\
                 START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY;\n"
                .into(),
        }
    }
}

/// Every table's row count and checksum. The checksum is order-independent: each row's canonical
/// text is hashed with MD5, and the two 64-bit halves of those hashes are summed exactly over the
/// table (a sum, so neither physical order nor a sort matters; exact, so duplicate rows count).
async fn table_sums(job: &str, conn: &Conn, at: ReadAt<'_>) -> Result<BTreeMap<String, TableSum>, DumpError> {
    let prelude = at.prelude(conn);
    match conn {
        Conn::Pg(_) => pg_sums(job, conn, &prelude).await,
        Conn::My(_) => my_sums(job, conn, &prelude).await,
        Conn::Sqlite(path) => {
            let p = path.clone();
            tokio::task::spawn_blocking(move || sqlite_sums(&p))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                .map_err(|message| DumpError::Sqlite {
                    job: job.into(),
                    path: path.clone(),
                    message: redact(&message),
                })
        }
    }
}

fn unhex(s: &str) -> Option<String> {
    let b = s.trim().as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = b
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn my_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Parses `index \t rows \t sum_hi \t sum_lo` lines into the named tables.
fn parse_sums(job: &str, tool: &str, out: &str, names: &[String]) -> Result<BTreeMap<String, TableSum>, DumpError> {
    let bad = |line: &str| DumpError::Io {
        job: job.into(),
        what: format!("reading the checksum output of `{tool}`"),
        message: format!("unexpected line `{}`", redact(line)),
    };
    let mut map = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').map(str::trim).collect();
        let [i, rows, hi, lo] = f[..] else {
            return Err(bad(line));
        };
        let name = i
            .parse::<usize>()
            .ok()
            .and_then(|i| names.get(i))
            .ok_or_else(|| bad(line))?;
        let rows = rows.parse::<u64>().map_err(|_| bad(line))?;
        map.insert(
            name.clone(),
            TableSum {
                rows,
                checksum: format!("{hi}:{lo}"),
            },
        );
    }
    if map.len() != names.len() {
        return Err(DumpError::Io {
            job: job.into(),
            what: format!("reading the checksum output of `{tool}`"),
            message: format!("expected {} tables, got {}", names.len(), map.len()),
        });
    }
    Ok(map)
}

/// PostgreSQL: every ordinary table (partitions included, partitioned parents excluded: they hold
/// no rows) outside the system schemas. A row's canonical text is `ROW(t.*)::text` under fixed
/// session settings ([`PG_CHECKSUM_OPTIONS`]).
async fn pg_sums(job: &str, conn: &Conn, prelude: &str) -> Result<BTreeMap<String, TableSum>, DumpError> {
    let list = run_query(
        job,
        conn,
        format!(
            "{prelude}SELECT encode(convert_to(n.nspname, 'UTF8'), 'hex'), encode(convert_to(c.relname, 'UTF8'), 'hex') \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
             ORDER BY 1, 2;\n"
        ),
    )
    .await?;
    let mut tables = Vec::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let (s, t) = line
            .split_once('\t')
            .and_then(|(s, t)| Some((unhex(s)?, unhex(t)?)))
            .ok_or_else(|| DumpError::Io {
                job: job.into(),
                what: "listing tables with `psql`".into(),
                message: format!("unexpected line `{}`", redact(line)),
            })?;
        tables.push((s, t));
    }
    if tables.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut script = prelude.to_string();
    let mut names = Vec::new();
    for (i, (s, t)) in tables.iter().enumerate() {
        script.push_str(&format!(
            "SELECT {i}, count(*), coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint), 0), \
             coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint), 0) \
             FROM (SELECT md5(ROW(r.*)::text) AS h FROM {}.{} AS r) AS x;\n",
            pg_ident(s),
            pg_ident(t)
        ));
        names.push(format!("{s}.{t}"));
    }
    let out = run_query(job, conn, script).await?;
    parse_sums(job, "psql", &out, &names)
}

/// MySQL/MariaDB: every base table of the URL's database. A row's canonical text is
/// `CONCAT_WS(',', QUOTE(c1), QUOTE(c2), ...)` in column order (QUOTE keeps NULL apart from
/// 'NULL' and escapes separators), with the session time zone at UTC.
async fn my_sums(job: &str, conn: &Conn, prelude: &str) -> Result<BTreeMap<String, TableSum>, DumpError> {
    let list = run_query(
        job,
        conn,
        "SELECT HEX(c.TABLE_NAME), HEX(c.COLUMN_NAME) FROM information_schema.COLUMNS c \
         JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' \
         ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION;\n"
            .into(),
    )
    .await?;
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let (t, c) = line
            .split_once('\t')
            .and_then(|(t, c)| Some((unhex(t)?, unhex(c)?)))
            .ok_or_else(|| DumpError::Io {
                job: job.into(),
                what: "listing tables".into(),
                message: format!("unexpected line `{}`", redact(line)),
            })?;
        tables.entry(t).or_default().push(c);
    }
    if tables.is_empty() {
        return Ok(BTreeMap::new());
    }
    // The transaction begins after the time zone is set: neither statement may end the other.
    let mut script = format!("SET SESSION time_zone = '+00:00';\n{prelude}");
    let mut names = Vec::new();
    for (i, (t, cols)) in tables.iter().enumerate() {
        let row: Vec<String> = cols.iter().map(|c| format!("QUOTE({})", my_ident(c))).collect();
        script.push_str(&format!(
            "SELECT {i}, COUNT(*), COALESCE(SUM(CAST(CONV(SUBSTRING(h, 1, 16), 16, 10) AS UNSIGNED)), 0), \
             COALESCE(SUM(CAST(CONV(SUBSTRING(h, 17, 16), 16, 10) AS UNSIGNED)), 0) \
             FROM (SELECT MD5(CONCAT_WS(',', {})) AS h FROM {}) AS x;\n",
            row.join(", "),
            my_ident(t)
        ));
        names.push(t.clone());
    }
    let out = run_query(job, conn, script).await?;
    parse_sums(job, "mariadb", &out, &names)
}

/// SQLite: every ordinary table (not `sqlite_*`, not virtual tables, whose shadow tables are
/// checked instead). A row's canonical form is each value's type tag and bytes: `N`, `I` + i64,
/// `R` + f64 bits, `T`/`B` + length + bytes.
fn sqlite_sums(path: &FsPath) -> Result<BTreeMap<String, TableSum>, String> {
    use rusqlite::types::ValueRef;
    use rusqlite::{Connection, OpenFlags};
    if !path.is_file() {
        return Err("no such file".into());
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let names: Vec<String> = {
        let mut stmt = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
            )
            .map_err(|e| e.to_string())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())?
    };
    let mut map = BTreeMap::new();
    for name in names {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {}", pg_ident(&name)))
            .map_err(|e| format!("table `{name}`: {e}"))?;
        let ncols = stmt.column_count();
        let mut rows = stmt.query([]).map_err(|e| format!("table `{name}`: {e}"))?;
        let (mut count, mut hi, mut lo) = (0u64, 0u128, 0u128);
        while let Some(row) = rows.next().map_err(|e| format!("table `{name}`: {e}"))? {
            let mut h = Md5::new();
            for i in 0..ncols {
                match row.get_ref(i).map_err(|e| e.to_string())? {
                    ValueRef::Null => h.update(b"N"),
                    ValueRef::Integer(v) => {
                        h.update(b"I");
                        h.update(v.to_le_bytes());
                    }
                    ValueRef::Real(v) => {
                        h.update(b"R");
                        h.update(v.to_bits().to_le_bytes());
                    }
                    ValueRef::Text(t) => {
                        h.update(b"T");
                        h.update((t.len() as u64).to_le_bytes());
                        h.update(t);
                    }
                    ValueRef::Blob(b) => {
                        h.update(b"B");
                        h.update((b.len() as u64).to_le_bytes());
                        h.update(b);
                    }
                }
            }
            let d = h.finalize();
            hi += u64::from_be_bytes(d[..8].try_into().expect("16-byte digest")) as u128;
            lo += u64::from_be_bytes(d[8..].try_into().expect("16-byte digest")) as u128;
            count += 1;
        }
        map.insert(
            name,
            TableSum {
                rows: count,
                checksum: format!("{hi}:{lo}"),
            },
        );
    }
    Ok(map)
}

// ---------------------------------------------------------------------------------------------
// Size estimate.

/// The database's size on disk, for `ferry plan`: `pg_database_size`, the sum of data and index
/// lengths in `information_schema.TABLES`, or the SQLite file plus its WAL.
pub async fn estimate_size(job: &DatabaseJob) -> Result<u64, DumpError> {
    let conn = source(job)?;
    estimate_conn(&job.name, &conn).await
}

async fn estimate_conn(job: &str, conn: &Conn) -> Result<u64, DumpError> {
    let sql = match conn {
        Conn::Pg(_) => "SELECT pg_database_size(current_database());\n",
        Conn::My(_) => {
            "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE();\n"
        }
        Conn::Sqlite(path) => {
            let size = |p: &FsPath| std::fs::metadata(p).map(|m| m.len());
            let main = size(path).map_err(|e| DumpError::Sqlite {
                job: job.into(),
                path: path.clone(),
                message: e.to_string(),
            })?;
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            return Ok(main + size(FsPath::new(&wal)).unwrap_or(0));
        }
    };
    let out = run_query(job, conn, sql.into()).await?;
    out.trim().parse::<u64>().map_err(|_| DumpError::Io {
        job: job.into(),
        what: "reading the database size".into(),
        message: format!("unexpected output `{}`", redact(out.trim())),
    })
}

#[cfg(test)]
mod tests {
    use super::template::parse_timestamp;
    use super::*;
    use crate::plan::Location;

    fn job(template: &str) -> DatabaseJob {
        DatabaseJob {
            name: "main".into(),
            engine: DbEngine::Postgres,
            url_env: Some("X".into()),
            path: None,
            to: Location {
                provider: "dst".into(),
                prefix: template.into(),
            },
            compression: Compression::Zstd,
            restore_to_env: None,
            restore_to_path: None,
            restore_replace: false,
            keep: None,
            line: 1,
        }
    }

    fn env_of(cmd: &Command, name: &str) -> Option<String> {
        cmd.get_envs()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    }

    fn args_of(cmd: &Command) -> Vec<String> {
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn urls_lose_their_password_to_a_secret() {
        let u = parse_db_url(
            DbEngine::Postgres,
            "postgres://app:p%40ss%2Fw0rd!@db.example:5433/main?sslmode=require",
        )
        .unwrap();
        assert_eq!(u.password.as_ref().unwrap().expose(), "p@ss/w0rd!");
        assert_eq!(
            u.without_password,
            "postgres://app@db.example:5433/main?sslmode=require"
        );
        assert_eq!(
            (u.host.as_deref(), u.port, u.database.as_deref()),
            (Some("db.example"), Some(5433), Some("main"))
        );
        // An unencoded `/` in a password does not move the host.
        let u = parse_db_url(DbEngine::Mysql, "mysql://root:a/b?c@[::1]:3306/shop").unwrap();
        assert_eq!(u.password.as_ref().unwrap().expose(), "a/b?c");
        assert_eq!(
            (u.host.as_deref(), u.port, u.database.as_deref()),
            (Some("::1"), Some(3306), Some("shop"))
        );
        // libpq's `?password=` form is moved out too.
        let u = parse_db_url(
            DbEngine::Postgres,
            "postgresql://u@h/d?password=QueryPw99&application_name=x",
        )
        .unwrap();
        assert_eq!(u.password.as_ref().unwrap().expose(), "QueryPw99");
        assert_eq!(u.without_password, "postgresql://u@h/d?application_name=x");
        assert!(format!("{u:?}").find("QueryPw99").is_none());
        assert!(parse_db_url(DbEngine::Postgres, "mysql://h/d").is_err());
        assert!(parse_db_url(DbEngine::Postgres, "host=h dbname=d").is_err());
        // A failed parse still registered the password before failing.
        let _ = parse_db_url(DbEngine::Postgres, "postgres://u:EarlyFail77@h:notaport/d");
        assert_eq!(redact("EarlyFail77"), "***");
    }

    #[test]
    fn passwords_reach_children_by_environment_only() {
        let pg =
            Conn::Pg(parse_db_url(DbEngine::Postgres, "postgres://postgres:SeCrEt123@127.0.0.1:5432/test").unwrap());
        let my = Conn::My(parse_db_url(DbEngine::Mysql, "mysql://root:MyS3cret!@127.0.0.1:3306/test").unwrap());
        let cmds = [
            (
                "PGPASSWORD",
                "SeCrEt123",
                dump_command(&pg, Compression::Zstd, Some("00000003-0000001B-1")).1,
            ),
            ("PGPASSWORD", "SeCrEt123", restore_command(&pg).1),
            ("PGPASSWORD", "SeCrEt123", query_command(&pg).1),
            ("MYSQL_PWD", "MyS3cret!", dump_command(&my, Compression::Zstd, None).1),
            ("MYSQL_PWD", "MyS3cret!", restore_command(&my).1),
            ("MYSQL_PWD", "MyS3cret!", query_command(&my).1),
        ];
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

    /// Issue 14: `sslpassword` (and any secret parameter libpq reads from no variable) leaves the
    /// URL, goes into a 0600 service file named by `PGSERVICEFILE`, and the argv says only
    /// `service=ferry`; the file is gone with the last connection.
    #[test]
    fn secret_parameters_reach_libpq_through_a_service_file() {
        let job = job("db/{name}/{timestamp}.dump");
        let var = "FERRY_UNIT_SSLPASSWORD_URL";
        std::env::set_var(
            var,
            "postgres://app@127.0.0.1:5432/test?sslmode=prefer&sslpassword=Ssl%2FPass-7Hq2&pass%77ord=QPw-44x",
        );
        let Conn::Pg(u) = url_from_env(&job, var, "url-env").unwrap() else {
            panic!("a postgres URL")
        };
        assert_eq!(u.without_password, "postgres://app@127.0.0.1:5432/test?sslmode=prefer");
        assert_eq!(u.password.as_ref().unwrap().expose(), "QPw-44x");
        let conn = Conn::Pg(u);
        for (_, cmd) in [
            dump_command(&conn, Compression::Zstd, None),
            restore_command(&conn),
            query_command(&conn),
        ] {
            let args = args_of(&cmd).join(" ");
            assert!(!args.contains("Ssl") && !args.contains("QPw-44x"), "{args}");
            assert!(
                args.contains("--dbname=postgres://app@127.0.0.1:5432/test?sslmode=prefer&service=ferry"),
                "{args}"
            );
            assert_eq!(env_of(&cmd, "PGPASSWORD").as_deref(), Some("QPw-44x"));
            let file = PathBuf::from(env_of(&cmd, "PGSERVICEFILE").unwrap());
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(
                std::fs::read_to_string(&file).unwrap(),
                "[ferry]\nsslpassword=Ssl/Pass-7Hq2\n"
            );
        }
        let Conn::Pg(u) = &conn else { unreachable!() };
        let file = u.service_file.as_ref().unwrap().0.clone();
        assert_eq!(redact(&format!("{conn:?} Ssl%2FPass-7Hq2")).matches("Ssl").count(), 0);
        drop(conn);
        assert!(!file.exists(), "the service file outlived its connection");
        // With the user's own `service=`, ferry's file cannot be named: refused, unprinted.
        std::env::set_var(var, "postgres://h/d?service=prod&sslpassword=Ssl-Other-8Kq");
        let e = url_from_env(&job, var, "url-env").unwrap_err().to_string();
        assert!(
            e.contains("`sslpassword` cannot be combined with `service`") && !e.contains("Other-8Kq"),
            "{e}"
        );
        std::env::remove_var(var);
    }

    #[test]
    fn templates_render_match_and_list() {
        let t = KeyTemplate::new(&job("db/{name}/{timestamp}.dump")).unwrap();
        assert_eq!(t.list_prefix(), "db/main/");
        let k = t.render("20250131T235959.123Z");
        assert_eq!(k, "db/main/20250131T235959.123Z.dump");
        assert_eq!(t.matches(&k).as_deref(), Some("20250131235959123"));
        assert_eq!(
            t.matches("db/main/20250131T235959Z.dump").as_deref(),
            Some("20250131235959000")
        );
        assert_eq!(t.matches(&record_key(&k)), None);
        assert_eq!(t.matches("db/main/latest.dump"), None);
        assert_eq!(t.matches("db/other/20250131T235959.123Z.dump"), None);
        let now = timestamp_now();
        assert_eq!(parse_timestamp(&now).map(|p| p.0), Some(now.len()), "{now}");
        let flat = KeyTemplate::new(&job("{name}-{timestamp}.dump")).unwrap();
        assert_eq!(flat.list_prefix(), "");
        assert!(KeyTemplate::new(&job("db/{date}.dump")).is_err());
        assert!(KeyTemplate::new(&job("db//{timestamp}")).is_err());
        assert!(!KeyTemplate::new(&job("db/main.dump")).unwrap().has_timestamp());
    }

    /// A sink the test can read back after `consume` has taken ownership of it.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// produce -> stored bytes -> consume, returning the restored bytes and both digests.
    fn roundtrip(compression: Compression, data: &[u8]) -> (Vec<u8>, Digest, Digest) {
        let (tx, mut rx) = mpsc::channel(4);
        let input: Box<dyn Read + Send> = Box::new(io::Cursor::new(data.to_vec()));
        let producer = std::thread::spawn(move || produce(input, compression, tx));
        let (tx2, rx2) = mpsc::channel(4);
        let out = Shared::default();
        let sink = out.clone();
        let consumer = std::thread::spawn(move || consume(rx2, compression, Box::new(sink)));
        let mut raw = 0;
        while let Some((b, r)) = rx.blocking_recv() {
            raw += r;
            tx2.blocking_send(b).unwrap();
        }
        drop(tx2);
        let produced = producer.join().unwrap().unwrap();
        assert_eq!((produced.raw, raw), (data.len() as u64, data.len() as u64));
        let (res, digest, _sink) = consumer.join().unwrap();
        assert_eq!(res.map_err(|e| format!("{e:?}")).unwrap(), data.len() as u64);
        let restored = out.0.lock().unwrap().clone();
        (restored, produced.digest, digest.unwrap())
    }

    #[test]
    fn stream_compresses_hashes_and_decompresses() {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for c in [Compression::Zstd, Compression::None] {
            let (back, produced, consumed) = roundtrip(c, &data);
            assert_eq!(back, data);
            assert_eq!(produced.sha256, consumed.sha256, "both ends hash the stored bytes");
        }
    }

    #[test]
    fn truncated_zstd_is_an_error() {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.write_all(&vec![7u8; 1 << 20]).unwrap();
        let full = enc.finish().unwrap();
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Bytes::copy_from_slice(&full[..full.len() - 3])).unwrap();
        drop(tx);
        let (res, digest, _) = consume(rx, Compression::Zstd, Box::new(io::sink()));
        assert!(
            matches!(res, Err(ConsumeError::Input(_))) && digest.is_none(),
            "{res:?}"
        );
    }

    #[test]
    fn sqlite_checksum_ignores_row_order_but_not_content() {
        let dir = std::env::temp_dir().join(format!("ferry-dump-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let make = |name: &str, rows: &[(i64, Option<&str>)]| {
            let p = dir.join(name);
            let _ = std::fs::remove_file(&p);
            let c = rusqlite::Connection::open(&p).unwrap();
            c.execute("CREATE TABLE t(a INTEGER, b TEXT)", []).unwrap();
            for (a, b) in rows {
                c.execute("INSERT INTO t VALUES (?1, ?2)", rusqlite::params![a, b])
                    .unwrap();
            }
            sqlite_sums(&p).unwrap()
        };
        let a = make("a.db", &[(1, Some("x")), (2, None), (2, None)]);
        let b = make("b.db", &[(2, None), (1, Some("x")), (2, None)]);
        let c = make("c.db", &[(1, Some("x")), (2, None), (2, Some(""))]);
        let d = make("d.db", &[(1, Some("x")), (2, None)]);
        assert_eq!(a, b);
        assert_ne!(a["t"].checksum, c["t"].checksum, "NULL and '' differ");
        assert_ne!(a["t"].rows, d["t"].rows);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
