//! The migration plan: the TOML file a user writes, parsed and validated into typed values.
//!
//! Parsing happens in two steps, as in the style guide: serde reads *wire* structs that reject
//! unknown keys and wrong types (toml reports the line and column), then [`Plan::from_str`]
//! validates across fields (a job naming an undefined provider, a key that does not apply to a
//! provider's type, a source that overlaps its destination) into the real types, again naming the
//! line. This module owns no I/O beyond reading the plan file and never reads a secret: `*-env`
//! keys only name environment variables, resolved later by `provider`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use crate::catalog::StoreType;
use crate::catalog::{self, Preset};
use crate::filter::{compile_glob, Filter, Shard};
use crate::units::{parse_rate, parse_size};

/// An error in a plan file: what is wrong, where, and (often) how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    // The io error is this error's source: `{:#}` prints it once, after a colon.
    #[error("cannot read plan `{}`", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}{}: {message}{}", file.display(), at(*line, *column), hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
        hint: Option<String>,
    },
}

fn at(line: usize, column: usize) -> String {
    match (line, column) {
        (0, _) => String::new(),
        (l, 0) => format!(":{l}"),
        (l, c) => format!(":{l}:{c}"),
    }
}

/// How thoroughly `run` and `verify` check the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyLevel {
    /// Sizes only.
    Size,
    /// Size plus the checksum ferry recorded (metadata, journal); no destination re-read.
    #[default]
    Checksum,
    /// Re-read the destination and re-hash every byte.
    Deep,
}

// ---------------------------------------------------------------------------------------------
// Wire structs: exactly what the TOML may contain.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PlanWire {
    #[serde(default)]
    settings: SettingsWire,
    #[serde(default)]
    providers: BTreeMap<String, Spanned<ProviderWire>>,
    #[serde(default)]
    objects: Vec<Spanned<ObjectJobWire>>,
    #[serde(default)]
    databases: Vec<Spanned<DatabaseJobWire>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SettingsWire {
    concurrency: Option<usize>,
    part_size: Option<Spanned<String>>,
    memory_limit: Option<Spanned<String>>,
    state_dir: Option<String>,
    server_side_copy: Option<bool>,
    bandwidth: Option<Spanned<String>>,
}

/// Every key any provider type accepts; which apply to which type is checked in validation.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ProviderWire {
    #[serde(rename = "type")]
    kind: Option<StoreType>,
    preset: Option<String>,
    // local
    root: Option<String>,
    // s3 / gcs
    bucket: Option<String>,
    region: Option<String>,
    endpoint: Option<Spanned<String>>,
    path_style: Option<bool>,
    allow_http: Option<bool>,
    access_key_id_env: Option<String>,
    secret_access_key_env: Option<String>,
    session_token_env: Option<String>,
    // azure
    account: Option<String>,
    container: Option<String>,
    access_key_env: Option<String>,
    // gcs
    service_account_env: Option<String>,
    anonymous: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ObjectJobWire {
    name: String,
    from: Spanned<String>,
    to: Spanned<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    verify: VerifyLevel,
    #[serde(default)]
    delete_extraneous: bool,
    max_delete: Option<Spanned<toml::Value>>,
    #[serde(default)]
    allow_empty_source: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DatabaseJobWire {
    name: String,
    engine: DbEngine,
    url_env: Option<String>,
    path: Option<String>,
    to: Spanned<String>,
    #[serde(default)]
    compression: Compression,
    restore_to_env: Option<String>,
    restore_to_path: Option<String>,
    #[serde(default)]
    restore_replace: bool,
    keep: Option<usize>,
}

// ---------------------------------------------------------------------------------------------
// Validated plan.

/// Database engines ferry can dump and restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DbEngine {
    Postgres,
    Mysql,
    Sqlite,
}

/// Compression applied to a dump stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    #[default]
    Zstd,
    None,
}

/// A validated plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan file as given.
    pub file: PathBuf,
    /// Relative `root`s and the state directory resolve against the plan file's directory.
    pub base_dir: PathBuf,
    pub settings: Settings,
    pub providers: BTreeMap<String, ProviderSpec>,
    pub objects: Vec<ObjectJob>,
    pub databases: Vec<DatabaseJob>,
}

/// Engine settings from `[settings]`, before command-line overrides.
#[derive(Debug, Clone)]
pub struct Settings {
    pub concurrency: usize,
    pub part_size: u64,
    pub memory_limit: u64,
    pub state_dir: PathBuf,
    /// Copy on the server between buckets of one S3 service (default true).
    pub server_side_copy: bool,
    /// Cap on bytes per second read from sources (`bandwidth = "50MiB/s"`); none: no cap.
    pub bandwidth: Option<f64>,
}

/// A named store from `[providers.NAME]`. Holds names of environment variables, never secrets.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub name: String,
    pub kind: StoreType,
    pub preset: Option<&'static Preset>,
    pub root: Option<PathBuf>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub allow_http: bool,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
    pub account: Option<String>,
    pub container: Option<String>,
    pub access_key_env: Option<String>,
    pub service_account_env: Option<String>,
    pub anonymous: bool,
    /// Line of the `[providers.NAME]` table, for later errors.
    pub line: usize,
}

impl ProviderSpec {
    /// What physically identifies the store, so two provider names for one bucket are seen as one.
    pub fn identity(&self) -> String {
        self.identity_at(&normalize_endpoint(self.endpoint.as_deref()))
    }

    /// [`identity`](Self::identity) with the endpoint part given.
    fn identity_at(&self, endpoint: &str) -> String {
        match self.kind {
            StoreType::Local => "local".into(),
            StoreType::Memory => format!("memory:{}", self.name),
            StoreType::Azure => format!(
                "azure:{endpoint}:{}:{}",
                self.account.as_deref().unwrap_or("").to_ascii_lowercase(),
                self.container.as_deref().unwrap_or("")
            ),
            StoreType::S3 | StoreType::Gcs => {
                format!("{}:{endpoint}:{}", self.kind, self.bucket.as_deref().unwrap_or(""))
            }
        }
    }

    /// Whether `self:a` and `other:b` (folder prefixes) hold any object in common: one is inside
    /// the other. Identities are compared as resolved, not as spelled (issue 14): local roots as
    /// canonical paths (see [`resolve`]), so `./src`, `missing/../src` and a link to `src` are
    /// all `src`; remote stores by type, bucket and endpoint, where two endpoint spellings are
    /// one server when their scheme and port agree and their hosts resolve to a common address
    /// (`127.0.0.1` and `localhost`).
    pub fn overlaps(&self, a: &str, other: &ProviderSpec, b: &str) -> bool {
        let nested = |x: &str, y: &str| x.starts_with(y) || y.starts_with(x);
        if self.kind == StoreType::Local && other.kind == StoreType::Local {
            let full = |spec: &ProviderSpec, prefix: &str| {
                let mut p = resolve(spec.root.as_deref().unwrap_or(Path::new(".")))
                    .join(prefix)
                    .display()
                    .to_string();
                if !p.ends_with('/') {
                    p.push('/');
                }
                p
            };
            return nested(&full(self, a), &full(other, b));
        }
        // The prefixes first: the endpoints are resolved (a DNS lookup) only when they matter.
        nested(a, b) && self.same_store(other)
    }

    /// Whether two remote specs name one bucket (container) of one server.
    fn same_store(&self, other: &ProviderSpec) -> bool {
        self.identity() == other.identity()
            || (matches!(self.kind, StoreType::S3 | StoreType::Gcs | StoreType::Azure)
                && self.identity_at("") == other.identity_at("")
                && same_server(self.endpoint.as_deref(), other.endpoint.as_deref()))
    }
}

/// Whether two endpoint URLs reach one server: same scheme and port, and host names that
/// resolve to at least one common address. A name that does not resolve is compared as spelled
/// (by the caller): a plan check must not fail because DNS is down. Two names that share an
/// address (a CDN in front of several accounts) are taken as one server: a refused plan is
/// cheaper than a bucket copied into itself.
fn same_server(a: Option<&str>, b: Option<&str>) -> bool {
    use std::net::ToSocketAddrs;
    let addrs = |e: &str| -> Option<(String, Vec<std::net::IpAddr>)> {
        let uri: http::Uri = e.trim().parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let port = uri.port_u16().or(match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        })?;
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let ips = (host, port).to_socket_addrs().ok()?.map(|s| s.ip()).collect();
        Some((format!("{scheme}:{port}"), ips))
    };
    match (a.and_then(addrs), b.and_then(addrs)) {
        (Some((sa, ia)), Some((sb, ib))) => sa == sb && ia.iter().any(|ip| ib.contains(ip)),
        _ => false,
    }
}

/// A database job's key template (`{name}` filled in) prefixed with what locates its store, so
/// that templates of one store can be compared and templates of different stores never meet:
/// the resolved directory for `local` (a root inside another root is seen), the store's identity
/// otherwise.
fn db_key_space(spec: &ProviderSpec, filled: &str) -> String {
    match spec.kind {
        StoreType::Local => {
            let root = resolve(spec.root.as_deref().unwrap_or(Path::new(".")));
            format!("{}/{filled}", root.display().to_string().trim_end_matches('/'))
        }
        _ => format!("{}\u{0}{filled}", spec.identity()),
    }
}

/// Endpoints that name one server compare equal: case, a trailing `/`, a default port.
pub(crate) fn normalize_endpoint(e: Option<&str>) -> String {
    let e = e.unwrap_or("").trim_end_matches('/').to_ascii_lowercase();
    if let Some(rest) = e.strip_prefix("https://") {
        format!("https://{}", rest.strip_suffix(":443").unwrap_or(rest))
    } else if let Some(rest) = e.strip_prefix("http://") {
        format!("http://{}", rest.strip_suffix(":80").unwrap_or(rest))
    } else {
        e
    }
}

/// The directory a local root names once it exists: absolute, with every link that exists
/// followed and every `.` and `..` applied. Components are taken one at a time, as the kernel
/// does: a link is replaced by its canonical target (so a `..` after a link leaves the link's
/// target, not the link), and below the first missing component the rest is applied lexically,
/// which is what `create_dir_all` then makes of it (`missing/..` is the folder holding
/// `missing`). A missing component cannot be a link, so the lexical part is exact. One `lstat`
/// a component (plans with 100,000 roots are checked in linear time).
pub(crate) fn resolve(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::from("/");
    // Components at the end of `out` that do not exist; `out` is canonical without them.
    let mut missing = 0usize;
    for c in abs.components() {
        match c {
            Component::Prefix(_) | Component::CurDir => {}
            Component::RootDir => {
                out = PathBuf::from("/");
                missing = 0;
            }
            Component::ParentDir => {
                out.pop();
                missing = missing.saturating_sub(1);
            }
            Component::Normal(name) => {
                out.push(name);
                if missing > 0 {
                    missing += 1;
                    continue;
                }
                match std::fs::symlink_metadata(&out) {
                    Ok(m) if m.file_type().is_symlink() => match out.canonicalize() {
                        Ok(real) => out = real,
                        // A dangling link: taken as spelled (creating the root will fail on it).
                        Err(_) => missing = 1,
                    },
                    Ok(_) => {}
                    Err(_) => missing = 1,
                }
            }
        }
    }
    out
}

/// `provider:prefix`, where the prefix is empty or ends in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub provider: String,
    pub prefix: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.prefix)
    }
}

/// One `[[objects]]` job.
#[derive(Debug, Clone)]
pub struct ObjectJob {
    pub name: String,
    pub from: Location,
    pub to: Location,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub verify: VerifyLevel,
    pub delete_extraneous: bool,
    /// The most a mirror may delete in one run (`max-delete`).
    pub max_delete: MaxDelete,
    /// Mirror a source that lists no object (`allow-empty-source`): deletes everything.
    pub allow_empty_source: bool,
    pub line: usize,
    /// This worker's share of the job (`--shard K/N`); none: the whole job.
    pub shard: Option<Shard>,
}

/// Where ferry keeps manifests at a destination (`<store root>/.ferry/manifests/<job>.jsonl`).
/// Source keys under it are copied like any others (issue 14), except one that would land on
/// the job's own manifest; destination keys under it are never extraneous (see
/// `transfer::paired_listings`).
pub const MANIFEST_PREFIX: &str = ".ferry/manifests/";

impl ObjectJob {
    /// `job`, or `job.shard-K-of-N` for one worker's share: the name of its state files.
    pub fn state_stem(&self) -> String {
        match self.shard {
            Some(s) => format!("{}.{}", self.name, s.label()),
            None => self.name.clone(),
        }
    }

    /// The job's manifest key at the destination provider.
    pub fn manifest_key(&self) -> String {
        format!("{MANIFEST_PREFIX}{}.jsonl", self.state_stem())
    }

    /// The job's include/exclude globs and shard, as one matcher of relative keys.
    pub fn filter(&self) -> Filter {
        Filter::new(&self.include, &self.exclude, self.shard).expect("globs are validated with the plan")
    }
}

/// How many destination objects a mirror may delete in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum MaxDelete {
    /// At most this many objects.
    Count(u64),
    /// At most this percentage of the objects the destination held (0 to 100).
    Percent(u64),
}

impl Default for MaxDelete {
    /// Half the destination: a nightly mirror never loses more than half its backup to one bad
    /// run, while a real cleanup of a big tree still goes through (raise it for a purge).
    fn default() -> MaxDelete {
        MaxDelete::Percent(50)
    }
}

impl MaxDelete {
    /// The limit, given how many objects the destination held.
    pub fn limit(self, destination_objects: u64) -> u64 {
        match self {
            MaxDelete::Count(n) => n,
            MaxDelete::Percent(p) => destination_objects * p / 100,
        }
    }
}

impl fmt::Display for MaxDelete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxDelete::Count(n) => write!(f, "{n}"),
            MaxDelete::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// One `[[databases]]` job.
#[derive(Debug, Clone)]
pub struct DatabaseJob {
    pub name: String,
    pub engine: DbEngine,
    /// Environment variable holding the source connection URL (postgres, mysql).
    pub url_env: Option<String>,
    /// SQLite database file (resolved against the plan's directory).
    pub path: Option<PathBuf>,
    /// Destination provider and key template (`{name}`, `{timestamp}`).
    pub to: Location,
    pub compression: Compression,
    pub restore_to_env: Option<String>,
    pub restore_to_path: Option<PathBuf>,
    /// `ferry restore` may replace the contents of a restore target that is not empty.
    pub restore_replace: bool,
    pub keep: Option<usize>,
    pub line: usize,
}

/// Default number of objects in flight.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Default multipart part size: large enough that per-part overhead is small, small enough that
/// `concurrency x part size` stays modest. Raised per object when 10,000 parts would not do.
pub const DEFAULT_PART_SIZE: u64 = 16 * 1024 * 1024;
/// Default cap on bytes buffered in memory across all transfers.
/// 128 MiB is eight 16 MiB parts in flight across all objects: enough to keep a fast link busy
/// (measured against rclone in docs/benchmarks.md), small enough for a CronJob pod.
pub const DEFAULT_MEMORY_LIMIT: u64 = 128 * 1024 * 1024;

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    /// Byte offsets where each line starts, so a line number costs a binary search: every job
    /// asks for its line, and counting newlines from the top made validation quadratic.
    line_starts: Vec<usize>,
}

impl<'a> Ctx<'a> {
    fn new(file: &'a Path, text: &'a str) -> Ctx<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Ctx {
            file,
            text,
            line_starts,
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text.get(start..offset).map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn err(&self, span: std::ops::Range<usize>, message: String, hint: Option<&str>) -> PlanError {
        let (line, column) = self.line_col(span.start);
        PlanError::Invalid {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
            hint: hint.map(str::to_string),
        }
    }
}

const JOB_NAME_HINT: &str =
    "a job name is letters, digits, `-`, `_` and `.` (not first), at most 64 characters: it names the manifest file";

/// The largest plan file ferry reads (16 MiB: about 100,000 providers and jobs).
pub const MAX_PLAN_BYTES: u64 = 16 << 20;

/// Whether `name` may name a job: it becomes a manifest file name, a journal key and a key
/// under the destination, so only letters, digits, `-`, `_` and `.`, not starting with `.`,
/// at most 64 characters (`nightly/photos`, `/etc/x` or a TAB broke the manifest write).
pub fn is_job_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Plan {
    /// Reads and validates a plan file.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let read_err = |source| PlanError::Read {
            path: path.to_path_buf(),
            source,
        };
        // A plan is a regular file of bounded size: a FIFO given by mistake would hang the
        // read, `/dev/zero` would fill memory.
        // NONBLOCK: opening a FIFO for reading would wait for a writer; regular files ignore it.
        let file =
            std::os::unix::fs::OpenOptionsExt::custom_flags(std::fs::OpenOptions::new().read(true), libc::O_NONBLOCK)
                .open(path)
                .map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a plan is a TOML file)",
            )));
        }
        if meta.len() > MAX_PLAN_BYTES {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} bytes, more than a plan may have ({MAX_PLAN_BYTES})", meta.len()),
            )));
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_PLAN_BYTES + 1), &mut text)
            .map_err(read_err)?;
        Plan::from_str(path, &text)
    }

    /// Validates plan text; `file` is used for messages and to resolve relative paths.
    pub fn from_str(file: &Path, text: &str) -> Result<Plan, PlanError> {
        let ctx = Ctx::new(file, text);
        let wire: PlanWire = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ctx.err(span, e.message().trim().to_string(), None)
        })?;
        let base_dir = file
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));

        let settings = settings(&ctx, &base_dir, wire.settings)?;

        let mut providers = BTreeMap::new();
        for (name, spanned) in wire.providers {
            let span = spanned.span();
            let spec = provider(&ctx, &base_dir, &name, span, spanned.into_inner())?;
            providers.insert(name, spec);
        }

        let mut objects: Vec<ObjectJob> = Vec::new();
        // Names taken, and the jobs that delete extraneous objects (by index): with 50,000 jobs,
        // scanning every earlier job for each was 15 s of a `check` (issue 14).
        let mut names: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut mirrors: Vec<usize> = Vec::new();
        for spanned in wire.objects {
            let span = spanned.span();
            let w = spanned.into_inner();
            if w.name.is_empty() {
                return Err(ctx.err(span, "object job has an empty `name`".into(), None));
            }
            if !is_job_name(&w.name) {
                return Err(ctx.err(
                    span,
                    format!("object job name `{}` is not allowed", w.name.escape_debug()),
                    Some(JOB_NAME_HINT),
                ));
            }
            if !names.insert(w.name.clone()) {
                return Err(ctx.err(span, format!("two object jobs are named `{}`", w.name), None));
            }
            let from = location(&ctx, &providers, &w.from, "from", false)?;
            let to = location(&ctx, &providers, &w.to, "to", false)?;
            let (src, dst) = (&providers[&from.provider], &providers[&to.provider]);
            if src.overlaps(&from.prefix, dst, &to.prefix) {
                return Err(ctx.err(
                    w.to.span(),
                    format!(
                        "job `{}`: destination `{}` overlaps source `{}`: it would copy onto itself",
                        w.name,
                        w.to.get_ref(),
                        w.from.get_ref()
                    ),
                    Some("use a different bucket, or prefixes that do not contain one another"),
                ));
            }
            for (key, globs) in [("include", &w.include), ("exclude", &w.exclude)] {
                for g in globs {
                    compile_glob(g).map_err(|e| {
                        ctx.err(span.clone(), format!("job `{}`: `{key}` glob `{g}`: {e}", w.name), None)
                    })?;
                }
            }
            let max_delete = match &w.max_delete {
                None => MaxDelete::default(),
                Some(v) => {
                    let parsed = match v.get_ref() {
                        toml::Value::Integer(n) if *n >= 0 => Some(MaxDelete::Count(*n as u64)),
                        toml::Value::String(t) => t
                            .trim()
                            .strip_suffix('%')
                            .and_then(|p| p.trim().parse::<u64>().ok())
                            .filter(|p| *p <= 100)
                            .map(MaxDelete::Percent),
                        _ => None,
                    };
                    parsed.ok_or_else(|| {
                        ctx.err(
                            v.span(),
                            format!("job `{}`: `max-delete` must be a count or a percentage", w.name),
                            Some("for example max-delete = 100 or max-delete = \"10%\" (the default is \"50%\")"),
                        )
                    })?
                }
            };
            // A mirror deletes what its source lacks: another job writing under the same
            // destination prefix would see its copies deleted on every run. A mirror is
            // compared with every earlier job, any other job with the earlier mirrors only.
            let overlapping = |j: &&ObjectJob| providers[&j.to.provider].overlaps(&j.to.prefix, dst, &to.prefix);
            let clash = if w.delete_extraneous {
                objects.iter().find(overlapping)
            } else {
                mirrors.iter().map(|&i| &objects[i]).find(overlapping)
            };
            if let Some(other) = clash {
                return Err(ctx.err(
                    w.to.span(),
                    format!(
                        "job `{}`: destination `{}` overlaps job `{}`'s destination `{}`, and one of \
                         them deletes extraneous objects: each would delete the other's copies",
                        w.name,
                        w.to.get_ref(),
                        other.name,
                        other.to
                    ),
                    Some("give each mirrored job a destination prefix of its own"),
                ));
            }
            let (line, _) = ctx.line_col(span.start);
            if w.delete_extraneous {
                mirrors.push(objects.len());
            }
            objects.push(ObjectJob {
                name: w.name,
                from,
                to,
                include: w.include,
                exclude: w.exclude,
                verify: w.verify,
                delete_extraneous: w.delete_extraneous,
                max_delete,
                allow_empty_source: w.allow_empty_source,
                line,
                shard: None,
            });
        }

        let mut databases: Vec<DatabaseJob> = Vec::new();
        // Where each database job's keys land, to refuse two jobs that could write one key.
        let mut key_spaces: Vec<String> = Vec::new();
        for spanned in wire.databases {
            let span = spanned.span();
            let w = spanned.into_inner();
            if w.name.is_empty() {
                return Err(ctx.err(span, "database job has an empty `name`".into(), None));
            }
            if !is_job_name(&w.name) {
                return Err(ctx.err(
                    span,
                    format!("database job name `{}` is not allowed", w.name.escape_debug()),
                    Some(JOB_NAME_HINT),
                ));
            }
            for (key, var) in [("url-env", &w.url_env), ("restore-to-env", &w.restore_to_env)] {
                if let Some((v, why)) = var.as_deref().and_then(|v| Some((v, env_name_problem(v)?))) {
                    return Err(ctx.err(
                        span,
                        format!(
                            "database `{}`: `{key}` must name an environment variable, got `{}`: {why}",
                            w.name,
                            crate::redact::mask(v)
                        ),
                        Some("put the connection URL in an environment variable and name it here"),
                    ));
                }
            }
            if !names.insert(w.name.clone()) {
                return Err(ctx.err(span, format!("two jobs are named `{}`", w.name), None));
            }
            match (w.engine, &w.url_env, &w.path) {
                (DbEngine::Sqlite, _, None) => {
                    return Err(ctx.err(span, format!("database `{}`: sqlite needs `path`", w.name), None))
                }
                (DbEngine::Postgres | DbEngine::Mysql, None, _) => return Err(ctx.err(
                    span,
                    format!(
                        "database `{}`: `url-env` is required for engine `{}`",
                        w.name,
                        engine_name(w.engine)
                    ),
                    Some("name an environment variable that holds the connection URL, e.g. url-env = \"DATABASE_URL\""),
                )),
                _ => {}
            }
            let mut to = location(&ctx, &providers, &w.to, "to", true)?;
            if to.prefix.is_empty() || to.prefix.ends_with('/') {
                to.prefix.push_str("{name}-{timestamp}.dump");
            }
            let space = db_key_space(&providers[&to.provider], &to.prefix.replace("{name}", &w.name));
            if let Some(i) = key_spaces
                .iter()
                .position(|other| crate::template::keys_can_collide(other, &space))
            {
                let other = &databases[i];
                return Err(ctx.err(
                    w.to.span(),
                    format!(
                        "database `{}`: `to` = `{}` can write the same keys as database `{}` (line {}): \
                         each job's retention and restore would take the other's dumps for its own",
                        w.name,
                        w.to.get_ref(),
                        other.name,
                        other.line
                    ),
                    Some("give each job keys of its own, e.g. to = \"backup:db/{name}/{timestamp}.dump\""),
                ));
            }
            key_spaces.push(space);
            let (line, _) = ctx.line_col(span.start);
            databases.push(DatabaseJob {
                name: w.name,
                engine: w.engine,
                url_env: w.url_env,
                path: w.path.map(|p| base_dir.join(p)),
                to,
                compression: w.compression,
                restore_to_env: w.restore_to_env,
                restore_to_path: w.restore_to_path.map(|p| base_dir.join(p)),
                restore_replace: w.restore_replace,
                keep: w.keep,
                line,
            });
        }

        Ok(Plan {
            file: file.to_path_buf(),
            base_dir,
            settings,
            providers,
            objects,
            databases,
        })
    }
}

fn settings(ctx: &Ctx, base_dir: &Path, w: SettingsWire) -> Result<Settings, PlanError> {
    let size = |v: &Option<Spanned<String>>, key: &str, default: u64| -> Result<u64, PlanError> {
        match v {
            None => Ok(default),
            Some(s) => parse_size(s.get_ref()).map_err(|e| {
                ctx.err(
                    s.span(),
                    format!("`settings.{key}`: {e}"),
                    Some("write a size such as \"16MiB\""),
                )
            }),
        }
    };
    let part_size = size(&w.part_size, "part-size", DEFAULT_PART_SIZE)?;
    let memory_limit = size(&w.memory_limit, "memory-limit", DEFAULT_MEMORY_LIMIT)?;
    let bandwidth = match &w.bandwidth {
        None => None,
        Some(b) => Some(
            parse_rate(b.get_ref())
                .and_then(|v| {
                    if v >= 1.0 {
                        Ok(v)
                    } else {
                        Err("must be at least 1 byte per second".into())
                    }
                })
                .map_err(|e| {
                    ctx.err(
                        b.span(),
                        format!("`settings.bandwidth`: {e}"),
                        Some("write a rate such as \"50MiB/s\" or \"400Mbit/s\""),
                    )
                })?,
        ),
    };
    let stem = ctx
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plan".into());
    let state_dir = match w.state_dir {
        Some(d) => base_dir.join(d),
        None => base_dir.join(".ferry").join(stem),
    };
    Ok(Settings {
        concurrency: w.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1),
        part_size,
        memory_limit,
        state_dir,
        server_side_copy: w.server_side_copy.unwrap_or(true),
        bandwidth,
    })
}

fn provider(
    ctx: &Ctx,
    base_dir: &Path,
    name: &str,
    span: std::ops::Range<usize>,
    w: ProviderWire,
) -> Result<ProviderSpec, PlanError> {
    let err = |msg: String, hint: Option<&str>| ctx.err(span.clone(), format!("provider `{name}`: {msg}"), hint);
    let preset = match &w.preset {
        None => None,
        Some(p) => Some(catalog::find(p).ok_or_else(|| {
            err(
                format!("unknown preset `{p}`"),
                Some(&format!("known presets: {}", catalog::names().join(", "))),
            )
        })?),
    };
    let kind = match (w.kind, preset) {
        (Some(k), Some(p)) if k != p.kind => {
            return Err(err(
                format!("`type = \"{k}\"` contradicts preset `{}` (type `{}`)", p.name, p.kind),
                None,
            ))
        }
        (Some(k), _) => k,
        (None, Some(p)) => p.kind,
        (None, None) => {
            return Err(err(
                "missing `type`".into(),
                Some("type = \"s3\" | \"gcs\" | \"azure\" | \"local\" | \"memory\""),
            ))
        }
    };
    // Which keys apply to which type: a key set for the wrong type is a mistake worth reporting.
    let set: Vec<(&str, bool)> = vec![
        ("root", w.root.is_some()),
        ("bucket", w.bucket.is_some()),
        ("region", w.region.is_some()),
        ("endpoint", w.endpoint.is_some()),
        ("path-style", w.path_style.is_some()),
        ("allow-http", w.allow_http.is_some()),
        ("access-key-id-env", w.access_key_id_env.is_some()),
        ("secret-access-key-env", w.secret_access_key_env.is_some()),
        ("session-token-env", w.session_token_env.is_some()),
        ("account", w.account.is_some()),
        ("container", w.container.is_some()),
        ("access-key-env", w.access_key_env.is_some()),
        ("service-account-env", w.service_account_env.is_some()),
        ("anonymous", w.anonymous.is_some()),
    ];
    let allowed: &[&str] = match kind {
        StoreType::Local => &["root"],
        StoreType::Memory => &[],
        StoreType::S3 => &[
            "bucket",
            "region",
            "endpoint",
            "path-style",
            "allow-http",
            "access-key-id-env",
            "secret-access-key-env",
            "session-token-env",
            "anonymous",
        ],
        StoreType::Gcs => &["bucket", "endpoint", "allow-http", "service-account-env", "anonymous"],
        StoreType::Azure => &[
            "account",
            "container",
            "endpoint",
            "allow-http",
            "access-key-env",
            "anonymous",
        ],
    };
    for (key, present) in &set {
        if *present && !allowed.contains(key) {
            return Err(err(
                format!("key `{key}` does not apply to type `{kind}`"),
                Some(&format!(
                    "keys for `{kind}`: {}",
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                )),
            ));
        }
    }
    let required: &[(&str, bool)] = match kind {
        StoreType::Local => &[("root", w.root.is_some())],
        StoreType::S3 | StoreType::Gcs => &[("bucket", w.bucket.is_some())],
        StoreType::Azure => &[("container", w.container.is_some())],
        StoreType::Memory => &[],
    };
    for (key, present) in required {
        if !present {
            return Err(err(format!("missing `{key}` (required for type `{kind}`)"), None));
        }
    }
    let region = w.region.or_else(|| preset.and_then(|p| p.default_region.clone()));
    let endpoint = match (w.endpoint, preset) {
        (Some(e), _) => {
            // Credentials in the endpoint would be sent to the server as the URL's user info and
            // printed wherever the endpoint is; and the plan is no place for a secret. The user
            // info is not echoed back, only its length.
            let span = e.span();
            let e = e.into_inner();
            if let Some(info) = endpoint_userinfo(&e) {
                return Err(ctx.err(
                    span,
                    format!(
                        "provider `{name}`: `endpoint` carries credentials (user info {} before `@`); refusing a secret in the plan",
                        crate::redact::mask(info)
                    ),
                    Some("remove `user:password@` from the endpoint; name the variables that hold the keys with `access-key-id-env` and `secret-access-key-env`"),
                ));
            }
            Some(e)
        }
        (None, Some(p)) => p.endpoint_for(region.as_deref()).map_err(|e| err(e, None))?,
        (None, None) => None,
    };
    let allow_http = w.allow_http.unwrap_or(false);
    if let Some(e) = &endpoint {
        if e.starts_with("http://") && !allow_http {
            return Err(err(
                format!("endpoint `{e}` is plain http"),
                Some("set `allow-http = true` if that is intended (test servers, private networks)"),
            ));
        }
        if !e.starts_with("http://") && !e.starts_with("https://") {
            return Err(err(format!("endpoint `{e}` must start with http:// or https://"), None));
        }
    }
    for (key, var) in [
        ("access-key-id-env", &w.access_key_id_env),
        ("secret-access-key-env", &w.secret_access_key_env),
        ("session-token-env", &w.session_token_env),
        ("access-key-env", &w.access_key_env),
        ("service-account-env", &w.service_account_env),
    ] {
        if let Some(v) = var {
            if let Some(why) = env_name_problem(v) {
                return Err(err(
                    format!(
                        "`{key}` must name an environment variable, got `{}`: {why}",
                        crate::redact::mask(v)
                    ),
                    Some("secrets never go in a plan: put the value in an environment variable and name it here"),
                ));
            }
        }
    }
    if w.access_key_id_env.is_some() != w.secret_access_key_env.is_some() {
        return Err(err(
            "`access-key-id-env` and `secret-access-key-env` go together".into(),
            None,
        ));
    }
    let (line, _) = ctx.line_col(span.start);
    Ok(ProviderSpec {
        name: name.to_string(),
        kind,
        preset,
        root: w.root.map(|r| base_dir.join(r)),
        bucket: w.bucket,
        region,
        endpoint,
        path_style: w.path_style.or(preset.map(|p| p.path_style)).unwrap_or(false),
        allow_http,
        access_key_id_env: w.access_key_id_env,
        secret_access_key_env: w.secret_access_key_env,
        session_token_env: w.session_token_env,
        account: w.account,
        container: w.container,
        access_key_env: w.access_key_env,
        service_account_env: w.service_account_env,
        anonymous: w.anonymous.unwrap_or(false),
        line,
    })
}

/// `template`: the value is a database job's key template (`{name}`, `{timestamp}`), not a folder.
fn location(
    ctx: &Ctx,
    providers: &BTreeMap<String, ProviderSpec>,
    value: &Spanned<String>,
    key: &str,
    template: bool,
) -> Result<Location, PlanError> {
    let v = value.get_ref();
    let Some((provider, prefix)) = v.split_once(':') else {
        return Err(ctx.err(
            value.span(),
            format!("`{key}` = `{v}` is not `provider:prefix`"),
            Some("for example \"old:uploads/\" or \"new:\" for the whole bucket"),
        ));
    };
    if !providers.contains_key(provider) {
        let known: Vec<&str> = providers.keys().map(String::as_str).collect();
        return Err(ctx.err(
            value.span(),
            format!("`{key}` names provider `{provider}`, which is not defined"),
            Some(&format!(
                "defined providers: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )),
        ));
    }
    let templated = template && prefix.contains('{');
    if !templated && (!(prefix.is_empty() || prefix.ends_with('/')) || prefix.starts_with('/')) {
        return Err(ctx.err(
            value.span(),
            format!("`{key}` prefix `{prefix}` must be empty or end with `/`, and not start with `/`"),
            Some("prefixes are folders: \"uploads/\"; to copy some keys of a folder, use include/exclude"),
        ));
    }
    // Every store lists a prefix exactly as written; one that no key can start with (`a//`,
    // `./`, `../`, a control character) is a typo, not a folder.
    if !templated && !prefix.is_empty() {
        if let Err(e) = crate::keys::prefix_path(prefix) {
            return Err(ctx.err(
                value.span(),
                format!(
                    "`{key}` prefix `{}` is not a folder a key can be in: {e}",
                    prefix.escape_debug()
                ),
                Some("write the folder as keys spell it, e.g. \"photos/2020/\", without empty, `.` or `..` segments"),
            ));
        }
    }
    Ok(Location {
        provider: provider.to_string(),
        prefix: prefix.to_string(),
    })
}

fn engine_name(e: DbEngine) -> &'static str {
    match e {
        DbEngine::Postgres => "postgres",
        DbEngine::Mysql => "mysql",
        DbEngine::Sqlite => "sqlite",
    }
}

/// Whether a value can be the name of an environment variable, and does not look like a
/// credential pasted in its place.
pub fn is_env_name(v: &str) -> bool {
    env_name_problem(v).is_none()
}

/// Why a `*-env` value cannot be taken as a variable name, or `None` when it can. Besides the
/// syntax (`[A-Za-z_][A-Za-z0-9_]*`), a value is judged by its shape, because a secret pasted in
/// place of a name is often letters and digits too (issue 14): real names are words joined by
/// `_` (`AWS_SECRET_ACCESS_KEY`, `DATABASE_URL_2`, `OldSecret`), while keys, tokens and passwords
/// are long runs that switch between letters and digits, or between cases, at random.
pub fn env_name_problem(v: &str) -> Option<&'static str> {
    const SECRET: &str = "it looks like a secret, not a variable name";
    if v.is_empty() {
        return Some("it is empty");
    }
    let well_formed =
        !v.starts_with(|c: char| c.is_ascii_digit()) && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        // `/`, `+`, `=`, `:`, `@`, `-`, `.`: base64, URLs, passwords; never a portable name.
        return Some("a variable name is letters, digits and `_`, and does not start with a digit");
    }
    let aws_key_id = (v.starts_with("AKIA") || v.starts_with("ASIA"))
        && v.len() >= 16
        && v.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if aws_key_id {
        return Some("it looks like an AWS access key id");
    }
    for word in v.split('_') {
        let n = word.len();
        let letters = word.chars().filter(char::is_ascii_alphabetic).count();
        let digits = n - letters;
        let lower = word.chars().filter(char::is_ascii_lowercase).count();
        let upper = letters - lower;
        let pairs = || word.as_bytes().windows(2);
        // Switches between a letter and a digit: `KEY2` has one, `a9f3c2` has five.
        let digit_switches = pairs()
            .filter(|p| p[0].is_ascii_digit() != p[1].is_ascii_digit())
            .count();
        // Switches of case between letters: `OldSecret` has two, `wJalrXUtnF` six.
        let case_switches = pairs()
            .filter(|p| p[0].is_ascii_alphabetic() && p[1].is_ascii_alphabetic())
            .filter(|p| p[0].is_ascii_lowercase() != p[1].is_ascii_lowercase())
            .count();
        let hex = word.chars().all(|c| c.is_ascii_hexdigit());
        if n >= 16 && hex && digits > 0 && letters > 0 {
            return Some(SECRET);
        }
        if n >= 12 && digits > 0 && letters > 0 && digit_switches >= 3 {
            return Some(SECRET);
        }
        if n >= 12 && lower > 0 && upper > 0 && case_switches * 4 >= n {
            return Some(SECRET);
        }
        if n >= 20 && lower > 0 && upper > 0 && digits > 0 {
            return Some(SECRET);
        }
        if n >= 24 && entropy_bits(word) >= 4.2 {
            return Some(SECRET);
        }
    }
    None
}

/// Shannon entropy of a word's characters, in bits per character: about 3.2 for an English
/// word, above 4.5 for a random base62 string of the same length.
fn entropy_bits(word: &str) -> f64 {
    let mut counts = [0u32; 128];
    for b in word.bytes() {
        counts[(b & 127) as usize] += 1;
    }
    let n = word.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The user info (`user:password` or `user`) of an `http(s)://user:password@host` endpoint.
fn endpoint_userinfo(endpoint: &str) -> Option<&str> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| &authority[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Plan, PlanError> {
        Plan::from_str(Path::new("plan.toml"), text)
    }

    const OK: &str = r#"
[providers.src]
type = "local"
root = "in"

[providers.dst]
type = "memory"

[[objects]]
name = "all"
from = "src:"
to = "dst:copy/"
"#;

    #[test]
    fn valid_plan_parses() {
        let p = parse(OK).unwrap();
        assert_eq!(p.objects[0].to.prefix, "copy/");
        assert_eq!(p.providers["src"].root.as_deref(), Some(Path::new("./in")));
        assert_eq!(p.settings.state_dir, Path::new("./.ferry/plan"));
    }

    #[test]
    fn misspelled_key_names_line_and_key() {
        let text = OK.replace("root = \"in\"", "roots = \"in\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("plan.toml:4:"), "{e}");
        assert!(e.contains("unknown field `roots`"), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let text = OK.replace("name = \"all\"", "name = 3");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("plan.toml:10:"), "{e}");
    }

    #[test]
    fn undefined_provider_is_named() {
        let text = OK.replace("to = \"dst:copy/\"", "to = \"nope:copy/\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("provider `nope`, which is not defined"), "{e}");
        assert!(e.contains("defined providers: dst, src"), "{e}");
    }

    /// Issue 12: prefixes list exactly as written; one no key can be in is refused at its line.
    #[test]
    fn prefixes_with_empty_or_dot_segments_refused() {
        for bad in ["a//", "a/./", "../", "x/../y/", "./"] {
            let text = OK.replace("to = \"dst:copy/\"", &format!("to = \"dst:{bad}\""));
            let e = parse(&text).unwrap_err().to_string();
            assert!(
                e.contains("is not a folder a key can be in") && e.starts_with("plan.toml:"),
                "{bad}: {e}"
            );
        }
        for good in ["C#/", "photos [2020]/", "100%/", "~old/", "a b/{c}/"] {
            let text = OK.replace("to = \"dst:copy/\"", &format!("to = \"dst:{good}\""));
            assert_eq!(parse(&text).unwrap().objects[0].to.prefix, good);
        }
    }

    #[test]
    fn overlapping_source_and_destination_refused() {
        let text = OK.replace("to = \"dst:copy/\"", "to = \"src:copy/\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("overlaps"), "{e}");
    }

    /// Issue 14: a root is resolved as the kernel will resolve it once `create_dir_all` made
    /// it, not as spelled: `missing/..` is the folder holding `missing`, and a `..` after a
    /// link leaves the link's target.
    #[test]
    fn roots_resolve_through_missing_folders_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("src/deep")).unwrap();
        std::os::unix::fs::symlink(base.join("src/deep"), base.join("link")).unwrap();
        assert_eq!(resolve(&base.join("missing/../src/a-copy")), base.join("src/a-copy"));
        assert_eq!(resolve(&base.join("a/b/../../src/./x")), base.join("src/x"));
        assert_eq!(resolve(&base.join("link/new")), base.join("src/deep/new"));
        // The link's target is src/deep, so its `..` is src, not `base`.
        assert_eq!(resolve(&base.join("link/../y")), base.join("src/y"));
        assert_eq!(resolve(&base.join("missing/../link/z")), base.join("src/deep/z"));
        assert_eq!(resolve(&base.join("src/../other")), base.join("other"));
    }

    #[test]
    fn endpoints_that_reach_one_address_are_one_server() {
        assert!(same_server(
            Some("http://127.0.0.1:5055"),
            Some("http://localhost:5055")
        ));
        assert!(same_server(Some("http://127.0.0.1"), Some("http://127.0.0.1:80")));
        assert!(!same_server(
            Some("http://127.0.0.1:5055"),
            Some("http://localhost:5056")
        ));
        assert!(!same_server(
            Some("http://127.0.0.1:5055"),
            Some("https://127.0.0.1:5055")
        ));
        assert!(!same_server(
            Some("http://127.0.0.1:5055"),
            Some("http://127.0.0.2:5055")
        ));
        assert!(!same_server(None, Some("http://127.0.0.1:5055")));
    }

    /// Issue 13: two database jobs that could write one key would delete and restore each
    /// other's dumps; refused at the second job's `to`, naming the first.
    #[test]
    fn database_jobs_that_can_write_one_key_refused() {
        let db = |name: &str, to: &str| {
            format!("\n[[databases]]\nname = \"{name}\"\nengine = \"sqlite\"\npath = \"x.db\"\nto = \"{to}\"\n")
        };
        let text = format!(
            "{OK}{}{}",
            db("a", "dst:db/{timestamp}.dump"),
            db("b", "dst:db/{timestamp}.dump")
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("plan.toml:24:6:"), "{e}");
        assert!(
            e.contains("database `b`") && e.contains("database `a` (line 14)"),
            "{e}"
        );
        let text = format!("{OK}{}{}", db("a", "dst:db/"), db("a-old", "dst:db/"));
        assert!(parse(&text).is_ok(), "`db/a-…` and `db/a-old-…` never meet");
    }

    #[test]
    fn key_for_wrong_type_refused() {
        let text = OK.replace("root = \"in\"", "root = \"in\"\nbucket = \"b\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("key `bucket` does not apply to type `local`"), "{e}");
    }

    #[test]
    fn literal_secret_in_env_key_is_refused_and_masked() {
        let text = r#"
[providers.s]
type = "s3"
bucket = "b"
access-key-id-env = "AKIA"
secret-access-key-env = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY"
"#;
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("must name an environment variable"), "{e}");
        assert!(!e.contains("wJalrXUtnFEMI"), "{e}");
    }

    /// Issue 14: a secret pasted into a `*-env` key is refused by its shape, whatever its
    /// alphabet, and real variable names still pass.
    #[test]
    fn pasted_secrets_are_told_from_variable_names() {
        for name in [
            "OLD_SECRET",
            "AWS_SECRET_ACCESS_KEY",
            "DATABASE_URL_2",
            "FERRY_TEST_SEAWEED_KEY",
            "S3_KEY",
            "azure_storage_key",
            "OldSecret",
            "databaseConnectionString",
            "SECRETKEY2024PRODUCTION",
            "GCP_SA_KEY_JSON_B64",
            "_PRIVATE",
            "PGPASSWORD",
            "AKIA",
        ] {
            assert_eq!(env_name_problem(name), None, "{name}");
        }
        for secret in [
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMIKMDENGbPxRfiCY",
            "Zq8vN3xKp1Lw4Rt7",
            "ghp_R7kLmQ2x9VbT4nWcZ8pY3sJ6hD1fA0eG5uKi",
            "9f86d081884c7d659a2feaa0c55ad015",
            "9F86D081884C7D659A2FEAA0C55AD015",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "xoxb_2151369723_4k9Qz7XwP1mRbT3v",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCY",
            "pw-S3cret-9f3Kd",
            "user:pass@host",
            "c2VjcmV0LXZhbHVl==",
            "1SECRET",
        ] {
            assert!(env_name_problem(secret).is_some(), "{secret}");
        }
        let text = r#"
[providers.s]
type = "s3"
bucket = "b"
access-key-id-env = "KEY_ID"
secret-access-key-env = "Hx72pQw9Zk3LmN8vRt5Y"
"#;
        let e = parse(text).unwrap_err().to_string();
        assert!(e.starts_with("plan.toml:2:"), "{e}");
        assert!(e.contains("`secret-access-key-env` must name an environment variable, got `<20 characters, hidden>`: it looks like a secret"), "{e}");
        assert!(!e.contains("Hx72pQw9"), "{e}");
    }

    /// Issue 14: credentials in an endpoint URL are refused at the `endpoint` key, unprinted.
    #[test]
    fn endpoint_with_user_info_is_refused_at_its_key() {
        let text = "[providers.s]\ntype = \"s3\"\nbucket = \"b\"\nallow-http = true\n\
                    endpoint = \"http://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@127.0.0.1:9000\"\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(
            e.starts_with("plan.toml:5:12: provider `s`: `endpoint` carries credentials"),
            "{e}"
        );
        assert!(
            !e.contains("AKIAIOSFODNN7EXAMPLE") && !e.contains("wJalrXUtnFEMI"),
            "{e}"
        );
        let ok = text.replace("AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@", "");
        assert!(parse(&ok).is_ok());
        assert_eq!(endpoint_userinfo("https://u@h/p@q"), Some("u"));
        assert_eq!(endpoint_userinfo("https://h:9000/a@b"), None);
    }
}
