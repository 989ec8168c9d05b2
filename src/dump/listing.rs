//! Which dumps of a job a store holds, and retention over them. A dump is its key (one object),
//! or, for a directory-format dump (`jobs > 1`), only its record (`KEY.ferry.json`): its files
//! live under `KEY/` and are never dumps of their own. Dumps are found by their key matching
//! the job's template exactly; records tell which are complete.

use std::collections::BTreeSet;

use futures::TryStreamExt;

use super::record;
use super::template::KeyTemplate;
use super::{retention, DumpError, RECORD_SUFFIX};
use crate::plan::DatabaseJob;
use crate::redact::redact;
use crate::store::Store;

/// A dump found at the destination.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub(super) key: String,
    pub(super) sort: String,
    pub(super) has_record: bool,
}

/// Every dump of the job at the store, newest first.
pub(super) async fn list_dumps(
    job: &DatabaseJob,
    store: &Store,
    template: &KeyTemplate,
) -> Result<Vec<Found>, DumpError> {
    let prefix = template.list_prefix();
    let mut dumps = Vec::new();
    let mut records = BTreeSet::new();
    let mut listing = store.list(&prefix);
    while let Some(item) = listing.try_next().await.map_err(|e| DumpError::Store {
        job: job.name.clone(),
        provider: store.name().into(),
        key: prefix.clone(),
        message: format!("cannot list: {}", redact(&e.to_string())),
    })? {
        // A link or special file where dumps live is not a dump: never kept, never deleted.
        if item.problem.is_some() {
            continue;
        }
        if let Some(dump) = item.key.strip_suffix(RECORD_SUFFIX) {
            records.insert(dump.to_string());
        } else if let Some(sort) = template.matches(&item.key) {
            dumps.push(Found {
                key: item.key,
                sort,
                has_record: false,
            });
        }
    }
    for d in &mut dumps {
        d.has_record = records.remove(&d.key);
    }
    // A record whose key the template writes but no object has: a directory dump (its files
    // are under `KEY/`, which the template never matches).
    for key in records {
        if let Some(sort) = template.matches(&key) {
            dumps.push(Found {
                key,
                sort,
                has_record: true,
            });
        }
    }
    dumps.sort_by(|a, b| b.sort.cmp(&a.sort).then_with(|| b.key.cmp(&a.key)));
    Ok(dumps)
}

/// Applies the job's retention rules (see `retention`): deletes each dump of this job that no
/// rule keeps, never `just_written`, never a key that does not match the job's template, never
/// one whose timestamp is no real date. Returns what was deleted and the first error.
pub(super) async fn retain(
    job: &DatabaseJob,
    dst: &Store,
    template: &KeyTemplate,
    just_written: &str,
) -> (Vec<String>, Option<String>) {
    let mut deleted = Vec::new();
    let listed = match list_dumps(job, dst, template).await {
        Ok(d) => d,
        Err(e) => return (deleted, Some(redact(&e.to_string()))),
    };
    // The dump just written takes its place in the walk even if a listing does not show it yet.
    let mut dated: Vec<(String, chrono::NaiveDateTime)> = listed
        .into_iter()
        .filter_map(|d| Some((d.key, retention::time_of(&d.sort)?)))
        .collect();
    if !dated.iter().any(|(k, _)| k == just_written) {
        if let Some(t) = template.matches(just_written).and_then(|s| retention::time_of(&s)) {
            dated.push((just_written.to_string(), t));
        }
    }
    let mut error = None;
    for d in retention::select(&dated, &job.retention, just_written) {
        if d.keep() {
            tracing::debug!(job = %job.name, key = %d.key, reasons = %d.why(), "retention keeps a dump");
        } else {
            match record::delete_dump(dst, &d.key).await {
                Ok(()) => deleted.push(d.key),
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
    }
    (deleted, error)
}
