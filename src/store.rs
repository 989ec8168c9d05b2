//! Stores: a plan's `[providers.NAME]` turned into an `Arc<dyn ObjectStore>` plus what that store
//! can do ([`Capabilities`]), and the rules by which an object key becomes an object_store
//! [`Path`] and back.
//!
//! One `match` picks the backend ([`Store::open`]). Credentials are read here, from the variables
//! the plan names or the provider's own chain (for S3 the AWS SDK's, in `aws` and `aws_creds`),
//! and registered with `redact` as they are read. Transfers, hashing and listing policy live in `sync` and `pairing`; this module only opens
//! stores and translates keys.
//!
//! Listings report every key exactly as stored (issue 12): S3 through the AWS SDK (`s3`), Azure
//! and GCS through their REST APIs (`azure`, `gcs`, sharing `rest`), because object_store's
//! listings of those fail as a whole on one key its `Path` cannot hold. Local and memory stores
//! list through object_store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::{BackoffConfig, ClientOptions, GetOptions, ObjectStore, PutResult, RetryConfig};

use crate::catalog::{self, Limits};
use crate::plan::{LocalSpec, ProviderKind, ProviderSpec, StoreType};
use crate::redact::{self, Secret};
use crate::throttle::Throttle;

pub mod local;

pub use crate::keys::{key_to_path, prefix_path, KeyError};

pub use local::LocalStore;
pub use probe::{unavailable, Uncarriable, PROBE_PAGE};
pub use s3::{Encryption, Restore};
pub use s3_versions::OldVersion;

mod aws;
mod aws_creds;
mod azure;
mod buckets;
mod classed;
mod gcs;
mod probe;
mod rest;
mod s3;
mod s3_versions;
mod s3_write;
mod xml;

/// A provider that could not be opened: bad credentials setup, missing variable, bad root.
#[derive(Debug, thiserror::Error)]
#[error("provider `{provider}`: {message}{}", hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
pub struct ProviderError {
    pub provider: String,
    pub message: String,
    pub hint: Option<String>,
}

impl ProviderError {
    /// The provider's error, its message redacted.
    fn of(spec: &ProviderSpec, message: impl Into<String>, hint: Option<&str>) -> ProviderError {
        ProviderError {
            provider: spec.name.clone(),
            message: redact::redact(&message.into()),
            hint: hint.map(str::to_string),
        }
    }
}

/// A provider that cannot be opened: fix its table, its variables or its root (exit 2).
impl From<ProviderError> for crate::error::Error {
    fn from(e: ProviderError) -> Self {
        crate::error::Error::new(crate::error::Kind::Usage, e)
    }
}

/// What a store can keep and report, so transfers and verification adapt instead of failing.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Capabilities {
    /// User metadata (`x-amz-meta-*`, `x-ms-meta-*`, `x-goog-meta-*`) is stored and returned.
    pub user_metadata: bool,
    /// Content-Type is stored and returned.
    pub content_type: bool,
    /// The ETag of a single-part object is the hex MD5 of its bytes.
    pub md5_etag: bool,
    /// Lists keys in byte order (S3, GCS, memory, and ferry's local store, which sorts each
    /// folder), so two listings can be merged as they stream. Azure's order for characters outside
    /// the BMP is not documented to be byte order.
    pub sorted_listing: bool,
    /// Multipart limits.
    pub limits: Limits,
    /// Stores `\` in a key as `/` (Azure Blob; SeaweedFS by its preset): a key holding `\`
    /// would arrive renamed.
    pub backslash_is_slash: bool,
}

impl Capabilities {
    fn for_spec(spec: &ProviderSpec) -> Capabilities {
        let limits = spec
            .preset
            .map(|p| p.limits)
            .unwrap_or_else(|| catalog::default_limits(spec.store_type()));
        let (meta, md5) = match &spec.kind {
            // object_store's LocalFileSystem has no place for attributes.
            ProviderKind::Local(_) => (false, false),
            ProviderKind::Memory => (true, false),
            // Objects ferry writes with SSE-KMS have ETags that are not MD5s: known from the plan,
            // not learned object by object (see `Store::etag_is_md5`).
            ProviderKind::S3(s3) => (
                true,
                spec.preset.map(|p| p.checksums.md5_etag).unwrap_or(true)
                    && s3.s3_write.sse != Some(crate::plan::Sse::Kms),
            ),
            // Azure and GCS ETags are opaque; their MD5 lives in other headers.
            ProviderKind::Gcs(_) | ProviderKind::Azure(_) => (true, false),
        };
        let quirks = spec.preset.map(|p| p.quirks).unwrap_or_default();
        Capabilities {
            user_metadata: meta,
            content_type: meta,
            md5_etag: md5,
            sorted_listing: quirks.sorted_listing
                && matches!(
                    spec.store_type(),
                    StoreType::S3 | StoreType::Gcs | StoreType::Memory | StoreType::Local
                ),
            limits,
            // Azure Blob Storage turns `\` into `/` in blob names (Azurite does too).
            backslash_is_slash: quirks.backslash_is_slash || spec.store_type() == StoreType::Azure,
        }
    }
}

/// What the server says of an ETag that an MD5 computed by ferry disagrees with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagVerdict {
    /// It is an MD5 (the object is not SSE-KMS or SSE-C, or that cannot be told): the
    /// disagreement is real. With what the server said.
    Md5(String),
    /// Not an MD5: the object is encrypted with SSE-KMS or SSE-C. `learned`: this is the first
    /// object of the store found so this run.
    Opaque { why: String, learned: bool },
}

/// One listed object, with its key exactly as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub version: Option<String>,
    /// Listed, but not an object ferry can copy (a symbolic link, a FIFO, a name that cannot be
    /// a key, an unreadable folder): the reason. The engine counts it as a source object and
    /// reports it as failed; it is never read, written or deleted.
    pub problem: Option<String>,
    /// The storage class (or access tier) the listing reported, if it reports one: S3's
    /// `StorageClass`, Azure's `AccessTier`, GCS's `storageClass`.
    pub class: Option<String>,
}

impl Listed {
    /// The class of an object that must be restored before it can be read (S3 `GLACIER` and
    /// `DEEP_ARCHIVE`, Azure `Archive`), if it is one. `GLACIER_IR` and GCS `ARCHIVE` read
    /// directly. An S3 object already restored still lists with its archive class; the copy
    /// path HEADs it for `x-amz-restore` (`sync::copy::check_restored`).
    pub fn archived_class(&self) -> Option<&str> {
        self.class
            .as_deref()
            .filter(|c| matches!(*c, "GLACIER" | "DEEP_ARCHIVE" | "Archive"))
    }
}

/// An opened store.
#[derive(Debug, Clone)]
pub struct Store {
    pub spec: ProviderSpec,
    pub inner: Arc<dyn ObjectStore>,
    pub caps: Capabilities,
    /// For S3: the AWS SDK client, used where object_store stops, built whatever the source of
    /// the credentials (they are shared with `inner`, see `store/aws_creds`).
    /// Listing goes through it because object_store's S3 listing parses each key into a `Path`,
    /// which silently turns a `photos/` marker into `photos` and fails the whole listing on
    /// `a//b`; the SDK reports keys exactly as stored.
    pub s3: Option<S3Raw>,
    /// For `local`: ferry's own store (the same one as `inner`), for exact listings with
    /// per-entry problems and for durability barriers.
    pub local: Option<LocalStore>,
    /// Request concurrency, lowered while the server throttles (see `throttle`). Shared by
    /// this store's object_store and SDK clients.
    pub throttle: Arc<Throttle>,
    /// For Azure and GCS: their own listing calls, for the reasons `s3` lists through the SDK
    /// (object_store fails a whole Azure or GCS listing on one name its `Path` cannot hold).
    raw: Option<RawLister>,
    /// Set once an object of this store was shown, this run, to be encrypted with SSE-KMS or
    /// SSE-C, whose ETags are 32 hex digits but not MD5s: from then on no ETag of this store is
    /// read as an MD5 (see [`Store::etag_md5`]). Shared by every clone, so every job learns it.
    opaque_etags: Arc<AtomicBool>,
    /// For a provider with `encrypt-recipients-*`: what encrypts the objects written there
    /// (`crypt::objects`). A passphrase provider has none: object jobs refuse it.
    pub seal: Option<Arc<crate::crypt::ObjectSealer>>,
}

/// A listing through a provider's REST API, keys exactly as stored (see `azure`, `gcs`).
#[derive(Debug, Clone)]
enum RawLister {
    Azure(azure::AzureRaw),
    Gcs(gcs::GcsRaw),
}

impl RawLister {
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed, object_store::Error>> {
        match self {
            RawLister::Azure(a) => a.list(prefix),
            RawLister::Gcs(g) => g.list(prefix),
        }
    }
}

/// object_store's HTTP client for a store's own listing calls, through the store's throttle.
fn raw_client(options: &ClientOptions, throttle: &Arc<Throttle>) -> Result<object_store::client::HttpClient, String> {
    use object_store::client::HttpConnector;
    crate::throttle::object_store_http::Connector(throttle.clone())
        .connect(options)
        .map_err(|e| e.to_string())
}

/// The AWS SDK client and bucket of an S3 provider.
#[derive(Debug, Clone)]
pub struct S3Raw {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    /// Where the credentials come from (`profile `evac``), for errors.
    pub source: String,
    /// How objects are written here (see `s3_write`).
    pub write: crate::plan::S3Write,
}

/// Strips the quotes and weak marker of an ETag so two listings of one object compare equal
/// whichever API produced them.
pub fn norm_etag(etag: &str) -> &str {
    etag.trim_start_matches("W/").trim_matches('"')
}

fn env_secret(provider: &str, key: &str, var: &str) -> Result<Secret, ProviderError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
        _ => Err(ProviderError {
            provider: provider.into(),
            message: format!("environment variable `{var}` (named by `{key}`) is not set"),
            hint: Some(format!("export {var}=... before running ferry")),
        }),
    }
}

fn client_options(spec: &ProviderSpec) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(spec.allow_http())
        .with_connect_timeout(Duration::from_secs(10))
        // A part of 64 MiB over a slow link needs more than the 30 s default.
        .with_timeout(Duration::from_secs(300))
}

/// Transient errors (5xx, 429, resets, timeouts) are retried by object_store's client with
/// exponential backoff; ferry bounds the total so an unreachable endpoint fails in about a minute.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 8,
        retry_timeout: Duration::from_secs(90),
    }
}

/// Mode of the files ferry writes for itself at a local destination: manifests, dumps and dump
/// records (issue 14). They can hold what an operator would not show every local user (object
/// names, checksums, a whole database), so they are created readable by their owner only,
/// whatever the umask. Copied objects keep their source's mode instead.
pub const PRIVATE_MODE: u32 = 0o600;

/// The provider's object sealer, its recipients read now (a missing file fails before anything
/// is written); none without recipients.
fn object_sealer(spec: &ProviderSpec) -> Result<Option<Arc<crate::crypt::ObjectSealer>>, ProviderError> {
    let Some(crate::plan::EncryptSpec {
        to: crate::plan::EncryptTo::Recipients { .. },
        ..
    }) = &spec.encrypt
    else {
        return Ok(None);
    };
    let fail = |m: String| ProviderError::of(spec, m, None);
    let sealer = crate::crypt::Sealer::load(spec).map_err(|e| fail(e.to_string()))?;
    let objects = sealer
        .expect("recipients are set")
        .for_objects()
        .map_err(|e| fail(format!("cannot encrypt to its recipients: {e}")))?;
    Ok(Some(Arc::new(objects)))
}

impl Store {
    /// Marks `attributes` as those of a file ferry writes for itself (a manifest, a dump, a dump
    /// record): a local destination creates it with [`PRIVATE_MODE`]. Other stores are left
    /// as they are (the attribute is a local one and never sent as metadata).
    pub fn mark_private(&self, attributes: &mut object_store::Attributes) {
        if self.local.is_some() {
            attributes.insert(
                object_store::Attribute::Metadata(local::ATTR_MODE.into()),
                format!("{PRIVATE_MODE:o}").into(),
            );
        }
    }

    /// Puts a file ferry writes for itself (see [`mark_private`](Self::mark_private)).
    pub async fn put_private(
        &self,
        path: &object_store::path::Path,
        payload: object_store::PutPayload,
    ) -> object_store::Result<PutResult> {
        let mut attributes = object_store::Attributes::new();
        self.mark_private(&mut attributes);
        self.inner
            .put_opts(
                path,
                payload,
                object_store::PutOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await
    }

    /// Opens the store a provider describes. `create_root`: a local destination's directory is
    /// created; a local source's must already exist.
    pub fn open(spec: &ProviderSpec, create_root: bool) -> Result<Store, ProviderError> {
        let perr = |message: String, hint: Option<&str>| ProviderError::of(spec, message, hint);
        let mut s3 = None;
        let mut local = None;
        let mut raw = None;
        let throttle = Throttle::new();
        let inner: Arc<dyn ObjectStore> = match &spec.kind {
            ProviderKind::Memory => Arc::new(InMemory::new()),
            ProviderKind::Local(LocalSpec { root }) => {
                if create_root {
                    std::fs::create_dir_all(root)
                        .map_err(|e| perr(format!("cannot create local root `{}`: {e}", root.display()), None))?;
                } else if !root.is_dir() {
                    return Err(perr(
                        format!("local root `{}` does not exist or is not a directory", root.display()),
                        None,
                    ));
                }
                let store = LocalStore::open(root, create_root)
                    .map_err(|e| perr(format!("cannot open local root `{}`: {e}", root.display()), None))?;
                local = Some(store.clone());
                Arc::new(store)
            }
            ProviderKind::S3(s3_spec) => {
                let (store, raw) = aws::open(spec, s3_spec, &throttle)?;
                s3 = Some(raw);
                store
            }
            ProviderKind::Azure(azure_spec) => {
                let (store, lister) = azure::open(spec, azure_spec, &throttle)?;
                raw = Some(lister);
                store
            }
            ProviderKind::Gcs(gcs_spec) => {
                let (store, lister) = gcs::open(spec, gcs_spec, &throttle)?;
                raw = Some(lister);
                store
            }
        };
        // SSE-C objects' ETags are not MD5s of their bytes (AWS says so): never held to them.
        let sse_c = matches!(&spec.kind, ProviderKind::S3(s) if s.sse_c_key_env.is_some());
        Ok(Store {
            spec: spec.clone(),
            inner,
            caps: Capabilities::for_spec(spec),
            s3,
            local,
            throttle,
            raw,
            opaque_etags: Arc::new(AtomicBool::new(sse_c)),
            seal: object_sealer(spec)?,
        })
    }

    /// An empty in-memory stand-in for a local destination that does not exist yet, so a dry
    /// run can report "everything is new" without creating the directory.
    pub fn empty_stand_in(spec: &ProviderSpec) -> Store {
        Store {
            spec: spec.clone(),
            inner: Arc::new(InMemory::new()),
            caps: Capabilities::for_spec(spec),
            s3: None,
            local: None,
            throttle: Throttle::new(),
            raw: None,
            opaque_etags: Arc::default(),
            seal: object_sealer(spec).ok().flatten(),
        }
    }

    /// The size an object of `plain` bytes has once written here: larger where objects are
    /// encrypted (the age header and a tag per 64 KiB).
    pub fn stored_len(&self, plain: u64) -> u64 {
        self.seal.as_ref().map_or(plain, |s| s.sealed_len(plain))
    }

    /// Whether `other` is a bucket of the same S3 service with the same credentials, so objects
    /// can be copied on the server without passing through ferry.
    pub fn same_s3_service(&self, other: &Store) -> bool {
        let (ProviderKind::S3(a), ProviderKind::S3(b)) = (&self.spec.kind, &other.spec.kind) else {
            return false;
        };
        self.s3.is_some()
            && other.s3.is_some()
            && crate::plan::normalize_endpoint(a.endpoint.as_deref())
                == crate::plan::normalize_endpoint(b.endpoint.as_deref())
            && a.region == b.region
            && a.access_key_id_env == b.access_key_id_env
            && a.secret_access_key_env == b.secret_access_key_env
            && a.session_token_env == b.session_token_env
            && a.aws == b.aws
            // Unsigned requests may read a public bucket, not copy into one.
            && !a.anonymous
            && !b.anonymous
            // A CopyObject of an SSE-C source needs the key as copy-source headers, which the
            // server-side path does not send: such objects stream through ferry instead.
            && a.sse_c_key_env.is_none()
            && b.sse_c_key_env.is_none()
    }

    /// Whether this store's single-part ETags may be read as MD5s: the provider publishes MD5
    /// ETags (`md5_etag`) and no object of it has been shown this run to be SSE-KMS or SSE-C.
    pub fn md5_etags(&self) -> bool {
        self.caps.md5_etag && !self.opaque_etags.load(Ordering::Relaxed)
    }

    /// The MD5 an ETag of this store stands for, where [`Store::md5_etags`] allows reading one
    /// (a single-part ETag: 32 hex digits). A listing does not say how an object is encrypted,
    /// so this is a presumption until a read or a write disagrees with it; then
    /// [`Store::etag_is_md5`] asks the server.
    pub fn etag_md5(&self, etag: Option<&str>) -> Option<String> {
        etag.filter(|_| self.md5_etags())
            .and_then(crate::checksum::md5_from_etag)
    }

    /// Whether the ETag of `key` can be an MD5, asked of the server when an MD5 computed by
    /// ferry disagrees with it: a HEAD through the SDK, whose answer names the object's
    /// encryption. SSE-KMS (`aws:kms`, `aws:kms:dsse`) and SSE-C objects have ETags that are not
    /// MD5s (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_Object.html>, `ETag`): the
    /// store is then remembered as such for the rest of the run, so later objects neither pay
    /// for the HEAD nor are held to their ETags. Anything else (SSE-S3, no encryption, a store
    /// without the SDK client, a HEAD that fails) leaves the ETag an MD5: the disagreement is
    /// real and the caller fails the object.
    pub async fn etag_is_md5(&self, key: &str) -> EtagVerdict {
        let Some(raw) = &self.s3 else {
            return EtagVerdict::Md5("its encryption cannot be asked without the S3 API".into());
        };
        match raw.encryption(key).await {
            Ok(enc) if enc.etag_is_opaque() => EtagVerdict::Opaque {
                why: enc.to_string(),
                learned: !self.opaque_etags.swap(true, Ordering::Relaxed),
            },
            Ok(enc) => EtagVerdict::Md5(enc.to_string()),
            Err(e) => EtagVerdict::Md5(redact::redact(&format!("its encryption could not be read: {e}"))),
        }
    }

    /// The provider's name in the plan.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Streams every object under a folder-like prefix; the listing is paged lazily, so a caller
    /// consuming it starts work before the listing ends and memory does not grow with the count.
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed, object_store::Error>> {
        if let Some(raw) = &self.s3 {
            return raw.list(prefix);
        }
        if let Some(local) = &self.local {
            return local.list_exact(prefix);
        }
        if let Some(raw) = &self.raw {
            return raw.list(prefix);
        }
        let p = match prefix_path(prefix) {
            Ok(p) => p,
            Err(e) => {
                let e = object_store::Error::Generic {
                    store: "ferry",
                    source: format!("prefix `{prefix}`: {e}").into(),
                };
                return futures::stream::once(async move { Err(e) }).boxed();
            }
        };
        self.inner
            .list(p.as_ref())
            .map_ok(|m| Listed {
                key: m.location.to_string(),
                size: m.size,
                etag: m.e_tag,
                version: m.version,
                problem: None,
                class: None,
            })
            .boxed()
    }

    /// The read options that hold a read to exactly the listed version of `item`: `If-Match` its
    /// ETag, or for GCS (whose listing identifies objects by generation, see `gcs`) that
    /// generation.
    pub fn read_options(&self, item: &Listed) -> GetOptions {
        match (&self.raw, &item.version) {
            (Some(RawLister::Gcs(_)), Some(generation)) => GetOptions {
                version: Some(generation.clone()),
                ..Default::default()
            },
            _ => GetOptions {
                if_match: item.etag.clone(),
                ..Default::default()
            },
        }
    }

    /// What the journal keeps of an object this store just wrote, to compare with what its
    /// listing reports next time: the ETag, or for GCS the generation.
    pub fn written_tag(&self, written: &PutResult) -> Option<String> {
        match &self.raw {
            Some(RawLister::Gcs(_)) => written.version.clone(),
            _ => written.e_tag.clone(),
        }
    }
}

/// Wraps an SDK error as an object_store error, with the SDK's full context, redacted.
pub fn sdk_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: sdk_message(e).into(),
    }
}

/// An SDK error's text, redacted: its causes, outermost first, without the SDK's Debug dump of
/// the same chain.
fn sdk_message<E: std::error::Error + Send + Sync + 'static>(e: E) -> String {
    redact::redact(&error_chain(&e))
}

/// An error and its causes in one line, outermost first, each cause once (`HTTP error: error
/// sending request: client error (Connect): tcp connect error: Connection refused`): the
/// outermost alone often does not say why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}
