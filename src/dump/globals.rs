//! A server's globals (`globals = true`): PostgreSQL's roles, role memberships and tablespaces
//! (`pg_dumpall --globals-only`), MariaDB/MySQL's accounts and grants (`myusers`), which belong
//! to the server rather than to the dumped database (password hashes only with
//! `globals-passwords = true`), stored beside the dump as `KEY.globals.sql` (encrypted like the
//! record when the provider encrypts), and restored before the database by `ferry restore`.
//!
//! On restore (PostgreSQL), the roles the target server already has are not created again: each
//! `CREATE ROLE name;` line of such a role is left out (and reported), so that restoring into a
//! server that has `postgres` and the application's roles does not fail; everything else runs
//! with `ON_ERROR_STOP`, so a real failure (a tablespace folder missing, no right to create
//! roles) stops the restore before the database is touched.

use std::collections::BTreeSet;
use std::process::Stdio;

use object_store::{ObjectStoreExt, PutPayload};

use super::database::{Database, Server};
use super::myusers;
use super::process::{globals_command, run_query, spawn_error, tool_result};
use super::record::{globals_key, DumpFile, DumpRecord};
use super::report::store_error;
use super::url::DbUrl;
use super::{DumpError, RestoreReport};
use crate::checksum::StreamHasher;
use crate::crypt::{is_sealed, Opener, Sealer};
use crate::plan::DatabaseJob;
use crate::redact::redact;
use crate::store::{key_to_path, Store};

/// Takes the source server's globals and stores them beside the dump at `key`, sealed with
/// `seal` when the provider encrypts; `None` when the job does not ask for them. Also returns
/// them as text, for a restore fed by the dump itself (`tee`).
pub(super) async fn take(
    job: &DatabaseJob,
    dst: &Store,
    conn: &Database,
    key: &str,
    seal: Option<&Sealer>,
) -> Result<Option<(DumpFile, String)>, DumpError> {
    if !job.globals {
        return Ok(None);
    }
    let raw = match conn {
        Database::Postgres(url) => pg_globals(job, url).await?,
        Database::Mysql(url) => myusers::take(&job.name, url, job.globals_passwords).await?,
        // Plan validation refuses `globals` for SQLite.
        Database::Sqlite(_) => return Ok(None),
    };
    let stored = match seal {
        Some(s) => s.seal(&raw).map_err(|e| DumpError::Io {
            job: job.name.clone(),
            what: "encrypting the globals".into(),
            message: e.to_string(),
        })?,
        None => raw.clone(),
    };
    let gkey = globals_key(key);
    let serr = |m: String| store_error(job, dst, &gkey, m);
    let path = key_to_path(&gkey).map_err(|e| serr(e.to_string()))?;
    let sha256 = sha256_of(&stored);
    let bytes_stored = stored.len() as u64;
    dst.put_private(&path, PutPayload::from(stored))
        .await
        .map_err(|e| serr(format!("cannot write the globals: {}", redact(&e.to_string()))))?;
    let file = DumpFile {
        name: "globals.sql".into(),
        key: gkey,
        sha256,
        bytes_stored,
        bytes_raw: raw.len() as u64,
    };
    Ok(Some((file, String::from_utf8_lossy(&raw).into_owned())))
}

/// `pg_dumpall --globals-only`'s output.
async fn pg_globals(job: &DatabaseJob, url: &DbUrl) -> Result<Vec<u8>, DumpError> {
    let mut cmd = tokio::process::Command::from(globals_command(url, job.globals_passwords));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.kill_on_drop(true);
    let out = cmd
        .output()
        .await
        .map_err(|e| spawn_error(&job.name, "pg_dumpall", e))?;
    let stderr = redact(String::from_utf8_lossy(&out.stderr).trim());
    tool_result(&job.name, "pg_dumpall", Ok(out.status), stderr)?;
    Ok(out.stdout)
}

/// Removes the globals written for a dump that then failed (best effort: a leftover is no dump).
pub(super) async fn remove(dst: &Store, key: &str) {
    if let Ok(p) = key_to_path(&globals_key(key)) {
        let _ = dst.inner.delete(&p).await;
    }
}

fn sha256_of(bytes: &[u8]) -> String {
    let mut h = StreamHasher::new(false);
    h.update(bytes);
    h.finish().sha256
}

/// Restores the dump's globals (if its record has them) into the target's server, before the
/// database: reads and checks them against the record, leaves out what the target has
/// (PostgreSQL: the `CREATE ROLE` of its roles; MariaDB/MySQL: `CREATE USER IF NOT EXISTS`
/// keeps its accounts), runs the rest with the engine's client (stopping at the first error).
pub(super) async fn restore(
    job: &DatabaseJob,
    src: &Store,
    dst: &Database,
    record: &DumpRecord,
    report: &mut RestoreReport,
) -> Result<(), DumpError> {
    let Some(g) = &record.globals else {
        return Ok(());
    };
    let text = read(job, src, g).await?;
    apply(job, dst, text, &g.key, report).await
}

/// Runs the globals `text` (stored at `gkey`) against the target's server, leaving out what it
/// has (see [`restore`]).
pub(super) async fn apply(
    job: &DatabaseJob,
    dst: &Database,
    text: String,
    gkey: &str,
    report: &mut RestoreReport,
) -> Result<(), DumpError> {
    let (server, script, skipped) = match dst {
        Database::Postgres(url) => {
            let server = Server::Postgres(url);
            let roles = run_query(&job.name, server, "SELECT rolname FROM pg_roles;\n".into()).await?;
            let existing: BTreeSet<&str> = roles.lines().collect();
            let (script, skipped) = without_existing_roles(&text, &existing);
            (server, script, skipped)
        }
        Database::Mysql(url) => {
            let target: BTreeSet<String> = myusers::accounts(&job.name, url).await?.into_iter().collect();
            let skipped = myusers::existing(&text, &target);
            (Server::Mysql(url), text, skipped)
        }
        Database::Sqlite(_) => return Ok(()),
    };
    run_query(&job.name, server, script).await.map_err(|e| match e {
        DumpError::Tool {
            job,
            tool,
            status,
            stderr,
        } => DumpError::Tool {
            job,
            tool,
            status: format!("{status}, restoring the globals `{gkey}`"),
            stderr,
        },
        e => e,
    })?;
    report.globals = Some(gkey.to_string());
    report.globals_skipped = skipped;
    Ok(())
}

/// The stored globals `g`, checked against the record's SHA-256 and decrypted, as text.
async fn read(job: &DatabaseJob, src: &Store, g: &DumpFile) -> Result<String, DumpError> {
    let serr = |m: String| store_error(job, src, &g.key, m);
    let path = key_to_path(&g.key).map_err(|e| serr(e.to_string()))?;
    let got = src.inner.get(&path).await.map_err(|e| serr(redact(&e.to_string())))?;
    let stored = got.bytes().await.map_err(|e| serr(redact(&e.to_string())))?;
    let sha = sha256_of(&stored);
    if sha != g.sha256 {
        return Err(DumpError::Corrupt {
            job: job.name.clone(),
            key: g.key.clone(),
            message: format!("SHA-256 of the stored globals is {sha}, the record says {}", g.sha256),
        });
    }
    let plain = if is_sealed(&stored) {
        let crypt = |e| DumpError::crypt(job, e);
        Opener::load(&src.spec, &g.key)
            .and_then(|o| o.open(&g.key, &stored))
            .map_err(crypt)?
    } else {
        stored.to_vec()
    };
    Ok(String::from_utf8_lossy(&plain).into_owned())
}

/// `script` without the `CREATE ROLE name;` lines (as `pg_dumpall` writes them) of roles in
/// `existing`, and the names left out.
fn without_existing_roles(script: &str, existing: &BTreeSet<&str>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(script.len());
    let mut skipped = Vec::new();
    for line in script.split_inclusive('\n') {
        let role = line
            .trim_end()
            .strip_prefix("CREATE ROLE ")
            .and_then(|r| r.strip_suffix(';'))
            .map(unquote);
        match role {
            Some(r) if existing.contains(r.as_str()) => skipped.push(r),
            _ => out.push_str(line),
        }
    }
    (out, skipped)
}

/// A role name as `pg_dumpall` writes it (`fmtId`): bare, or in double quotes with `""` for `"`.
fn unquote(ident: &str) -> String {
    match ident.strip_prefix('"').and_then(|i| i.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => ident.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_role_of_existing_roles_is_left_out() {
        let script = "SET x = 1;\nCREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER;\n\
                      CREATE ROLE \"Odd \"\"Name\";\nCREATE ROLE app;\nGRANT app TO \"Odd \"\"Name\";\n";
        let existing: BTreeSet<&str> = ["postgres", "Odd \"Name"].into_iter().collect();
        let (out, skipped) = without_existing_roles(script, &existing);
        assert_eq!(skipped, vec!["postgres".to_string(), "Odd \"Name".to_string()]);
        assert_eq!(
            out,
            "SET x = 1;\nALTER ROLE postgres WITH SUPERUSER;\nCREATE ROLE app;\nGRANT app TO \"Odd \"\"Name\";\n"
        );
    }
}
