//! What a dump, restore or verification reports, and why one could not be done: the report
//! types the CLI prints and serialises, and [`DumpError`], whose every message names the job and
//! what to fix. Nothing here runs anything.

use std::path::PathBuf;

use serde::Serialize;

use crate::plan::DatabaseJob;
use crate::store::Store;

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
    /// The dump restored; empty for [`verify_restored`](super::verify_restored) and when no dump could be chosen.
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
    /// The globals restored before the database (`globals = true`): their key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub globals: Option<String>,
    /// Roles of the globals that the target server already had: their `CREATE ROLE` was left
    /// out (their attributes and memberships were still applied).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub globals_skipped: Vec<String>,
    pub seconds: f64,
    /// Of `seconds`, the table-by-table verification of a restore made while dumping
    /// (`ferry run --restore`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_seconds: Option<f64>,
}

impl RestoreReport {
    /// No error, and every table matches.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.tables.iter().all(|t| t.matches)
    }

    pub(super) fn new(job: &DatabaseJob, refused: bool) -> RestoreReport {
        RestoreReport {
            job: job.name.clone(),
            key: String::new(),
            tables: Vec::new(),
            verified_against: Vec::new(),
            source_not_compared: None,
            error: None,
            refused,
            globals: None,
            globals_skipped: Vec::new(),
            seconds: 0.0,
            verify_seconds: None,
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
    /// A job built in code without the source its engine needs (plan validation requires it).
    #[error("database `{job}`: no source\nhint: set `{key}` on the job")]
    NoSource { job: String, key: &'static str },
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
    #[error("database `{job}`: no complete dump at or before {at}; the oldest is `{oldest}`, from {oldest_at}\nhint: pick a time after {oldest_at}, or name a dump with --dump KEY")]
    NoDumpAt {
        job: String,
        /// The time asked for, RFC 3339 UTC.
        at: String,
        oldest: String,
        oldest_at: String,
    },
    #[error("database `{job}`: `--at` picks a dump by the `{{timestamp}}` in its key, and `{template}` has none (its key holds one dump)\nhint: restore without --at")]
    AtWithoutTimestamp { job: String, template: String },
    #[error("database `{job}`: dump `{key}` is damaged: {message}")]
    Corrupt { job: String, key: String, message: String },
    /// The provider's encryption keys: missing, unreadable, or not the ones the dump needs.
    #[error("database `{job}`: {cause}")]
    Crypt {
        job: String,
        cause: crate::crypt::CryptError,
    },
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

impl DumpError {
    pub(super) fn crypt(job: &DatabaseJob, cause: crate::crypt::CryptError) -> DumpError {
        DumpError::Crypt {
            job: job.name.clone(),
            cause,
        }
    }
}

/// A store operation on `key` failed; `message` must already be free of secrets.
pub(super) fn store_error(job: &DatabaseJob, store: &Store, key: &str, message: String) -> DumpError {
    DumpError::Store {
        job: job.name.clone(),
        provider: store.name().into(),
        key: key.into(),
        message,
    }
}

/// Why a dump did not finish: it failed (the report says why), or its token stopped it.
#[derive(Debug)]
pub(super) enum Halt {
    Failed(DumpError),
    Interrupted,
}

impl From<DumpError> for Halt {
    fn from(e: DumpError) -> Halt {
        Halt::Failed(e)
    }
}

/// `step`, unless `cancel` fires first (the step is then dropped where it stands).
pub(super) async fn until<T>(
    cancel: &tokio_util::sync::CancellationToken,
    step: impl std::future::Future<Output = T>,
) -> Result<T, Halt> {
    cancel.run_until_cancelled(step).await.ok_or(Halt::Interrupted)
}
