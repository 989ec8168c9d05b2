//! The journal: what ferry knows about every object it has handled, in SQLite, so a killed run
//! resumes and a re-run skips what is already done without re-reading it.
//!
//! One row per (job, source key): the source size and ETag it was read at, the state, the
//! destination ETag ferry got back, and the SHA-256 of the bytes. Writes are queued and committed
//! in batches (one transaction per batch, WAL mode), so small-object transfers are not slowed by
//! an fsync each, and a kill at any instant leaves the journal consistent: a row is either the old
//! one or the new one. A lost batch only means those objects are compared again next run.
//! This module does not decide what to copy; `sync` asks it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Kind};
use crate::store::PRIVATE_MODE;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

/// Mode of the state directory's folders (issue 14): the journal, the lock and the local
/// manifests name every object and where it went, so only their owner can read them.
pub const STATE_DIR_MODE: u32 = 0o700;

/// Creates a state directory (and any missing parent) with [`STATE_DIR_MODE`]. An existing
/// folder keeps its mode: the operator may have set one on purpose.
pub fn create_state_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(STATE_DIR_MODE)
        .create(dir)
}

/// Creates (or truncates) a file of the state directory with mode [`PRIVATE_MODE`].
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_MODE)
        .open(path)
}

/// Creates `path` empty with mode [`PRIVATE_MODE`] unless it exists; an existing file keeps
/// its mode.
fn create_private_file_if_missing(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A journal that could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("journal `{}`", path.display())]
pub struct JournalError {
    pub path: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

impl JournalError {
    /// The path and the cause in one line, for reports that keep a string (a full disk says
    /// `database or disk is full`).
    pub fn describe(&self) -> String {
        format!("{self}: {}", self.source)
    }
}

/// Where an object stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    InFlight,
    Done,
    Failed,
    /// Deleted at the destination by a mirror (`delete-extraneous`): not in the manifest.
    Deleted,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::InFlight => "in-flight",
            State::Done => "done",
            State::Failed => "failed",
            State::Deleted => "deleted",
        }
    }
    fn parse(s: &str) -> State {
        match s {
            "done" => State::Done,
            "failed" => State::Failed,
            "deleted" => State::Deleted,
            _ => State::InFlight,
        }
    }
}

/// One journal row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub job: String,
    pub key: String,
    pub state: State,
    pub src_size: u64,
    pub src_etag: Option<String>,
    pub dst_key: String,
    pub dst_etag: Option<String>,
    pub sha256: Option<String>,
    /// At a destination that encrypts: the SHA-256 of the bytes stored (the ciphertext), so a
    /// verify without the key can check them. `sha256` stays the plaintext's.
    pub stored_sha256: Option<String>,
    pub error: Option<String>,
    /// In flight: the multipart upload id at the destination, so a resumed run continues it
    /// (or aborts it when the source changed).
    pub upload_id: Option<String>,
    /// In flight: the part size the upload was started with (parts must line up on resume).
    pub part_size: Option<u64>,
}

/// Counts by state, for `ferry status`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct StateCounts {
    pub done: u64,
    pub done_bytes: u64,
    pub failed: u64,
    pub in_flight: u64,
    /// Deleted at the destination by a mirror.
    pub deleted: u64,
}

struct Inner {
    conn: Connection,
    pending: Vec<Record>,
    barriers: Vec<Barrier>,
}

/// Runs before queued records are committed, to make the bytes they describe durable first
/// (a local destination's `syncfs`): a record says "done" only of data that survives a crash.
pub type Barrier = std::sync::Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>;

/// A handle to the journal; cheap to clone, safe to share across tasks.
#[derive(Clone)]
pub struct Journal {
    path: PathBuf,
    inner: Arc<Mutex<Inner>>,
}

/// Rows queued before a commit is forced.
const BATCH: usize = 512;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Journal {
    /// A journal over an open connection, nothing pending.
    fn from_conn(path: &Path, conn: Connection) -> Journal {
        Journal {
            path: path.to_path_buf(),
            inner: Arc::new(Mutex::new(Inner {
                conn,
                pending: Vec::new(),
                barriers: Vec::new(),
            })),
        }
    }

    /// Opens (creating if needed) the journal at `path`.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let err = |source| JournalError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            create_state_dir(dir).map_err(|e| JournalError {
                path: path.to_path_buf(),
                source: rusqlite::Error::InvalidPath(format!("cannot create `{}`: {e}", dir.display()).into()),
            })?;
        }
        // Created 0600 before SQLite opens it: SQLite gives its `-wal` and `-shm` files the
        // database file's mode, so all three are private.
        if let Err(e) = create_private_file_if_missing(path) {
            return Err(JournalError {
                path: path.to_path_buf(),
                source: rusqlite::Error::InvalidPath(format!("cannot create `{}`: {e}", path.display()).into()),
            });
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        // Journals written before uploads were resumable lack the upload columns.
        if !has_column(&conn, "upload_id").map_err(err)? {
            conn.execute_batch(
                "ALTER TABLE objects ADD COLUMN upload_id TEXT; ALTER TABLE objects ADD COLUMN part_size INTEGER;",
            )
            .map_err(err)?;
        }
        // ... and journals written before objects were encrypted lack `stored_sha256`.
        if !has_column(&conn, "stored_sha256").map_err(err)? {
            conn.execute_batch("ALTER TABLE objects ADD COLUMN stored_sha256 TEXT;")
                .map_err(err)?;
        }
        Ok(Journal::from_conn(path, conn))
    }
}

/// Whether the journal's `objects` table has `column` (older journals lack later columns).
fn has_column(conn: &Connection, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('objects') WHERE name = ?1",
        [column],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS objects (
                 job TEXT NOT NULL,
                 key TEXT NOT NULL,
                 state TEXT NOT NULL,
                 src_size INTEGER NOT NULL,
                 src_etag TEXT,
                 dst_key TEXT NOT NULL,
                 dst_etag TEXT,
                 sha256 TEXT,
                 error TEXT,
                 upload_id TEXT,
                 part_size INTEGER,
                 updated INTEGER NOT NULL,
                 stored_sha256 TEXT,
                 PRIMARY KEY (job, key)
             ) WITHOUT ROWID;";

impl Journal {
    /// Opens an existing journal without writing to it (dry runs, verify, status); a journal
    /// that does not exist yet reads as empty.
    pub fn open_read_only(path: &Path) -> Result<Journal, JournalError> {
        let err = |source| JournalError {
            path: path.to_path_buf(),
            source,
        };
        let conn = if path.exists() {
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?
        } else {
            let c = Connection::open_in_memory().map_err(err)?;
            c.execute_batch(SCHEMA).map_err(err)?;
            c
        };
        Ok(Journal::from_conn(path, conn))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> JournalError {
        JournalError {
            path: self.path.clone(),
            source,
        }
    }

    /// Adds a durability barrier, run before every commit from now on.
    pub fn add_barrier(&self, barrier: Barrier) {
        self.inner.lock().expect("journal lock poisoned").barriers.push(barrier);
    }

    /// The row for a key, seeing queued writes too.
    pub fn get(&self, job: &str, key: &str) -> Result<Option<Record>, JournalError> {
        let inner = self.inner.lock().expect("journal lock poisoned");
        if let Some(r) = inner.pending.iter().rev().find(|r| r.job == job && r.key == key) {
            return Ok(Some(r.clone()));
        }
        let mut stmt = inner
            .conn
            .prepare_cached(
                "SELECT state, src_size, src_etag, dst_key, dst_etag, sha256, error, upload_id, part_size, stored_sha256
                 FROM objects WHERE job = ?1 AND key = ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_row(params![job, key], |r| {
            Ok(Record {
                job: job.to_string(),
                key: key.to_string(),
                state: State::parse(&r.get::<_, String>(0)?),
                src_size: r.get::<_, i64>(1)? as u64,
                src_etag: r.get(2)?,
                dst_key: r.get(3)?,
                dst_etag: r.get(4)?,
                sha256: r.get(5)?,
                error: r.get(6)?,
                upload_id: r.get(7)?,
                part_size: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
                stored_sha256: r.get(9)?,
            })
        })
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Queues a row; committed with the next batch.
    pub fn put(&self, record: Record) -> Result<(), JournalError> {
        let mut inner = self.inner.lock().expect("journal lock poisoned");
        inner.pending.push(record);
        if inner.pending.len() >= BATCH {
            self.flush_locked(&mut inner)?;
        }
        Ok(())
    }

    /// Commits every queued row in one transaction.
    pub fn flush(&self) -> Result<(), JournalError> {
        let mut inner = self.inner.lock().expect("journal lock poisoned");
        self.flush_locked(&mut inner)
    }

    fn flush_locked(&self, inner: &mut Inner) -> Result<(), JournalError> {
        if inner.pending.is_empty() {
            return Ok(());
        }
        for barrier in &inner.barriers {
            barrier().map_err(|e| {
                self.err(rusqlite::Error::InvalidPath(
                    format!("cannot make written data durable before journaling it: {e}").into(),
                ))
            })?;
        }
        let rows = std::mem::take(&mut inner.pending);
        let tx = inner.conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO objects
                     (job, key, state, src_size, src_etag, dst_key, dst_etag, sha256, error, upload_id, part_size, updated, stored_sha256)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .map_err(|e| self.err(e))?;
            let t = now();
            for r in &rows {
                stmt.execute(params![
                    r.job,
                    r.key,
                    r.state.as_str(),
                    r.src_size as i64,
                    r.src_etag,
                    r.dst_key,
                    r.dst_etag,
                    r.sha256,
                    r.error.as_deref().map(crate::redact::redact),
                    r.upload_id,
                    r.part_size.map(|v| v as i64),
                    t,
                    r.stored_sha256
                ])
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Calls `f` with every done row of a job, in key order, without loading them all at once.
    pub fn for_each_done(&self, job: &str, mut f: impl FnMut(&Record)) -> Result<(), JournalError> {
        self.flush()?;
        let inner = self.inner.lock().expect("journal lock poisoned");
        let mut stmt = inner
            .conn
            .prepare(
                "SELECT key, src_size, src_etag, dst_key, dst_etag, sha256, stored_sha256
                 FROM objects WHERE job = ?1 AND state = 'done' ORDER BY key",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params![job]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let rec = Record {
                job: job.to_string(),
                key: r.get(0).map_err(|e| self.err(e))?,
                state: State::Done,
                src_size: r.get::<_, i64>(1).map_err(|e| self.err(e))? as u64,
                src_etag: r.get(2).map_err(|e| self.err(e))?,
                dst_key: r.get(3).map_err(|e| self.err(e))?,
                dst_etag: r.get(4).map_err(|e| self.err(e))?,
                sha256: r.get(5).map_err(|e| self.err(e))?,
                stored_sha256: r.get(6).map_err(|e| self.err(e))?,
                error: None,
                upload_id: None,
                part_size: None,
            };
            f(&rec);
        }
        Ok(())
    }

    /// Keys and upload ids of a job's rows still in flight (uploads a killed run left open).
    pub fn in_flight(&self, job: &str) -> Result<Vec<(String, String)>, JournalError> {
        self.flush()?;
        let inner = self.inner.lock().expect("journal lock poisoned");
        let mut stmt = inner
            .conn
            .prepare("SELECT key, upload_id FROM objects WHERE job = ?1 AND state != 'done' AND upload_id IS NOT NULL")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![job], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Forgets one row (an aborted orphan upload).
    pub fn forget(&self, job: &str, key: &str) -> Result<(), JournalError> {
        self.flush()?;
        let inner = self.inner.lock().expect("journal lock poisoned");
        inner
            .conn
            .execute("DELETE FROM objects WHERE job = ?1 AND key = ?2", params![job, key])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The jobs with rows whose names start with `prefix` (the buckets of an account job,
    /// `JOB.`), sorted: `status` reads them without listing the account.
    pub fn jobs_under(&self, prefix: &str) -> Result<Vec<String>, JournalError> {
        self.flush()?;
        let inner = self.inner.lock().expect("journal lock poisoned");
        let mut stmt = inner
            .conn
            .prepare("SELECT DISTINCT job FROM objects WHERE substr(job, 1, length(?1)) = ?1 ORDER BY job")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![prefix], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Counts by state for a job.
    pub fn counts(&self, job: &str) -> Result<StateCounts, JournalError> {
        self.flush()?;
        let inner = self.inner.lock().expect("journal lock poisoned");
        let mut stmt = inner
            .conn
            .prepare("SELECT state, COUNT(*), COALESCE(SUM(src_size),0) FROM objects WHERE job = ?1 GROUP BY state")
            .map_err(|e| self.err(e))?;
        let mut c = StateCounts::default();
        let mut rows = stmt.query(params![job]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let n = r.get::<_, i64>(1).map_err(|e| self.err(e))? as u64;
            match State::parse(&r.get::<_, String>(0).map_err(|e| self.err(e))?) {
                State::Done => {
                    c.done = n;
                    c.done_bytes = r.get::<_, i64>(2).map_err(|e| self.err(e))? as u64;
                }
                State::Failed => c.failed = n,
                State::InFlight => c.in_flight = n,
                State::Deleted => c.deleted = n,
            }
        }
        Ok(c)
    }
}

/// The state directory cannot be used (exit 2): nothing was written.
impl From<JournalError> for Error {
    fn from(e: JournalError) -> Self {
        Error::new(Kind::Usage, e)
    }
}

/// Another ferry run holds the state directory (exit 3: retry later).
#[derive(Debug, thiserror::Error)]
#[error("state directory `{dir}` is in use by {holder}; retry when it has finished\nhint: two runs on one state directory would copy the same objects and abort each other's uploads")]
pub struct BusyError {
    pub dir: PathBuf,
    /// `ferry pid N on host H since T`, as the holder wrote it.
    pub holder: String,
}

/// An exclusive lock on a state directory, held while it lives. `flock` is released by the
/// kernel when the holder dies, so a killed run never leaves a stale lock behind.
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// Takes the lock of `dir` (creating `dir/lock`), or says who holds it.
    pub fn acquire(dir: &Path) -> Result<StateLock, Error> {
        use std::io::{Read, Seek, Write};
        create_state_dir(dir)
            .map_err(|e| Error::usage(format!("cannot create state directory `{}`: {e}", dir.display())))?;
        let path = dir.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_MODE)
            .open(&path)
            .map_err(|e| Error::usage(format!("cannot open `{}`: {e}", path.display())))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::new(
                    Kind::Unavailable,
                    BusyError {
                        dir: dir.to_path_buf(),
                        holder: if holder.is_empty() {
                            "another ferry process".into()
                        } else {
                            holder.to_string()
                        },
                    },
                ));
            }
            Err(e) => return Err(Error::usage(format!("cannot lock `{}`: {e}", path.display()))),
        }
        let mut host = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
        let host = if unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len()) } == 0 {
            let end = host.iter().position(|b| *b == 0).unwrap_or(host.len());
            String::from_utf8_lossy(&host[..end]).into_owned()
        } else {
            "this host".into()
        };
        let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let _ = file.set_len(0);
        let _ = file.seek(std::io::SeekFrom::Start(0));
        let _ = write!(file, "ferry pid {} on host {host} since {since}", std::process::id());
        let _ = file.flush();
        Ok(StateLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, state: State) -> Record {
        Record {
            job: "j".into(),
            key: key.into(),
            state,
            src_size: 3,
            src_etag: Some("e".into()),
            dst_key: format!("d/{key}"),
            dst_etag: None,
            sha256: Some("abc".into()),
            stored_sha256: None,
            error: None,
            upload_id: None,
            part_size: None,
        }
    }

    #[test]
    fn rows_survive_reopen_and_queued_rows_are_visible() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        let j = Journal::open(&p).unwrap();
        j.put(rec("a", State::Done)).unwrap();
        assert_eq!(j.get("j", "a").unwrap().unwrap().state, State::Done);
        j.put(rec("b", State::Failed)).unwrap();
        j.flush().unwrap();
        drop(j);
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.get("j", "b").unwrap().unwrap().state, State::Failed);
        let c = j.counts("j").unwrap();
        assert_eq!((c.done, c.failed, c.done_bytes), (1, 1, 3));
        let mut keys = vec![];
        j.for_each_done("j", |r| keys.push(r.key.clone())).unwrap();
        assert_eq!(keys, ["a"]);
    }
}
