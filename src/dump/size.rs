//! The size a dump will have, estimated from the database before dumping: for `ferry plan`, and
//! to size a dump's multipart parts and its progress bar.

use std::path::Path as FsPath;

use super::database::{source, Database, Server};
use super::process::run_query;
use super::DumpError;
use crate::plan::DatabaseJob;
use crate::redact::redact;

/// The database's size on disk, for `ferry plan`: `pg_database_size`, the sum of data and index
/// lengths in `information_schema.TABLES`, or the SQLite file plus its WAL.
pub async fn estimate_size(job: &DatabaseJob) -> Result<u64, DumpError> {
    let conn = source(job)?;
    estimate_conn(&job.name, &conn).await
}

pub(super) async fn estimate_conn(job: &str, conn: &Database) -> Result<u64, DumpError> {
    let (server, sql) = match conn {
        Database::Postgres(u) => (Server::Postgres(u), "SELECT pg_database_size(current_database());\n"),
        Database::Mysql(u) => (
            Server::Mysql(u),
            "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE();\n",
        ),
        Database::Sqlite(path) => {
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
    let out = run_query(job, server, sql.into()).await?;
    out.trim().parse::<u64>().map_err(|_| DumpError::Io {
        job: job.into(),
        what: "reading the database size".into(),
        message: format!("unexpected output `{}`", redact(out.trim())),
    })
}
