//! SQLite files, which ferry reads and writes itself rather than through a tool: the consistent
//! copy a dump streams (the online backup API), the temporary files a copy or a restore lives in
//! until it is complete, and putting a restored file in place of the target. SQLite's table
//! checksums are in `tablesum`.

use std::io;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A file removed when dropped (with any SQLite `-wal`, `-shm`, `-journal` beside it).
pub(super) struct TempFile {
    pub(super) path: PathBuf,
    /// Removes the file itself when dropped (after the side files, in [`Drop`]).
    _file: tempfile::TempPath,
}

impl TempFile {
    /// Creates an empty file with a fresh name `STEM-…` in `dir`, readable only by this user
    /// (tempfile's default on unix): a copy of a database is as sensitive as the database.
    pub(super) fn new(dir: &FsPath, stem: &str) -> io::Result<TempFile> {
        let file = tempfile::Builder::new()
            .prefix(&format!("{stem}-"))
            .tempfile_in(dir)?
            .into_temp_path();
        Ok(TempFile {
            path: file.to_path_buf(),
            _file: file,
        })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

/// Sets its flag when dropped: a future that owns it tells the blocking work it started that
/// nobody waits for it any more.
pub(super) struct StopOnDrop(pub(super) Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A consistent copy of `src` into the (empty) file `dst` through SQLite's online backup API, in
/// one step: the copy is one read transaction, so it is a snapshot even while writers run (in WAL
/// mode they are not blocked; in rollback mode they wait for the copy).
///
/// While a writer holds the file, the copy waits (up to 5 minutes) in short retries, each of
/// which first looks at `stop`: a dump stopped by a signal must not keep the process alive.
pub(super) fn sqlite_backup(src: &FsPath, dst: &FsPath, stop: &AtomicBool) -> Result<(), String> {
    use rusqlite::backup::{Backup, StepResult};
    use rusqlite::{Connection, OpenFlags};
    if !src.is_file() {
        return Err("no such file".into());
    }
    let from = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| e.to_string())?;
    // Short: the waiting is done below, where `stop` is seen.
    from.busy_timeout(Duration::from_millis(100))
        .map_err(|e| e.to_string())?;
    let mut to = Connection::open(dst).map_err(|e| e.to_string())?;
    {
        let backup = Backup::new(&from, &mut to).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            match backup.step(-1).map_err(|e| e.to_string())? {
                StepResult::Done => break,
                StepResult::More => continue,
                _ if stop.load(Ordering::Relaxed) => return Err("stopped".into()),
                StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => return Err("the database stayed locked for 5 minutes".into()),
            }
        }
    }
    to.close().map_err(|(_, e)| e.to_string())
}

/// Checks the restored SQLite file and moves it over the target. Stale `-wal`/`-shm` files of
/// the old target are removed first: SQLite would otherwise replay the old log into the new file.
pub(super) fn place_sqlite(tmp: TempFile, target_path: &FsPath) -> Result<(), String> {
    use rusqlite::{Connection, OpenFlags};
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&tmp.path)
            .map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
        let c = Connection::open_with_flags(&tmp.path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| e.to_string())?;
        let check: String = c
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if check != "ok" {
            return Err(format!("the restored file fails `PRAGMA quick_check`: {check}"));
        }
    }
    // Opening a WAL-mode file read-only leaves an empty `-wal` and `-shm` beside it; they belong
    // to the temporary name and would be orphaned by the rename.
    for suffix in ["-wal", "-shm"] {
        let mut p = tmp.path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    if let Ok(meta) = std::fs::metadata(target_path) {
        let _ = std::fs::set_permissions(&tmp.path, meta.permissions());
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = target_path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(&p)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove stale `{}`: {e}", PathBuf::from(p).display())),
        }
    }
    std::fs::rename(&tmp.path, target_path)
        .map_err(|e| format!("cannot move into place at `{}`: {e}", target_path.display()))?;
    // The rename succeeded: nothing left for the guard to delete.
    std::mem::forget(tmp);
    Ok(())
}
