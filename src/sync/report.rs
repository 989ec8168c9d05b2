//! What a job found and did: [`JobReport`] with its [`Counts`], [`Failure`]s, billable
//! [`Requests`] and [`Throttling`]. Filled by the engine, read by the CLI, the estimate and the
//! manifest; `verify` names its mismatches with the same [`Failure`] and counts with [`Counts`].

use std::time::Instant;

use serde::Serialize;

use crate::plan::ObjectJob;
use crate::progress::Progress;
use crate::throttle::ThrottleStats;

/// Objects and bytes.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub objects: u64,
    pub bytes: u64,
}

impl Counts {
    /// One more object of `bytes` bytes.
    pub fn add(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes += bytes;
    }

    pub fn is_zero(&self) -> bool {
        self.objects == 0
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
    /// Destination objects copied under the `keep-replaced` history before being overwritten
    /// or deleted (a dry run: that would be).
    #[serde(skip_serializing_if = "Counts::is_zero")]
    pub kept_in_history: Counts,
    /// History objects older than `keep-replaced-days` deleted (a dry run: that would be).
    #[serde(skip_serializing_if = "Counts::is_zero")]
    pub history_pruned: Counts,
    /// Source objects in an archive class that are not at the destination yet, by class:
    /// counted in `source`; an Azure `Archive` blob, or an S3 one without a finished restore,
    /// is also in `failed` and never read.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub archived: std::collections::BTreeMap<String, Counts>,
    pub failed: Vec<Failure>,
    /// A versioned S3 source: the history beside its current objects, which ferry does not copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions_left: Option<VersionsLeft>,
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
    /// The highest number of objects in flight the job's adaptive limit reached
    /// (`sync::adaptive`); none when nothing was copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_peak: Option<usize>,
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

/// What a versioned source holds under the job's prefix (and filters) beside its current
/// objects: `plan` and `run` say it stays behind, since only current objects are copied.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct VersionsLeft {
    /// Versions that are not the current object of their key.
    pub noncurrent: Counts,
    /// Delete markers (a current one means its key reads as deleted).
    pub delete_markers: u64,
    /// The versions could not be listed (the count above is then incomplete): why.
    pub error: Option<String>,
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

impl JobReport {
    /// Whether anything failed.
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.error.is_none() && self.guard.is_none()
    }

    pub(super) fn note_large(&mut self, key: &str, size: u64) {
        if self.largest.len() < 5 || self.largest.last().is_some_and(|l| l.1 < size) {
            self.largest.push((key.to_string(), size));
            self.largest.sort_by_key(|l| std::cmp::Reverse(l.1));
            self.largest.truncate(5);
        }
    }
}

/// The report as the job ends: its time taken, and the job's end said to `progress`.
pub(super) fn finish(mut report: JobReport, started: Instant, progress: &dyn Progress) -> JobReport {
    report.seconds = started.elapsed().as_secs_f64();
    progress.job_finished(&report.job);
    report
}
