//! History instead of a mirror (issue 18, `keep-replaced = "history/{date}/"`): a backup that
//! overwrites its copy of a source object that was corrupted, encrypted by ransomware or
//! overwritten by a bad deploy, or deletes the copy of one that was deleted, loses the good
//! copy at the next run. With `keep-replaced`, the destination object a run would overwrite
//! or delete is first copied on the server under the run's dated folder (`history/2026-11-30/`
//! followed by its key relative to the job's `to`); only then is it replaced. A copy that fails leaves
//! the object as it was and fails it by name: nothing is replaced without its history.
//!
//! The history's root (`history/`) is not part of the job: its keys are not compared, not
//! extraneous, never deleted by the mirror (see `pairing`); `keep-replaced-days` deletes the
//! dated folders older than that at the end of a successful run.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::report::JobReport;
use super::Engine;
use crate::plan::ObjectJob;
use crate::redact::redact;
use crate::store::{key_to_path, Store};

use crate::plan::HISTORY_DATE as DATE;

/// Today's date in UTC, `YYYY-MM-DD`, as the history's folders are named.
pub(crate) fn today() -> String {
    date_of(std::time::SystemTime::now())
}

fn date_of(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_string()
}

/// Where a run dated `date` keeps the destination object at `rel` (relative to `to`).
fn history_key(job: &ObjectJob, date: &str, rel: &str) -> Option<String> {
    job.keep_replaced
        .as_deref()
        .map(|t| format!("{}{rel}", t.replace(DATE, date)))
}

/// The date of a history key (`ROOT` + `YYYY-MM-DD` + ...), if it has one.
fn dated(root: &str, key: &str) -> Option<String> {
    let d = key.strip_prefix(root)?.get(..10)?;
    let b = d.as_bytes();
    let shape = b.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        _ => c.is_ascii_digit(),
    });
    shape.then(|| d.to_string())
}

impl Engine {
    /// Copies the destination object at `dst_key` (`rel` relative to the job's `to`) under the
    /// run's history folder before it is replaced. An object that is not there (any more) has
    /// nothing to keep. Err: why it could not be kept (the caller then leaves it as it is).
    pub(super) async fn keep_replaced(&self, job: &ObjectJob, dst: &Store, dst_key: &str) -> Result<(), String> {
        let rel = dst_key.strip_prefix(&job.to.prefix).unwrap_or(dst_key);
        let Some(to) = history_key(job, &self.today, rel) else {
            return Ok(());
        };
        let from = key_to_path(dst_key).map_err(|e| e.to_string())?;
        let into = key_to_path(&to).map_err(|e| e.to_string())?;
        match dst.inner.copy(&from, &into).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(redact(&format!(
                "not replaced: keeping the destination's copy under `{to}` first failed: {e}"
            ))),
        }
    }

    /// After a successful run: deletes history folders older than `keep-replaced-days` (a dry
    /// run counts them). Objects under the root without a date are never touched.
    pub(super) async fn prune_history(&self, job: &ObjectJob, dst: &Store, report: &mut JobReport, dry_run: bool) {
        let (Some(root), Some(days)) = (job.history_root(), job.keep_replaced_days) else {
            return;
        };
        if report.error.is_some() || !report.failed.is_empty() {
            return;
        }
        let cutoff = date_of(std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400));
        let listed: Result<Vec<_>, _> = dst.list(root).try_collect().await;
        let listed = match listed {
            Ok(l) => l,
            Err(e) => {
                report.error = Some(redact(&format!("listing the history under `{root}`: {e}")));
                return;
            }
        };
        for item in listed {
            if dated(root, &item.key).is_none_or(|d| d >= cutoff) {
                continue;
            }
            if dry_run {
                report.history_pruned.add(item.size);
                continue;
            }
            let deleted = match key_to_path(&item.key) {
                Ok(p) => match dst.inner.delete(&p).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(redact(&e.to_string())),
                },
                Err(e) => Err(e.to_string()),
            };
            match deleted {
                Ok(()) => report.history_pruned.add(item.size),
                Err(e) => {
                    report.error = Some(format!("deleting `{}` (history older than {days} days): {e}", item.key));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keys_and_their_dates() {
        assert_eq!(dated("h/", "h/2026-11-30/a/b"), Some("2026-11-30".into()));
        assert_eq!(dated("h/", "h/notes.txt"), None);
        assert_eq!(dated("h/", "h/2026-1-30/x"), None);
        assert_eq!(dated("h/", "other/2026-11-30/x"), None);
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 365);
        assert_eq!(date_of(t), "1971-01-01");
    }
}
