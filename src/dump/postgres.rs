//! PostgreSQL's part of a dump that is not a tool's argv (`process`) or a checksum query
//! (`tablesum`): the snapshot `pg_dump` dumps, exported by a transaction ferry holds open so
//! that the table checksums recorded with the dump are taken in that very snapshot.

use super::database::Server;
use super::guard;
use super::process::query_command;
use super::url::DbUrl;
use super::DumpError;

/// A PostgreSQL transaction held open (a `psql` session) for the length of a dump, whose
/// exported snapshot `pg_dump --snapshot` dumps and the checksum queries import
/// (`SET TRANSACTION SNAPSHOT`), so the recorded checksums describe exactly the dumped rows.
/// <https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION>
pub(super) struct PgSnapshot {
    pub(super) id: String,
    pub(super) session: guard::Holder,
}

impl PgSnapshot {
    pub(super) async fn export(job: &str, url: &DbUrl) -> Result<PgSnapshot, DumpError> {
        let (tool, cmd) = query_command(Server::Postgres(url));
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
