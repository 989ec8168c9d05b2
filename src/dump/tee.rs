//! One pass for an evacuation (`ferry run --restore`): the dump tool's output is read once and
//! goes two ways: into the store, as every dump goes (compressed, encrypted, hashed, uploaded),
//! and into the restore target (`pg_restore`'s or `mariadb`'s stdin, or a temporary file beside
//! the SQLite target). Moving a database then costs one dump instead of a dump, a download and
//! a restore one after another. The restore is verified table by table against the checksums
//! taken from the source in the dump's own snapshot (the dump's record), the same reference a
//! later `ferry restore` of that dump is checked with.
//!
//! The copy for the restore is taken as the bytes are read ([`TeeReader`]) and written by a
//! thread of its own, through a bounded channel: a slow restore slows the dump (it is the same
//! data), but never buffers more than [`TEE_DEPTH`] reads. A restore that fails stops receiving
//! and the dump goes on: a complete dump is still worth keeping and can be restored later. A
//! dump that fails or is stopped kills the restore tool before its input is closed, because a
//! client that saw end-of-input would apply a truncated dump.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Instant;

use bytes::Bytes;

use super::database::{target, Database};
use super::process::{tool_result, ChildGuard};
use super::report::{DumpError, Reference, RestoreReport};
use super::restore::{open_sink, place, Sink};
use super::sqlite::TempFile;
use super::tablesum::{compare_tables, table_sums, ReadAt, TableSum};
use super::{globals, guard, DumpReport, RestoreOptions};
use crate::plan::DatabaseJob;
use crate::progress::Progress;
use crate::redact::redact;
use crate::store::Store;
use tokio_util::sync::CancellationToken;

/// Reads queued between the dump's reader and the restore's writer (each up to a pipe's 64 KiB,
/// or a file read's 256 KiB).
const TEE_DEPTH: usize = 32;

/// How `ferry run --restore` restores.
#[derive(Debug, Clone, Copy, Default)]
pub struct MoveOptions {
    /// Restore into a target that already has tables (`--replace`; the job's `restore-replace`
    /// says the same).
    pub replace: bool,
}

/// The restore side of a one-pass move, from the guards to the verification.
pub(super) struct Tee {
    job: DatabaseJob,
    target: Database,
    state: State,
    /// The tables the dump recorded (summed in its snapshot), once the dump is complete.
    pub(super) recorded: Option<BTreeMap<String, TableSum>>,
    pub(super) report: RestoreReport,
    started: Instant,
}

enum State {
    /// Guards passed; nothing written to the target yet.
    Ready,
    /// The restore is reading the dump.
    Running(Running),
    /// Restored: the tool succeeded (a SQLite file placed), at this time.
    Closed(Instant),
    /// Restored and the target summed: the sums, and when the restore ended.
    Restored(BTreeMap<String, TableSum>, Instant),
    /// Not restored (or stopped part-way): why.
    Failed(DumpError),
}

struct Running {
    writer: tokio::task::JoinHandle<(io::Result<u64>, Box<dyn Write + Send>)>,
    child: Option<(ChildGuard, tokio::task::JoinHandle<String>)>,
    tool: String,
    tmp: Option<TempFile>,
}

impl Tee {
    /// Runs the restore guards before the dump starts: the target is not the source, and it is
    /// empty unless replacing is allowed. A refusal is returned with the report marked refused.
    pub(super) async fn guarded(job: &DatabaseJob, opts: &MoveOptions) -> Result<Tee, RestoreReport> {
        let mut report = RestoreReport::new(job, true);
        let checked = async {
            let target = target(job)?;
            guard::ensure_not_source(job, &target, false).await?;
            if !(opts.replace || job.restore_replace) {
                guard::ensure_empty(job, &target).await?;
            }
            Ok::<_, DumpError>(target)
        };
        match checked.await {
            Ok(target) => {
                report.refused = false;
                Ok(Tee {
                    job: job.clone(),
                    target,
                    state: State::Ready,
                    recorded: None,
                    report,
                    started: Instant::now(),
                })
            }
            Err(e) => {
                report.error = Some(redact(&e.to_string()));
                Err(report)
            }
        }
    }

    /// Restores the globals the dump just took (`text`, stored at `gkey`: roles the dump grants
    /// to), before the database; a failure stops the restore, not the dump.
    pub(super) async fn globals(&mut self, gkey: &str, text: String) {
        if let State::Ready = self.state {
            if let Err(e) = globals::apply(&self.job, &self.target, text, gkey, &mut self.report).await {
                self.state = State::Failed(e);
            }
        }
    }

    /// The dump's input, copied to the restore as it is read; unchanged if the restore cannot
    /// start (the dump goes on, and the restore reports why).
    pub(super) fn wrap(&mut self, input: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
        if !matches!(self.state, State::Ready) {
            return input;
        }
        let Sink {
            writer,
            child,
            tool,
            tmp,
        } = match open_sink(&self.job, &self.target) {
            Ok(s) => s,
            Err(e) => {
                self.state = State::Failed(e);
                return input;
            }
        };
        let (tx, rx) = sync_channel(TEE_DEPTH);
        let writer = tokio::task::spawn_blocking(move || write_from(rx, writer));
        self.state = State::Running(Running {
            writer,
            child,
            tool,
            tmp,
        });
        Box::new(TeeReader {
            inner: input,
            tx: Some(tx),
        })
    }

    /// The dump failed part-way: the restore is stopped before it sees the end of its input.
    pub(super) async fn abandon(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Ready);
        if let State::Running(mut r) = state {
            if let Some((c, _)) = &mut r.child {
                c.kill();
            }
            let _ = r.writer.await;
            let mut finished = false;
            if let Some((mut c, _)) = r.child {
                // A tool that had read a whole archive may have finished before the kill.
                finished = c.wait().await.is_ok_and(|s| s.success());
            }
            // Dropped unplaced: a SQLite restore leaves no file.
            drop(r.tmp);
            let left = match self.target {
                _ if finished => {
                    "but the restore tool had already read its input to the end and finished: the target \
                     holds a restore that was not verified (`ferry verify` compares it with the source)"
                }
                Database::Postgres(_) => "pg_restore was stopped inside its single transaction: nothing was restored",
                Database::Mysql(_) => {
                    "the client was stopped part-way: tables restored before the failure are replaced, the rest \
                     untouched; run again with --replace, or `ferry restore` a complete dump"
                }
                Database::Sqlite(_) => "the target file was not touched",
            };
            self.state = State::Failed(self.not_restored(left));
        }
    }

    fn not_restored(&self, left: &str) -> DumpError {
        DumpError::Io {
            job: self.job.name.clone(),
            what: "restoring while dumping".into(),
            message: format!("not restored, because the dump failed (see its error); {left}"),
        }
    }

    /// The dump's stream ended cleanly: the restore's input is closed and its tool's outcome
    /// checked (a SQLite file checked and placed).
    pub(super) async fn close_input(&mut self) {
        if let State::Running(r) = std::mem::replace(&mut self.state, State::Ready) {
            self.state = match self.close(r).await {
                Ok(()) => State::Closed(Instant::now()),
                Err(e) => State::Failed(e),
            };
        }
    }

    /// A restored target: its tables summed.
    pub(super) async fn sum_target(&mut self) {
        if let State::Closed(began) = self.state {
            self.state = match table_sums(&self.job.name, &self.target, ReadAt::Now).await {
                Ok(sums) => State::Restored(sums, began),
                Err(e) => State::Failed(e),
            };
        }
    }

    /// The dump is complete (`key`) or failed (None): a restore still reading is stopped; a
    /// restored target is compared table by table with the tables the dump recorded.
    pub(super) async fn finish(mut self, key: Option<&str>) -> RestoreReport {
        self.report.key = key.unwrap_or_default().to_string();
        if let State::Running(_) = self.state {
            self.abandon().await;
        }
        let state = std::mem::replace(&mut self.state, State::Ready);
        let verified = match state {
            State::Restored(restored, began) => match (self.recorded.take(), key) {
                (Some(recorded), Some(_)) => {
                    self.report.tables = compare_tables(&restored, None, Some(&recorded));
                    self.report.verified_against = vec![Reference::DumpRecord];
                    self.report.verify_seconds = Some(began.elapsed().as_secs_f64());
                    Ok(())
                }
                _ => Err(DumpError::Io {
                    job: self.job.name.clone(),
                    what: "verifying the restore".into(),
                    message: "the target was restored, but the dump failed after it (see its error), so there \
                              are no recorded tables to verify it against: `ferry verify` compares it with the source"
                        .into(),
                }),
            },
            State::Failed(e) => Err(e),
            State::Closed(_) => Err(DumpError::Io {
                job: self.job.name.clone(),
                what: "verifying the restore".into(),
                message: "the target was restored, but its tables could not be summed".into(),
            }),
            State::Ready | State::Running(_) => Err(self.not_restored("nothing was written to the target")),
        };
        if let Err(e) = verified {
            self.report.error = Some(redact(&e.to_string()));
        }
        self.report.seconds = self.started.elapsed().as_secs_f64();
        self.report
    }

    async fn close(&self, r: Running) -> Result<(), DumpError> {
        let Running {
            writer,
            mut child,
            tool,
            mut tmp,
        } = r;
        let (written, sink) = writer
            .await
            .unwrap_or_else(|e| (Err(io::Error::other(e)), Box::new(io::sink())));
        if written.is_err() {
            if let Some((c, _)) = &mut child {
                c.kill();
            }
        }
        drop(sink); // end of input
        if let Some((mut c, stderr)) = child {
            let status = c.wait().await;
            tool_result(&self.job.name, &tool, status, stderr.await.unwrap_or_default())?;
        }
        // The tool's own failure (above) explains a broken pipe better than the pipe does.
        written.map_err(|e| DumpError::Io {
            job: self.job.name.clone(),
            what: format!("writing to `{tool}`"),
            message: e.to_string(),
        })?;
        if let (Database::Sqlite(path), Some(t)) = (&self.target, tmp.take()) {
            place(&self.job, path, t).await?;
        }
        Ok(())
    }
}

/// The dump's input, each read also sent to the restore's writer until it stops taking them.
struct TeeReader {
    inner: Box<dyn Read + Send>,
    tx: Option<SyncSender<Bytes>>,
}

impl Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(tx) = &self.tx {
                // A restore that failed has dropped its end: the dump goes on alone.
                if tx.send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                    self.tx = None;
                }
            }
        }
        Ok(n)
    }
}

/// Writes what the reader sends into the restore's sink; at the first error, stops taking more.
/// The sink is handed back open: closing it tells a restore tool that its input is complete,
/// which only the dump's outcome may decide.
fn write_from(rx: Receiver<Bytes>, mut sink: Box<dyn Write + Send>) -> (io::Result<u64>, Box<dyn Write + Send>) {
    let mut written = 0u64;
    for chunk in rx.iter() {
        if let Err(e) = sink.write_all(&chunk) {
            return (Err(e), sink);
        }
        written += chunk.len() as u64;
    }
    let flushed = sink.flush().map(|()| written);
    (flushed, sink)
}

/// Dumps one job's database to `dst` and restores it into the job's restore target in the same
/// pass (see the module's description), then verifies the target. A job with `jobs > 1` (a
/// directory-format dump, which `pg_restore -j` cannot read from a pipe) is dumped, then
/// restored from the store. None: stopped by `cancel`. No dump when a restore guard refuses.
pub async fn move_until(
    job: &DatabaseJob,
    dst: &Store,
    progress: &dyn Progress,
    cancel: &CancellationToken,
    opts: &MoveOptions,
) -> Option<(Option<DumpReport>, RestoreReport)> {
    let guarded = cancel.run_until_cancelled(Tee::guarded(job, opts)).await?;
    let mut tee = match guarded {
        Ok(t) => t,
        Err(refused) => return Some((None, refused)),
    };
    if job.jobs > 1 {
        let dumped = super::dump_until(job, dst, progress, cancel).await?;
        let restored = match &dumped.key {
            Some(key) => {
                let ropts = RestoreOptions {
                    key: Some(key),
                    // The guards ran before the dump.
                    replace: true,
                    ..RestoreOptions::default()
                };
                cancel.run_until_cancelled(super::restore(job, dst, &ropts)).await?
            }
            None => tee.finish(None).await,
        };
        return Some((Some(dumped), restored));
    }
    let dumped = super::dump_with(job, dst, progress, cancel, Some(&mut tee)).await?;
    let restored = tee.finish(dumped.key.as_deref()).await;
    Some((Some(dumped), restored))
}
