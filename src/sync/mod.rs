//! The copy engine: list, diff, stream, hash, upload, journal, for one `[[objects]]` job.
//!
//! The source listing is consumed as a stream, so copies start while later pages are still
//! arriving; each listed key is classified (new, changed, unchanged) in listing order and, in a
//! real run, handed to a bounded pool of `concurrency` transfers. `ferry plan` runs the very same
//! classification without the transfers, so what the audit predicts is what the run does.
//!
//! Memory is bounded by a byte budget (`memory-limit`), not by object size or count: every
//! buffered part holds permits of a semaphore for its bytes until it has been uploaded. Objects
//! up to one part go up in one PUT; larger ones as a multipart upload with up to
//! [`PARTS_IN_FLIGHT`] parts in flight, a part size chosen to stay under the destination's part
//! limits. Bytes flow as `Bytes` handles from the source response to the upload without copies.
//! Hashing is in `checksum`; the journal and the manifest record the outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::stream::{BoxStream, FuturesUnordered};
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::{
    Attribute, Attributes, GetOptions, GetResult, GetResultPayload, MultipartUpload, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::catalog::Limits;
use crate::checksum::{self, Digest, StreamHasher};
use crate::filter::Filter;
use crate::journal::{Journal, Record, State};
use crate::plan::{ObjectJob, MANIFEST_PREFIX};
use crate::progress::Progress;
use crate::provider::{key_to_path, norm_etag, EtagVerdict, Listed, Store};
use crate::redact::redact;
use crate::throttle::{Bandwidth, ThrottleStats};

mod server_side;

/// Parts of one multipart upload sent concurrently.
pub const PARTS_IN_FLIGHT: usize = 4;
/// Ranged reads of one large object in flight at once, ahead of the hasher.
pub const READS_IN_FLIGHT: usize = 4;
/// Source entries read ahead while the destination is still being listed (about 150 bytes each).
const SOURCE_AHEAD: usize = 100_000;
/// Granularity of the memory budget.
const PERMIT_UNIT: u64 = 64 * 1024;
/// Chunk size when reading local files ourselves (object_store's own is 8 KiB).
const FILE_CHUNK: usize = 1 << 20;
/// Attempts per object for transient failures (object_store already retries each request).
const ATTEMPTS: usize = 3;

/// Engine settings after plan and command-line overrides.
#[derive(Debug, Clone)]
pub struct Options {
    pub concurrency: usize,
    pub part_size: u64,
    pub memory_limit: u64,
    /// Copy on the server where source and destination are one S3 service.
    pub server_side_copy: bool,
    /// Cap on bytes read from sources, per second, across all transfers.
    pub bandwidth: Option<f64>,
}

/// Objects and bytes.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub objects: u64,
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes += bytes;
    }
}

/// An object that was not copied (`run`) or does not match (`verify`), with the reason. Both
/// reports name it the same way (issue 14): `key` is the source key, `destination_key` where
/// the object is or would be, so the two reports match without the jobs' prefixes.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The source key; `None` for an object only the destination holds (a failed delete).
    pub key: Option<String>,
    pub destination_key: String,
    pub reason: String,
}

impl Failure {
    /// A failure of the source object `key`, whose destination key follows from the job.
    pub fn of_source(job: &ObjectJob, key: String, reason: String) -> Failure {
        let rel = key.strip_prefix(&job.from.prefix).unwrap_or(&key);
        Failure {
            destination_key: format!("{}{rel}", job.to.prefix),
            key: Some(key),
            reason,
        }
    }

    /// A failure of an object only the destination holds.
    pub fn of_destination(destination_key: String, reason: String) -> Failure {
        Failure {
            key: None,
            destination_key,
            reason,
        }
    }

    /// The key a human report names, escaped for a terminal: the source key, or the
    /// destination key said as such when there is no source object.
    pub fn shown_key(&self) -> String {
        match &self.key {
            Some(k) => format!("`{}`", crate::keys::shown(k)),
            None => format!("destination `{}`", crate::keys::shown(&self.destination_key)),
        }
    }
}

/// What a job found and did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct JobReport {
    pub job: String,
    pub from: String,
    pub to: String,
    /// Source objects after include/exclude.
    pub source: Counts,
    /// Not at the destination.
    pub new: Counts,
    /// At the destination with a different size or checksum.
    pub changed: Counts,
    /// Already at the destination, same size and checksum: skipped.
    pub unchanged: Counts,
    /// At the destination but not at the source.
    pub extraneous: Counts,
    /// Extraneous objects deleted (`delete-extraneous = true`).
    pub deleted: Counts,
    /// Copied in this run (new + changed, minus failures).
    pub copied: Counts,
    pub failed: Vec<Failure>,
    /// The largest objects to move, biggest first (at most 5).
    pub largest: Vec<(String, u64)>,
    /// Requests this job makes (a dry run: would make), by provider and class.
    pub requests: Requests,
    /// Multipart uploads left open by a killed run and aborted by this one.
    pub orphans_aborted: u64,
    /// Uploads a killed run left that this run could not continue: their objects were sent
    /// again from the first part.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restarted_uploads: Vec<Restarted>,
    /// How the servers pushed back (429/503), if they did.
    pub throttling: Option<Throttling>,
    /// The job could not list or finish at all.
    pub error: Option<String>,
    /// A mirror guard refused every delete of this run (`delete-extraneous`): why.
    pub guard: Option<String>,
    /// `plan` with `delete-extraneous`: every destination key `run` would delete.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_delete: Vec<String>,
    /// Source entries that could not be read (relative keys): what lies under them at the
    /// destination is never extraneous.
    #[serde(skip)]
    pub(crate) unlisted: Vec<String>,
    pub manifest: Option<String>,
    pub seconds: f64,
}

/// A journaled multipart upload that was started over instead of resumed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Restarted {
    /// The source key.
    pub key: String,
    /// Why it could not be resumed.
    pub reason: String,
}

/// Billable requests, by class as providers price them.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Requests {
    /// LIST pages at the source (1,000 keys a page).
    pub source_list: u64,
    /// GET requests at the source.
    pub source_get: u64,
    /// LIST pages at the destination.
    pub destination_list: u64,
    /// PUT-class requests at the destination (a multipart upload is create + parts + complete).
    pub destination_put: u64,
}

/// Throttling seen at either end of a job.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Throttling {
    pub source: ThrottleStats,
    pub destination: ThrottleStats,
}

/// Keys per LIST page (S3's ListObjectsV2 maximum; GCS and Azure page at 1,000 or 5,000).
pub const LIST_PAGE: u64 = 1000;

impl JobReport {
    /// Whether anything failed.
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.error.is_none() && self.guard.is_none()
    }

    fn note_large(&mut self, key: &str, size: u64) {
        if self.largest.len() < 5 || self.largest.last().is_some_and(|l| l.1 < size) {
            self.largest.push((key.to_string(), size));
            self.largest.sort_by_key(|l| std::cmp::Reverse(l.1));
            self.largest.truncate(5);
        }
    }
}

/// Why one object failed.
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error("{0}")]
    Store(#[from] object_store::Error),
    #[error("{0}")]
    Permanent(String),
    #[error("{0}")]
    Transient(String),
    /// Failed, and its multipart upload could not be aborted either.
    #[error("{source} (its upload could not be aborted; the next run will)")]
    OpenUpload { upload_id: String, source: Box<CopyError> },
}

impl CopyError {
    fn retryable(&self) -> bool {
        match self {
            // A local disk's refusals (a link on the path, a folder in the way, a full disk)
            // do not heal in a second.
            CopyError::Store(object_store::Error::Generic {
                store: "LocalStore", ..
            }) => false,
            CopyError::Store(e) => !matches!(
                e,
                object_store::Error::NotFound { .. }
                    | object_store::Error::Precondition { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ),
            CopyError::Permanent(_) => false,
            CopyError::Transient(_) => true,
            CopyError::OpenUpload { source, .. } => source.retryable(),
        }
    }

    /// The upload left open by this failure, to be journaled and aborted later.
    fn open_upload(&self) -> Option<String> {
        match self {
            CopyError::OpenUpload { upload_id, .. } => Some(upload_id.clone()),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            CopyError::OpenUpload { source, .. } => {
                format!(
                    "{} (its upload could not be aborted; the next run will)",
                    source.describe()
                )
            }
            CopyError::Store(object_store::Error::Precondition { .. }) => {
                "source changed while it was being read; it will be copied whole on the next run".into()
            }
            CopyError::Store(object_store::Error::Generic {
                store: "LocalStore",
                source,
            }) => redact(&source.to_string()),
            CopyError::Store(object_store::Error::NotFound { .. }) => {
                "source object disappeared after it was listed".into()
            }
            other => redact(&other.to_string()),
        }
    }
}

/// Aborts a background task when dropped (the journal flusher ends with its job).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// A destination object as listed.
#[derive(Debug, Clone)]
pub(crate) struct DstEntry {
    pub size: u64,
    pub etag: Option<String>,
}

/// How one listed object compares with the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    New,
    Changed,
    Unchanged,
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
}

/// What one successful copy produced.
struct Copied {
    /// SHA-256 of the bytes; none for a server-side copy of an object ferry never hashed.
    sha256: Option<String>,
    dst_etag: Option<String>,
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
        let filter = job.filter();
        // Finished objects reach the journal within half a second even on a slow job, so a
        // kill loses at most that much bookkeeping (never data: the next run re-compares).
        // A flush that fails is kept and fails the job: done rows that never reached the
        // journal would make the next run trust nothing it did, or worse, report success.
        let flush_error = Arc::new(std::sync::Mutex::new(None::<String>));
        let flusher = (!dry_run).then(|| {
            let journal = self.journal.clone();
            let flush_error = flush_error.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    if let Err(e) = journal.flush() {
                        flush_error
                            .lock()
                            .expect("flush error lock")
                            .get_or_insert(e.describe());
                    }
                }
            })
        });
        let _stop_flusher = AbortOnDrop(flusher);

        let filter = Arc::new(filter);
        if let (Some(local), false) = (&dst.local, dry_run) {
            let local = local.clone();
            self.journal.add_barrier(Arc::new(move || local.sync()));
        }
        let paired = match paired_listings(job, src, dst, filter, merge).await {
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
        let mut outcomes = Vec::new();
        let mut copied_now = HashMap::new();
        let mut journal_error = None;
        if dry_run {
            classified.for_each(|_| async {}).await;
        } else {
            let results = classified
                .map(|(item, dst_key, decision)| async move {
                    let r = self.copy_with_retries(&job.name, src, dst, &item, &dst_key).await;
                    (item, dst_key, decision, r)
                })
                .buffer_unordered(self.opts.concurrency);
            futures::pin_mut!(results);
            while let Some((item, dst_key, decision, r)) = results.next().await {
                self.progress.object_done();
                let record = match r {
                    Ok(c) => {
                        copied_now.insert(item.key.clone(), decision);
                        outcomes.push((item.key.clone(), item.size, None));
                        Record {
                            job: job.name.clone(),
                            key: item.key.clone(),
                            state: State::Done,
                            src_size: item.size,
                            src_etag: item.etag.clone(),
                            dst_key,
                            dst_etag: c.dst_etag,
                            sha256: c.sha256,
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
                        outcomes.push((item.key.clone(), item.size, Some(reason.clone())));
                        Record {
                            job: job.name.clone(),
                            key: item.key.clone(),
                            state: State::Failed,
                            src_size: item.size,
                            src_etag: item.etag.clone(),
                            dst_key,
                            dst_etag: None,
                            sha256: None,
                            error: Some(reason),
                            upload_id: open_upload,
                            part_size: None,
                        }
                    }
                };
                if let Err(e) = self.journal.put(record) {
                    journal_error.get_or_insert(e.describe());
                }
            }
        }
        for (key, size, failure) in outcomes {
            match failure {
                None => report.copied.add(size),
                Some(reason) => report.failed.push(Failure::of_source(job, key, reason)),
            }
        }
        report.failed.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(e) = journal_error {
            report.error = Some(e);
        }
        if let Some(e) = listing_error {
            report.error = Some(e.message);
            if e.out_of_order && merge {
                // Nothing was deleted and no orphan aborted: the second pass does both.
                return (finish(report, started, &*self.progress), Some(copied_now));
            }
        }

        let dst_listed = report.unchanged.objects + report.changed.objects + report.extraneous.objects;
        report.requests.source_list = report.source.objects.div_ceil(LIST_PAGE).max(1);
        report.requests.destination_list = dst_listed.div_ceil(LIST_PAGE).max(1);
        if report.error.is_none() && job.delete_extraneous {
            extraneous = self.guard_deletes(job, &mut report, extraneous, dst_listed);
            if dry_run {
                report.would_delete = extraneous
                    .iter()
                    .map(|(rel, _)| format!("{}{rel}", job.to.prefix))
                    .collect();
                extraneous.clear();
            }
        }
        if report.error.is_none() && report.guard.is_none() {
            for (rel, size) in extraneous {
                let key = format!("{}{rel}", job.to.prefix);
                match key_to_path(&key) {
                    Ok(p) => match dst.inner.delete(&p).await {
                        Ok(()) => {
                            report.deleted.add(size);
                            // Out of the manifest, into the journal: the row of the key the
                            // object would have come from says it was deleted.
                            let record = Record {
                                job: job.name.clone(),
                                key: format!("{}{rel}", job.from.prefix),
                                state: State::Deleted,
                                src_size: 0,
                                src_etag: None,
                                dst_key: key,
                                dst_etag: None,
                                sha256: None,
                                error: None,
                                upload_id: None,
                                part_size: None,
                            };
                            if let Err(e) = self.journal.put(record) {
                                report.error.get_or_insert(e.describe());
                            }
                        }
                        Err(e) => report.failed.push(Failure::of_destination(
                            key,
                            format!("could not delete extraneous object: {}", redact(&e.to_string())),
                        )),
                    },
                    Err(e) => report.failed.push(Failure::of_destination(
                        key,
                        format!("could not delete extraneous object: {e}"),
                    )),
                }
            }
        }
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
        (finish(report, started, &*self.progress), None)
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
            self.progress
                .message(&crate::keys::shown(&format!("not copied: `{}`: {reason}", item.key)));
            report.unlisted.push(rel.to_string());
            report.failed.push(Failure::of_source(
                job,
                item.key.clone(),
                format!("not copied: {reason}"),
            ));
            return None;
        }
        let dst_key = format!("{}{rel}", job.to.prefix);
        let decision = self.decide(job, src, dst, &item, existing.as_ref());
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

    /// Unchanged means: same size, and either ferry's journal shows it wrote exactly this
    /// destination object (same destination ETag) from exactly this source version (same source
    /// ETag) with a checksum, or both sides publish the same MD5 ETag.
    fn decide(
        &self,
        job: &ObjectJob,
        src: &Store,
        dst: &Store,
        item: &Listed,
        existing: Option<&DstEntry>,
    ) -> Decision {
        let Some(d) = existing else {
            return Decision::New;
        };
        if d.size != item.size {
            return Decision::Changed;
        }
        if let Ok(Some(r)) = self.journal.get(&job.name, &item.key) {
            if r.state == State::Done
                && r.src_size == item.size
                && same_etag(&r.src_etag, &item.etag)
                && same_etag(&r.dst_etag, &d.etag)
            {
                return Decision::Unchanged;
            }
        }
        // Never two ETags of a store known (this run) to hold SSE-KMS or SSE-C objects: theirs
        // look like MD5s but are not.
        let s = src.etag_md5(item.etag.as_deref());
        if s.is_some() && s == dst.etag_md5(d.etag.as_deref()) {
            return Decision::Unchanged;
        }
        Decision::Changed
    }

    /// The mirror guards: which extraneous objects may be deleted, or why none may. Keys under a
    /// source entry that could not be read (an unreadable folder, a link, a name no key can
    /// carry) are never extraneous: their source is unknown, not absent. Then a source that
    /// lists nothing while the destination holds objects (a typo in `from`, an unmounted disk,
    /// a wrong bucket), or more deletes than `max-delete` allows, stop every delete and fail the
    /// job with the figures.
    fn guard_deletes(
        &self,
        job: &ObjectJob,
        report: &mut JobReport,
        mut extraneous: Vec<(String, u64)>,
        destination_objects: u64,
    ) -> Vec<(String, u64)> {
        if !report.unlisted.is_empty() {
            let unlisted = &report.unlisted;
            extraneous.retain(|(rel, _)| {
                !unlisted.iter().any(|u| {
                    let dir = u.trim_end_matches('/');
                    rel == dir || rel.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
                })
            });
        }
        if extraneous.is_empty() {
            return extraneous;
        }
        let copyable = report.source.objects - report.unlisted.len() as u64;
        let n = extraneous.len() as u64;
        let limit = job.max_delete.limit(destination_objects);
        let guard = if copyable == 0 && !job.allow_empty_source {
            Some(format!(
                "source `{}` listed no object while the destination holds {destination_objects}: \
                 refusing to delete {n} (a typo in `from`, a source that is not mounted, a wrong \
                 bucket?); nothing was deleted\nhint: to mirror an empty source, set \
                 `allow-empty-source = true` on job `{}`",
                job.from, job.name
            ))
        } else if n > limit {
            Some(format!(
                "would delete {n} of the destination's {destination_objects} objects, more than \
                 `max-delete = {}` allows ({limit}); nothing was deleted\nhint: check `from`, then \
                 raise `max-delete` on job `{}` (a count, or a percentage such as \"100%\")",
                job.max_delete, job.name
            ))
        } else {
            None
        };
        if let Some(g) = guard {
            self.progress.message(&format!("job `{}`: {g}", job.name));
            report.guard = Some(g);
        }
        extraneous
    }

    async fn copy_with_retries(
        &self,
        job: &str,
        src: &Store,
        dst: &Store,
        item: &Listed,
        dst_key: &str,
    ) -> Result<Copied, CopyError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.copy_object(job, src, dst, item, dst_key).await {
                Ok(c) => return Ok(c),
                Err(e) if attempt < ATTEMPTS && e.retryable() => {
                    self.progress.message(&format!(
                        "retrying `{}` (attempt {}/{ATTEMPTS}): {}",
                        crate::keys::shown(&item.key),
                        attempt + 1,
                        e.describe()
                    ));
                    tokio::time::sleep(std::time::Duration::from_millis(250 << attempt)).await;
                }
                Err(e) => {
                    self.progress.skipped_bytes(item.size);
                    return Err(e);
                }
            }
        }
    }

    /// Streams one object from source to destination, hashing as it goes.
    async fn copy_object(
        &self,
        job: &str,
        src: &Store,
        dst: &Store,
        item: &Listed,
        dst_key: &str,
    ) -> Result<Copied, CopyError> {
        let src_path = key_to_path(&item.key).map_err(|e| CopyError::Permanent(format!("not copied: source {e}")))?;
        let dst_path =
            key_to_path(dst_key).map_err(|e| CopyError::Permanent(format!("not copied: destination {e}")))?;
        if dst.caps.backslash_is_slash && dst_key.contains('\\') {
            return Err(CopyError::Permanent(format!(
                "not copied: provider `{}` stores `\\` in a key as `/`, so this key would arrive renamed",
                dst.name()
            )));
        }
        let limits = dst.caps.limits;
        let part = part_size(item.size, self.configured_part(), &limits).map_err(CopyError::Permanent)?;
        if let (Some(s), Some(d)) = (&src.s3, &dst.s3) {
            if self.opts.server_side_copy && src.same_s3_service(dst) {
                return server_side::copy(s, d, item, dst_key, part).await;
            }
        }

        let expect_md5 = src.etag_md5(item.etag.as_deref());
        // A single PUT to a store whose ETags are MD5s is answered with the MD5 of what arrived:
        // checked against the MD5 of what was sent.
        let check_put = item.size <= part && dst.md5_etags();
        let mut hasher = StreamHasher::new(expect_md5.is_some() || check_put);
        let progress = &*self.progress;

        if item.size <= part {
            let opts = src.read_options(item);
            let got = src.inner.get_opts(&src_path, opts).await?;
            let mut attributes = carry_attributes(&got.attributes, dst);
            let mut body = body_stream(got);
            let _permit = self.reserve(item.size).await;
            let mut chunks = Vec::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                progress.bytes(chunk.len() as u64);
                if let Some(b) = &self.bandwidth {
                    b.pace(chunk.len()).await;
                }
                chunks.push(chunk);
            }
            let digest = hasher.finish();
            check_read(src, item, &digest, expect_md5.as_deref(), progress).await?;
            if dst.caps.user_metadata {
                attributes.insert(
                    Attribute::Metadata(checksum::metadata_key(dst.spec.kind).into()),
                    digest.sha256.clone().into(),
                );
            }
            let put = PutOptions {
                attributes,
                ..Default::default()
            };
            let res = dst
                .inner
                .put_opts(&dst_path, PutPayload::from_iter(chunks), put)
                .await?;
            if check_put {
                check_written(dst, dst_key, &res, &digest, progress).await?;
            }
            return Ok(Copied {
                sha256: Some(digest.sha256),
                dst_etag: dst.written_tag(&res),
            });
        }

        // A large object from a server: its headers from a HEAD, its bytes as parts read by
        // range in parallel. From a local disk: one sequential read, cut into parts.
        let (attributes, parts) = if src.spec.kind == crate::plan::StoreType::Local {
            let opts = src.read_options(item);
            let got = src.inner.get_opts(&src_path, opts).await?;
            (
                carry_attributes(&got.attributes, dst),
                self.stream_as_parts(body_stream(got), part),
            )
        } else {
            let head = GetOptions {
                head: true,
                ..src.read_options(item)
            };
            let attributes = carry_attributes(&src.inner.get_opts(&src_path, head).await?.attributes, dst);
            (attributes, self.read_parts(src, src_path, item, part))
        };

        if let Some(raw) = &dst.s3 {
            let resumable = ResumableUpload {
                engine: self,
                src,
                dst,
                raw,
                job,
                item,
                dst_key,
                part,
            };
            return resumable.run(attributes, parts, hasher, expect_md5).await;
        }

        let mut upload = dst
            .inner
            .put_multipart_opts(
                &dst_path,
                PutMultipartOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await?;
        let streamed = self.stream_parts(&mut upload, parts, &mut hasher).await;
        let digest = hasher.finish();
        let checked = match streamed {
            Ok(()) => check_read(src, item, &digest, expect_md5.as_deref(), progress).await,
            Err(e) => Err(e),
        };
        let done = match checked {
            Ok(()) => upload.complete().await.map_err(CopyError::from),
            Err(e) => Err(e),
        };
        match done {
            Ok(res) => Ok(Copied {
                sha256: Some(digest.sha256),
                dst_etag: dst.written_tag(&res),
            }),
            Err(e) => {
                // Never leave a partial upload behind to be mistaken for an object or billed.
                let _ = upload.abort().await;
                Err(e)
            }
        }
    }

    /// The object as whole parts, in order, read by ranged GETs of which up to
    /// [`READS_IN_FLIGHT`] run at once, each in its own task. A part's share of the memory budget
    /// is taken, in part order, before its read starts and travels with its bytes until its
    /// upload ends, so every holder of budget can finish without needing more: reads never
    /// wait on one another for memory.
    fn read_parts(&self, src: &Store, path: object_store::path::Path, item: &Listed, part: u64) -> PartStream {
        let n = item.size.div_ceil(part);
        let (store, read, size) = (src.inner.clone(), src.read_options(item), item.size);
        let (progress, bandwidth) = (self.progress.clone(), self.bandwidth.clone());
        let budget = (self.budget.clone(), self.budget_permits);
        futures::stream::iter(0..n)
            .then(move |i| {
                let budget = budget.clone();
                async move {
                    let (start, end) = (i * part, ((i + 1) * part).min(size));
                    (start..end, reserve(&budget.0, budget.1, end - start).await)
                }
            })
            .map(move |(range, permit)| {
                let (store, path, read) = (store.clone(), path.clone(), read.clone());
                let (progress, bandwidth) = (progress.clone(), bandwidth.clone());
                Task(tokio::spawn(async move {
                    let want = (range.end - range.start) as usize;
                    let opts = GetOptions {
                        range: Some(range.into()),
                        ..read
                    };
                    let mut body = body_stream(store.get_opts(&path, opts).await?);
                    let mut buf = bytes::BytesMut::with_capacity(want);
                    while let Some(chunk) = body.next().await {
                        let chunk = chunk?;
                        if buf.len() + chunk.len() > want {
                            return Err(CopyError::Transient(format!(
                                "a ranged read returned more than the {want} bytes asked for"
                            )));
                        }
                        progress.bytes(chunk.len() as u64);
                        if let Some(b) = &bandwidth {
                            b.pace(chunk.len()).await;
                        }
                        buf.extend_from_slice(&chunk);
                    }
                    if buf.len() != want {
                        return Err(CopyError::Transient(format!(
                            "a ranged read returned {} of the {want} bytes asked for (truncated)",
                            buf.len()
                        )));
                    }
                    Ok((vec![buf.freeze()], permit))
                }))
            })
            .buffered(READS_IN_FLIGHT)
            .boxed()
    }

    /// A local file's bytes as parts, read in order as one stream and cut at part boundaries
    /// without copying. A local disk gains nothing from parallel ranges, and its 1 MiB chunks,
    /// below the allocator's mmap threshold, are recycled instead of faulted in fresh (P3 in
    /// docs/benchmarks.md). Each part's budget is taken before its first byte is read.
    fn stream_as_parts(&self, body: BoxStream<'static, object_store::Result<Bytes>>, part: u64) -> PartStream {
        let budget = (self.budget.clone(), self.budget_permits);
        let (progress, bandwidth) = (self.progress.clone(), self.bandwidth.clone());
        futures::stream::try_unfold((body, None::<Bytes>, false), move |(mut body, mut carry, mut done)| {
            let (budget, progress, bandwidth) = (budget.clone(), progress.clone(), bandwidth.clone());
            async move {
                if done && carry.is_none() {
                    return Ok(None);
                }
                let permit = reserve(&budget.0, budget.1, part).await;
                let (mut chunks, mut len) = (Vec::new(), 0u64);
                while len < part {
                    let mut chunk = match carry.take() {
                        Some(c) => c,
                        None => match body.next().await {
                            Some(c) => {
                                let c = c?;
                                progress.bytes(c.len() as u64);
                                if let Some(b) = &bandwidth {
                                    b.pace(c.len()).await;
                                }
                                c
                            }
                            None => {
                                done = true;
                                break;
                            }
                        },
                    };
                    if chunk.len() as u64 > part - len {
                        carry = Some(chunk.split_off((part - len) as usize));
                    }
                    len += chunk.len() as u64;
                    chunks.push(chunk);
                }
                if chunks.is_empty() {
                    return Ok(None);
                }
                Ok(Some(((chunks, permit), (body, carry, done))))
            }
        })
        .boxed()
    }

    async fn stream_parts(
        &self,
        upload: &mut Box<dyn MultipartUpload>,
        mut parts: PartStream,
        hasher: &mut StreamHasher,
    ) -> Result<(), CopyError> {
        let mut inflight = PartTasks::default();
        // Each part uploads in its own task: it progresses (and frees its share of the memory
        // budget) while this object waits for the next part, so objects waiting on one another
        // can never hold the whole budget with parts nobody drives.
        while let Some(next) = parts.next().await {
            let (data, permit) = next?;
            data.iter().for_each(|c| hasher.update(c));
            let fut = upload.put_part(PutPayload::from_iter(data));
            inflight.0.push(tokio::spawn(async move {
                let r = fut.await;
                drop(permit);
                r
            }));
            if inflight.0.len() >= PARTS_IN_FLIGHT {
                joined(inflight.0.next().await.expect("non-empty"))??;
            }
        }
        while let Some(r) = inflight.0.next().await {
            joined(r)??;
        }
        Ok(())
    }
}

/// Whole parts of one object, in order, each as its chunks and with its share of the budget.
type PartStream = BoxStream<'static, Result<(Vec<Bytes>, OwnedSemaphorePermit), CopyError>>;

/// A part as one buffer, as the SDK's request body needs it: free for a part read by range (one
/// chunk), one copy for a part assembled from a local file's chunks.
fn contiguous(mut chunks: Vec<Bytes>) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().expect("one chunk");
    }
    let mut out = bytes::BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
    chunks.iter().for_each(|c| out.extend_from_slice(c));
    out.freeze()
}

async fn reserve(budget: &Arc<Semaphore>, permits: u32, bytes: u64) -> OwnedSemaphorePermit {
    let n = bytes.div_ceil(PERMIT_UNIT).clamp(1, permits as u64) as u32;
    budget
        .clone()
        .acquire_many_owned(n)
        .await
        .expect("budget semaphore is never closed")
}

/// A spawned task as a future of its result; dropping it (a failed or cancelled copy) aborts
/// the task, so no read outlives the object it was for.
struct Task<T>(tokio::task::JoinHandle<Result<T, CopyError>>);

impl<T> std::future::Future for Task<T> {
    type Output = Result<T, CopyError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| joined(r).and_then(|r| r))
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A multipart upload to S3 through the AWS SDK whose upload id and part size are journaled
/// before the first part is sent, so a killed run resumes it: the parts the server already holds
/// (ListParts is authoritative) are read and hashed from the source again but not re-sent, and a
/// source whose ETag changed since aborts the old upload and starts over. object_store's
/// `MultipartUpload` does not expose its upload id, hence the SDK here.
struct ResumableUpload<'a> {
    engine: &'a Engine,
    src: &'a Store,
    dst: &'a Store,
    /// `dst`'s SDK client.
    raw: &'a crate::provider::S3Raw,
    job: &'a str,
    item: &'a Listed,
    dst_key: &'a str,
    part: u64,
}

impl ResumableUpload<'_> {
    fn record(&self, upload_id: &str) -> Record {
        Record {
            job: self.job.to_string(),
            key: self.item.key.clone(),
            state: State::InFlight,
            src_size: self.item.size,
            src_etag: self.item.etag.clone(),
            dst_key: self.dst_key.to_string(),
            dst_etag: None,
            sha256: None,
            error: None,
            upload_id: Some(upload_id.to_string()),
            part_size: Some(self.part),
        }
    }

    /// The upload to continue, with the parts the server holds, if the journal has one for
    /// exactly this source version, destination key and part size. Any other open upload for
    /// this object is aborted.
    async fn resume_point(&self) -> Result<Option<(String, HashMap<i32, (String, u64)>)>, CopyError> {
        let Some(r) = self.engine.journal.get(self.job, &self.item.key).ok().flatten() else {
            return Ok(None);
        };
        let Some(upload_id) = r.upload_id.clone().filter(|_| r.state != State::Done) else {
            return Ok(None);
        };
        // Starting a new upload forgets the journaled one: it must be closed first, or this
        // attempt fails (and is retried) rather than leave it open and billed.
        let close = |why: &str| {
            let why = why.to_string();
            let (key, id) = (r.dst_key.clone(), upload_id.clone());
            async move {
                if abort_upload(self.raw, &key, &id).await {
                    Ok(None)
                } else {
                    Err(CopyError::Transient(format!(
                        "{why}, and its upload `{id}` could not be aborted"
                    )))
                }
            }
        };
        let changed = if !same_etag(&r.src_etag, &self.item.etag) || r.src_size != self.item.size {
            Some("the source changed since its upload started")
        } else if r.part_size != Some(self.part) {
            Some("the part size changed since its upload started")
        } else if r.dst_key != self.dst_key {
            Some("the destination key changed since its upload started")
        } else {
            None
        };
        if let Some(why) = changed {
            self.engine.restarting(self.job, &self.item.key, why);
            return close(why).await;
        }
        // A resume that cannot list its parts sends every part again: that must be said, with
        // the server's reason, not silently paid for (issue 13).
        let parts = match self.raw.list_parts(self.dst_key, &upload_id).await {
            Ok(parts) => parts,
            Err(e) => {
                let why = format!("the parts of upload `{upload_id}` could not be listed: {e}");
                self.engine.restarting(self.job, &self.item.key, &why);
                return close(&why).await;
            }
        };
        Ok(Some((upload_id, parts)))
    }

    async fn run(
        &self,
        attributes: Attributes,
        parts: PartStream,
        mut hasher: StreamHasher,
        expect_md5: Option<String>,
    ) -> Result<Copied, CopyError> {
        let (upload_id, done) = match self.resume_point().await? {
            Some(r) => r,
            None => {
                let mut req = self
                    .raw
                    .client
                    .create_multipart_upload()
                    .bucket(&self.raw.bucket)
                    .key(self.dst_key);
                let mut meta = HashMap::new();
                for (k, v) in attributes.iter() {
                    let v = v.to_string();
                    req = match k {
                        Attribute::ContentType => req.content_type(v),
                        Attribute::ContentEncoding => req.content_encoding(v),
                        Attribute::ContentDisposition => req.content_disposition(v),
                        Attribute::ContentLanguage => req.content_language(v),
                        Attribute::CacheControl => req.cache_control(v),
                        Attribute::Metadata(m) => {
                            meta.insert(m.to_string(), v);
                            req
                        }
                        _ => req,
                    };
                }
                let out = req
                    .set_metadata((!meta.is_empty()).then_some(meta))
                    .send()
                    .await
                    .map_err(sdk)?;
                let id = out
                    .upload_id()
                    .ok_or_else(|| CopyError::Transient("CreateMultipartUpload returned no upload id".into()))?
                    .to_string();
                // Durable before the first part: a kill from here on leaves a known upload.
                self.engine
                    .journal
                    .put(self.record(&id))
                    .map_err(|e| CopyError::Permanent(e.to_string()))?;
                self.engine
                    .journal
                    .flush()
                    .map_err(|e| CopyError::Permanent(e.to_string()))?;
                (id, HashMap::new())
            }
        };
        let result = self.stream(&upload_id, &done, parts, &mut hasher).await;
        let digest = hasher.finish();
        let progress = &*self.engine.progress;
        let checked = match result {
            Ok(parts) => check_read(self.src, self.item, &digest, expect_md5.as_deref(), progress)
                .await
                .map(|()| parts),
            Err(e) => Err(e),
        };
        let outcome = match checked {
            Ok(parts) => {
                // Part ETags of a store known to hold SSE-KMS or SSE-C objects are no MD5s
                // and prove nothing.
                let expected =
                    checksum::multipart_etag(parts.iter().map(|(_, e)| e.as_str())).filter(|_| self.dst.md5_etags());
                let completed = completed_upload(parts);
                match self
                    .raw
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.raw.bucket)
                    .key(self.dst_key)
                    .upload_id(&upload_id)
                    .multipart_upload(completed)
                    .send()
                    .await
                {
                    Ok(o) => Ok(o.e_tag().map(str::to_string)),
                    // Some emulators (moto) answer 200 with a differently named XML root that
                    // the SDK refuses to parse; a real failure may also leave an older object
                    // of the same size at the key. Only an object provably made of our parts
                    // (its ETag is the one our parts' MD5s give) counts as completed.
                    Err(e) => self.confirm_completed(expected).await.ok_or_else(|| sdk(e)),
                }
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(dst_etag) => Ok(Copied {
                sha256: Some(digest.sha256),
                dst_etag,
            }),
            Err(e) => {
                // A failure we see (not a kill) closes the upload: nothing half-written remains.
                // If even that fails, the upload id goes into the journal for the next run.
                if abort_upload(self.raw, self.dst_key, &upload_id).await {
                    Err(e)
                } else {
                    Err(CopyError::OpenUpload {
                        upload_id,
                        source: Box::new(e),
                    })
                }
            }
        }
    }

    async fn confirm_completed(&self, expected: Option<String>) -> Option<Option<String>> {
        let expected = expected?;
        let head = self
            .raw
            .client
            .head_object()
            .bucket(&self.raw.bucket)
            .key(self.dst_key)
            .send()
            .await
            .ok()?;
        let etag = head.e_tag()?.to_string();
        let ours =
            head.content_length() == Some(self.item.size as i64) && norm_etag(&etag).eq_ignore_ascii_case(&expected);
        ours.then_some(Some(etag))
    }

    /// Reads the whole source, hashing every byte; sends the parts the server does not hold.
    async fn stream(
        &self,
        upload_id: &str,
        done: &HashMap<i32, (String, u64)>,
        mut source: PartStream,
        hasher: &mut StreamHasher,
    ) -> Result<Vec<(i32, String)>, CopyError> {
        let mut parts: Vec<(i32, String)> = Vec::new();
        let mut inflight = PartTasks::default();
        let mut number: i32 = 0;
        while let Some(next) = source.next().await {
            let (data, permit) = next?;
            data.iter().for_each(|c| hasher.update(c));
            let data = contiguous(data);
            number += 1;
            let n = number;
            if let Some((etag, _)) = done.get(&n).filter(|(_, size)| *size == data.len() as u64) {
                parts.push((n, etag.clone()));
                continue;
            }
            let crc = crc32c::crc32c(&data).to_be_bytes();
            let fut = self
                .raw
                .client
                .upload_part()
                .bucket(&self.raw.bucket)
                .key(self.dst_key)
                .upload_id(upload_id)
                .part_number(n)
                .content_length(data.len() as i64)
                .checksum_crc32_c(base64(&crc))
                .body(aws_sdk_s3::primitives::ByteStream::from(data))
                .send();
            // Its own task, for the reason given in `Engine::stream_parts`.
            inflight.0.push(tokio::spawn(async move {
                let r = fut.await;
                drop(permit);
                (n, part_etag(r))
            }));
            if inflight.0.len() >= PARTS_IN_FLIGHT {
                let (n, r) = joined(inflight.0.next().await.expect("non-empty"))?;
                parts.push((n, r?));
            }
        }
        while let Some(r) = inflight.0.next().await {
            let (n, r) = joined(r)?;
            parts.push((n, r?));
        }
        parts.sort_by_key(|p| p.0);
        Ok(parts)
    }
}

/// Part uploads running as tasks; dropping the set (an error, a cancelled copy) stops them.
struct PartTasks<T>(FuturesUnordered<tokio::task::JoinHandle<T>>);

impl<T> Default for PartTasks<T> {
    fn default() -> Self {
        PartTasks(FuturesUnordered::new())
    }
}

impl<T> Drop for PartTasks<T> {
    fn drop(&mut self) {
        for h in self.0.iter() {
            h.abort();
        }
    }
}

fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, CopyError> {
    r.map_err(|e| CopyError::Transient(format!("part upload task ended: {e}")))
}

/// The CompleteMultipartUpload body for parts (number, ETag) in order.
fn completed_upload(parts: Vec<(i32, String)>) -> aws_sdk_s3::types::CompletedMultipartUpload {
    aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .into_iter()
                .map(|(n, e)| {
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(n)
                        .e_tag(e)
                        .build()
                })
                .collect(),
        ))
        .build()
}

fn part_etag<E: std::error::Error + Send + Sync + 'static>(
    r: Result<aws_sdk_s3::operation::upload_part::UploadPartOutput, E>,
) -> Result<String, CopyError> {
    let out = r.map_err(sdk)?;
    out.e_tag()
        .map(str::to_string)
        .ok_or_else(|| CopyError::Transient("UploadPart returned no ETag".into()))
}

fn sdk<E: std::error::Error + Send + Sync + 'static>(e: E) -> CopyError {
    CopyError::Store(crate::provider::sdk_error(e))
}

/// Aborts an upload after a failed attempt, until the server shows it gone (see
/// [`crate::provider::S3Raw::abort_upload`]); false: it stays open (the next run aborts it).
async fn abort_upload(raw: &crate::provider::S3Raw, key: &str, upload_id: &str) -> bool {
    raw.abort_upload(key, upload_id, true).await
}

/// Standard base64 of a few bytes (checksum headers), without a crate for eight lines.
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Aborts the uploads a killed run left open for objects this run did not continue (deleted or
/// excluded since), and forgets them.
async fn abort_orphans(engine: &Engine, job: &str, dst: &Store) -> usize {
    let Some(raw) = &dst.s3 else { return 0 };
    let Ok(open) = engine.journal.in_flight(job) else {
        return 0;
    };
    let mut n = 0;
    for (key, upload_id) in open {
        let dst_key = engine
            .journal
            .get(job, &key)
            .ok()
            .flatten()
            .map(|r| r.dst_key)
            .unwrap_or_default();
        if raw.abort_upload(&dst_key, &upload_id, false).await {
            let _ = engine.journal.forget(job, &key);
            n += 1;
        }
    }
    n
}

fn finish(mut report: JobReport, started: Instant, progress: &dyn Progress) -> JobReport {
    report.seconds = started.elapsed().as_secs_f64();
    progress.job_finished(&report.job);
    report
}

/// Both known and equal, quoting aside.
pub fn same_etag(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => norm_etag(a) == norm_etag(b),
        _ => false,
    }
}

/// A source object with its destination counterpart, if any; or a destination object that no
/// source object matches. Only keys the job's filters keep (an excluded key is not extraneous).
pub(crate) enum Paired {
    Source(Listed, Option<DstEntry>),
    Extraneous(String, DstEntry),
}

pub(crate) type PairedStream = BoxStream<'static, Result<Paired, ListingError>>;

/// Why a paired listing stopped part-way.
#[derive(Debug, Clone)]
pub(crate) struct ListingError {
    pub message: String,
    /// A side listed a key out of byte order: pairing again without the merge copes.
    pub out_of_order: bool,
}

impl From<String> for ListingError {
    fn from(message: String) -> ListingError {
        ListingError {
            message,
            out_of_order: false,
        }
    }
}

/// The pairs up to the first listing error, which is left in `error`.
pub(crate) fn until_error(paired: PairedStream, error: &mut Option<ListingError>) -> impl Stream<Item = Paired> + '_ {
    paired.scan(error, |error, r| {
        std::future::ready(match r {
            Ok(p) => Some(p),
            Err(e) => {
                **error = Some(e);
                None
            }
        })
    })
}
type RelStream = BoxStream<'static, object_store::Result<(String, Listed)>>;

/// Lists both sides of a job at once and pairs their keys.
///
/// Where both sides list in byte order (S3, GCS, memory), the two listings are merged as they
/// stream: memory stays flat however many objects either side holds, and a key listed out of
/// order stops the job with an error rather than be misjudged. Otherwise (a local directory, an
/// Azure container) the destination is gathered into a map (about 100 bytes an object) while
/// the source is read ahead, up to [`SOURCE_AHEAD`] entries. Either way the two listings run
/// concurrently, so a no-op run costs about one listing, not two in a row.
///
/// Manifests (issue 14): the job's own manifest at the destination is not listed (ferry
/// rewrites it at the end of every run), and a source key that would land on it is reported
/// as not copied. Any other key under [`crate::plan::MANIFEST_PREFIX`] is paired like any key, so a bucket
/// ferry once wrote into is evacuated whole; but one only the destination holds is never
/// extraneous, neither reported nor deleted: it may be another job's or another plan's manifest.
pub(crate) async fn paired_listings(
    job: &ObjectJob,
    src: &Store,
    dst: &Store,
    filter: Arc<Filter>,
    merge: bool,
) -> Result<PairedStream, String> {
    let from = job.from.to_string();
    let to = job.to.to_string();
    let own_manifest = job.manifest_key();
    let to_prefix = job.to.prefix.clone();
    let source = {
        let (own_manifest, to_prefix) = (own_manifest.clone(), to_prefix.clone());
        relative(src.list(&job.from.prefix), &job.from.prefix, filter.clone(), true).map_ok(move |(rel, mut item)| {
            if format!("{to_prefix}{rel}") == own_manifest {
                item.problem.get_or_insert_with(|| {
                    format!(
                        "at the destination it would be `{own_manifest}`, this job's own manifest, which ferry \
                         rewrites after every run; give the job another name to copy it"
                    )
                });
            }
            (rel, item)
        })
    };
    let mut source = prefetch(source.boxed());
    let destination = relative(dst.list(&job.to.prefix), &job.to.prefix, filter, false)
        .try_filter(move |(_, item)| std::future::ready(item.key != own_manifest));
    let mut destination = prefetch(destination.boxed());
    // Left only at the destination, a key under the manifests' folder is kept out of the report.
    let not_a_manifest = move |p: &Paired| {
        let keep = match p {
            Paired::Extraneous(rel, _) => !format!("{to_prefix}{rel}").starts_with(MANIFEST_PREFIX),
            Paired::Source(..) => true,
        };
        std::future::ready(keep)
    };
    if merge && src.caps.sorted_listing && dst.caps.sorted_listing {
        return Ok(merge_sorted(source, destination, from, to)
            .try_filter(not_a_manifest)
            .boxed());
    }

    let mut ahead = Vec::new();
    let mut source_done = false;
    let gather = async {
        let mut map = HashMap::new();
        while let Some((rel, item)) = destination.try_next().await? {
            map.insert(rel, DstEntry::from(item));
        }
        Ok::<_, object_store::Error>(map)
    };
    tokio::pin!(gather);
    let listed = loop {
        tokio::select! {
            biased;
            m = &mut gather => break m,
            item = source.next(), if !source_done && ahead.len() < SOURCE_AHEAD => match item {
                Some(item) => ahead.push(item),
                None => source_done = true,
            },
        }
    };
    let map = listed.map_err(|e| redact(&format!("cannot list destination `{to}`: {e}")))?;
    let map = Arc::new(std::sync::Mutex::new(map));
    let rest = if source_done {
        futures::stream::empty().boxed()
    } else {
        source
    };
    let sources = {
        let map = map.clone();
        futures::stream::iter(ahead).chain(rest).map(move |r| match r {
            Ok((rel, item)) => Ok(Paired::Source(item, map.lock().expect("map lock").remove(&rel))),
            Err(e) => Err(redact(&format!("listing `{from}` failed part-way: {e}")).into()),
        })
    };
    // What is left in the map once the source is done has no source counterpart.
    let extraneous = futures::stream::once(async move {
        let left = std::mem::take(&mut *map.lock().expect("map lock"));
        futures::stream::iter(left.into_iter().map(|(rel, d)| Ok(Paired::Extraneous(rel, d))))
    })
    .flatten();
    Ok(sources.chain(extraneous).try_filter(not_a_manifest).boxed())
}

impl From<Listed> for DstEntry {
    fn from(l: Listed) -> DstEntry {
        DstEntry {
            size: l.size,
            etag: l.etag,
        }
    }
}

/// A listing as (key relative to `prefix`, object), keeping only what the filter keeps.
/// Entries with a `problem` are kept for a source (to be reported)
/// and dropped for a destination: a link or FIFO there is neither extraneous nor ever deleted.
fn relative(
    listing: BoxStream<'static, object_store::Result<Listed>>,
    prefix: &str,
    filter: Arc<Filter>,
    keep_problems: bool,
) -> RelStream {
    let prefix = prefix.to_string();
    listing
        .try_filter_map(move |item| {
            let rel = item
                .key
                .strip_prefix(&prefix)
                .filter(|_| keep_problems || item.problem.is_none())
                .filter(|rel| filter.matches(rel))
                .map(str::to_string);
            std::future::ready(Ok(rel.map(|rel| (rel, item))))
        })
        .boxed()
}

/// Runs a listing in its own task, a few pages ahead of its consumer, so two listings proceed
/// at once even while they are consumed in turns. The task ends with the returned stream.
fn prefetch(listing: RelStream) -> RelStream {
    let (tx, rx) = tokio::sync::mpsc::channel(2 * LIST_PAGE as usize);
    let task = tokio::spawn(async move {
        let mut listing = listing;
        while let Some(x) = listing.next().await {
            if tx.send(x).await.is_err() {
                break;
            }
        }
    });
    futures::stream::unfold((rx, AbortOnDrop(Some(task))), |(mut rx, task)| async move {
        rx.recv().await.map(|x| (x, (rx, task)))
    })
    .boxed()
}

/// One side of a merge: its listing, the next entry, and the key consumed before it, to check
/// the order.
struct Side {
    listing: RelStream,
    head: Option<(String, Listed)>,
    done: bool,
    last: Option<String>,
    what: String,
}

impl Side {
    async fn fill(&mut self) -> Result<(), ListingError> {
        if self.head.is_some() || self.done {
            return Ok(());
        }
        match self.listing.next().await {
            None => self.done = true,
            Some(Err(e)) => return Err(redact(&format!("listing {} failed part-way: {e}", self.what)).into()),
            // Reported, not paired: it takes no part in the order.
            Some(Ok((rel, item))) if item.problem.is_some() => self.head = Some((rel, item)),
            Some(Ok((rel, item))) => {
                if let Some(last) = self.last.as_deref().filter(|last| rel.as_str() <= *last) {
                    return Err(ListingError {
                        message: format!(
                            "{} listed `{rel}` after `{last}`: not in byte order, which ferry relies on \
                             to compare this provider's listings as they stream; nothing was deleted",
                            self.what
                        ),
                        out_of_order: true,
                    });
                }
                self.head = Some((rel, item));
            }
        }
        Ok(())
    }
}

/// Merges two listings sorted by key into pairs, holding one entry of each.
fn merge_sorted(source: RelStream, destination: RelStream, from: String, to: String) -> PairedStream {
    let side = |listing, what| Side {
        listing,
        head: None,
        done: false,
        last: None,
        what,
    };
    let start = (
        side(source, format!("`{from}`")),
        side(destination, format!("destination `{to}`")),
    );
    futures::stream::unfold(Some(start), |state| async move {
        let (mut s, mut d) = state?;
        if let Err(e) = s.fill().await {
            return Some((Err(e), None));
        }
        if s.head.as_ref().is_some_and(|(_, item)| item.problem.is_some()) {
            let (_, item) = s.head.take().expect("checked");
            return Some((Ok(Paired::Source(item, None)), Some((s, d))));
        }
        if let Err(e) = d.fill().await {
            return Some((Err(e), None));
        }
        // A consumed key becomes its side's `last`; the next one listed must sort after it.
        let out = match (s.head.take(), d.head.take()) {
            (None, None) => return None,
            (Some((sr, item)), None) => {
                s.last = Some(sr);
                Paired::Source(item, None)
            }
            (None, Some((dr, e))) => {
                d.last = Some(dr.clone());
                Paired::Extraneous(dr, e.into())
            }
            (Some((sr, item)), Some((dr, e))) => match sr.cmp(&dr) {
                std::cmp::Ordering::Less => {
                    s.last = Some(sr);
                    d.head = Some((dr, e));
                    Paired::Source(item, None)
                }
                std::cmp::Ordering::Equal => {
                    s.last = Some(sr);
                    d.last = Some(dr);
                    Paired::Source(item, Some(e.into()))
                }
                std::cmp::Ordering::Greater => {
                    d.last = Some(dr.clone());
                    s.head = Some((sr, item));
                    Paired::Extraneous(dr, e.into())
                }
            },
        };
        Some((Ok(out), Some((s, d))))
    })
    .boxed()
}

/// The part size for an object: the configured size, raised so the object fits in the
/// destination's maximum part count (S3: 10,000 parts of 5 MiB to 5 GiB), rounded up to MiB.
pub fn part_size(object_size: u64, configured: u64, limits: &Limits) -> Result<u64, String> {
    if object_size > limits.max_object_size {
        return Err(format!(
            "not copied: {object_size} bytes exceeds the destination's maximum object size of {} bytes",
            limits.max_object_size
        ));
    }
    const MIB: u64 = 1 << 20;
    let needed = object_size.div_ceil(limits.max_parts);
    let size = configured
        .max(needed)
        .max(limits.min_part_size)
        .div_ceil(MIB)
        .saturating_mul(MIB);
    Ok(size.min(limits.max_part_size))
}

/// The attributes to write at the destination: content headers and user metadata, where the
/// destination keeps them. ferry's own checksum key is recomputed, never carried. Azure metadata
/// names must be C# identifiers, so `-` in a name becomes `_` there (documented in docs/providers).
fn carry_attributes(src: &Attributes, dst: &Store) -> Attributes {
    let mut out = Attributes::new();
    // A local source's mode and mtime, for a local destination to apply.
    if dst.local.is_some() {
        for name in [crate::provider::local::ATTR_MODE, crate::provider::local::ATTR_MTIME] {
            let k = Attribute::Metadata(name.into());
            if let Some(v) = src.get(&k) {
                out.insert(k, v.clone());
            }
        }
    }
    if !dst.caps.user_metadata {
        return out;
    }
    for (k, v) in src.iter() {
        let keep = match k {
            Attribute::ContentType
            | Attribute::ContentEncoding
            | Attribute::ContentDisposition
            | Attribute::ContentLanguage
            | Attribute::CacheControl => true,
            Attribute::Metadata(m) => {
                m != checksum::METADATA_KEY
                    && m != checksum::METADATA_KEY_AZURE
                    && m != crate::provider::local::ATTR_MODE
                    && m != crate::provider::local::ATTR_MTIME
            }
            _ => false,
        };
        if !keep {
            continue;
        }
        match k {
            Attribute::Metadata(m) if dst.spec.kind == crate::plan::StoreType::Azure && m.contains('-') => {
                out.insert(Attribute::Metadata(m.replace('-', "_").into()), v.clone());
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// The bytes read must be the bytes listed: the same count, and the source's MD5 where it
/// publishes one. Otherwise the read was truncated or corrupted, and nothing is written.
///
/// A listed ETag only looks like an MD5: SSE-KMS and SSE-C objects have 32-hex ETags that are
/// not. So a disagreement is corruption only once the server says the object is neither
/// ([`Store::etag_is_md5`]); if it is, the byte count is what is checked, and ferry's SHA-256
/// of the bytes (recorded with the object) is what later proves them.
async fn check_read(
    src: &Store,
    item: &Listed,
    digest: &Digest,
    expect_md5: Option<&str>,
    progress: &dyn Progress,
) -> Result<(), CopyError> {
    if digest.bytes != item.size {
        return Err(CopyError::Transient(format!(
            "read {} bytes but the source listed {} (truncated or changed)",
            digest.bytes, item.size
        )));
    }
    let (Some(want), Some(got)) = (expect_md5, digest.md5.as_deref()) else {
        return Ok(());
    };
    if want == got {
        return Ok(());
    }
    not_an_md5(src, &item.key, progress).await.map_err(|why| {
        CopyError::Transient(format!(
            "bytes read do not match the source's MD5 ETag ({got} != {want}; {why}): corrupted on the way out"
        ))
    })
}

/// A single PUT is answered with the destination's ETag: where it is an MD5, it must be the MD5
/// of the bytes sent, or what arrived is not what was sent (unless the server says the object
/// is SSE-KMS or SSE-C, whose ETags are not MD5s). The object is then failed, not journaled as
/// copied; the next attempt or run sends it again.
async fn check_written(
    dst: &Store,
    dst_key: &str,
    written: &PutResult,
    digest: &Digest,
    progress: &dyn Progress,
) -> Result<(), CopyError> {
    let (Some(sent), Some(answered)) = (digest.md5.as_deref(), dst.etag_md5(written.e_tag.as_deref())) else {
        return Ok(());
    };
    if sent == answered {
        return Ok(());
    }
    not_an_md5(dst, dst_key, progress).await.map_err(|why| {
        CopyError::Transient(format!(
            "the destination answered the PUT with the MD5 ETag {answered}, but the bytes sent have MD5 \
             {sent} ({why}): what arrived is not what was sent"
        ))
    })
}

/// An MD5 ferry computed disagrees with `key`'s ETag: Ok when the server says the object is
/// SSE-KMS or SSE-C (said once per store, at -v), otherwise what the server said, for the error.
async fn not_an_md5(store: &Store, key: &str, progress: &dyn Progress) -> Result<(), String> {
    match store.etag_is_md5(key).await {
        EtagVerdict::Opaque { why, learned } => {
            if learned {
                progress.message(&crate::keys::shown(&format!(
                    "provider `{}`: `{key}` is {why}, so its ETags are not MD5s; for the rest of this \
                     run its objects are checked by size and ferry's SHA-256, not by ETag",
                    store.name()
                )));
            }
            Ok(())
        }
        EtagVerdict::Md5(why) => Err(why),
    }
}

/// The response body as a stream of chunks. Local files are read here in 1 MiB chunks on the
/// blocking pool; object_store's own file stream uses 8 KiB chunks, which costs 128x the calls.
pub fn body_stream(got: GetResult) -> BoxStream<'static, object_store::Result<Bytes>> {
    match got.payload {
        GetResultPayload::File(file, path) => {
            let end = got.range.end;
            let start = got.range.start;
            futures::stream::try_unfold((file, start), move |(mut file, pos)| {
                let path = path.clone();
                async move {
                    if pos >= end {
                        return Ok(None);
                    }
                    let want = ((end - pos) as usize).min(FILE_CHUNK);
                    let (file, buf) = tokio::task::spawn_blocking(move || {
                        use std::io::{Read, Seek, SeekFrom};
                        let mut buf = vec![0u8; want];
                        file.seek(SeekFrom::Start(pos))?;
                        let mut filled = 0;
                        while filled < want {
                            let n = file.read(&mut buf[filled..])?;
                            if n == 0 {
                                break;
                            }
                            filled += n;
                        }
                        buf.truncate(filled);
                        Ok::<_, std::io::Error>((file, buf))
                    })
                    .await
                    .map_err(|e| object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    })?
                    .map_err(|e| object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: format!("reading `{}`: {e}", path.display()).into(),
                    })?;
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let next = pos + buf.len() as u64;
                    Ok(Some((Bytes::from(buf), (file, next))))
                }
            })
            .boxed()
        }
        GetResultPayload::Stream(s) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::default_limits;
    use crate::plan::StoreType;

    fn rel_stream(keys: &[&str]) -> RelStream {
        let items: Vec<_> = keys
            .iter()
            .map(|k| {
                Ok((
                    k.to_string(),
                    Listed {
                        key: format!("p/{k}"),
                        size: k.len() as u64,
                        etag: None,
                        version: None,
                        problem: None,
                    },
                ))
            })
            .collect();
        futures::stream::iter(items).boxed()
    }

    /// (source key or "-", destination key or "-") per pair, in order.
    async fn merged(src: &[&str], dst: &[&str]) -> Result<Vec<(String, String)>, String> {
        let pairs: Vec<_> = merge_sorted(rel_stream(src), rel_stream(dst), "a:p/".into(), "b:p/".into())
            .collect()
            .await;
        pairs
            .into_iter()
            .map(|p| {
                p.map(|p| match p {
                    Paired::Source(item, d) => (item.key, d.map_or("-".into(), |d| format!("size {}", d.size))),
                    Paired::Extraneous(rel, _) => ("-".into(), rel),
                })
                .map_err(|e| e.message)
            })
            .collect()
    }

    #[tokio::test]
    async fn sorted_listings_merge_into_pairs() {
        // Byte order: `é` (0xC3 0xA9) sorts after `z`.
        let got = merged(&["a", "b/x", "b/y", "d", "é"], &["a", "b/y", "c", "z", "é"])
            .await
            .unwrap();
        let want: Vec<(String, String)> = [
            ("p/a", "size 1"),
            ("p/b/x", "-"),
            ("p/b/y", "size 3"),
            ("-", "c"),
            ("p/d", "-"),
            ("-", "z"),
            ("p/é", "size 2"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
        assert_eq!(merged(&[], &["x"]).await.unwrap(), vec![("-".into(), "x".into())]);
        assert_eq!(merged(&["x"], &[]).await.unwrap(), vec![("p/x".into(), "-".into())]);
    }

    #[tokio::test]
    async fn a_listing_out_of_byte_order_stops_the_merge() {
        let e = merged(&["a", "c"], &["b", "a"]).await.unwrap_err();
        assert!(
            e.contains("destination `b:p/` listed `a` after `b`: not in byte order"),
            "{e}"
        );
        let e = merged(&["b", "b"], &[]).await.unwrap_err();
        assert!(e.contains("`a:p/` listed `b` after `b`"), "{e}");
    }

    #[test]
    fn part_size_respects_limits() {
        let s3 = default_limits(StoreType::S3);
        assert_eq!(part_size(100, 16 << 20, &s3).unwrap(), 16 << 20);
        // 1 TiB in at most 10,000 parts needs parts above 100 MiB.
        let p = part_size(1 << 40, 16 << 20, &s3).unwrap();
        assert!(p * 10_000 >= 1 << 40 && p <= 5 << 30, "{p}");
        assert_eq!(part_size(1, 1 << 20, &s3).unwrap(), 5 << 20);
        assert!(part_size(6 << 40, 16 << 20, &s3).is_err());
    }

    #[test]
    fn globs_keep_star_within_a_segment() {
        let job = ObjectJob {
            name: "j".into(),
            from: crate::plan::Location {
                provider: "a".into(),
                prefix: String::new(),
            },
            to: crate::plan::Location {
                provider: "b".into(),
                prefix: String::new(),
            },
            include: vec!["*.txt".into(), "docs/**".into()],
            exclude: vec!["docs/tmp/**".into()],
            verify: Default::default(),
            delete_extraneous: false,
            max_delete: Default::default(),
            allow_empty_source: false,
            line: 1,
            shard: None,
        };
        let f = job.filter();
        assert!(f.matches("a.txt"));
        assert!(!f.matches("sub/a.txt"));
        assert!(f.matches("docs/x/y.bin"));
        assert!(!f.matches("docs/tmp/y.bin"));
    }
}

#[cfg(test)]
mod base64_tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foob"), "Zm9vYg==");
        assert_eq!(super::base64(&[0xe3, 0x06, 0x9e, 0x3c]), "4waePA==");
    }
}
