//! Verification: does the destination hold what the source holds?
//!
//! Three levels (`verify = ...` in a job, or `--deep`/`--size-only` on the command line):
//! `size` compares sizes; `checksum` (default) also proves the content without re-reading it
//! where it can: both sides publish the same MD5 ETag, or the destination object is the very one
//! ferry wrote and hashed (same ETag as the journal recorded, from the same source version).
//! Otherwise it reads what it needs: the source (whose MD5 a destination MD5 ETag can be held
//! to), then the destination. ferry's checksum in an object's metadata is never taken as proof:
//! it survives a rewrite of the bytes. `deep` re-reads every destination byte and re-hashes it.
//! The source side of the comparison is the checksum ferry computed while copying (valid while
//! the source ETag is unchanged), or a fresh read of the source.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::checksum::{self, StreamHasher};
use crate::journal::{Journal, State};
use crate::pairing::{paired_listings, until_error, Paired};
use crate::plan::{ObjectJob, VerifyLevel};
use crate::progress::Progress;
use crate::redact::redact;
use crate::store::{key_to_path, Listed, Store};
use crate::sync::decide::{from_this_version, same_etag, same_md5};
use crate::sync::{body_stream, Counts, Failure};

mod sealed;
pub use sealed::deep_opener;

/// What verification of one job found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct VerifyReport {
    pub job: String,
    pub level: Option<VerifyLevel>,
    /// Source objects checked.
    pub checked: Counts,
    /// Objects whose destination matched.
    pub matched: Counts,
    /// Objects that are missing or differ, with the reason.
    pub mismatches: Vec<Failure>,
    /// Destination objects with no source counterpart (reported, not an error).
    pub extraneous: Counts,
    /// Bytes re-read to verify (source and destination).
    pub bytes_read: u64,
    pub error: Option<String>,
    pub seconds: f64,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty() && self.error.is_none()
    }
}

/// How a mismatch of a source entry that cannot be copied begins.
const SOURCE_CANNOT: &str = "source cannot be copied: ";

/// Verifies one job at `level`. A merge stopped by a listing out of byte order (SeaweedFS lists
/// folder by folder) is done again with the destination in a map, as `run` does.
pub async fn verify_job(
    job: &ObjectJob,
    src: &Store,
    dst: &Store,
    level: VerifyLevel,
    journal: &Journal,
    progress: Arc<dyn Progress>,
    concurrency: usize,
) -> VerifyReport {
    let opener = match deep_opener(job, dst, level).await {
        Ok(o) => o,
        Err(e) => {
            return VerifyReport {
                job: job.name.clone(),
                level: Some(level),
                error: Some(e.to_string()),
                ..Default::default()
            }
        }
    };
    let ctx = Ctx {
        job,
        src,
        dst,
        level,
        journal,
        opener: opener.as_ref(),
    };
    let (report, out_of_order) = verify_pass(&ctx, progress.clone(), concurrency, true).await;
    if !out_of_order {
        return report;
    }
    let (mut again, _) = verify_pass(&ctx, progress, concurrency, false).await;
    again.seconds += report.seconds;
    again
}

/// What every object's check of one job needs.
struct Ctx<'a> {
    job: &'a ObjectJob,
    src: &'a Store,
    dst: &'a Store,
    level: VerifyLevel,
    journal: &'a Journal,
    /// `--deep` at an encrypting destination: the provider's identities.
    opener: Option<&'a Arc<crate::crypt::Opener>>,
}

async fn verify_pass(
    ctx: &Ctx<'_>,
    progress: Arc<dyn Progress>,
    concurrency: usize,
    merge: bool,
) -> (VerifyReport, bool) {
    let Ctx {
        job, src, dst, level, ..
    } = *ctx;
    let started = Instant::now();
    let mut report = VerifyReport {
        job: job.name.clone(),
        level: Some(level),
        ..Default::default()
    };
    progress.job_started(&job.name, "verify");
    let filter = job.filter();

    // The same pairing as a run: merged as they stream where both sides list in byte order.
    let paired = match paired_listings(job, src, dst, Arc::new(filter), merge).await {
        Ok(p) => p,
        Err(e) => {
            report.error = Some(e);
            return (report, false);
        }
    };
    let mut listing_error = None;
    let mut extraneous = Counts::default();
    {
        let sources = until_error(paired, &mut listing_error).filter_map(|p| {
            std::future::ready(match p {
                Paired::Source(item, d) => {
                    progress.found(1, 0);
                    Some(with_destination(job, item, d))
                }
                Paired::Extraneous(_, d) => {
                    extraneous.add(d.size);
                    None
                }
            })
        });
        // Tallied as they finish: a listing of millions is never held as a list of results.
        let mut checks = sources
            .map(|(item, dst_key, dst_item)| {
                let progress = progress.clone();
                async move {
                    let r = check_one(ctx, &*progress, &item, &dst_key, dst_item.as_ref()).await;
                    progress.object_done();
                    (item, dst_key, r)
                }
            })
            .buffer_unordered(concurrency.max(1));
        while let Some((item, dst_key, r)) = checks.next().await {
            tally(&mut report, &*progress, item, dst_key, r);
        }
    }
    report.mismatches.sort_by(|a, b| a.key.cmp(&b.key));
    report.extraneous = extraneous;
    let mut out_of_order = false;
    if let Some(e) = listing_error {
        report.error = Some(e.message);
        out_of_order = e.out_of_order && merge;
    }
    report.seconds = started.elapsed().as_secs_f64();
    progress.job_finished(&job.name);
    (report, out_of_order)
}

/// A source object with its destination key, and its destination entry as a listed object.
fn with_destination(
    job: &ObjectJob,
    item: Listed,
    d: Option<crate::pairing::DstEntry>,
) -> (Listed, String, Option<Listed>) {
    let rel = item.key.strip_prefix(&job.from.prefix).unwrap_or(&item.key);
    let dst_key = format!("{}{rel}", job.to.prefix);
    let dst_item = d.map(|d| Listed {
        key: dst_key.clone(),
        size: d.size,
        etag: d.etag,
        version: None,
        problem: None,
        class: None,
    });
    (item, dst_key, dst_item)
}

/// Counts one checked object into the report; a mismatch is said and kept with its reason.
fn tally(report: &mut VerifyReport, progress: &dyn Progress, item: Listed, dst_key: String, r: Result<u64, String>) {
    report.checked.add(item.size);
    match r {
        Ok(read) => {
            report.bytes_read += read;
            report.matched.add(item.size);
        }
        Err(reason) => {
            progress.message(&crate::keys::shown(&format!("differs: `{}`: {reason}", item.key)));
            report.mismatches.push(Failure {
                key: Some(item.key),
                destination_key: dst_key,
                reason,
            });
        }
    }
}

/// Checks one object; returns the bytes re-read, or why it does not match.
async fn check_one(
    ctx: &Ctx<'_>,
    progress: &dyn Progress,
    item: &Listed,
    dst_key: &str,
    dst_item: Option<&Listed>,
) -> Result<u64, String> {
    let (src, dst, level) = (ctx.src, ctx.dst, ctx.level);
    if let Some(reason) = &item.problem {
        return Err(format!("{SOURCE_CANNOT}{reason}"));
    }
    let Some(d) = dst_item else {
        return Err("missing at the destination".into());
    };
    // The checksum ferry computed while copying stands for the source only while the source is
    // the version it read.
    let record = ctx
        .journal
        .get(&ctx.job.name, &item.key)
        .ok()
        .flatten()
        .filter(|r| from_this_version(r, item));
    if dst.seal.is_some() {
        return sealed::check_sealed(dst, level, (item, dst_key, d), record, ctx.opener, progress).await;
    }
    if d.size != item.size {
        return Err(format!(
            "size differs: source {} bytes, destination {} bytes",
            item.size, d.size
        ));
    }
    if level == VerifyLevel::Size {
        return Ok(0);
    }
    let mut read = 0;

    if level == VerifyLevel::Checksum && proven_by_etags(src, dst, item, d, record.as_ref()) {
        return Ok(0);
    }

    // No proof is left without reading. The `ferry-sha256` metadata is not one: whoever rewrites
    // an object's bytes can keep its metadata (and a fresh pod has no journal to hold the ETag
    // to), so it only says what an object was meant to hold. What can be tied to the source: its
    // bytes (read now, or hashed by ferry while copying this very version), against the
    // destination's MD5 ETag (computed by the server from the bytes it holds) at the `checksum`
    // level, else against the destination's bytes.
    let dst_md5 = (level == VerifyLevel::Checksum)
        .then(|| dst.etag_md5(d.etag.as_deref()))
        .flatten();
    let (expected, src_md5) = match record.and_then(|r| r.sha256) {
        Some(s) => (s, None),
        None => {
            let (digest, n) = hash_object(src, &item.key, progress, dst_md5.is_some()).await?;
            read += n;
            (digest.sha256, digest.md5)
        }
    };
    if let (Some(a), Some(b)) = (&src_md5, &dst_md5) {
        if a == b {
            return Ok(read);
        }
        // An SSE-KMS or SSE-C object's ETag only looks like an MD5: then its bytes decide.
        if let crate::store::EtagVerdict::Md5(_) = dst.etag_is_md5(dst_key).await {
            return Err(format!("content differs: destination MD5 {b}, source MD5 {a}"));
        }
    }
    let (got, n) = hash_object(dst, dst_key, progress, false).await?;
    read += n;
    if got.sha256 == expected {
        Ok(read)
    } else {
        Err(format!(
            "content differs: destination sha256 {}, source sha256 {expected}",
            got.sha256
        ))
    }
}

/// What proves a destination object right without reading a byte: both sides publish the same
/// MD5 of their content (S3 single-part ETags), or it is the very object ferry wrote and hashed
/// (the journal's destination ETag, from the same source version).
fn proven_by_etags(
    src: &Store,
    dst: &Store,
    item: &Listed,
    d: &Listed,
    record: Option<&crate::journal::Record>,
) -> bool {
    // Not between stores known (this run) to hold SSE-KMS or SSE-C objects, whose ETags only
    // look like MD5s.
    let (a, b) = (src.etag_md5(item.etag.as_deref()), dst.etag_md5(d.etag.as_deref()));
    if same_md5(a.as_deref(), b.as_deref()) {
        return true;
    }
    record.is_some_and(|r| same_etag(&r.dst_etag, &d.etag) && r.sha256.is_some())
}

/// Reads an object whole and returns its digest (with its MD5 if `md5`) and size.
async fn hash_object(
    store: &Store,
    key: &str,
    progress: &dyn Progress,
    md5: bool,
) -> Result<(checksum::Digest, u64), String> {
    let path = key_to_path(key).map_err(|e| e.to_string())?;
    let got = store
        .inner
        .get(&path)
        .await
        .map_err(|e| redact(&format!("cannot read `{key}` from `{}`: {e}", store.name())))?;
    let mut body = body_stream(got);
    let mut h = StreamHasher::new(md5);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| redact(&format!("reading `{key}` from `{}`: {e}", store.name())))?;
        progress.bytes(chunk.len() as u64);
        h.update(&chunk);
    }
    let d = h.finish();
    let n = d.bytes;
    Ok((d, n))
}

/// Journals what a verify found wrong, so the next `run` repairs exactly those objects: a
/// destination that was damaged in place keeps its size and often its ETag, and without this
/// `run` would keep deciding "unchanged" from the journal's done row. Returns how many rows
/// were written. Mismatches of source entries that cannot be copied are not destination damage
/// and are left out.
pub fn record_findings(journal: &Journal, job: &ObjectJob, report: &VerifyReport) -> Result<usize, String> {
    let mut n = 0;
    for m in &report.mismatches {
        if m.reason.starts_with(SOURCE_CANNOT) {
            continue;
        }
        let Some(key) = m.key.clone() else {
            continue;
        };
        journal
            .put(crate::journal::Record {
                job: job.name.clone(),
                key,
                state: State::Failed,
                src_size: 0,
                src_etag: None,
                dst_key: m.destination_key.clone(),
                dst_etag: None,
                sha256: None,
                stored_sha256: None,
                error: Some(format!("verify found the destination wrong: {}", m.reason)),
                upload_id: None,
                part_size: None,
            })
            .map_err(|e| e.describe())?;
        n += 1;
    }
    journal.flush().map_err(|e| e.describe())?;
    Ok(n)
}
