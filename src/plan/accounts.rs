//! Whole accounts (issue 17): a provider whose `bucket` (Azure: `container`) is `"*"` stands
//! for every bucket its credentials can list. An object job from such a provider maps each
//! source bucket, chosen by `buckets-include`/`buckets-exclude` globs on its name, to a
//! destination: a bucket named by `bucket-name` (`"{bucket}"` by default) when the destination
//! is an account too, else a folder of the destination whose prefix holds `{bucket}`.
//!
//! The plan only records the mapping; which buckets there are is known only once the source is
//! listed, so `run::accounts` expands such a job into one ordinary job per bucket before the
//! engine sees it. Everything that can be checked without a server is checked here, with the
//! plan's line.

use std::collections::BTreeMap;

use globset::{GlobSet, GlobSetBuilder};
use toml::Spanned;

use super::validate::Ctx;
use super::wire::ObjectJobWire;
use super::{Location, PlanError, ProviderKind, ProviderSpec};
use crate::filter::compile_glob;

/// The bucket (container) name of a provider that stands for its whole account.
pub const EVERY_BUCKET: &str = "*";

/// The placeholder a destination name or prefix holds for the source bucket's name.
pub const BUCKET: &str = "{bucket}";

/// How an account job picks its source buckets and names their destinations.
#[derive(Debug, Clone)]
pub struct AccountMap {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// The destination bucket's name (`{bucket}` for the source's); None when the destination
    /// is not an account (its `to` prefix holds `{bucket}` instead).
    pub bucket_name: Option<String>,
    /// Create destination buckets that do not exist (`create-buckets = true`).
    pub create_buckets: bool,
    /// The `to` prefix as written (may hold `{bucket}`).
    pub to_prefix: String,
}

impl AccountMap {
    /// Whether the job takes the source bucket `name` (its globs were checked with the plan).
    pub fn wants(&self, name: &str) -> bool {
        let set = |globs: &[String]| -> GlobSet {
            let mut b = GlobSetBuilder::new();
            for g in globs {
                b.add(compile_glob(g).expect("bucket globs are validated with the plan"));
            }
            b.build().expect("bucket globs are validated with the plan")
        };
        (self.include.is_empty() || set(&self.include).is_match(name)) && !set(&self.exclude).is_match(name)
    }

    /// The destination bucket for source bucket `name` (when the destination is an account).
    pub fn destination_bucket(&self, name: &str) -> Option<String> {
        self.bucket_name.as_ref().map(|p| p.replace(BUCKET, name))
    }

    /// The destination prefix for source bucket `name`.
    pub fn destination_prefix(&self, name: &str) -> String {
        self.to_prefix.replace(BUCKET, name)
    }

    /// Whether `name` is a name this job gives its destinations (`bucket-name` with any text for
    /// `{bucket}`): on one service, such a source bucket is a copy made by an earlier run, and
    /// copying it again would feed the job its own output (`a-copy-copy`) at every run.
    pub fn is_destination_name(&self, name: &str) -> bool {
        let Some(pattern) = &self.bucket_name else {
            return false;
        };
        let glob = globset::escape(pattern).replace(&globset::escape(BUCKET), "*");
        compile_glob(&glob).is_ok_and(|g| g.compile_matcher().is_match(name))
    }
}

impl ProviderSpec {
    /// Whether this provider stands for every bucket of its account (`bucket = "*"`).
    pub fn is_account(&self) -> bool {
        match &self.kind {
            ProviderKind::S3(s) => s.bucket == EVERY_BUCKET,
            ProviderKind::Gcs(g) => g.bucket == EVERY_BUCKET,
            ProviderKind::Azure(a) => a.container == EVERY_BUCKET,
            ProviderKind::Local(_) | ProviderKind::Memory => false,
        }
    }

    /// This account's provider for one of its buckets, named `provider/bucket`.
    pub fn for_bucket(&self, bucket: &str) -> ProviderSpec {
        let mut spec = self.clone();
        spec.name = format!("{}/{bucket}", self.name);
        match &mut spec.kind {
            ProviderKind::S3(s) => s.bucket = bucket.to_string(),
            ProviderKind::Gcs(g) => g.bucket = bucket.to_string(),
            ProviderKind::Azure(a) => a.container = bucket.to_string(),
            ProviderKind::Local(_) | ProviderKind::Memory => {}
        }
        spec
    }
}

/// An error about the job being checked, with its line and a hint.
type Refuse<'a> = &'a dyn Fn(String, &str) -> PlanError;

/// The account keys of a job, checked against its providers. None for an ordinary job (which
/// may not set them).
pub(super) fn account_map(
    ctx: &Ctx,
    providers: &BTreeMap<String, ProviderSpec>,
    spanned: &Spanned<ObjectJobWire>,
    from: &Location,
    to: &Location,
) -> Result<Option<AccountMap>, PlanError> {
    let w = spanned.get_ref();
    let span = spanned.span();
    let err = |message: String, hint: &str| ctx.err(span.clone(), format!("job `{}`: {message}", w.name), Some(hint));
    let (src, dst) = (&providers[&from.provider], &providers[&to.provider]);
    let set_keys: Vec<&str> = [
        ("buckets-include", !w.buckets_include.is_empty()),
        ("buckets-exclude", !w.buckets_exclude.is_empty()),
        ("bucket-name", w.bucket_name.is_some()),
        ("create-buckets", w.create_buckets.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if !src.is_account() {
        return one_bucket_source(&err, dst, to, &set_keys).map(|()| None);
    }
    if !from.prefix.is_empty() {
        return Err(err(
            format!(
                "`from` = `{}:{}`: a whole account is copied from each bucket's root",
                from.provider, from.prefix
            ),
            "write `from` without a prefix; choose buckets with buckets-include/buckets-exclude",
        ));
    }
    if w.delete_extraneous {
        return Err(err(
            "`delete-extraneous` is not offered for a whole account".into(),
            "mirror bucket by bucket, with one job per bucket, so each mirror's guards see one bucket",
        ));
    }
    for g in w.buckets_include.iter().chain(&w.buckets_exclude) {
        compile_glob(g).map_err(|e| err(format!("bucket glob `{g}`: {e}"), "for example \"prod-*\""))?;
    }
    let bucket_name = destination_pattern(&err, w, src, dst, to, &set_keys)?;
    Ok(Some(AccountMap {
        include: w.buckets_include.clone(),
        exclude: w.buckets_exclude.clone(),
        bucket_name,
        create_buckets: w.create_buckets.unwrap_or(false),
        to_prefix: to.prefix.clone(),
    }))
}

/// An ordinary job (its source one bucket) may use none of the account keys.
fn one_bucket_source(err: Refuse, dst: &ProviderSpec, to: &Location, set_keys: &[&str]) -> Result<(), PlanError> {
    if dst.is_account() {
        return Err(err(
            format!(
                "`to` names provider `{}`, which stands for a whole account (`\"*\"`), but `from` is one bucket",
                to.provider
            ),
            "name the destination bucket in its provider table, or make `from` an account too",
        ));
    }
    if let Some(k) = set_keys.first() {
        return Err(err(
            format!("`{k}` applies only to a job whose `from` provider stands for a whole account"),
            "set `bucket = \"*\"` (Azure: `container = \"*\"`) on the source provider to copy every bucket",
        ));
    }
    if to.prefix.contains(BUCKET) {
        return Err(err(
            format!("`to` holds `{BUCKET}`, but `from` is one bucket"),
            "`{bucket}` names each source bucket of a job from a whole account",
        ));
    }
    Ok(())
}

/// The destination bucket's name pattern (into an account), or None (into folders of one
/// store, whose `to` prefix must then hold `{bucket}`).
fn destination_pattern(
    err: Refuse,
    w: &ObjectJobWire,
    src: &ProviderSpec,
    dst: &ProviderSpec,
    to: &Location,
    set_keys: &[&str],
) -> Result<Option<String>, PlanError> {
    if !dst.is_account() {
        if let Some(k) = set_keys
            .iter()
            .find(|k| matches!(**k, "bucket-name" | "create-buckets"))
        {
            return Err(err(
                format!("`{k}` applies only when `to` is a whole account too (`bucket = \"*\"`)"),
                "to copy every bucket into folders of one bucket, put `{bucket}` in the `to` prefix",
            ));
        }
        if !to.prefix.contains(BUCKET) {
            return Err(err(
                format!(
                    "`to` = `{}:{}` does not hold `{BUCKET}`: every source bucket would land in one folder",
                    to.provider, to.prefix
                ),
                "for example to = \"backup:accounts/old/{bucket}/\"",
            ));
        }
        return Ok(None);
    }
    let pattern = w.bucket_name.clone().unwrap_or_else(|| BUCKET.to_string());
    if !pattern.contains(BUCKET) {
        return Err(err(
            format!("`bucket-name` = `{pattern}` does not hold `{BUCKET}`: every source bucket would land in one"),
            "for example bucket-name = \"{bucket}\" or \"old-{bucket}\"",
        ));
    }
    if src.same_account(dst) && pattern == BUCKET && to.prefix.is_empty() {
        return Err(err(
            "`from` and `to` are one account and `bucket-name` is `{bucket}`: every bucket would copy onto itself"
                .into(),
            "name the copies differently (bucket-name = \"copy-{bucket}\") or use another account",
        ));
    }
    Ok(Some(pattern))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pattern: Option<&str>) -> AccountMap {
        AccountMap {
            include: vec!["prod-*".into()],
            exclude: vec!["*-logs".into()],
            bucket_name: pattern.map(str::to_string),
            create_buckets: true,
            to_prefix: String::new(),
        }
    }

    #[test]
    fn globs_choose_buckets_and_the_pattern_names_them() {
        let m = map(Some("old-{bucket}"));
        assert!(m.wants("prod-a"));
        assert!(!m.wants("prod-logs"));
        assert!(!m.wants("dev-a"));
        assert_eq!(m.destination_bucket("prod-a").as_deref(), Some("old-prod-a"));
        assert!(m.is_destination_name("old-prod-a"));
        assert!(!m.is_destination_name("prod-a"));
        // A pattern with glob characters of its own is matched literally.
        let odd = map(Some("[x]-{bucket}"));
        assert!(odd.is_destination_name("[x]-a"));
        assert!(!odd.is_destination_name("x-a"));
    }
}
