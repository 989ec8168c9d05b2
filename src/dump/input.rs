//! What a dump reads: the dump tool started (PostgreSQL in an exported snapshot), or a
//! consistent copy of a SQLite file through the online backup API.

use std::io::Read;
use std::path::Path as FsPath;
use std::process::Stdio;

use super::database::{Database, Server};
use super::postgres::PgSnapshot;
use super::process::{collect_stderr, dump_command, spawn_error, tool_version, ChildGuard};
use super::sqlite::{sqlite_backup, StopOnDrop, TempFile};
use super::tablesum::HeldSums;
use super::DumpError;
use crate::plan::DatabaseJob;
use crate::redact::redact;

/// What a dump reads: a tool's stdout (the tool running, its stderr being collected), or a
/// consistent copy of a SQLite file (removed when this is dropped).
pub(super) struct DumpInput {
    pub(super) reader: Box<dyn Read + Send>,
    pub(super) child: Option<(ChildGuard, tokio::task::JoinHandle<String>)>,
    /// The tool's name, for messages.
    pub(super) tool: &'static str,
    /// The tool's version line, for the record.
    pub(super) version: String,
    pub(super) tmp: Option<TempFile>,
    /// PostgreSQL: the snapshot `pg_dump` reads, held until the table checksums are taken in it.
    pub(super) snapshot: Option<PgSnapshot>,
    /// MySQL/MariaDB read by a restore as it streams: the checksums' snapshot, held until the
    /// restore is done.
    pub(super) held: Option<HeldSums>,
}

pub(super) async fn open_input(job: &DatabaseJob, conn: &Database) -> Result<DumpInput, DumpError> {
    match conn {
        Database::Sqlite(src) => sqlite_input(job, src).await,
        Database::Postgres(u) => {
            let snapshot = PgSnapshot::export(&job.name, u).await?;
            tool_input(job, Server::Postgres(u), Some(snapshot)).await
        }
        Database::Mysql(u) => tool_input(job, Server::Mysql(u), None).await,
    }
}

/// A consistent copy of the SQLite file at `src`, through the online backup API.
async fn sqlite_input(job: &DatabaseJob, src: &FsPath) -> Result<DumpInput, DumpError> {
    let tmp = TempFile::new(&std::env::temp_dir(), "ferry-sqlite-dump").map_err(|e| DumpError::Io {
        job: job.name.clone(),
        what: "creating a temporary file for the SQLite copy".into(),
        message: e.to_string(),
    })?;
    let from = src.to_path_buf();
    // The copy owns its file until it ends: a dump stopped meanwhile (a signal) drops this
    // future, not the blocking copy, which then stops waiting for a locked file and removes its
    // file rather than leave a copy of the database behind.
    let stop = StopOnDrop(Default::default());
    let stopped = stop.0.clone();
    let copied = tokio::task::spawn_blocking(move || sqlite_backup(&from, &tmp.path, &stopped).map(|()| tmp)).await;
    drop(stop);
    let tmp = copied
        .unwrap_or_else(|e| Err(e.to_string()))
        .map_err(|message| DumpError::Sqlite {
            job: job.name.clone(),
            path: src.to_path_buf(),
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
        held: None,
    })
}

/// The dump tool started, dumping `snapshot` where there is one (PostgreSQL).
async fn tool_input(
    job: &DatabaseJob,
    server: Server<'_>,
    snapshot: Option<PgSnapshot>,
) -> Result<DumpInput, DumpError> {
    let (tool, mut cmd) = dump_command(server, job.compression, snapshot.as_ref().map(|s| s.id.as_str()));
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
        held: None,
    })
}
