//! Whole accounts expanded (issue 17): a job from a provider with `bucket = "*"` becomes one
//! ordinary job per source bucket, named `JOB.BUCKET`, before a run, a dry run or a verify
//! prepares anything. The engine then sees only ordinary jobs: a bucket is copied, resumed,
//! verified and reported as any other job is.
//!
//! The source account is listed here, and each destination bucket asked for: one that is
//! missing is created by the run (`create-buckets = true`, [`super::prepare::Step::CreateBuckets`],
//! after the state lock is taken) or refused now, naming it. A dry run lists the buckets it
//! would create and prices their jobs as copies into empty buckets.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::prepare::probe_kind;
use crate::error::Error;
use crate::plan::{AccountMap, Location, ObjectJob, Plan, ProviderSpec};
use crate::redact::redact;
use crate::store::Store;

/// One source bucket of an account job and where it goes.
#[derive(Debug, Clone, Serialize)]
pub struct BucketPair {
    pub source: String,
    /// The job that copies it (`JOB.BUCKET`).
    pub job: String,
    /// The destination: `provider:prefix` of the bucket's copy.
    pub to: String,
    /// The destination bucket, when the destination is an account.
    pub destination_bucket: Option<String>,
    /// The destination bucket did not exist: a run creates it (a dry run would).
    pub create: bool,
}

/// What an account job found in its account.
#[derive(Debug, Clone, Serialize)]
pub struct AccountReport {
    pub job: String,
    pub from: String,
    pub to: String,
    /// Buckets the source account listed, all of them.
    pub listed: usize,
    pub buckets: Vec<BucketPair>,
    /// Listed buckets left out, each with why (`buckets-exclude`, a destination of this job).
    pub skipped: Vec<(String, String)>,
}

/// A plan whose account jobs are expanded, and the job selection (`--job`) in its terms.
pub struct Expanded {
    pub plan: Plan,
    pub jobs: Vec<String>,
    pub accounts: Vec<AccountReport>,
}

/// Expands the account jobs of `plan` that `jobs` selects (all when empty); other account jobs
/// are dropped from the plan, as the selection would leave them out anyway. A plan without
/// account jobs comes back as it was, with nothing reached.
pub async fn expand(plan: &Plan, jobs: &[String]) -> Result<Expanded, Error> {
    let selected = |j: &ObjectJob| jobs.is_empty() || jobs.contains(&j.name);
    let mut out = Expanded {
        plan: plan.clone(),
        jobs: jobs.to_vec(),
        accounts: Vec::new(),
    };
    if plan.objects.iter().all(|j| j.account.is_none()) {
        return Ok(out);
    }
    out.plan.objects.clear();
    let mut names: BTreeSet<String> = plan
        .objects
        .iter()
        .map(|j| j.name.clone())
        .chain(plan.databases.iter().map(|d| d.name.clone()))
        .collect();
    for job in &plan.objects {
        let Some(map) = &job.account else {
            out.plan.objects.push(job.clone());
            continue;
        };
        if !selected(job) {
            continue;
        }
        let (report, expanded) = expand_job(plan, job, map, &mut out.plan, &mut names).await?;
        if !jobs.is_empty() {
            out.jobs.retain(|j| j != &job.name);
            out.jobs.extend(expanded.iter().map(|j| j.name.clone()));
        }
        out.plan.objects.extend(expanded);
        out.accounts.push(report);
    }
    Ok(out)
}

/// A provider error while listing or asking for buckets, with its exit code's kind: an
/// unreachable service is "retry later" (3), a refusal is "fix the credentials" (2).
fn bucket_error(provider: &str, doing: &str, e: &object_store::Error) -> Error {
    Error::of(
        probe_kind(e),
        redact(&format!("provider `{provider}`: cannot {doing}: {e}")),
    )
}

/// The bucket (container) a provider names.
pub(super) fn bucket_of(spec: &ProviderSpec) -> &str {
    match &spec.kind {
        crate::plan::ProviderKind::Azure(a) => &a.container,
        _ => spec.bucket().unwrap_or(""),
    }
}

/// One account job: its source account listed, each chosen bucket paired with its
/// destination; the pairs' providers are added to `expanded`.
async fn expand_job(
    plan: &Plan,
    job: &ObjectJob,
    map: &AccountMap,
    expanded: &mut Plan,
    names: &mut BTreeSet<String>,
) -> Result<(AccountReport, Vec<ObjectJob>), Error> {
    let (src, dst) = (&plan.providers[&job.from.provider], &plan.providers[&job.to.provider]);
    let listed = Store::open(src, false)?
        .list_buckets()
        .await
        .map_err(|e| bucket_error(&src.name, "list its buckets", &e))?;
    let mut report = AccountReport {
        job: job.name.clone(),
        from: job.from.to_string(),
        to: job.to.to_string(),
        listed: listed.len(),
        buckets: Vec::new(),
        skipped: Vec::new(),
    };
    let destination = if dst.is_account() {
        Some(Store::open(dst, false)?)
    } else {
        None
    };
    let mut jobs = Vec::new();
    for bucket in listed {
        if !map.wants(&bucket) {
            let why = "not chosen by buckets-include/buckets-exclude";
            report.skipped.push((bucket, why.into()));
            continue;
        }
        if src.same_account(dst) && map.is_destination_name(&bucket) {
            let why = "named as this job names its copies (`bucket-name`): a copy, not a source";
            report.skipped.push((bucket, why.into()));
            continue;
        }
        let (pair, copy) = pair(job, map, (src, dst), &bucket, destination.as_ref(), expanded).await?;
        if !names.insert(copy.name.clone()) {
            return Err(Error::usage(format!(
                "job `{}`: bucket `{bucket}` makes job name `{}`, which another job has; rename one of the jobs",
                job.name, copy.name
            )));
        }
        report.buckets.push(pair);
        jobs.push(copy);
    }
    if report.buckets.is_empty() {
        // A typo in a glob would otherwise copy nothing and report success.
        let globs = if map.include.is_empty() && map.exclude.is_empty() {
            String::new()
        } else {
            format!(
                " (buckets-include {:?}, buckets-exclude {:?})",
                map.include, map.exclude
            )
        };
        return Err(Error::usage(format!(
            "job `{}`: none of the {} bucket(s) that provider `{}` lists is chosen{globs}",
            job.name, report.listed, src.name
        )));
    }
    Ok((report, jobs))
}

/// Source bucket `bucket` and its destination, as a report line and an ordinary job; their
/// providers are added to `expanded` (and the destination's bucket, if missing, to create).
async fn pair(
    job: &ObjectJob,
    map: &AccountMap,
    (src, dst): (&ProviderSpec, &ProviderSpec),
    bucket: &str,
    destination: Option<&Store>,
    expanded: &mut Plan,
) -> Result<(BucketPair, ObjectJob), Error> {
    let from_spec = src.for_bucket(bucket);
    let (to_spec, prefix, dest_bucket) = match map.destination_bucket(bucket) {
        Some(name) => (dst.for_bucket(&name), job.to.prefix.clone(), Some(name)),
        None => (dst.clone(), map.destination_prefix(bucket), None),
    };
    if from_spec.overlaps("", &to_spec, &prefix) {
        return Err(Error::usage(format!(
            "job `{}`: source bucket `{bucket}` would be copied onto itself (`{}:{prefix}`)",
            job.name, to_spec.name
        )));
    }
    let mut create = false;
    if let (Some(name), Some(store)) = (&dest_bucket, destination) {
        let exists = store
            .bucket_exists(name)
            .await
            .map_err(|e| bucket_error(&dst.name, &format!("read bucket `{name}`"), &e))?;
        if !exists && !map.create_buckets {
            return Err(Error::usage(format!(
                "job `{}`: destination bucket `{name}` (for source bucket `{bucket}`) does not exist in provider `{}`; \
                 set `create-buckets = true` on the job, or create it",
                job.name, dst.name
            )));
        }
        create = !exists;
    }
    let to = Location {
        provider: to_spec.name.clone(),
        prefix,
    };
    let name = format!("{}.{bucket}", job.name);
    if create {
        expanded.buckets_to_create.insert(to_spec.name.clone());
    }
    let pair = BucketPair {
        source: bucket.to_string(),
        job: name.clone(),
        to: to.to_string(),
        destination_bucket: dest_bucket,
        create,
    };
    let copy = ObjectJob {
        name,
        from: Location {
            provider: from_spec.name.clone(),
            prefix: String::new(),
        },
        to,
        account: None,
        ..job.clone()
    };
    expanded.providers.insert(from_spec.name.clone(), from_spec);
    expanded.providers.insert(to_spec.name.clone(), to_spec);
    Ok((pair, copy))
}

/// The destination buckets a run creates for the selected jobs, with the store of each.
pub(super) async fn create_buckets(plan: &Plan, stores: &mut BTreeMap<String, Store>) -> Result<(), Error> {
    for name in &plan.buckets_to_create {
        let Some(spec) = plan.providers.get(name) else { continue };
        if !stores.contains_key(name) {
            continue;
        }
        let store = Store::open(spec, false)?;
        let bucket = bucket_of(spec);
        store.create_bucket(bucket).await.map_err(|e| {
            Error::of(
                probe_kind(&e),
                redact(&format!("provider `{name}`: cannot create bucket `{bucket}`: {e}")),
            )
        })?;
        stores.insert(name.clone(), store);
    }
    Ok(())
}
