//! The history a versioned S3 source keeps beside its current objects (see
//! `store::s3_versions`), counted once per job for `plan` and `run`.

use super::report::VersionsLeft;
use crate::plan::ObjectJob;
use crate::store::Store;

/// Noncurrent versions and delete markers under the job's prefix that pass its filters; none
/// for a store that is not S3, or a bucket whose versioning was never turned on. Failing to
/// count them does not fail the job (its current objects are what it copies): the reason is
/// reported instead, so a missing `s3:ListBucketVersions` permission is seen, not hidden.
pub(super) async fn left_behind(job: &ObjectJob, src: &Store) -> Option<VersionsLeft> {
    let raw = src.s3.as_ref()?;
    let failed = |e: object_store::Error| {
        Some(VersionsLeft {
            error: Some(crate::redact::redact(&e.to_string())),
            ..Default::default()
        })
    };
    match raw.versioned().await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => return failed(e),
    }
    let filter = job.filter();
    let mut left = VersionsLeft::default();
    let counted = raw
        .old_versions(&job.from.prefix, |v| {
            let Some(rel) = v.key.strip_prefix(&job.from.prefix) else {
                return;
            };
            if !filter.matches(rel) {
                return;
            }
            if v.delete_marker {
                left.delete_markers += 1;
            } else {
                left.noncurrent.add(v.size);
            }
        })
        .await;
    match counted {
        Ok(()) if left == VersionsLeft::default() => None,
        Ok(()) => Some(left),
        Err(e) => {
            left.error = Some(crate::redact::redact(&e.to_string()));
            Some(left)
        }
    }
}
