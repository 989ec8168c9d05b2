//! The migration plan: the TOML file a user writes, parsed and validated into typed values.
//!
//! Parsing happens in two steps, as in the style guide: serde reads *wire* structs that reject
//! unknown keys and wrong types (toml reports the line and column), then [`Plan::from_str`]
//! validates across fields (a job naming an undefined provider, a key that does not apply to a
//! provider's type, a source that overlaps its destination) into the real types, again naming the
//! line. This module owns no I/O beyond reading the plan file and never reads a secret: `*-env`
//! keys only name environment variables, resolved later by `provider`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::Preset;
pub use crate::catalog::StoreType;
use crate::filter::{Filter, Shard};
pub use accounts::AccountMap;

pub mod accounts;
mod dbopts;
mod encrypt;
pub mod oneliner;
mod overlap;
mod providers;
mod secrets;
pub mod url;
mod validate;
mod wire;

pub(crate) use overlap::normalize_endpoint;
pub use secrets::{env_name_problem, is_env_name};
use validate::Ctx;
use wire::PlanWire;

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

/// A plan that cannot be read or is wrong: fix it (exit 2).
impl From<PlanError> for crate::error::Error {
    fn from(e: PlanError) -> Self {
        crate::error::Error::new(crate::error::Kind::Usage, e)
    }
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
    /// Providers (of expanded account jobs, `run::accounts`) whose bucket does not exist yet:
    /// a run creates it, a dry run prices it as empty. Empty in a plan as read.
    pub buckets_to_create: BTreeSet<String>,
}

/// Engine settings from `[settings]`, before command-line overrides.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Objects in flight; None: by the stores (see [`DEFAULT_CONCURRENCY_REMOTE`]).
    pub concurrency: Option<usize>,
    pub part_size: u64,
    pub memory_limit: u64,
    pub state_dir: PathBuf,
    /// Copy on the server between buckets of one S3 service (default true).
    pub server_side_copy: bool,
    /// Cap on bytes per second read from sources (`bandwidth = "50MiB/s"`); none: no cap.
    pub bandwidth: Option<f64>,
    /// `run` writes a Prometheus textfile here (`metrics-file`); relative to the plan's folder.
    pub metrics_file: Option<PathBuf>,
}

/// A named store from `[providers.NAME]`. Holds names of environment variables, never secrets.
/// What every type has is here; what one type has is in its arm of [`ProviderKind`], so a
/// validated plan carries, in its types, which keys each type has set (a bucket for S3 and GCS,
/// a container for Azure, a root for `local`).
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub name: String,
    pub preset: Option<&'static Preset>,
    /// Line of the `[providers.NAME]` table, for later errors.
    pub line: usize,
    pub kind: ProviderKind,
    /// Client-side encryption of what ferry writes there (`encrypt-*`, `decrypt-*`); any type.
    pub encrypt: Option<EncryptSpec>,
}

/// How what ferry writes to a provider is encrypted with age, and where the key that reads it
/// back is: names of files and variables, never a key (`crypt` reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptSpec {
    pub to: EncryptTo,
    /// `decrypt-identity-file`, joined to the plan's folder: age identities (`AGE-SECRET-KEY-1…`).
    pub identity_file: Option<PathBuf>,
    /// `decrypt-identity-env`: a variable holding age identities.
    pub identity_env: Option<String>,
}

/// Whom a provider's objects are encrypted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncryptTo {
    /// X25519 recipients (`age1…`), one a line, from a file (joined to the plan's folder) and/or
    /// a variable.
    Recipients { file: Option<PathBuf>, env: Option<String> },
    /// A passphrase in a variable (age's scrypt recipient), which also decrypts.
    Passphrase { env: String },
}

/// One arm per store type, holding the keys that type takes (`plan/providers` refuses the
/// others).
#[derive(Debug, Clone)]
pub enum ProviderKind {
    Local(LocalSpec),
    Memory,
    S3(S3Spec),
    Azure(AzureSpec),
    Gcs(GcsSpec),
}

/// `type = "local"`: a directory, relative paths already joined to the plan's directory.
#[derive(Debug, Clone)]
pub struct LocalSpec {
    pub root: PathBuf,
}

/// `type = "s3"` (AWS and every S3-compatible service).
#[derive(Debug, Clone)]
pub struct S3Spec {
    pub bucket: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub allow_http: bool,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
    pub anonymous: bool,
    /// The AWS profile and role to take credentials from (the SDK's chain otherwise).
    pub aws: AwsAuth,
    /// How every object ferry writes there is stored (encryption, storage class).
    pub s3_write: S3Write,
    /// A variable holding the base64 SSE-C key the source's objects were written with: sent on
    /// every read. Read-only: a provider with it cannot be a destination.
    pub sse_c_key_env: Option<String>,
}

/// `type = "azure"` (Azure Blob Storage, Azurite).
#[derive(Debug, Clone)]
pub struct AzureSpec {
    pub account: Option<String>,
    pub container: String,
    pub endpoint: Option<String>,
    pub allow_http: bool,
    pub access_key_env: Option<String>,
    /// A variable holding a SAS token (the query string, with or without `?`).
    pub sas_token_env: Option<String>,
    /// A variable holding a connection string (`AccountName=…;AccountKey=…;BlobEndpoint=…`).
    pub connection_string_env: Option<String>,
    /// Sign with the Azure CLI's login (`az account get-access-token`).
    pub use_azure_cli: bool,
    pub anonymous: bool,
    /// The access tier every blob ferry writes gets: one of [`AZURE_TIERS`].
    pub storage_class: Option<String>,
}

/// `type = "gcs"` (Google Cloud Storage and its emulators).
#[derive(Debug, Clone)]
pub struct GcsSpec {
    pub bucket: String,
    /// The project whose buckets a whole-account provider (`bucket = "*"`) lists and creates.
    pub project: Option<String>,
    pub endpoint: Option<String>,
    pub allow_http: bool,
    pub service_account_env: Option<String>,
    pub anonymous: bool,
    /// The storage class every object ferry writes gets: one of [`GCS_CLASSES`].
    pub storage_class: Option<String>,
}

/// The keys the three remote types share (`endpoint`, `allow-http`, `anonymous`, and the bucket
/// of S3 and GCS) are read here, not duplicated into a struct of their own: each type's spec
/// stays exactly the keys that type accepts, and code that only asks "is there an endpoint?"
/// (identity, pricing, error messages) needs no `match` of its own.
impl ProviderSpec {
    /// The store type, without its keys.
    pub fn store_type(&self) -> StoreType {
        match self.kind {
            ProviderKind::Local(_) => StoreType::Local,
            ProviderKind::Memory => StoreType::Memory,
            ProviderKind::S3(_) => StoreType::S3,
            ProviderKind::Azure(_) => StoreType::Azure,
            ProviderKind::Gcs(_) => StoreType::Gcs,
        }
    }

    /// The endpoint in the plan (given, or the preset's); none for `local` and `memory`.
    pub fn endpoint(&self) -> Option<&str> {
        match &self.kind {
            ProviderKind::S3(s) => s.endpoint.as_deref(),
            ProviderKind::Azure(a) => a.endpoint.as_deref(),
            ProviderKind::Gcs(g) => g.endpoint.as_deref(),
            ProviderKind::Local(_) | ProviderKind::Memory => None,
        }
    }

    /// `allow-http`: plain http allowed to the endpoint.
    pub fn allow_http(&self) -> bool {
        match &self.kind {
            ProviderKind::S3(s) => s.allow_http,
            ProviderKind::Azure(a) => a.allow_http,
            ProviderKind::Gcs(g) => g.allow_http,
            ProviderKind::Local(_) | ProviderKind::Memory => false,
        }
    }

    /// The region of an S3 provider (given, or the preset's default; only S3 presets have one).
    pub fn region(&self) -> Option<&str> {
        match &self.kind {
            ProviderKind::S3(s) => s.region.as_deref(),
            _ => None,
        }
    }

    /// The bucket of an S3 or GCS provider (an Azure container is not called one).
    pub fn bucket(&self) -> Option<&str> {
        match &self.kind {
            ProviderKind::S3(s) => Some(&s.bucket),
            ProviderKind::Gcs(g) => Some(&g.bucket),
            _ => None,
        }
    }

    /// The root of a `local` provider.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.kind {
            ProviderKind::Local(l) => Some(&l.root),
            _ => None,
        }
    }
}

/// The plan keys that steer the AWS SDK's credential chain for an S3 provider: `profile`,
/// `role-arn`, `external-id`, `role-session-name`. None of them is a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsAuth {
    pub profile: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub role_session_name: Option<String>,
}

/// The plan keys that say how an S3 provider's objects are written, on every path ferry writes
/// them (single PUTs, multipart uploads, server-side copies, dumps, manifests): `sse`,
/// `sse-kms-key-id`, `storage-class`. None set: the bucket's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Write {
    pub sse: Option<Sse>,
    /// Only with [`Sse::Kms`]; none: the account's AWS-managed key (`aws/s3`).
    pub kms_key_id: Option<String>,
    /// One of [`STORAGE_CLASSES`].
    pub storage_class: Option<String>,
}

/// Server-side encryption requested for the objects ferry writes (`x-amz-server-side-encryption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sse {
    /// `aws:kms`: SSE-KMS. Its objects' ETags are not MD5s.
    Kms,
    /// `AES256`: SSE-S3. Its objects keep MD5 ETags.
    Aes256,
}

impl Sse {
    pub const NAMES: [&'static str; 2] = ["aws:kms", "AES256"];

    /// The header value, as S3 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Sse::Kms => "aws:kms",
            Sse::Aes256 => "AES256",
        }
    }
}

/// The storage classes a PutObject, CreateMultipartUpload or CopyObject accepts
/// (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html>, `x-amz-storage-class`);
/// the FSx classes are left out: they name FSx access points, not buckets.
pub const STORAGE_CLASSES: [&str; 11] = [
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
    "EXPRESS_ONEZONE",
    "OUTPOSTS",
    "SNOW",
];

/// Azure's access tiers, as Put Blob's `x-ms-access-tier` takes them
/// (<https://learn.microsoft.com/en-us/rest/api/storageservices/put-blob>).
pub const AZURE_TIERS: [&str; 4] = ["Hot", "Cool", "Cold", "Archive"];

/// GCS's storage classes (<https://cloud.google.com/storage/docs/storage-classes>).
pub const GCS_CLASSES: [&str; 4] = ["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"];

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
    /// Where objects a run would overwrite or delete at the destination are kept first
    /// (`keep-replaced = "history/{date}/"`, a prefix of the destination provider).
    pub keep_replaced: Option<String>,
    /// History folders older than this many days are deleted at the end of a run.
    pub keep_replaced_days: Option<u64>,
    /// A job from a whole account (`bucket = "*"`): how its buckets are chosen and named.
    /// `run::accounts` expands it into one job per bucket before anything runs.
    pub account: Option<AccountMap>,
}

/// Where ferry keeps manifests at a destination (`<store root>/.ferry/manifests/<job>.jsonl`).
/// Source keys under it are copied like any others (issue 14), except one that would land on
/// the job's own manifest; destination keys under it are never extraneous (see
/// `pairing::paired_listings`).
pub const MANIFEST_PREFIX: &str = ".ferry/manifests/";

/// The placeholder `keep-replaced` holds for the run's date (`history/{date}/`).
pub const HISTORY_DATE: &str = "{date}";

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

    /// The folder under which the job keeps its `keep-replaced` history (the part before
    /// `{date}`): the destination keys under it are not the job's (`sync::history`).
    pub fn history_root(&self) -> Option<&str> {
        self.keep_replaced.as_deref().and_then(|t| t.split(HISTORY_DATE).next())
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
    /// Which older dumps survive each dump (`keep`, `keep-daily`, `keep-weekly`, `keep-monthly`).
    pub retention: Retention,
    /// `jobs = N`: PostgreSQL dumps and restores with N parallel workers, as a directory-format
    /// dump (`pg_dump -Fd -j N`) stored one object a file under the dump's key; 1: one stream.
    pub jobs: u32,
    /// `globals = true`: the server's roles (PostgreSQL, `pg_dumpall --globals-only`) or accounts
    /// and grants (MariaDB/MySQL) are dumped beside the dump (`KEY.globals.sql`) and restored
    /// before the database.
    pub globals: bool,
    /// `globals-passwords = true`: the globals keep the roles' password hashes.
    pub globals_passwords: bool,
    pub line: usize,
}

/// A database job's retention rules, as in restic's `forget`: each rule keeps dumps on its own,
/// and a dump kept by any rule stays. `None`: the rule is not set. The selection itself is in
/// `dump/retention`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// `keep = N`: the newest N dumps.
    pub last: Option<usize>,
    /// `keep-daily = N`: the newest dump of each of the newest N days (UTC) that have one.
    pub daily: Option<usize>,
    /// `keep-weekly = N`: likewise per ISO 8601 week (Monday to Sunday, UTC).
    pub weekly: Option<usize>,
    /// `keep-monthly = N`: likewise per calendar month (UTC).
    pub monthly: Option<usize>,
}

impl Retention {
    /// Whether any rule is set: without one, a dump deletes nothing.
    pub fn is_set(&self) -> bool {
        self.last.is_some() || self.by_calendar()
    }

    /// Whether a calendar rule is set: those need `{timestamp}` in the key to date a dump.
    pub fn by_calendar(&self) -> bool {
        self.daily.is_some() || self.weekly.is_some() || self.monthly.is_some()
    }
}

/// Default number of objects in flight between two local folders: a disk is bound by seeks
/// and bandwidth, not by round trips.
pub const DEFAULT_CONCURRENCY_LOCAL: usize = 16;
/// Default number of objects in flight when either side is a remote store: each small object
/// costs two round trips (a GET and a PUT), so 16 in flight capped a copy at 16 / (2 x RTT)
/// objects a second. Measured (docs/benchmarks.md): 20,000 objects of 4 KiB S3 -> S3 on
/// 127.0.0.1 took 22.1 s at 16 and 19.1 s at 64; 500 through an 80 ms round trip went from 75
/// to 178 objects/s. Large objects stay bounded by the memory budget, whatever this is.
pub const DEFAULT_CONCURRENCY_REMOTE: usize = 64;
/// How far a remote copy's objects in flight may climb while throughput grows (`sync::adaptive`)
/// unless `concurrency` sets another ceiling: 2 x 80 ms round trips at 256 in flight allow 1,600
/// small objects a second, above what one S3 server here answers.
pub const MAX_CONCURRENCY_REMOTE: usize = 256;
/// Default multipart part size: large enough that per-part overhead is small, small enough that
/// `concurrency x part size` stays modest. Raised per object when 10,000 parts would not do.
pub const DEFAULT_PART_SIZE: u64 = 16 * 1024 * 1024;
/// Default cap on bytes buffered in memory across all transfers.
/// 128 MiB is eight 16 MiB parts in flight across all objects: enough to keep a fast link busy
/// (measured against rclone in docs/benchmarks.md), small enough for a CronJob pod.
pub const DEFAULT_MEMORY_LIMIT: u64 = 128 * 1024 * 1024;

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

        let settings = validate::settings(&ctx, &base_dir, wire.settings)?;

        let mut providers = BTreeMap::new();
        for (name, spanned) in wire.providers {
            let span = spanned.span();
            let spec = providers::provider(&ctx, &base_dir, &name, span, spanned.into_inner())?;
            providers.insert(name, spec);
        }

        // Job names taken, by object and database jobs alike.
        let mut names: HashSet<String> = HashSet::new();
        let objects = validate::object_jobs(&ctx, &providers, wire.objects, &mut names)?;
        let databases = validate::database_jobs(&ctx, &base_dir, &providers, wire.databases, &mut names)?;

        Ok(Plan {
            file: file.to_path_buf(),
            base_dir,
            settings,
            providers,
            objects,
            databases,
            buckets_to_create: BTreeSet::new(),
        })
    }
}

/// What the tests of this module's parts parse.
#[cfg(test)]
mod testing {
    use std::path::Path;

    use super::{Plan, PlanError};

    pub(super) fn parse(text: &str) -> Result<Plan, PlanError> {
        Plan::from_str(Path::new("plan.toml"), text)
    }

    pub(super) const OK: &str = r#"
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
}
