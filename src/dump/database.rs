//! What a job's database is, once the plan and the environment have been read: one arm per
//! engine ([`Database`]), each holding what that engine needs and nothing it may lack. A MySQL
//! URL that names no database never becomes a [`MysqlUrl`], and a SQLite file is read and
//! written in-process, so the client tools (`process`) take a [`Server`], which SQLite cannot be.

use std::path::{Path, PathBuf};

use super::url::{mysql_from_env, postgres_from_env, DbUrl, MysqlUrl};
use super::DumpError;
use crate::plan::{DatabaseJob, DbEngine};

/// Where a database lives.
#[derive(Debug, Clone)]
pub(super) enum Database {
    Postgres(DbUrl),
    Mysql(MysqlUrl),
    Sqlite(PathBuf),
}

/// A database reached through a client tool: a borrowed view of the server arms of
/// [`Database`], so that a function running a tool cannot be handed a SQLite file.
#[derive(Debug, Clone, Copy)]
pub(super) enum Server<'a> {
    Postgres(&'a DbUrl),
    Mysql(&'a MysqlUrl),
}

impl Database {
    /// A description safe to show (no password).
    pub(super) fn describe(&self) -> String {
        match self {
            Database::Postgres(u) => Server::Postgres(u).describe(),
            Database::Mysql(u) => Server::Mysql(u).describe(),
            Database::Sqlite(p) => p.display().to_string(),
        }
    }
}

impl Server<'_> {
    /// A description safe to show (no password).
    pub(super) fn describe(self) -> String {
        match self {
            Server::Postgres(u) => u.without_password.clone(),
            Server::Mysql(u) => u.url.without_password.clone(),
        }
    }
}

/// The database a job dumps.
pub(super) fn source(job: &DatabaseJob) -> Result<Database, DumpError> {
    // Plan validation sets `url-env` or `path` by engine; a job built in code may not have, and
    // that is an error to report, not a reason to panic.
    let missing = || DumpError::NoSource {
        job: job.name.clone(),
        key: match job.engine {
            DbEngine::Sqlite => "path",
            DbEngine::Postgres | DbEngine::Mysql => "url-env",
        },
    };
    locate(job, job.url_env.as_deref(), "url-env", job.path.as_deref(), missing)
}

/// The database a job restores into.
pub(super) fn target(job: &DatabaseJob) -> Result<Database, DumpError> {
    let none = || DumpError::NoRestoreTarget { job: job.name.clone() };
    locate(
        job,
        job.restore_to_env.as_deref(),
        "restore-to-env",
        job.restore_to_path.as_deref(),
        none,
    )
}

/// The job's database of its engine: from the URL in the variable `var` (named by the plan's
/// `key`) for a server, at `path` for SQLite; `missing` when the plan names neither.
fn locate(
    job: &DatabaseJob,
    var: Option<&str>,
    key: &'static str,
    path: Option<&Path>,
    missing: impl Fn() -> DumpError,
) -> Result<Database, DumpError> {
    Ok(match job.engine {
        DbEngine::Postgres => Database::Postgres(postgres_from_env(job, var.ok_or_else(&missing)?, key)?),
        DbEngine::Mysql => Database::Mysql(mysql_from_env(job, var.ok_or_else(&missing)?, key)?),
        DbEngine::Sqlite => Database::Sqlite(path.ok_or_else(&missing)?.to_path_buf()),
    })
}
