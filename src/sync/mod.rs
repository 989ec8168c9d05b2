//! The copy engine (rclone's `sync`): for one `[[objects]]` job, pair the listings, decide,
//! copy, journal, and mirror deletes.
//!
//! The source listing is consumed as a stream (`pairing`), so copies start while later pages are
//! still arriving; each listed key is decided (new, changed, unchanged: [`decide`]) in listing
//! order and, in a real run, handed to a bounded pool of `concurrency` transfers (`copy`).
//! `ferry plan` runs the very same classification without the transfers, so what the audit
//! predicts is what the run does.
//!
//! Memory is bounded by a byte budget (`memory-limit`), not by object size or count: every
//! buffered part holds permits of a semaphore for its bytes until it has been uploaded (`parts`).
//! Objects up to one part go up in one PUT; larger ones as a multipart upload with up to
//! [`PARTS_IN_FLIGHT`] parts in flight, a part size chosen to stay under the destination's part
//! limits; to S3, one a killed run can resume (`resumable`), or no bytes at all between buckets
//! of one service (`server_side`). Bytes flow as `Bytes` handles from the source response to the
//! upload without copies. Hashing is in `checksum`; the journal and the manifest record the
//! outcome; `guards` decides which deletes a mirror may make; `report` is what a job found and
//! did.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::journal::{Journal, Record, State};
use crate::pairing::{paired_listings, until_error, DstEntry, Paired};
use crate::plan::ObjectJob;
use crate::progress::Progress;
use crate::store::{Listed, Store};
use crate::throttle::Bandwidth;

mod adaptive;
mod copy;
pub mod decide;
mod guards;
mod history;
mod parts;
mod report;
mod resumable;
mod seal;
mod server_side;
mod versions;

pub use crate::pairing::LIST_PAGE;
pub use copy::body_stream;
pub use decide::{same_etag, Decision};
pub use parts::{part_size, PARTS_IN_FLIGHT, READS_IN_FLIGHT};
pub use report::{Counts, Failure, JobReport, Requests, Restarted, Throttling, VersionsLeft};

use decide::{decide, record_can_matter, Md5Etags};
use parts::{reserve, PERMIT_UNIT};
use report::finish;
use resumable::abort_orphans;

/// Engine settings after plan and command-line overrides.
#[derive(Debug, Clone)]
pub struct Options {
    /// Objects in flight (`--concurrency`, `settings.concurrency`); None: by the stores, see
    /// [`Options::concurrency_for`].
    pub concurrency: Option<usize>,
    pub part_size: u64,
    pub memory_limit: u64,
    /// Copy on the server where source and destination are one S3 service.
    pub server_side_copy: bool,
    /// Cap on bytes read from sources, per second, across all transfers.
    pub bandwidth: Option<f64>,
}

/// The copy engine, shared by every job of a run.
pub struct Engine {
    pub opts: Options,
    pub journal: Journal,
    pub progress: Arc<dyn Progress>,
    budget: Arc<Semaphore>,
    budget_permits: u32,
    bandwidth: Option<Arc<Bandwidth>>,
    /// Uploads started over instead of resumed, by job, until the job's report takes them.
    restarted: std::sync::Mutex<Vec<(String, Restarted)>>,
    /// The run's date (UTC): the folder its `keep-replaced` history goes under.
    today: String,
}

/// What a pass's copies came to: each object's outcome (key, size, failure reason), what was
/// copied with its decision (for a second pass), and the first journal error.
#[derive(Default)]
struct Copies {
    outcomes: Vec<(String, u64, Option<String>)>,
    copied_now: HashMap<String, Decision>,
    journal_error: Option<String>,
    /// Destination objects kept under the history before they were replaced.
    kept: Counts,
    /// The highest objects-in-flight limit reached.
    peak: Option<usize>,
}

impl Copies {
    /// Into the report: copied or failed (failures in key order), and a journal error.
    fn count(&mut self, job: &ObjectJob, report: &mut JobReport) {
        report.concurrency_peak = report.concurrency_peak.max(self.peak);
        for (key, size, failure) in self.outcomes.drain(..) {
            match failure {
                None => report.copied.add(size),
                Some(reason) => report.failed.push(Failure::of_source(job, key, reason)),
            }
        }
        report.failed.sort_by(|a, b| a.key.cmp(&b.key));
        report.kept_in_history = self.kept;
        if let Some(e) = self.journal_error.take() {
            report.error = Some(e);
        }
    }
}

impl Options {
    /// The most objects a copy between `src` and `dst` may have in flight, as its adaptive
    /// limit climbs (`adaptive`): the setting, a ceiling; else 16 between two local folders
    /// (disks, not round trips, decide: no climb) and 256 when a remote store is involved.
    pub fn concurrency_ceiling(&self, src: &Store, dst: &Store) -> usize {
        let default = if both_local(src, dst) {
            crate::plan::DEFAULT_CONCURRENCY_LOCAL
        } else {
            crate::plan::MAX_CONCURRENCY_REMOTE
        };
        self.concurrency.unwrap_or(default).max(1)
    }

    /// Objects in flight at a copy's start: 16 between two local folders, 64 when a remote
    /// store is involved, or the setting if lower.
    pub fn concurrency_start(&self, src: &Store, dst: &Store) -> usize {
        self.concurrency_for(src, dst).min(default_start(src, dst))
    }

    /// Requests at once for a job's checks (verify, archive status): the setting, else the
    /// copy's starting number.
    pub fn concurrency_for(&self, src: &Store, dst: &Store) -> usize {
        self.concurrency.unwrap_or(default_start(src, dst)).max(1)
    }
}

fn both_local(src: &Store, dst: &Store) -> bool {
    src.local.is_some() && dst.local.is_some()
}

fn default_start(src: &Store, dst: &Store) -> usize {
    if both_local(src, dst) {
        crate::plan::DEFAULT_CONCURRENCY_LOCAL
    } else {
        crate::plan::DEFAULT_CONCURRENCY_REMOTE
    }
}

impl Engine {
    pub fn new(opts: Options, journal: Journal, progress: Arc<dyn Progress>) -> Engine {
        let budget_permits = (opts.memory_limit / PERMIT_UNIT).clamp(1, u32::MAX as u64 / 2) as u32;
        Engine {
            journal,
            progress,
            budget: Arc::new(Semaphore::new(budget_permits as usize)),
            budget_permits,
            bandwidth: opts.bandwidth.map(|b| Arc::new(Bandwidth::new(b))),
            restarted: Default::default(),
            today: history::today(),
            opts,
        }
    }

    /// Says (at any verbosity) and keeps for the job's report that an upload is started over.
    fn restarting(&self, job: &str, key: &str, reason: &str) {
        let mut all = self.restarted.lock().expect("restarted lock");
        // An attempt whose old upload could not be closed is retried and comes here again.
        if !all.iter().any(|(j, r)| j == job && r.key == key) {
            self.progress.warn(&format!(
                "`{}`: its upload could not be resumed and starts over from the first part: {reason}",
                crate::keys::shown(key)
            ));
            all.push((
                job.to_string(),
                Restarted {
                    key: key.to_string(),
                    reason: reason.to_string(),
                },
            ));
        }
    }

    /// The restarts recorded for `job`, taken out.
    fn take_restarted(&self, job: &str) -> Vec<Restarted> {
        let mut all = self.restarted.lock().expect("restarted lock");
        let (mine, others) = std::mem::take(&mut *all).into_iter().partition(|(j, _)| j == job);
        *all = others;
        mine.into_iter().map(|(_, r)| r).collect()
    }

    /// The part size asked for, bounded by the memory budget: an object up to one part is held
    /// whole before its PUT, so a part larger than half the budget would make `memory-limit`
    /// no limit (`memory-limit = 16MiB` with `part-size = 1GiB` held a 300 MB file whole).
    fn configured_part(&self) -> u64 {
        self.opts.part_size.min((self.opts.memory_limit / 2).max(1))
    }

    async fn reserve(&self, bytes: u64) -> OwnedSemaphorePermit {
        reserve(&self.budget, self.budget_permits, bytes).await
    }

    /// Plans (`dry_run`) or runs one job.
    ///
    /// Listings are merged as they stream where both sides claim byte order. A server that
    /// lists otherwise (SeaweedFS walks folder by folder: `a/b` before `a-b`) stops that merge
    /// before anything is deleted; the job is then paired again with the destination in a map,
    /// and what the first pass copied is counted as copied, not unchanged.
    pub async fn run_job(&self, job: &ObjectJob, src: &Store, dst: &Store, dry_run: bool) -> JobReport {
        let (mut first, redo) = self.run_pass(job, src, dst, dry_run, true, &HashMap::new()).await;
        let Some(earlier) = redo else {
            first.restarted_uploads = self.take_restarted(&job.name);
            first.versions_left = versions::left_behind(job, src).await;
            return first;
        };
        self.progress.message(&format!(
            "job `{}`: {}; pairing the listings again without relying on their order",
            job.name,
            first.error.as_deref().unwrap_or("listing out of order")
        ));
        let (mut report, _) = self.run_pass(job, src, dst, dry_run, false, &earlier).await;
        report.seconds += first.seconds;
        report.restarted_uploads = self.take_restarted(&job.name);
        report.versions_left = versions::left_behind(job, src).await;
        report
    }

    /// One pass over a job's paired listings. Returns the report and, when the merge stopped on
    /// a key out of order, what this pass copied (key and decision) for a second pass.
    async fn run_pass(
        &self,
        job: &ObjectJob,
        src: &Store,
        dst: &Store,
        dry_run: bool,
        merge: bool,
        earlier: &HashMap<String, Decision>,
    ) -> (JobReport, Option<HashMap<String, Decision>>) {
        let started = Instant::now();
        let mut report = JobReport {
            job: job.name.clone(),
            from: job.from.to_string(),
            to: job.to.to_string(),
            ..Default::default()
        };
        self.progress
            .job_started(&job.name, if dry_run { "plan" } else { "copy" });
        let (flush_error, _stop_flusher) = self.start_flusher(dry_run);
        if let (Some(local), false) = (&dst.local, dry_run) {
            let local = local.clone();
            self.journal.add_barrier(Arc::new(move || local.sync()));
        }
        let paired = match paired_listings(job, src, dst, Arc::new(job.filter()), merge).await {
            Ok(p) => p,
            Err(e) => {
                report.error = Some(e);
                return (finish(report, started, &*self.progress), None);
            }
        };

        // Classify in listing order (cheap, sequential); copy concurrently.
        let mut listing_error = None;
        // Extraneous keys are kept only when they are to be deleted (or, in a plan, listed as
        // what would be deleted).
        let keep_extraneous = job.delete_extraneous;
        let mut extraneous = Vec::new();
        let classified = {
            let report = &mut report;
            let listing_error = &mut listing_error;
            let extraneous = &mut extraneous;
            until_error(paired, listing_error).filter_map(move |p| {
                let out = match p {
                    Paired::Source(item, existing) => self.classify(job, src, dst, report, item, existing, earlier),
                    Paired::Extraneous(rel, d) => {
                        report.extraneous.add(d.size);
                        if keep_extraneous {
                            extraneous.push((rel, d.size));
                        }
                        None
                    }
                };
                std::future::ready(out)
            })
        };
        let mut copies = if dry_run {
            self.check_archived(src, classified).await
        } else {
            self.copy_all(job, src, dst, classified).await
        };
        copies.count(job, &mut report);
        if let Some(e) = listing_error {
            report.error = Some(e.message);
            if e.out_of_order && merge {
                // Nothing was deleted and no orphan aborted: the second pass does both.
                return (finish(report, started, &*self.progress), Some(copies.copied_now));
            }
        }

        let dst_listed = report.unchanged.objects + report.changed.objects + report.extraneous.objects;
        report.requests.source_list = report.source.objects.div_ceil(LIST_PAGE).max(1);
        report.requests.destination_list = dst_listed.div_ceil(LIST_PAGE).max(1);
        self.mirror(job, dst, &mut report, extraneous, dst_listed, dry_run)
            .await;
        self.prune_history(job, dst, &mut report, dry_run).await;
        self.close_job(job, src, dst, &mut report, dry_run, &flush_error).await;
        (finish(report, started, &*self.progress), None)
    }

    /// Finished objects reach the journal within half a second even on a slow job, so a kill
    /// loses at most that much bookkeeping (never data: the next run re-compares). A flush that
    /// fails is kept and fails the job: done rows that never reached the journal would make the
    /// next run trust nothing it did, or worse, report success. No task in a dry run; the task
    /// is aborted when the returned set is dropped, with the job.
    fn start_flusher(&self, dry_run: bool) -> (Arc<Mutex<Option<String>>>, tokio::task::JoinSet<()>) {
        let flush_error = Arc::new(Mutex::new(None::<String>));
        let mut flusher = tokio::task::JoinSet::new();
        if !dry_run {
            let journal = self.journal.clone();
            let flush_error = flush_error.clone();
            flusher.spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    if let Err(e) = journal.flush() {
                        flush_error
                            .lock()
                            .expect("flush error lock")
                            .get_or_insert(e.describe());
                    }
                }
            });
        }
        (flush_error, flusher)
    }

    /// A dry run copies nothing, but asks what `run` would ask before its first GET: whether
    /// each archived S3 object kept for copying has a finished restore (`copy::check_restored`).
    async fn check_archived(&self, src: &Store, classified: impl Stream<Item = (Listed, String, Decision)>) -> Copies {
        let mut out = Copies::default();
        let checks = classified
            .filter(|(item, ..)| std::future::ready(item.archived_class().is_some()))
            .map(|(item, ..)| async move {
                let r = copy::check_restored(src, &item).await;
                (item, r)
            })
            .buffer_unordered(self.opts.concurrency_for(src, src));
        futures::pin_mut!(checks);
        while let Some((item, r)) = checks.next().await {
            if let Err(e) = r {
                out.outcomes.push((item.key, item.size, Some(e.describe())));
            }
        }
        out
    }

    /// One object: its old copy kept under the history first where the job keeps one
    /// (`keep-replaced`), then copied. Returns it with its outcome and whether it was kept.
    async fn copy_one(
        &self,
        job: &ObjectJob,
        src: &Store,
        dst: &Store,
        item: Listed,
        dst_key: String,
        decision: Decision,
    ) -> (Listed, String, Decision, Result<copy::Copied, copy::CopyError>, bool) {
        let keep = decision == Decision::Changed && job.keep_replaced.is_some();
        if keep {
            if let Err(why) = self.keep_replaced(job, dst, &dst_key).await {
                self.progress.skipped_bytes(item.size);
                return (item, dst_key, decision, Err(copy::CopyError::Permanent(why)), false);
            }
        }
        let r = self.copy_with_retries(&job.name, src, dst, &item, &dst_key).await;
        (item, dst_key, decision, r, keep)
    }

    /// Copies what classification kept, as many objects at once as the job's adaptive limit
    /// allows (`adaptive`), and journals each outcome as it comes.
    async fn copy_all(
        &self,
        job: &ObjectJob,
        src: &Store,
        dst: &Store,
        classified: impl Stream<Item = (Listed, String, Decision)>,
    ) -> Copies {
        let mut out = Copies::default();
        let ceiling = self.opts.concurrency_ceiling(src, dst);
        let gate = adaptive::Gate::new(self.opts.concurrency_start(src, dst), ceiling);
        let driver = gate.start();
        let results = classified
            .map(|(item, dst_key, decision)| {
                let gate = gate.clone();
                async move {
                    let _slot = gate.enter().await;
                    let size = item.size;
                    let r = self.copy_one(job, src, dst, item, dst_key, decision).await;
                    gate.done(size);
                    r
                }
            })
            .buffer_unordered(ceiling);
        futures::pin_mut!(results);
        while let Some((item, dst_key, decision, r, kept)) = results.next().await {
            self.progress.object_done();
            if kept {
                // Kept even if the copy then failed: the history holds it either way.
                out.kept.add(item.size);
            }
            let record = match r {
                Ok(c) => {
                    out.copied_now.insert(item.key.clone(), decision);
                    out.outcomes.push((item.key.clone(), item.size, None));
                    Record {
                        job: job.name.clone(),
                        key: item.key.clone(),
                        state: State::Done,
                        src_size: item.size,
                        src_etag: item.etag.clone(),
                        dst_key,
                        dst_etag: c.dst_etag,
                        sha256: c.sha256,
                        stored_sha256: c.stored_sha256,
                        error: None,
                        upload_id: None,
                        part_size: None,
                    }
                }
                Err(e) => {
                    let reason = e.describe();
                    let open_upload = e.open_upload();
                    self.progress
                        .message(&crate::keys::shown(&format!("failed: `{}`: {reason}", item.key)));
                    out.outcomes.push((item.key.clone(), item.size, Some(reason.clone())));
                    Record {
                        job: job.name.clone(),
                        key: item.key.clone(),
                        state: State::Failed,
                        src_size: item.size,
                        src_etag: item.etag.clone(),
                        dst_key,
                        dst_etag: None,
                        sha256: None,
                        stored_sha256: None,
                        error: Some(reason),
                        upload_id: open_upload,
                        part_size: None,
                    }
                }
            };
            if let Err(e) = self.journal.put(record) {
                out.journal_error.get_or_insert(e.describe());
            }
        }
        drop(driver);
        out.peak = (!out.outcomes.is_empty()).then(|| gate.peak());
        out
    }

    /// The end of a pass: the journal flushed (a flush that failed, now or in the background,
    /// fails the job), the uploads a killed run left open aborted, and the throttling seen.
    async fn close_job(
        &self,
        job: &ObjectJob,
        src: &Store,
        dst: &Store,
        report: &mut JobReport,
        dry_run: bool,
        flush_error: &Mutex<Option<String>>,
    ) {
        if let Err(e) = self.journal.flush() {
            report.error.get_or_insert(e.describe());
        }
        if let Some(e) = flush_error.lock().expect("flush error lock").take() {
            report.error.get_or_insert(e);
        }
        if !dry_run && report.error.is_none() {
            report.orphans_aborted = abort_orphans(self, &job.name, dst).await as u64;
        }
        let throttling = Throttling {
            source: src.throttle.stats(),
            destination: dst.throttle.stats(),
        };
        if throttling.source.throttled + throttling.destination.throttled > 0 {
            report.throttling = Some(throttling);
        }
    }

    /// Decides what to do with one listed source object (it passed the job's filters) given its
    /// destination counterpart; returns it when it must be copied. `earlier`: objects an earlier
    /// pass of this run copied, counted as copied rather than unchanged.
    #[allow(clippy::too_many_arguments)]
    fn classify(
        &self,
        job: &ObjectJob,
        src: &Store,
        dst: &Store,
        report: &mut JobReport,
        item: Listed,
        existing: Option<DstEntry>,
        earlier: &HashMap<String, Decision>,
    ) -> Option<(Listed, String, Decision)> {
        let rel = item.key.strip_prefix(&job.from.prefix)?;
        report.source.add(item.size);
        // Listed but not copyable (a link, a FIFO, a name no key can carry): counted and named,
        // so source = copied + unchanged + failed holds and the run cannot exit 0 without it.
        if let Some(reason) = &item.problem {
            return self.not_copied(job, report, &item, rel, format!("not copied: {reason}"));
        }
        let dst_key = format!("{}{rel}", job.to.prefix);
        let decision = self.decision(job, src, dst, &item, existing.as_ref());
        // In an archive class (GLACIER, DEEP_ARCHIVE, Azure Archive), and not already at the
        // destination: counted by class. An Azure blob lists `Archive` until it is rehydrated,
        // so it is named as failed now and never read. An S3 object keeps its class when it is
        // restored: `copy` HEADs it for `x-amz-restore` before any GET (see `copy_object`).
        if let (Some(c), Decision::New | Decision::Changed) = (item.archived_class(), decision) {
            report.archived.entry(c.to_string()).or_default().add(item.size);
            if src.s3.is_none() {
                let reason = format!("archived ({c}): restore it first");
                return self.not_copied(job, report, &item, rel, reason);
            }
        }
        match decision {
            Decision::Unchanged => {
                match earlier.get(&item.key) {
                    Some(Decision::Changed) => report.changed.add(item.size),
                    Some(_) => report.new.add(item.size),
                    None => {
                        report.unchanged.add(item.size);
                        return None;
                    }
                }
                report.copied.add(item.size);
                None
            }
            Decision::New | Decision::Changed => {
                if decision == Decision::New {
                    report.new.add(item.size);
                } else {
                    report.changed.add(item.size);
                }
                report.note_large(&item.key, item.size);
                report.requests.source_get += 1;
                report.requests.destination_put += match part_size(item.size, self.configured_part(), &dst.caps.limits)
                {
                    Ok(part) if item.size > part => item.size.div_ceil(part) + 2,
                    _ => 1,
                };
                self.progress.found(1, item.size);
                Some((item, dst_key, decision))
            }
        }
    }

    /// Names a listed source object as failed without reading it (see `classify`).
    fn not_copied(
        &self,
        job: &ObjectJob,
        report: &mut JobReport,
        item: &Listed,
        rel: &str,
        reason: String,
    ) -> Option<(Listed, String, Decision)> {
        self.progress
            .message(&crate::keys::shown(&format!("not copied: `{}`: {reason}", item.key)));
        report.unlisted.push(rel.to_string());
        report.failed.push(Failure::of_source(job, item.key.clone(), reason));
        None
    }

    /// [`decide`] with what it needs looked up: the journal row (where it can matter) and the
    /// MD5s the two stores' ETags stand for (none from a store known, this run, to hold SSE-KMS
    /// or SSE-C objects: theirs look like MD5s but are not).
    fn decision(
        &self,
        job: &ObjectJob,
        src: &Store,
        dst: &Store,
        item: &Listed,
        existing: Option<&DstEntry>,
    ) -> Decision {
        // An encrypted destination object is compared by the plaintext size it holds, and its
        // ETag (the ciphertext's MD5) proves nothing about the source's bytes.
        let plain = dst.seal.as_ref().map(|seal| {
            existing.map(|d| DstEntry {
                size: seal.plain_len(d.size).unwrap_or(u64::MAX),
                etag: d.etag.clone(),
            })
        });
        let existing = plain.as_ref().map_or(existing, Option::as_ref);
        let record = record_can_matter(item, existing)
            .then(|| self.journal.get(&job.name, &item.key).ok().flatten())
            .flatten();
        let source = src.etag_md5(item.etag.as_deref());
        let destination = existing
            .filter(|_| dst.seal.is_none())
            .and_then(|d| dst.etag_md5(d.etag.as_deref()));
        let md5 = Md5Etags {
            source: source.as_deref(),
            destination: destination.as_deref(),
        };
        decide(item, existing, record.as_ref(), md5)
    }
}
