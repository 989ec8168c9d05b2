//! Database dumps: one `[[databases]]` job streamed out of PostgreSQL, MySQL/MariaDB or SQLite into
//! a store, and streamed back into a restore target, verified table by table.
//!
//! This module owns how a job becomes tool invocations (`pg_dump`, `mariadb-dump`, `pg_restore`,
//! `mariadb`, `psql`, SQLite's online backup API), the dump key template (`{name}`,
//! `{timestamp}`), the JSON record written beside each dump (`KEY.ferry.json`), retention, and the
//! per-table checksums that prove a restore. It does not own stores (`provider`), hashing
//! (`checksum`) or the command line (`cli`). docs/databases.md is the user-facing description.
//!
//! The shape of a dump: the tool's stdout is read on a blocking thread, compressed with zstd,
//! encrypted (`crypt`, when the destination has `encrypt-*` keys) and hashed there, and handed in
//! chunks through a small channel to the uploader, object_store's `WriteMultipart`, which cuts
//! them into parts. Memory is bounded by `(DUMP_PARTS_IN_FLIGHT + 1) x part size` plus the
//! channel, whatever the database size. The upload is completed only after the tool exited
//! successfully; anything else aborts it, so a dump object that exists is a complete dump.
//!
//! The flows are here (dump, list and retention) and in `restore` (restore,
//! verification); the rest has a file each: `database` (a job's database, one arm per engine),
//! `url` (connection URLs from the environment),
//! `process` (tools, their argv and environment, their stderr), `stream` (the compress, hash and
//! upload pipe and the download, decompress one), `tablesum` (table row counts and checksums per
//! engine), `postgres` (the exported snapshot), `sqlite` (the files ferry copies and places
//! itself), `record`, `template`, `listing` (which dumps a store holds) and `retention` (which
//! of them the rules keep), `directory` (PostgreSQL's parallel directory-format dumps and
//! restores, `jobs > 1`), `tee` (a restore fed by the dump as it streams, `ferry run --restore`), `size` (the size estimate), `input` (what a dump reads), `globals` (a server's roles, `globals = true`; `myusers` for MariaDB/MySQL), `guard` (restore
//! refusals) and `report` (the report types and [`DumpError`]).

use std::collections::BTreeMap;
use std::io;
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime};

use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStoreExt, PutMultipartOptions, WriteMultipart};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod database;
mod directory;
mod globals;
mod guard;
mod input;
mod listing;
mod myusers;
mod postgres;
mod process;
mod record;
mod report;
mod restore;
mod retention;
mod size;
mod sqlite;
mod stream;
mod tablesum;
mod tee;
pub(crate) mod template;
mod url;

use database::{source, Database};
use input::{open_input, DumpInput};
use listing::retain;
use process::tool_result;
use record::record_key;
pub use record::{DumpFile, DumpRecord, PreviousDump};
use report::{store_error, until, Halt};
pub use report::{DumpError, DumpReport, Reference, RestoreReport, TableCheck};
pub use restore::{restore, verify_restored, RestoreOptions};
use size::estimate_conn;
pub use size::estimate_size;
use stream::{produce, upload_parts, Produced, CHANNEL_DEPTH};
pub use tablesum::TableSum;
use tablesum::{table_sums, HeldSums, ReadAt};
use tee::Tee;
pub use tee::{move_until, MoveOptions};
use template::{timestamp_now, KeyTemplate};

use crate::crypt::Sealer;
use crate::plan::{Compression, DatabaseJob};
use crate::progress::Progress;
use crate::redact::redact;
use crate::store::{key_to_path, Store};
use crate::sync::part_size;

/// Multipart part size for dumps before scaling: above S3's 5 MiB minimum part
/// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html), and small because a dump's
/// parts are produced one after another, not read in parallel. Raised by
/// [`crate::sync::part_size`] when the database estimate needs more than 10,000 parts.
pub const DUMP_PART_SIZE: u64 = 8 << 20;
/// Parts uploading while the next one fills. Two keep the link busy while the tool is writing;
/// more would only buy memory, because the dump tool, not the upload, is usually the bottleneck.
pub const DUMP_PARTS_IN_FLIGHT: usize = 2;
/// Suffix of the record written beside each dump: `db/main/20250101T000000.000Z.dump.ferry.json`.
pub const RECORD_SUFFIX: &str = ".ferry.json";
/// Version of the record's JSON layout.
pub const RECORD_FORMAT: u32 = 1;
/// How long a stopped dump waits for its upload's abort before it gives up on it.
const ABORT_GRACE: Duration = Duration::from_secs(3);

/// Dumps one job's database to `dst`: streamed, compressed, hashed, uploaded as a multipart
/// upload that is completed only if the dump tool succeeded; then the record is written beside
/// it and the job's retention rules applied. Never panics on a failed dump: the report says why.
pub async fn dump(job: &DatabaseJob, dst: &Store, progress: &dyn Progress) -> DumpReport {
    let never = CancellationToken::new();
    match dump_until(job, dst, progress, &never).await {
        Some(r) => r,
        None => unreachable!("a token no one else holds is never cancelled"),
    }
}

/// [`dump`], stopped by `cancel` until its stream has ended: the tool is killed and the upload
/// aborted (a dump is not journaled, so an upload left open would be known to no one), and
/// the answer is None. Once the stream has ended, the dump is completed and recorded (a last
/// part, one request and the record), so a signal then leaves a whole dump rather than none.
pub async fn dump_until(
    job: &DatabaseJob,
    dst: &Store,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Option<DumpReport> {
    dump_with(job, dst, progress, cancel, None).await
}

/// [`dump_until`], its input also fed to `tee`'s restore when there is one (`tee`).
async fn dump_with(
    job: &DatabaseJob,
    dst: &Store,
    progress: &dyn Progress,
    cancel: &CancellationToken,
    tee: Option<&mut Tee>,
) -> Option<DumpReport> {
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
    let stopped = match dump_inner(job, dst, progress, &mut report, cancel, tee).await {
        Ok(()) => false,
        Err(Halt::Failed(e)) => {
            report.error = Some(redact(&e.to_string()));
            false
        }
        Err(Halt::Interrupted) => true,
    };
    progress.object_done();
    report.seconds = started.elapsed().as_secs_f64();
    progress.job_finished(&job.name);
    (!stopped).then_some(report)
}

async fn dump_inner(
    job: &DatabaseJob,
    dst: &Store,
    progress: &dyn Progress,
    report: &mut DumpReport,
    cancel: &CancellationToken,
    mut tee: Option<&mut Tee>,
) -> Result<(), Halt> {
    let conn = source(job)?;
    let template = KeyTemplate::new(job)?;
    let seal = Sealer::load(&dst.spec).map_err(|cause| DumpError::crypt(job, cause))?; // before anything starts
    let key = fresh_key(job, dst, &template).await?;
    // The globals first (a few statements): a dump whose record names them has them.
    let taken = until(cancel, globals::take(job, dst, &conn, &key, seal.as_ref())).await??;
    let globals = taken.as_ref().map(|(file, _)| file.clone());
    if let (Some(t), Some((file, text))) = (tee.as_deref_mut(), taken) {
        t.globals(&file.key, text).await;
    }
    let written = match &conn {
        Database::Postgres(url) if job.jobs > 1 => {
            let at = directory::Target {
                dst,
                key: &key,
                seal: seal.as_ref(),
            };
            directory::dump(job, url, at, globals.clone(), progress, cancel).await
        }
        _ => {
            dump_stream(
                job,
                dst,
                &conn,
                &template,
                &key,
                seal,
                globals.clone(),
                progress,
                cancel,
                tee,
            )
            .await
        }
    };
    let record = match written {
        Ok(r) => r,
        Err(h) => {
            if globals.is_some() {
                globals::remove(dst, &key).await;
            }
            return Err(h);
        }
    };
    report.key = Some(key.clone());
    report.bytes_raw = record.bytes_raw;
    report.bytes_stored = record.bytes_stored;
    report.sha256 = Some(record.sha256);

    if job.retention.is_set() {
        let (deleted, error) = retain(job, dst, &template, &key).await;
        report.deleted_old = deleted;
        if let Some(e) = error {
            report.error = Some(format!("dump `{key}` was written, but retention failed: {e}"));
        }
    }
    Ok(())
}

/// One dump stream into the object at `key`, completed and recorded (see the module's
/// description); returns the record written.
#[allow(clippy::too_many_arguments)]
async fn dump_stream(
    job: &DatabaseJob,
    dst: &Store,
    conn: &Database,
    template: &KeyTemplate,
    key: &str,
    seal: Option<Sealer>,
    globals: Option<DumpFile>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
    mut tee: Option<&mut Tee>,
) -> Result<DumpRecord, Halt> {
    let serr = |key: &str, message: String| store_error(job, dst, key, message);
    let path = key_to_path(key).map_err(|e| serr(key, e.to_string()))?;

    // The estimate sizes the parts (10,000 of them must hold the dump) and the progress bar.
    // Uncompressed text dumps of binary columns can be twice the on-disk size, hence the 2x.
    let estimate = until(cancel, estimate_conn(&job.name, conn)).await?.ok();
    if let Some(e) = estimate {
        progress.found(1, e);
    }
    let limits = dst.caps.limits;
    let hint = estimate.unwrap_or(0).saturating_mul(2).min(limits.max_object_size);
    let part = part_size(hint, DUMP_PART_SIZE, &limits).map_err(|m| serr(key, m))?;
    let attributes = upload_attributes(job, dst);

    // The input: a dump tool's stdout, or a consistent copy of the SQLite file.
    let mut input = until(cancel, open_input(job, conn)).await??;
    tee_input(job, conn, &mut input, tee.as_deref_mut(), cancel).await?;
    // Not stopped half-way: an upload created but not known could not be aborted.
    let mut upload = start_upload(job, dst, key, &path, attributes, part, &mut input).await?;
    let stream = stream_dump(
        job,
        conn,
        input,
        seal.map(|s| s.encryptor()),
        &mut upload,
        progress,
        tee.as_deref_mut(),
    );
    let Some(streamed) = cancel.run_until_cancelled(stream).await else {
        // The stream is dropped: its tool killed (`ChildGuard`), its producer ended at its next
        // send. The abort gets a few seconds, so that a stop stays prompt.
        let _ = tokio::time::timeout(ABORT_GRACE, upload.abort()).await;
        return Err(Halt::Interrupted);
    };
    let tool = streamed.version.clone();
    let (produced, tables) = match streamed.outcome(job, dst, key) {
        Ok(done) => done,
        Err(f) => {
            // Never leave a partial dump behind to be mistaken for a complete one (or billed).
            let _ = upload.abort().await;
            return Err(f.into());
        }
    };
    let mut record = DumpRecord {
        format: RECORD_FORMAT,
        job: job.name.clone(),
        engine: job.engine,
        key: key.to_string(),
        compression: job.compression,
        sha256: produced.digest.sha256.clone(),
        bytes_stored: produced.digest.bytes,
        bytes_raw: produced.raw,
        sha256_raw: produced.raw_sha256.clone(),
        created: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        tool: redact(&tool),
        source: redact(&conn.describe()),
        tables,
        previous: Vec::new(),
        files: Vec::new(),
        globals,
    };
    complete(job, dst, template, upload, &mut record, &path).await?;
    if let Some(t) = tee {
        t.recorded = record.tables.clone();
    }
    progress.skipped_bytes(estimate.unwrap_or(0).saturating_sub(produced.raw));
    Ok(record)
}

/// The dump's input, also fed to `tee`'s restore if there is one; for MySQL/MariaDB, the checksums' snapshot
/// begun with the dump's, summed once the restore is done. A failure drops `input`, which kills
/// the tool (`ChildGuard`).
async fn tee_input(
    job: &DatabaseJob,
    conn: &Database,
    input: &mut DumpInput,
    tee: Option<&mut Tee>,
    cancel: &CancellationToken,
) -> Result<(), Halt> {
    let Some(tee) = tee else {
        return Ok(());
    };
    input.reader = tee.wrap(std::mem::replace(&mut input.reader, Box::new(io::empty())));
    if let Database::Mysql(u) = conn {
        input.held = Some(until(cancel, HeldSums::begin(&job.name, u)).await??);
    }
    Ok(())
}

/// A fresh key: with `{timestamp}` a taken key means two dumps in one millisecond; wait it out
/// rather than overwrite, and never overwrite. Without `{timestamp}` each dump replaces the
/// last, record first (see `record`), so that a failure keeps the previous one.
async fn fresh_key(job: &DatabaseJob, dst: &Store, template: &KeyTemplate) -> Result<String, DumpError> {
    let serr = |key: &str, message: String| store_error(job, dst, key, message);
    let mut key = template.render(&timestamp_now());
    if template.has_timestamp() {
        let mut taken = true;
        for _ in 0..5 {
            let path = key_to_path(&key).map_err(|e| serr(&key, e.to_string()))?;
            // Only "exists" counts: a store that refuses HEAD (write-only credentials) is not
            // a reason to fail, and the timestamp makes a clash all but impossible.
            // A directory dump (`jobs > 1`) has no object at its key, only files and a record.
            let record = key_to_path(&record_key(&key)).map_err(|e| serr(&key, e.to_string()))?;
            if dst.inner.head(&path).await.is_err() && (job.jobs == 1 || dst.inner.head(&record).await.is_err()) {
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
    Ok(key)
}

/// The dump object's content type (where the store keeps one) and private mode.
pub(super) fn upload_attributes(job: &DatabaseJob, dst: &Store) -> Attributes {
    let mut attributes = Attributes::new();
    if dst.caps.content_type {
        // An encrypted dump is age, whatever is inside (and its content type should not say).
        let ct = match job.compression {
            Compression::Zstd if dst.spec.encrypt.is_none() => "application/zstd",
            _ => "application/octet-stream",
        };
        attributes.insert(Attribute::ContentType, ct.into());
    }
    dst.mark_private(&mut attributes);
    attributes
}

/// Starts the dump's multipart upload, in parts of `part` bytes; if that fails, the tool
/// already started is stopped.
async fn start_upload(
    job: &DatabaseJob,
    dst: &Store,
    key: &str,
    path: &Path,
    attributes: Attributes,
    part: u64,
    input: &mut DumpInput,
) -> Result<WriteMultipart, DumpError> {
    let options = PutMultipartOptions {
        attributes,
        ..Default::default()
    };
    match dst.inner.put_multipart_opts(path, options).await {
        // `part` is at most the store's maximum part size (5 GiB on S3): it fits a usize.
        Ok(u) => Ok(WriteMultipart::new_with_chunk_size(u, part as usize)),
        Err(e) => {
            if let Some((c, _)) = &mut input.child {
                c.kill();
            }
            Err(store_error(
                job,
                dst,
                key,
                format!("cannot start the upload: {}", redact(&e.to_string())),
            ))
        }
    }
}

/// What streaming a dump came to: the upload, the producer, the tool and the table checksums.
struct Streamed {
    /// The tool's name, for messages.
    tool: &'static str,
    /// The tool's version line, for the record.
    version: String,
    sent: object_store::Result<()>,
    produced: io::Result<Produced>,
    tool_outcome: Option<(io::Result<ExitStatus>, String)>,
    sums: Result<BTreeMap<String, TableSum>, DumpError>,
}

/// Streams the input into the upload while the table checksums are taken, then waits for the
/// tool and releases the snapshot. With a restore fed by the stream (`tee`), the restore is
/// finished and its target summed once the stream is clean.
async fn stream_dump(
    job: &DatabaseJob,
    conn: &Database,
    input: DumpInput,
    seal: Option<age::Encryptor>,
    upload: &mut WriteMultipart,
    progress: &dyn Progress,
    tee: Option<&mut Tee>,
) -> Streamed {
    let DumpInput {
        reader: input,
        mut child,
        tool: tool_name,
        version: tool,
        tmp,
        snapshot,
        held,
    } = input;
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let compression = job.compression;
    let producer = tokio::task::spawn_blocking(move || produce(input, compression, seal, tx));
    // The record's table checksums, from what it dumps: SQLite's copy itself; PostgreSQL's
    // exported snapshot; for MySQL/MariaDB, which cannot share a snapshot between sessions, a
    // consistent-snapshot transaction begun as the dump's was (a write committed between the
    // two would show as a mismatch at restore, never as a false match). Taken while the dump
    // runs, except when a restore reads the same stream: then they would take CPU from the
    // dump and the restore, and wait until the restore has ended (in the held snapshots).
    let copy = tmp.as_ref().map(|t| Database::Sqlite(t.path.clone()));
    let at = ReadAt::Dump(snapshot.as_ref().map(|s| s.id.as_str()));
    let summed = || table_sums(&job.name, copy.as_ref().unwrap_or(conn), at);
    let defer = tee.is_some();
    let (sent, early) = if defer {
        (upload_parts(upload, &mut rx, progress).await, None)
    } else {
        let (sent, sums) = tokio::join!(upload_parts(upload, &mut rx, progress), summed());
        (sent, Some(sums))
    };
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
    let tool_ok = tool_outcome
        .as_ref()
        .is_none_or(|(s, _)| s.as_ref().is_ok_and(|s| s.success()));
    let clean = sent.is_ok() && produced.is_ok() && tool_ok;
    let source = async {
        match (early, held) {
            (Some(sums), _) => sums,
            (None, Some(h)) => h.finish().await,
            (None, None) => summed().await,
        }
    };
    let sums = after_stream(job, clean, source, tee).await;
    if let Some(s) = snapshot {
        s.session.release().await;
    }
    Streamed {
        tool: tool_name,
        version: tool,
        sent,
        produced,
        tool_outcome,
        sums,
    }
}

/// After the stream: with a restore fed by it, the restore ends (its input closed) and the
/// target is summed beside the source's sums (`source`, deferred until now so that neither
/// slowed the restore); without, `source` alone. A stream that failed is not summed.
async fn after_stream(
    job: &DatabaseJob,
    clean: bool,
    source: impl std::future::Future<Output = Result<BTreeMap<String, TableSum>, DumpError>>,
    tee: Option<&mut Tee>,
) -> Result<BTreeMap<String, TableSum>, DumpError> {
    if !clean {
        return Err(DumpError::Io {
            job: job.name.clone(),
            what: "summing the tables".into(),
            message: "not done: the dump failed".into(),
        });
    }
    let Some(t) = tee else {
        return source.await;
    };
    t.close_input().await;
    tokio::join!(source, t.sum_target()).0
}

impl Streamed {
    /// What was produced and the tables summed, or the first cause of failure: an upload
    /// failure kills the tool, so its status would mislead.
    fn outcome(
        self,
        job: &DatabaseJob,
        dst: &Store,
        key: &str,
    ) -> Result<(Produced, Option<BTreeMap<String, TableSum>>), DumpError> {
        let tool_name = self.tool;
        let failure = if let Err(e) = &self.sent {
            Some(store_error(
                job,
                dst,
                key,
                format!("upload failed: {}", redact(&e.to_string())),
            ))
        } else if let Some((status, stderr)) = self.tool_outcome {
            tool_result(&job.name, tool_name, status, stderr).err()
        } else {
            None
        };
        let produced = self.produced;
        let failure = failure.or_else(|| {
            produced.as_ref().err().map(|e| DumpError::Io {
                job: job.name.clone(),
                what: format!("reading and compressing the output of `{tool_name}`"),
                message: e.to_string(),
            })
        });
        // A dump whose tables could not be summed cannot prove a restore once the source is gone.
        let (failure, tables) = match self.sums {
            Ok(t) => (failure, Some(t)),
            Err(e) => (failure.or(Some(e)), None),
        };
        match failure {
            Some(f) => Err(f),
            None => Ok((produced.expect("checked above"), tables)),
        }
    }
}

/// Completes the upload and writes the dump's record beside it, in the order that never offers
/// a dump without its record; on failure nothing partial is left.
async fn complete(
    job: &DatabaseJob,
    dst: &Store,
    template: &KeyTemplate,
    upload: WriteMultipart,
    record: &mut DumpRecord,
    path: &Path,
) -> Result<(), DumpError> {
    let key = record.key.clone();
    let serr = |key: &str, message: String| store_error(job, dst, key, message);
    let rkey = record_key(&key);
    if template.has_timestamp() {
        // A new key: complete, then record. A dump without its record is never offered.
        // `finish` uploads the last part and completes, or aborts the upload if either fails.
        if let Err(e) = upload.finish().await {
            return Err(serr(
                &key,
                format!("completing the upload failed: {}", redact(&e.to_string())),
            ));
        }
        if let Err(e) = record::write_record(dst, record).await {
            // Without its record the dump is unverifiable; remove it rather than leave it half-known.
            let _ = dst.inner.delete(path).await;
            return Err(serr(
                &rkey,
                format!("writing the dump record failed (the dump was removed): {e}"),
            ));
        }
    } else {
        // The key holds the previous dump: record first, naming it, then complete.
        let switch = match record::write_record_first(job, dst, record).await {
            Ok(s) => s,
            Err(e) => {
                let _ = upload.abort().await;
                return Err(e);
            }
        };
        if let Err(e) = upload.finish().await {
            record::undo_record_first(job, dst, record, switch).await;
            return Err(serr(
                &key,
                format!(
                    "completing the upload failed: {}; the key keeps a complete dump and a record that describes it",
                    redact(&e.to_string())
                ),
            ));
        }
        record::finish_record(dst, record).await;
    }
    Ok(())
}

/// What the unit tests of dump's files share.
#[cfg(test)]
mod testing {
    use std::process::Command;

    use crate::plan::{Compression, DatabaseJob, DbEngine, Location};

    /// A PostgreSQL job named `main` whose dumps go to `template` at `dst`.
    pub(super) fn job(template: &str) -> DatabaseJob {
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
            retention: Default::default(),
            jobs: 1,
            globals: false,
            globals_passwords: false,
            line: 1,
        }
    }

    pub(super) fn env_of(cmd: &Command, name: &str) -> Option<String> {
        cmd.get_envs()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    }

    pub(super) fn args_of(cmd: &Command) -> Vec<String> {
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }
}
