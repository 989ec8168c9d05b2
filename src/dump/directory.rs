//! PostgreSQL dumps and restores with parallel workers (`jobs = N > 1`): `pg_dump -Fd -j N`
//! into a private temporary folder, then each file it wrote uploaded as one object under the
//! dump's key (`KEY/toc.dat.zst`, `KEY/3456.dat.zst`) through the same compress, hash and
//! upload pipe as a single-stream dump (`stream`), `jobs` files at a time; and back: the files
//! downloaded into a private temporary folder, each checked against the record's SHA-256, and
//! `pg_restore -j N` run on it.
//!
//! The folder holds the whole dump (uncompressed when ferry compresses, pg_dump's gzip
//! otherwise): this is the one PostgreSQL path that needs local disk, as much as the dump. It
//! is created in the temporary directory (`TMPDIR`) with mode 0700 and removed when the dump
//! ends, succeeded, failed or stopped by a signal (only a SIGKILL leaves it behind). Files are
//! uploaded once `pg_dump` has exited successfully: a failed dump uploads nothing. The record
//! (`KEY.ferry.json`, written last) lists every file with its size and SHA-256; a dump without
//! its record is never offered, and a failure after some uploads deletes them again. When the
//! provider encrypts, each file is its own age file, recognised on restore by its first bytes.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutMultipartOptions, WriteMultipart};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::database::{Database, Server};
use super::postgres::PgSnapshot;
use super::process::{dir_dump_command, dir_restore_command, spawn_error, tool_result, tool_version};
use super::record::{self, DumpFile, DumpRecord};
use super::report::{store_error, until, Halt};
use super::restore::head_and_opener;
use super::stream::{consume, feed, produce, upload_parts, ConsumeError, CHANNEL_DEPTH};
use super::tablesum::{table_sums, ReadAt, TableSum};
use super::url::DbUrl;
use super::{estimate_conn, upload_attributes, DumpError, ABORT_GRACE, DUMP_PART_SIZE, RECORD_FORMAT};
use crate::checksum::StreamHasher;
use crate::crypt::Sealer;
use crate::plan::{Compression, DatabaseJob};
use crate::progress::Progress;
use crate::redact::redact;
use crate::store::{key_to_path, Store};
use crate::sync::{body_stream, part_size};

/// Where a directory dump goes: the store, the dump's key (its files go under `KEY/`), and the
/// provider's recipients when it encrypts (each file is then one age file).
#[derive(Clone, Copy)]
pub(super) struct Target<'a> {
    pub(super) dst: &'a Store,
    pub(super) key: &'a str,
    pub(super) seal: Option<&'a Sealer>,
}

/// A private temporary folder (mode 0700), removed with everything in it when dropped.
pub(super) struct WorkDir {
    dir: tempfile::TempDir,
}

impl WorkDir {
    fn new(job: &DatabaseJob, what: &str) -> Result<WorkDir, DumpError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |e: std::io::Error| DumpError::Io {
            job: job.name.clone(),
            what: format!(
                "creating a private temporary folder for {what} in `{}`",
                std::env::temp_dir().display()
            ),
            message: e.to_string(),
        };
        let dir = tempfile::Builder::new().prefix("ferry-pgdir-").tempdir().map_err(io)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        Ok(WorkDir { dir })
    }

    /// The folder `pg_dump` writes (it must not exist yet) and `pg_restore` reads.
    fn dump(&self) -> PathBuf {
        self.dir.path().join("dump")
    }
}

/// Dumps `url` with `job.jobs` workers into a temporary folder, uploads its files under `KEY/`
/// and writes the record (naming `globals`, already stored). Nothing is left at the store if
/// it fails or is stopped, but the globals, which the caller removes.
pub(super) async fn dump(
    job: &DatabaseJob,
    url: &DbUrl,
    at: Target<'_>,
    globals: Option<DumpFile>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<DumpRecord, Halt> {
    let work = WorkDir::new(job, "the dump")?;
    // As for a stream dump: the bar counts raw bytes against the database's size on disk.
    let db = Database::Postgres(url.clone());
    let estimate = until(cancel, estimate_conn(&job.name, &db)).await?.unwrap_or(0);
    progress.found(1, estimate);
    let snapshot = until(cancel, PgSnapshot::export(&job.name, url)).await??;
    let version = tool_version("pg_dump").await;
    let ran = cancel
        .run_until_cancelled(run_pg_dump(job, url, &snapshot, &work))
        .await;
    snapshot.session.release().await;
    let tables = ran.ok_or(Halt::Interrupted)??;
    let folder = work.dump();
    let files = list_files(job, &folder)?;

    let uploads = futures::stream::iter(
        files
            .iter()
            .map(|(name, size)| upload_file(job, at, &folder, name, *size, progress, cancel)),
    )
    .buffer_unordered(job.jobs as usize)
    .collect::<Vec<_>>()
    .await;
    let mut stored: Vec<DumpFile> = uploads.iter().filter_map(|u| u.as_ref().ok().cloned()).collect();
    if let Some(halt) = uploads.into_iter().find_map(Result::err) {
        remove_files(at.dst, &stored).await;
        return Err(halt);
    }
    stored.sort_by(|a, b| a.name.cmp(&b.name));
    let record = DumpRecord {
        format: RECORD_FORMAT,
        job: job.name.clone(),
        engine: job.engine,
        key: at.key.to_string(),
        compression: job.compression,
        sha256: listing_sha256(&stored),
        bytes_stored: stored.iter().map(|f| f.bytes_stored).sum(),
        bytes_raw: stored.iter().map(|f| f.bytes_raw).sum(),
        sha256_raw: None,
        created: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        tool: redact(&version),
        source: redact(&Server::Postgres(url).describe()),
        tables: Some(tables),
        previous: Vec::new(),
        files: stored,
        globals,
    };
    progress.skipped_bytes(estimate.saturating_sub(record.bytes_raw));
    if let Err(e) = record::write_record(at.dst, &record).await {
        remove_files(at.dst, &record.files).await;
        let rkey = record::record_key(at.key);
        let message = format!("writing the dump record failed (the dump was removed): {e}");
        return Err(store_error(job, at.dst, &rkey, message).into());
    }
    Ok(record)
}

/// Runs `pg_dump -Fd -j N` on the exported snapshot while the table checksums are taken in it;
/// the checksums, once pg_dump exited successfully.
async fn run_pg_dump(
    job: &DatabaseJob,
    url: &DbUrl,
    snapshot: &PgSnapshot,
    work: &WorkDir,
) -> Result<BTreeMap<String, TableSum>, DumpError> {
    let mut cmd = tokio::process::Command::from(dir_dump_command(
        url,
        job.compression,
        &snapshot.id,
        job.jobs,
        &work.dump(),
    ));
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    // Killed if this future is dropped (a signal), so that the folder can be removed.
    cmd.kill_on_drop(true);
    let db = Database::Postgres(url.clone());
    let sums = table_sums(&job.name, &db, ReadAt::Dump(Some(&snapshot.id)));
    let (out, sums) = tokio::join!(cmd.output(), sums);
    let out = out.map_err(|e| spawn_error(&job.name, "pg_dump", e))?;
    let stderr = redact(String::from_utf8_lossy(&out.stderr).trim());
    tool_result(&job.name, "pg_dump", Ok(out.status), stderr)?;
    sums
}

/// The files `pg_dump` wrote, by name, with their sizes. pg_dump -Fd writes a flat folder.
fn list_files(job: &DatabaseJob, dir: &FsPath) -> Result<Vec<(String, u64)>, DumpError> {
    let io = |e: std::io::Error| DumpError::Io {
        job: job.name.clone(),
        what: format!("reading the dump folder `{}`", dir.display()),
        message: e.to_string(),
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let meta = entry.metadata().map_err(io)?;
        if meta.is_file() {
            files.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
        }
    }
    files.sort();
    Ok(files)
}

/// The key a dump file is stored under: `KEY/NAME`, plus `.zst` when ferry compresses it.
fn file_key(key: &str, name: &str, compression: Compression) -> String {
    match compression {
        Compression::Zstd => format!("{key}/{name}.zst"),
        Compression::None => format!("{key}/{name}"),
    }
}

/// Uploads one file of the dump folder (compressed, hashed, in parts); the upload is aborted
/// unless every byte was read and stored.
async fn upload_file(
    job: &DatabaseJob,
    at: Target<'_>,
    dir: &FsPath,
    name: &str,
    size: u64,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<DumpFile, Halt> {
    let fkey = file_key(at.key, name, job.compression);
    let serr = |m: String| store_error(job, at.dst, &fkey, m);
    let path = key_to_path(&fkey).map_err(|e| serr(e.to_string()))?;
    let limits = at.dst.caps.limits;
    let part = part_size(size.min(limits.max_object_size), DUMP_PART_SIZE, &limits).map_err(serr)?;
    let file = std::fs::File::open(dir.join(name)).map_err(|e| DumpError::Io {
        job: job.name.clone(),
        what: format!("reading the dump file `{name}`"),
        message: e.to_string(),
    })?;
    let options = PutMultipartOptions {
        attributes: upload_attributes(job, at.dst),
        ..Default::default()
    };
    let started = at.dst.inner.put_multipart_opts(&path, options).await;
    let started = started.map_err(|e| serr(format!("cannot start the upload: {}", redact(&e.to_string()))))?;
    // `part` is at most the store's maximum part size (5 GiB on S3): it fits a usize.
    let mut upload = WriteMultipart::new_with_chunk_size(started, part as usize);
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let compression = job.compression;
    let seal = at.seal.map(Sealer::encryptor);
    let producer = tokio::task::spawn_blocking(move || produce(Box::new(file), compression, seal, tx));
    let Some(sent) = cancel
        .run_until_cancelled(upload_parts(&mut upload, &mut rx, progress))
        .await
    else {
        drop(rx);
        let _ = tokio::time::timeout(ABORT_GRACE, upload.abort()).await;
        return Err(Halt::Interrupted);
    };
    drop(rx);
    let produced = producer.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let failure = match (&sent, &produced) {
        (Err(e), _) => Some(serr(format!("upload failed: {}", redact(&e.to_string())))),
        (_, Err(e)) => Some(DumpError::Io {
            job: job.name.clone(),
            what: format!("reading and compressing the dump file `{name}`"),
            message: e.to_string(),
        }),
        _ => None,
    };
    if let Some(f) = failure {
        let _ = upload.abort().await;
        return Err(f.into());
    }
    let produced = produced.expect("checked above");
    upload
        .finish()
        .await
        .map_err(|e| serr(format!("completing the upload failed: {}", redact(&e.to_string()))))?;
    Ok(DumpFile {
        name: name.to_string(),
        key: fkey.clone(),
        sha256: produced.digest.sha256,
        bytes_stored: produced.digest.bytes,
        bytes_raw: produced.raw,
    })
}

/// Deletes the stored files of a dump that failed (best effort, a few seconds at most: each is
/// under a key no listing offers as a dump).
async fn remove_files(dst: &Store, files: &[DumpFile]) {
    let remove = async {
        for f in files {
            if let Ok(p) = key_to_path(&f.key) {
                let _ = dst.inner.delete(&p).await;
            }
        }
    };
    let _ = tokio::time::timeout(ABORT_GRACE * 10, remove).await;
}

/// The SHA-256 of the `sha256sum` listing of the files (`HASH  NAME\n`, by name): one digest
/// for the whole dump, which the record's `sha256` holds.
fn listing_sha256(files: &[DumpFile]) -> String {
    let mut h = StreamHasher::new(false);
    for f in files {
        h.update(format!("{}  {}\n", f.sha256, f.name).as_bytes());
    }
    h.finish().sha256
}

/// Downloads the directory dump `record` describes into a private temporary folder, each file
/// checked against the record: nothing is written to the target before every file is there.
pub(super) async fn download(job: &DatabaseJob, src: &Store, record: &DumpRecord) -> Result<WorkDir, DumpError> {
    if listing_sha256(&record.files) != record.sha256 {
        let message = "its record's list of files does not match its SHA-256".into();
        return Err(corrupt(job, &record.key, message));
    }
    let work = WorkDir::new(job, "the restore")?;
    let dir = work.dump();
    std::fs::create_dir(&dir).map_err(|e| DumpError::Io {
        job: job.name.clone(),
        what: format!("creating `{}`", dir.display()),
        message: e.to_string(),
    })?;
    let downloads = futures::stream::iter(
        record
            .files
            .iter()
            .map(|f| download_file(job, src, &record.key, f, record.compression, &dir)),
    )
    .buffer_unordered(job.jobs.max(1) as usize)
    .collect::<Vec<_>>()
    .await;
    downloads.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(work)
}

/// Restores the downloaded directory dump in `work` into `dst` with `pg_restore -j N`; the
/// tables the record holds.
pub(super) async fn restore(
    job: &DatabaseJob,
    dst: &Database,
    record: &DumpRecord,
    work: WorkDir,
) -> Result<Option<BTreeMap<String, TableSum>>, DumpError> {
    let Database::Postgres(url) = dst else {
        return Err(DumpError::WrongDump {
            job: job.name.clone(),
            key: record.key.clone(),
            message: "it is a PostgreSQL directory dump, and the restore target is not PostgreSQL".into(),
        });
    };
    let mut cmd = tokio::process::Command::from(dir_restore_command(url, job.jobs.max(1), &work.dump()));
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.kill_on_drop(true);
    let out = cmd
        .output()
        .await
        .map_err(|e| spawn_error(&job.name, "pg_restore", e))?;
    let stderr = redact(String::from_utf8_lossy(&out.stderr).trim());
    tool_result(&job.name, "pg_restore", Ok(out.status), stderr)?;
    Ok(record.tables.clone())
}

fn corrupt(job: &DatabaseJob, key: &str, message: String) -> DumpError {
    DumpError::Corrupt {
        job: job.name.clone(),
        key: key.to_string(),
        message,
    }
}

/// Downloads one file of the directory dump at `key` into `dir` (decompressed), checking its
/// SHA-256.
async fn download_file(
    job: &DatabaseJob,
    src: &Store,
    key: &str,
    f: &DumpFile,
    compression: Compression,
    dir: &FsPath,
) -> Result<(), DumpError> {
    // A record names files, never paths: nothing may land outside the folder, and nothing is
    // read from outside the dump's own `KEY/`.
    let outside = !f.key.strip_prefix(key).is_some_and(|rest| rest.starts_with('/'));
    if outside || f.name.is_empty() || f.name.contains(['/', '\\']) || f.name.starts_with('.') {
        return Err(corrupt(
            job,
            &f.key,
            format!("the record names the file `{}`", f.name.escape_debug()),
        ));
    }
    let serr = |m: String| store_error(job, src, &f.key, m);
    let path = key_to_path(&f.key).map_err(|e| serr(e.to_string()))?;
    let got = src.inner.get(&path).await.map_err(|e| serr(redact(&e.to_string())))?;
    let mut body = body_stream(got);
    let (first, opener) = head_and_opener(job, src, &f.key, &mut body).await?;
    let open = opener.map(|o| (o, f.key.clone()));
    let target = dir.join(&f.name);
    let file = std::fs::File::create(&target).map_err(|e| DumpError::Io {
        job: job.name.clone(),
        what: format!("creating `{}`", target.display()),
        message: e.to_string(),
    })?;
    let sink = Box::new(std::io::BufWriter::new(file));
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let consumer = tokio::task::spawn_blocking(move || consume(rx, compression, open, sink));
    let download_error = feed(first, body, tx).await;
    let (consumed, sink) = consumer.await.expect("the restore writer does not panic");
    drop(sink);
    if let Some(e) = download_error {
        return Err(serr(format!("download failed: {e}")));
    }
    match consumed.result {
        Err(ConsumeError::Input(e)) => return Err(corrupt(job, &f.key, format!("cannot decompress: {e}"))),
        Err(ConsumeError::Sink(e)) => {
            return Err(DumpError::Io {
                job: job.name.clone(),
                what: format!("writing `{}`", target.display()),
                message: e.to_string(),
            })
        }
        Ok(_) => {}
    }
    match consumed.stored {
        Some(d) if d.sha256 == f.sha256 => Ok(()),
        got => Err(corrupt(
            job,
            &f.key,
            format!(
                "SHA-256 of the stored bytes is {}, the record says {}",
                got.map(|d| d.sha256).unwrap_or_default(),
                f.sha256
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::testing::job;

    /// The folder that holds a whole dump is the user's alone, and goes when dropped.
    #[test]
    fn work_dir_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let w = WorkDir::new(&job("db/{timestamp}.dump"), "a test").unwrap();
        let path = w.dir.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::create_dir(w.dump()).unwrap();
        std::fs::write(w.dump().join("toc.dat"), b"x").unwrap();
        drop(w);
        assert!(!path.exists());
    }

    #[test]
    fn the_listing_digest_is_sha256sum_of_the_files() {
        let f = |name: &str, sha: &str| DumpFile {
            name: name.into(),
            key: format!("k/{name}"),
            sha256: sha.into(),
            bytes_stored: 1,
            bytes_raw: 1,
        };
        let files = [f("3456.dat", "aa"), f("toc.dat", "bb")];
        let mut h = StreamHasher::new(false);
        h.update(b"aa  3456.dat\nbb  toc.dat\n");
        assert_eq!(listing_sha256(&files), h.finish().sha256);
    }
}
