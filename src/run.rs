//! Running a plan: the library's front door. [`Migration::prepare`] takes the safety ordering
//! (every database reached and every store probed before anything is written, then the state
//! directory locked, the journal opened, and only then local destination roots created; see
//! [`steps`]); [`Migration::run`] copies the object jobs (manifest, deep verify) and dumps the
//! databases, reporting to a [`Progress`] sink and stopping at one [`CancellationToken`],
//! and returns a typed [`RunReport`]. [`verify`], [`restore`], [`status`] and [`check`] are the
//! other commands' entry points. The command line (`cli`) calls only this module, so it knows
//! no engine module; this module knows no terminal.
//!
//! Stopping: the token is observed by every long step (each job's copy, its manifest upload, its
//! deep verify, each dump and the gaps between dumps). A step stopped is dropped where it
//! stands: uploads in flight stay open and journaled (the next run continues them); a dump
//! stopped while it streams kills its tool and aborts its multipart upload (dumps are not
//! journaled), so no dump is left that looks complete and no upload is left open unknown; a dump
//! whose stream has ended is completed and recorded before the run stops.

pub mod accounts;
mod commands;
mod prepare;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::journal::{Journal, StateLock};
use crate::plan::{DbEngine, Plan, VerifyLevel};
use crate::progress::Progress;
use crate::redact::redact;
use crate::store::Store;
use crate::sync::Engine;

pub use commands::{check, restore, status, verify, Finding, VerifyRun};
pub use prepare::{steps, Step};

pub use crate::dump::{DumpReport, MoveOptions, Reference, RestoreOptions, RestoreReport};
pub use crate::error::{Error, Kind, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_UNAVAILABLE, EXIT_USAGE};
pub use crate::estimate::Estimate;
pub use crate::journal::StateCounts;
pub use crate::store::Uncarriable;
pub use crate::sync::{Counts, JobReport, Options};
pub use crate::verify::VerifyReport;
pub use tokio_util::sync::CancellationToken;

/// The exit code an error stands for, at the command line's edge: the library returns
/// [`Error`], which knows its own ([`Error::exit_code`]); an error of the command line's own
/// (writing its output) is a failure part-way (1).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<Error>().map_or(EXIT_PARTIAL, Error::exit_code)
}

/// What to run, settings already resolved (the CLI resolves flag > plan > default).
#[derive(Debug, Clone)]
pub struct Request {
    /// Only these jobs; empty: all.
    pub jobs: Vec<String>,
    pub options: Options,
    /// Where the journal, the lock and local manifests live.
    pub state_dir: PathBuf,
    /// `ferry plan`: compare and estimate, write nothing.
    pub dry_run: bool,
    /// `ferry run --restore`: each database job with a restore target is restored from its
    /// dump as it streams, and verified.
    pub restore: Option<crate::dump::MoveOptions>,
}

/// A database job's estimated dump size, for a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseEstimate {
    pub engine: DbEngine,
    pub error: Option<String>,
    pub estimated_bytes: Option<u64>,
    pub job: String,
    pub to: String,
}

/// Where a run stopped on its cancellation token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Interrupted {
    /// During an object job (its copy, manifest or deep verify): progress is in the journal.
    Objects,
    /// During this database's dump: its upload was not completed.
    Dump(String),
    /// Before this database's dump began (earlier dumps are complete).
    BeforeDump(String),
}

/// What a run (or a dry run) found and did.
#[derive(Debug, Default, Serialize)]
pub struct RunReport {
    pub dry_run: bool,
    pub jobs: Vec<JobReport>,
    /// Deep verifies of jobs with `verify = "deep"`.
    pub verifies: Vec<VerifyReport>,
    pub dumps: Vec<DumpReport>,
    /// `run --restore`: the restore of each database job that has a restore target.
    pub restores: Vec<RestoreReport>,
    /// Dry run: each database job's estimated dump size.
    pub database_estimates: Vec<DatabaseEstimate>,
    /// Dry run: cost and time per object job.
    pub estimates: Vec<Estimate>,
    /// Set when the token stopped the run; the report then holds what finished before.
    pub interrupted: Option<Interrupted>,
    /// Whole-account jobs: the buckets each listed and where each went (`accounts`).
    pub accounts: Vec<accounts::AccountReport>,
    /// The journal's file.
    pub journal: PathBuf,
}

impl RunReport {
    /// Every job done and verified, every dump (or estimate) succeeded, nothing interrupted.
    pub fn ok(&self) -> bool {
        self.interrupted.is_none()
            && self.jobs.iter().all(JobReport::ok)
            && self.verifies.iter().all(VerifyReport::ok)
            && self.dumps.iter().all(DumpReport::ok)
            && self.restores.iter().all(RestoreReport::ok)
            && self.database_estimates.iter().all(|d| d.error.is_none())
    }
}

/// A plan ready to run: its checks passed, its stores open, its journal (and, unless a dry run,
/// the state directory's lock) held.
pub struct Migration<'p> {
    plan: &'p Plan,
    jobs: prepare::Selected<'p>,
    request: Request,
    stores: BTreeMap<String, Store>,
    journal: Journal,
    _lock: Option<StateLock>,
    /// Dry run: destinations that could not be listed, priced as empty (with the message).
    unreached: BTreeMap<String, String>,
}

impl<'p> Migration<'p> {
    /// Takes the safety ordering ([`steps`]): the first step that fails stops it, and nothing
    /// after it is done.
    pub async fn prepare(plan: &'p Plan, request: Request) -> Result<Migration<'p>, Error> {
        let jobs = prepare::selected(plan, &request.jobs)?;
        if request.restore.is_some()
            && !jobs
                .databases
                .iter()
                .any(|d| d.restore_to_env.is_some() || d.restore_to_path.is_some())
        {
            return Err(Error::usage(
                "--restore: no selected database job has a restore target (`restore-to-env` or `restore-to-path`)"
                    .to_string(),
            ));
        }
        prepare::state_outside_listed_roots(plan, &jobs, &request.state_dir)?;
        let mut real = prepare::Real::new(plan, &jobs, &request.state_dir, request.dry_run);
        prepare::in_order(&mut real, &steps(request.dry_run)).await?;
        let (stores, journal, lock, unreached) = real.finish();
        if !request.dry_run {
            load_object_secrets(&stores, &request.state_dir)?;
        }
        Ok(Migration {
            plan,
            jobs,
            request,
            stores,
            journal,
            _lock: lock,
            unreached,
        })
    }

    /// The journal's file.
    pub fn journal_path(&self) -> &Path {
        self.journal.path()
    }

    /// Runs every selected job: object jobs (copy, manifest, deep verify), then database jobs
    /// (a dump each; a dry run estimates them). Stops at `cancel`, returning what finished.
    pub async fn run(&self, progress: Arc<dyn Progress>, cancel: &CancellationToken) -> RunReport {
        let mut report = RunReport {
            dry_run: self.request.dry_run,
            journal: self.journal.path().to_path_buf(),
            ..RunReport::default()
        };
        let engine = Engine::new(self.request.options.clone(), self.journal.clone(), progress.clone());
        for job in &self.jobs.objects {
            if self
                .object_job(&engine, job, &progress, cancel, &mut report)
                .await
                .is_none()
            {
                // Uploads in flight stay open and journaled: the next run continues them.
                let _ = self.journal.flush();
                report.interrupted = Some(Interrupted::Objects);
                return report;
            }
        }
        for db in &self.jobs.databases {
            if cancel.is_cancelled() {
                report.interrupted = Some(Interrupted::BeforeDump(db.name.clone()));
                return report;
            }
            if self.request.dry_run {
                let Some(est) = cancel.run_until_cancelled(crate::dump::estimate_size(db)).await else {
                    report.interrupted = Some(Interrupted::BeforeDump(db.name.clone()));
                    return report;
                };
                report.database_estimates.push(DatabaseEstimate {
                    job: db.name.clone(),
                    engine: db.engine,
                    to: db.to.to_string(),
                    estimated_bytes: est.as_ref().ok().copied(),
                    error: est.as_ref().err().map(|e| redact(&e.to_string())),
                });
                continue;
            }
            let store = &self.stores[&db.to.provider];
            // The dump observes the token itself: a stopped dump's upload is aborted.
            let has_target = db.restore_to_env.is_some() || db.restore_to_path.is_some();
            let restore = self.request.restore.filter(|_| has_target);
            let done = match &restore {
                Some(opts) => crate::dump::move_until(db, store, &*progress, cancel, opts)
                    .await
                    .map(|(d, r)| (d, Some(r))),
                None => crate::dump::dump_until(db, store, &*progress, cancel)
                    .await
                    .map(|d| (Some(d), None)),
            };
            let Some((dumped, restored)) = done else {
                report.interrupted = Some(Interrupted::Dump(db.name.clone()));
                return report;
            };
            report.dumps.extend(dumped);
            report.restores.extend(restored);
        }
        if self.request.dry_run {
            report.estimates = self.estimates(&report.jobs);
        }
        report
    }

    /// One object job: copy, then (unless a dry run or the job failed) the manifest and a deep
    /// verify if the job asks for one. None: stopped by `cancel` (what finished is reported).
    async fn object_job(
        &self,
        engine: &Engine,
        job: &crate::plan::ObjectJob,
        progress: &Arc<dyn Progress>,
        cancel: &CancellationToken,
        report: &mut RunReport,
    ) -> Option<()> {
        let (src, dst) = (&self.stores[&job.from.provider], &self.stores[&job.to.provider]);
        let mut r = cancel
            .run_until_cancelled(engine.run_job(job, src, dst, self.request.dry_run))
            .await?;
        if self.request.dry_run || r.error.is_some() {
            report.jobs.push(r);
            return Some(());
        }
        let manifest = crate::manifest::write(&self.journal, job, &r, &self.request.state_dir, dst);
        let written = cancel.run_until_cancelled(manifest).await;
        match written {
            Some(Ok(p)) => r.manifest = Some(p.display().to_string()),
            Some(Err(e)) => r.error = Some(redact(&format!("manifest: {e:#}"))),
            None => {
                r.error = Some("manifest: not written (interrupted)".into());
                report.jobs.push(r);
                return None;
            }
        }
        report.jobs.push(r);
        if job.verify == VerifyLevel::Deep {
            let concurrency = self.request.options.concurrency_for(src, dst);
            let deep = crate::verify::verify_job(
                job,
                src,
                dst,
                VerifyLevel::Deep,
                &self.journal,
                progress.clone(),
                concurrency,
            );
            report.verifies.push(cancel.run_until_cancelled(deep).await?);
        }
        Some(())
    }

    fn estimates(&self, reports: &[JobReport]) -> Vec<Estimate> {
        self.jobs
            .objects
            .iter()
            .zip(reports)
            .map(|(j, r)| {
                let mut e = crate::estimate::estimate(
                    r,
                    &self.plan.providers[&j.from.provider],
                    &self.plan.providers[&j.to.provider],
                    self.request.options.bandwidth,
                );
                e.destination_not_reached = self.unreached.get(&j.to.provider).cloned();
                e
            })
            .collect()
    }
}

/// Encrypting destinations derive each multipart upload's keys from the state directory's
/// secret (`crypt::objects`): read, or created, once the state is locked.
fn load_object_secrets(stores: &BTreeMap<String, Store>, state_dir: &Path) -> Result<(), Error> {
    for store in stores.values() {
        if let Some(seal) = &store.seal {
            seal.load_secret(state_dir).map_err(|e| {
                Error::usage(format!(
                    "state directory `{}`: cannot keep the key secret of encrypted uploads: {e}",
                    state_dir.display()
                ))
            })?;
        }
    }
    Ok(())
}
