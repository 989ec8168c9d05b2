//! The mirror (`delete-extraneous = true`): which destination objects with no source
//! counterpart may be deleted, or why none may (the guards), and their deletion, journaled.

use object_store::ObjectStoreExt;

use super::report::{Failure, JobReport};
use super::Engine;
use crate::journal::{Record, State};
use crate::plan::ObjectJob;
use crate::redact::redact;
use crate::store::{key_to_path, Store};

impl Engine {
    /// Deletes the extraneous objects the guards allow, each journaled as deleted; a plan
    /// (`dry_run`) lists them in `would_delete` instead. Nothing is deleted after an error.
    pub(super) async fn mirror(
        &self,
        job: &ObjectJob,
        dst: &Store,
        report: &mut JobReport,
        mut extraneous: Vec<(String, u64)>,
        dst_listed: u64,
        dry_run: bool,
    ) {
        if dry_run && job.keep_replaced.is_some() {
            // What `run` would keep: every changed object, and the deletes below.
            report.kept_in_history.objects += report.changed.objects;
            report.kept_in_history.bytes += report.changed.bytes;
        }
        if report.error.is_none() && job.delete_extraneous {
            extraneous = self.guard_deletes(job, report, extraneous, dst_listed);
            if dry_run {
                report.would_delete = extraneous
                    .iter()
                    .map(|(rel, _)| format!("{}{rel}", job.to.prefix))
                    .collect();
                if job.keep_replaced.is_some() {
                    extraneous
                        .iter()
                        .for_each(|(_, size)| report.kept_in_history.add(*size));
                }
                extraneous.clear();
            }
        }
        if report.error.is_none() && report.guard.is_none() {
            for (rel, size) in extraneous {
                self.delete_extraneous(job, dst, report, rel, size).await;
            }
        }
    }

    /// Deletes one extraneous object (`rel`, relative to the job's prefixes).
    async fn delete_extraneous(&self, job: &ObjectJob, dst: &Store, report: &mut JobReport, rel: String, size: u64) {
        let key = format!("{}{rel}", job.to.prefix);
        if job.keep_replaced.is_some() {
            // Kept under the history first; if that fails, it is not deleted.
            if let Err(why) = self.keep_replaced(job, dst, &key).await {
                report
                    .failed
                    .push(Failure::of_destination(key, why.replace("not replaced", "not deleted")));
                return;
            }
            report.kept_in_history.add(size);
        }
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
                        stored_sha256: None,
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
}
