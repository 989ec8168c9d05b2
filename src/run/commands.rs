//! The commands beside a run: `check --connect`, `verify`, `restore` and `status`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::plan::{Plan, VerifyLevel};
use crate::progress::Progress;
use crate::redact::redact;
use crate::store::{Store, Uncarriable};
use crate::verify::{verify_job, VerifyReport};

use super::prepare::{open_journal, open_or_stand_in, open_stores, probe_kind, selected, where_listed, Selected};
use super::{CancellationToken, Request, RestoreOptions, RestoreReport, StateCounts};
use crate::error::Error;

/// Checks that every provider of the plan answers (one listing request per job location);
/// returns, per location, the keys in its first listed page that no run can copy as they are.
/// Creates nothing.
pub async fn check(plan: &Plan) -> Result<Vec<(String, Uncarriable)>, Error> {
    let mut uncarriable = Vec::new();
    let mut stores = BTreeMap::new();
    for (name, spec) in &plan.providers {
        let is_destination = plan.objects.iter().any(|j| &j.to.provider == name);
        stores.insert(name.clone(), open_or_stand_in(spec, is_destination)?);
    }
    let mut seen = BTreeSet::new();
    for job in &plan.objects {
        for loc in [&job.from, &job.to] {
            let store = &stores[&loc.provider];
            // A whole account: its bucket listing is the request that shows it answers.
            if store.spec.is_account() {
                store.list_buckets().await.map_err(|e| {
                    Error::of(
                        probe_kind(&e),
                        redact(&format!("provider `{}`: cannot list its buckets: {e}", loc.provider)),
                    )
                })?;
                continue;
            }
            if job.account.is_some() {
                // A folder per bucket (`{bucket}` in the prefix): its bucket is probed at the root.
                store.probe("").await.map_err(|e| {
                    Error::of(
                        probe_kind(&e),
                        redact(&format!(
                            "provider `{}`: cannot list `{}:`: {e}",
                            loc.provider, loc.provider
                        )),
                    )
                })?;
                continue;
            }
            let odd = store.probe(&loc.prefix).await.map_err(|e| {
                let at = where_listed(store);
                Error::of(
                    probe_kind(&e),
                    redact(&format!("provider `{}`: cannot list `{loc}`{at}: {e}", loc.provider)),
                )
            })?;
            if seen.insert(loc.to_string()) {
                uncarriable.extend(odd.into_iter().map(|u| (loc.to_string(), u)));
            }
        }
    }
    Ok(uncarriable)
}

/// What recording a verify's findings in the journal came to.
#[derive(Debug, Clone)]
pub enum Finding {
    /// This many of a job's findings were journaled: the next run copies them again.
    Journaled { job: String, count: usize },
    /// Not journaled, and why (a note for the user).
    NotJournaled(String),
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyRun {
    pub jobs: Vec<VerifyReport>,
    /// Database jobs with a restore target: source and restored copy compared.
    pub databases: Vec<RestoreReport>,
    /// Database jobs without a restore target (nothing to verify).
    pub no_restore_target: Vec<String>,
    pub findings: Vec<Finding>,
    /// Stopped by the token; the report holds the jobs verified before.
    pub interrupted: bool,
}

impl VerifyRun {
    pub fn ok(&self) -> bool {
        !self.interrupted && self.jobs.iter().all(VerifyReport::ok) && self.databases.iter().all(RestoreReport::ok)
    }
}

/// Verifies the selected jobs at `level` (None: each job's own), then records what differs in
/// the journal so the next run copies it again. Opens the journal read-only until then.
pub async fn verify(
    plan: &Plan,
    request: &Request,
    level: Option<VerifyLevel>,
    progress: Arc<dyn Progress>,
    cancel: &CancellationToken,
) -> Result<VerifyRun, Error> {
    let jobs = selected(plan, &request.jobs)?;
    let stores = open_stores(plan, &jobs).await?;
    let journal = open_journal(&request.state_dir, true)?;
    let mut out = VerifyRun::default();
    for job in &jobs.objects {
        let (src, dst) = (&stores[&job.from.provider], &stores[&job.to.provider]);
        let lvl = level.unwrap_or(job.verify);
        // A missing or wrong key for `--deep` of encrypted objects stops here, with exit 2.
        crate::verify::deep_opener(job, dst, lvl).await?;
        let v = verify_job(
            job,
            src,
            dst,
            lvl,
            &journal,
            progress.clone(),
            request.options.concurrency_for(src, dst),
        );
        match cancel.run_until_cancelled(v).await {
            Some(r) => out.jobs.push(r),
            None => {
                out.interrupted = true;
                return Ok(out);
            }
        }
    }
    for db in &jobs.databases {
        if db.restore_to_env.is_some() || db.restore_to_path.is_some() {
            match cancel.run_until_cancelled(crate::dump::verify_restored(db)).await {
                Some(r) => out.databases.push(r),
                None => {
                    out.interrupted = true;
                    return Ok(out);
                }
            }
        } else {
            out.no_restore_target.push(db.name.clone());
        }
    }
    out.findings = record_findings(request, &jobs, &out.jobs);
    Ok(out)
}

/// What verify found wrong goes into the journal, so the next `run` re-copies exactly those
/// objects. Skipped (with a note) while a run holds the state directory.
fn record_findings(request: &Request, jobs: &Selected<'_>, reports: &[VerifyReport]) -> Vec<Finding> {
    if reports.iter().all(|r| r.mismatches.is_empty()) {
        return Vec::new();
    }
    let state = &request.state_dir;
    let _lock = match crate::journal::StateLock::acquire(state) {
        Ok(l) => l,
        Err(e) => {
            return vec![Finding::NotJournaled(format!(
                "findings not journaled ({e}); run verify again once the run has finished"
            ))]
        }
    };
    let journal = match open_journal(state, false) {
        Ok(j) => j,
        Err(e) => return vec![Finding::NotJournaled(format!("findings not journaled: {e}"))],
    };
    let mut out = Vec::new();
    for (job, report) in jobs.objects.iter().zip(reports) {
        match crate::verify::record_findings(&journal, job, report) {
            Ok(0) => {}
            Ok(count) => out.push(Finding::Journaled {
                job: job.name.clone(),
                count,
            }),
            Err(e) => out.push(Finding::NotJournaled(format!(
                "job `{}`: findings not journaled: {e}",
                job.name
            ))),
        }
    }
    out
}

/// Restores a database job's dump into its restore target and compares it table by table.
pub async fn restore(plan: &Plan, database: &str, opts: &RestoreOptions<'_>) -> Result<RestoreReport, Error> {
    let db = plan.databases.iter().find(|d| d.name == database).ok_or_else(|| {
        let names: Vec<_> = plan.databases.iter().map(|d| d.name.as_str()).collect();
        Error::usage(format!(
            "no database job named `{database}` (database jobs: {})",
            names.join(", ")
        ))
    })?;
    if db.restore_to_env.is_none() && db.restore_to_path.is_none() {
        return Err(Error::usage(format!(
            "database `{database}` has no restore target\nhint: set `restore-to-env` (postgres, mysql) or `restore-to-path` (sqlite)"
        )));
    }
    let store = Store::open(&plan.providers[&db.to.provider], false)?;
    Ok(crate::dump::restore(db, &store, opts).await)
}

/// The journal's view of each selected object job. Writes nothing.
pub fn status(plan: &Plan, request: &Request) -> Result<Vec<(String, StateCounts)>, Error> {
    let jobs = selected(plan, &request.jobs)?;
    let journal = open_journal(&request.state_dir, true)?;
    let mut out = Vec::new();
    for job in jobs.objects {
        if job.account.is_some() {
            // One journal job per bucket (`run::accounts`), as far as runs have got.
            for name in journal.jobs_under(&format!("{}.", job.name))? {
                let counts = journal.counts(&name)?;
                out.push((name, counts));
            }
            continue;
        }
        out.push((job.name.clone(), journal.counts(&job.name)?));
    }
    Ok(out)
}
