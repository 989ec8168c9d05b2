//! Restores and their verification: a dump chosen (the newest with a record, or the one named),
//! the guards run before anything is written (`guard`), the stored bytes streamed into the
//! restore tool or a SQLite file (`stream`), and the target compared table by table with the
//! dump's record and the live source (`tablesum`).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path as FsPath;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use tokio::sync::mpsc;

use super::database::{source, target, Database, Server};
use super::listing::list_dumps;
use super::process::{collect_stderr, restore_command, spawn_error, tool_result, ChildGuard};
use super::record::{read_record, DumpRecord, PreviousDump};
use super::report::store_error;
use super::sqlite::{place_sqlite, TempFile};
use super::stream::{consume, feed, ConsumeError, Consumed, CHANNEL_DEPTH, READ_BUF, ZSTD_MAGIC};
use super::tablesum::{compare_tables, table_sums, ReadAt, TableSum};
use super::template::KeyTemplate;
use super::{directory, globals, guard, DumpError, Reference, RestoreReport};
use crate::checksum::Digest;
use crate::crypt::{is_sealed, Opener};
use crate::plan::{Compression, DatabaseJob};
use crate::redact::redact;
use crate::store::{key_to_path, Store};
use crate::sync::body_stream;
use crate::template::{shown, DumpTime};

/// How `ferry restore` was asked to restore.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions<'a> {
    /// A dump key to restore instead of the newest dump that has a record.
    pub key: Option<&'a str>,
    /// Restore the newest dump with a record whose key's timestamp is at or before this time
    /// (`--at`) instead of the newest of all.
    pub at: Option<&'a DumpTime>,
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
        // A restore of a past state (`--at`) differs from the source as it is now by design:
        // only the dump's record can prove it.
        if opts.at.is_some() {
            return None;
        }
        Some(match source(job) {
            Ok(s) => table_sums(&job.name, &s, ReadAt::Now).await,
            Err(e) => Err(e),
        })
    };
    let (restored, live) = tokio::join!(table_sums(&job.name, &target, ReadAt::Now), live);
    let restored = restored?;
    let live = match live {
        None => {
            report.source_not_compared =
                Some("a restore `--at` a past time is compared with its dump's record only".into());
            None
        }
        Some(Ok(sums)) => Some(sums),
        Some(Err(e)) if opts.source_unreachable_ok => {
            report.source_not_compared = Some(redact(&format!("cannot reach it (--source-unreachable-ok): {e}")));
            None
        }
        Some(Err(e)) => return Err(e),
    };
    if live.is_none() && recorded.is_none() {
        return Err(DumpError::Io {
            job: job.name.clone(),
            what: "verifying the restore".into(),
            message: "the source is not compared and the dump's record holds no table checksums \
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
    let (key, record) = guarded_choice(job, src, opts, &dst, report).await?;
    if let Some(r) = record.as_ref().filter(|r| !r.files.is_empty()) {
        // A directory dump (`jobs > 1`): every file downloaded and checked (a damaged one is a
        // failed restore, not a refusal), then the globals, then `pg_restore -j`.
        report.refused = false;
        let work = directory::download(job, src, r).await?;
        globals::restore(job, src, &dst, r, report).await?;
        return directory::restore(job, &dst, r, work).await;
    }
    let Opened {
        candidates,
        first,
        body,
        compression,
        opener,
    } = open_dump(job, src, &key, record.as_ref()).await?;
    // From here on the target may be written to: the globals first (roles the dump grants to).
    report.refused = false;
    if let Some(r) = &record {
        globals::restore(job, src, &dst, r, report).await?;
    }

    // The sink: a restore tool's stdin, or a temporary file beside the SQLite target.
    let Sink {
        writer: sink,
        mut child,
        tool,
        mut tmp,
    } = open_sink(job, &dst)?;

    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let open = opener.map(|o| (o, key.clone()));
    let consumer = tokio::task::spawn_blocking(move || consume(rx, compression, open, sink));
    let download_error = feed(first, body, tx).await;
    let (
        Consumed {
            result: consumed,
            stored: digest,
            raw,
        },
        sink,
    ) = consumer.await.expect("the restore writer does not panic");
    let sha_mismatch = sha_mismatch(&candidates, digest.as_ref(), raw.as_ref());
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
    let outcome = Outcome {
        download_error,
        consumed,
        tool_outcome,
        sha_mismatch,
    };
    outcome.check(job, src, &key, &dst, tool)?;
    // The dump restored is the candidate whose SHA-256 the bytes have (a fixed key's record may
    // describe two).
    let recorded = digest
        .as_ref()
        .and_then(|d| candidates.into_iter().find(|c| c.sha256 == d.sha256))
        .and_then(|c| c.tables);
    if let (Database::Sqlite(target_path), Some(t)) = (&dst, tmp.take()) {
        place(job, target_path, t).await?;
    }
    Ok(recorded)
}

/// Runs the guards that need no dump, then chooses the dump (the one asked for, or the newest)
/// and reads its record, checking that it is this job's.
async fn guarded_choice(
    job: &DatabaseJob,
    src: &Store,
    opts: &RestoreOptions<'_>,
    dst: &Database,
    report: &mut RestoreReport,
) -> Result<(String, Option<DumpRecord>), DumpError> {
    guard::ensure_not_source(job, dst, opts.source_unreachable_ok).await?;
    if !(opts.replace || job.restore_replace) {
        guard::ensure_empty(job, dst).await?;
    }
    let template = KeyTemplate::new(job)?;
    let key = match opts.key {
        Some(k) => k.to_string(),
        None => newest_dump(job, src, &template, opts.at).await?,
    };
    report.key = key.clone();
    let record = owned_record(job, src, &template, &key).await?;
    Ok((key, record))
}

/// The newest dump of the job at `src` that has a record, at or before `at` if given. Dumps are
/// dated by their key's `{timestamp}` (when the dump started), as retention dates them.
async fn newest_dump(
    job: &DatabaseJob,
    src: &Store,
    template: &KeyTemplate,
    at: Option<&DumpTime>,
) -> Result<String, DumpError> {
    if at.is_some() && !template.has_timestamp() {
        return Err(DumpError::AtWithoutTimestamp {
            job: job.name.clone(),
            template: template.raw.clone(),
        });
    }
    let recorded: Vec<_> = list_dumps(job, src, template)
        .await?
        .into_iter()
        .filter(|d| d.has_record)
        .collect();
    let no_dump = || DumpError::NoDump {
        job: job.name.clone(),
        provider: src.name().into(),
        prefix: template.list_prefix(),
        template: template.raw.clone(),
    };
    let Some(at) = at else {
        return Ok(recorded.into_iter().next().ok_or_else(no_dump)?.key);
    };
    // Newest first: the first at or before `at` is the one; the last is the oldest.
    match recorded.iter().find(|d| d.sort.as_str() <= at.sort()) {
        Some(d) => Ok(d.key.clone()),
        None => {
            let oldest = recorded.last().ok_or_else(no_dump)?;
            Err(DumpError::NoDumpAt {
                job: job.name.clone(),
                at: at.to_string(),
                oldest: oldest.key.clone(),
                oldest_at: shown(&oldest.sort),
            })
        }
    }
}

/// The dump's record, if it has one, after checking that the dump is this job's.
async fn owned_record(
    job: &DatabaseJob,
    src: &Store,
    template: &KeyTemplate,
    key: &str,
) -> Result<Option<DumpRecord>, DumpError> {
    let record = read_record(job, src, key).await?;
    match &record {
        Some(r) => r.check_owner(job, key)?,
        // Only a dump whose record could not be written lacks one; its key must at least be
        // one this job writes.
        None if template.matches(key).is_none() => {
            return Err(DumpError::WrongDump {
                job: job.name.clone(),
                key: key.to_string(),
                message: format!(
                    "it has no record, and its key is not one the job's template `{}` writes",
                    template.raw
                ),
            })
        }
        None => {}
    }
    Ok(record)
}

/// The bytes of a dump read before it is restored: its age header, if it has one, must fit.
const HEAD: usize = 64 * 1024;

/// The first bytes of the stored object at `key` being downloaded (64 KiB, or all of a shorter
/// one: enough to hold an age header whole, a few hundred bytes a recipient), and the
/// provider's identities when it is encrypted, checked against its header, so that a wrong key
/// is found before the target is touched.
pub(super) async fn head_and_opener(
    job: &DatabaseJob,
    src: &Store,
    key: &str,
    body: &mut BoxStream<'static, object_store::Result<Bytes>>,
) -> Result<(Bytes, Option<Arc<Opener>>), DumpError> {
    let mut first = BytesMut::new();
    while first.len() < HEAD {
        match body.next().await {
            Some(Ok(b)) => first.extend_from_slice(&b),
            Some(Err(e)) => {
                let message = format!("download failed: {}", redact(&e.to_string()));
                return Err(store_error(job, src, key, message));
            }
            None => break,
        }
    }
    let first = first.freeze();
    if !is_sealed(&first) {
        return Ok((first, None));
    }
    let crypt = |e| DumpError::crypt(job, e);
    let o = Opener::load(&src.spec, key).map_err(crypt)?;
    o.check(key, &first).map_err(crypt)?;
    Ok((first, Some(Arc::new(o))))
}

/// A dump being downloaded.
struct Opened {
    /// The dumps its record may describe (none without a record).
    candidates: Vec<PreviousDump>,
    /// The first chunk, read to recognise a zstd frame, and the rest.
    first: Bytes,
    body: BoxStream<'static, object_store::Result<Bytes>>,
    compression: Compression,
    /// The provider's identities, when the dump is encrypted (already checked to match it).
    opener: Option<Arc<Opener>>,
}

/// Starts the download of the dump at `key` and tells how it is compressed.
async fn open_dump(
    job: &DatabaseJob,
    src: &Store,
    key: &str,
    record: Option<&DumpRecord>,
) -> Result<Opened, DumpError> {
    let serr = |message: String| store_error(job, src, key, message);
    let path = key_to_path(key).map_err(|e| serr(e.to_string()))?;
    let got = src.inner.get(&path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => serr("no such dump".into()),
        e => serr(redact(&e.to_string())),
    })?;
    // A fixed key's record may describe two dumps (see `record`): the object's size says which.
    let candidates = record.map(|r| r.candidates(Some(got.meta.size))).unwrap_or_default();
    let mut body = body_stream(got);
    let (first, opener) = head_and_opener(job, src, key, &mut body).await?;
    let compression = match &candidates[..] {
        [c, rest @ ..] if rest.iter().all(|r| r.compression == c.compression) => c.compression,
        _ if first.starts_with(&ZSTD_MAGIC) => Compression::Zstd,
        // Without a record, an encrypted dump's compression is hidden: ferry's default.
        _ if opener.is_some() => Compression::Zstd,
        _ => Compression::None,
    };
    Ok(Opened {
        candidates,
        first,
        body,
        compression,
        opener,
    })
}

/// Where a restore writes: a restore tool's stdin (the tool running, its stderr being
/// collected), or a temporary file beside the SQLite target (removed unless placed).
pub(super) struct Sink {
    pub(super) writer: Box<dyn Write + Send>,
    pub(super) child: Option<(ChildGuard, tokio::task::JoinHandle<String>)>,
    /// The tool's name, for messages.
    pub(super) tool: String,
    pub(super) tmp: Option<TempFile>,
}

pub(super) fn open_sink(job: &DatabaseJob, dst: &Database) -> Result<Sink, DumpError> {
    match dst {
        Database::Sqlite(target_path) => sqlite_sink(job, target_path),
        Database::Postgres(u) => tool_sink(job, Server::Postgres(u)),
        Database::Mysql(u) => tool_sink(job, Server::Mysql(u)),
    }
}

/// A temporary file beside the SQLite target, placed over it once the restore checks out.
fn sqlite_sink(job: &DatabaseJob, target_path: &FsPath) -> Result<Sink, DumpError> {
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
    Ok(Sink {
        writer: Box::new(io::BufWriter::with_capacity(READ_BUF, file)),
        child: None,
        tool: "sqlite".to_string(),
        tmp: Some(t),
    })
}

/// The restore tool, reading the dump on its stdin.
fn tool_sink(job: &DatabaseJob, server: Server) -> Result<Sink, DumpError> {
    let (tool, mut cmd) = restore_command(server);
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut c = cmd.spawn().map_err(|e| spawn_error(&job.name, tool, e))?;
    let stdin = c.stdin.take().expect("stdin is piped");
    let stderr = collect_stderr(c.stderr.take().expect("stderr is piped"));
    Ok(Sink {
        writer: Box::new(stdin),
        child: Some((ChildGuard(Some(c)), stderr)),
        tool: tool.to_string(),
        tmp: None,
    })
}

/// The stored bytes' SHA-256 when it is none of those the record gives: (the record's, the
/// bytes'); or, for an encrypted dump, the raw bytes' when it is not the one recorded with the
/// dump whose stored bytes these are.
fn sha_mismatch(
    candidates: &[PreviousDump],
    digest: Option<&Digest>,
    raw: Option<&Digest>,
) -> Option<(String, String)> {
    let got = digest?;
    if candidates.is_empty() {
        return None;
    }
    let Some(c) = candidates.iter().find(|c| c.sha256 == got.sha256) else {
        let want: Vec<&str> = candidates.iter().map(|c| c.sha256.as_str()).collect();
        return Some((want.join(" or "), got.sha256.clone()));
    };
    match (&c.sha256_raw, raw) {
        (Some(want), Some(raw)) if *want != raw.sha256 => {
            Some((format!("{want} (raw)"), format!("{} (raw, decrypted)", raw.sha256)))
        }
        _ => None,
    }
}

/// How a restore's streaming ended, each part of it.
struct Outcome {
    download_error: Option<String>,
    consumed: Result<u64, ConsumeError>,
    tool_outcome: Option<(io::Result<ExitStatus>, String)>,
    sha_mismatch: Option<(String, String)>,
}

impl Outcome {
    /// The restore's failure, if any, the most telling cause first.
    fn check(self, job: &DatabaseJob, src: &Store, key: &str, dst: &Database, tool: String) -> Result<(), DumpError> {
        if let Some(e) = self.download_error {
            return Err(store_error(job, src, key, format!("download failed: {e}")));
        }
        if let Err(ConsumeError::Input(e)) = &self.consumed {
            return Err(DumpError::Corrupt {
                job: job.name.clone(),
                key: key.to_string(),
                message: format!("cannot decompress: {e}"),
            });
        }
        if let Some((status, stderr)) = self.tool_outcome {
            tool_result(&job.name, &tool, status, stderr)?;
        }
        // The tool's own failure (above) explains a broken pipe better than the pipe does.
        if let Err(ConsumeError::Sink(e) | ConsumeError::Input(e)) = self.consumed {
            let what = match dst {
                Database::Sqlite(_) => "writing the temporary SQLite file".to_string(),
                _ => format!("writing to `{tool}`"),
            };
            return Err(DumpError::Io {
                job: job.name.clone(),
                what,
                message: e.to_string(),
            });
        }
        if let Some((want, got)) = self.sha_mismatch {
            return Err(DumpError::Corrupt {
                job: job.name.clone(),
                key: key.to_string(),
                message: format!("SHA-256 of the stored bytes is {got}, the record says {want}"),
            });
        }
        Ok(())
    }
}

/// Checks the restored SQLite file and moves it over the target (see [`place_sqlite`]).
pub(super) async fn place(job: &DatabaseJob, target_path: &FsPath, t: TempFile) -> Result<(), DumpError> {
    let tpath = t.path.clone();
    let target_path2 = target_path.to_path_buf();
    let placed = tokio::task::spawn_blocking(move || place_sqlite(t, &target_path2))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    placed.map_err(|message| DumpError::Sqlite {
        job: job.name.clone(),
        path: tpath,
        message,
    })
}

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
