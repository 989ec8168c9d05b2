//! The test harness: which backends exist, how a plan names each of them, and a [`Pair`] of
//! real stores (source, destination) with a fresh prefix per test so tests run in parallel
//! against the same servers. Servers come from `tests/servers/up.sh`, which exports
//! `FERRY_TEST_*` variables (see the header of the env file it writes).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ferry::journal::Journal;
use ferry::plan::{ObjectJob, Plan, ProviderKind};
use ferry::progress::NoProgress;
use ferry::store::{key_to_path, Store};
use ferry::sync::{Engine, JobReport, Options};
use ferry::verify::{verify_job, VerifyReport};
use futures::TryStreamExt;
use object_store::{Attributes, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart};

/// Part size used by the suite: S3's minimum, so multipart paths run on modest data.
pub const PART: usize = 5 * 1024 * 1024;

/// A backend the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    Memory,
    /// SeaweedFS: a real S3 server that checks SigV4 signatures.
    Seaweed,
    /// moto: the common permissive S3 emulator.
    Moto,
    /// Azurite: Azure Blob.
    Azurite,
    /// fake-gcs-server behind tests/servers/gcs_shim.py (see docs/testing.md).
    Gcs,
}

/// What a backend can do, with the reason where it cannot: capability gaps are data, not
/// copies of a test.
pub struct Caps {
    /// Stores content-type and user metadata (object_store's LocalFileSystem has no place for them).
    pub metadata: bool,
    /// Can hold a `dir/` marker object that ferry's lister sees as such: S3, Azure and GCS are
    /// listed with keys exactly as stored (issue 12); files cannot end in `/`, and memory
    /// stores only what object_store's `Path` can name.
    pub raw_markers: bool,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Memory => "memory",
            Backend::Seaweed => "seaweed",
            Backend::Moto => "moto",
            Backend::Azurite => "azurite",
            Backend::Gcs => "gcs",
        }
    }

    pub fn caps(self) -> Caps {
        match self {
            Backend::Local => Caps {
                metadata: false,
                raw_markers: false,
            },
            Backend::Memory => Caps {
                metadata: true,
                raw_markers: false,
            },
            Backend::Seaweed | Backend::Moto | Backend::Azurite | Backend::Gcs => Caps {
                metadata: true,
                raw_markers: true,
            },
        }
    }

    fn needs_server(self) -> bool {
        !matches!(self, Backend::Local | Backend::Memory)
    }

    /// The `[providers.X]` body for this backend; `second` picks the second bucket so a
    /// backend can be paired with itself.
    fn plan_snippet(self, root: &Path, second: bool) -> String {
        let bucket = if second { "ferry-b" } else { "ferry-a" };
        let env = |v: &str| std::env::var(v).unwrap_or_else(|_| panic!("{v} is not set: run tests/servers/up.sh"));
        match self {
            Backend::Local => format!("type = \"local\"\nroot = {:?}\n", root.display().to_string()),
            Backend::Memory => "type = \"memory\"\n".into(),
            Backend::Seaweed | Backend::Moto => {
                let v = if self == Backend::Seaweed { "SEAWEED" } else { "MOTO" };
                format!(
                    "type = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
                     allow-http = true\npath-style = true\n\
                     access-key-id-env = \"FERRY_TEST_{v}_KEY\"\nsecret-access-key-env = \"FERRY_TEST_{v}_SECRET\"\n",
                    env(&format!("FERRY_TEST_{v}_ENDPOINT"))
                )
            }
            Backend::Azurite => format!(
                "type = \"azure\"\naccount = \"{}\"\ncontainer = \"{bucket}\"\nendpoint = \"{}\"\n\
                 allow-http = true\naccess-key-env = \"FERRY_TEST_AZURITE_KEY\"\n",
                env("FERRY_TEST_AZURITE_ACCOUNT"),
                env("FERRY_TEST_AZURITE_ENDPOINT")
            ),
            Backend::Gcs => format!(
                "type = \"gcs\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\nallow-http = true\nanonymous = true\n",
                env("FERRY_TEST_GCS_ENDPOINT")
            ),
        }
    }
}

pub use super::common::{data, servers_available};

/// A source and destination store, a job between two fresh prefixes, and an engine.
pub struct Pair {
    pub src: Store,
    pub dst: Store,
    pub job: ObjectJob,
    pub journal: Journal,
    pub engine: Engine,
    _tmp: tempfile::TempDir,
}

impl Pair {
    /// `None` when the servers are absent on a developer machine (and said so).
    pub async fn new(test: &str, src: Backend, dst: Backend) -> Option<Pair> {
        Self::with_job(test, src, dst, "").await
    }

    /// `job_extra`: extra lines for the `[[objects]]` table (include/exclude).
    pub async fn with_job(test: &str, src: Backend, dst: Backend, job_extra: &str) -> Option<Pair> {
        let name = format!("{test}[{}->{}]", src.name(), dst.name());
        if (src.needs_server() || dst.needs_server()) && !servers_available(&name) {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (sroot, droot) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir_all(&sroot).unwrap();
        std::fs::create_dir_all(&droot).unwrap();
        let unique = format!(
            "{}-{}-{}",
            test.replace('_', "-"),
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 1_000_000_000
        );
        let text = format!(
            "[settings]\npart-size = \"5MiB\"\n\n[providers.src]\n{}\n[providers.dst]\n{}\n\
             [[objects]]\nname = \"t\"\nfrom = \"src:{unique}/x/\"\nto = \"dst:{unique}/y/z/\"\n{job_extra}\n",
            src.plan_snippet(&sroot, false),
            dst.plan_snippet(&droot, src == dst),
        );
        let plan = Plan::from_str(&tmp.path().join("plan.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let src_store = Store::open(&plan.providers["src"], false).unwrap();
        let dst_store = Store::open(&plan.providers["dst"], true).unwrap();
        let journal = Journal::open(&tmp.path().join("journal.sqlite")).unwrap();
        let engine = Engine::new(
            Options {
                concurrency: Some(8),
                part_size: PART as u64,
                memory_limit: 256 << 20,
                server_side_copy: true,
                bandwidth: None,
            },
            journal.clone(),
            Arc::new(NoProgress),
        );
        Some(Pair {
            src: src_store,
            dst: dst_store,
            job: plan.objects[0].clone(),
            journal,
            engine,
            _tmp: tmp,
        })
    }

    /// Whether this pair copies on the server (two buckets of one S3 service): no byte is read.
    pub fn server_side(&self) -> bool {
        self.src.same_s3_service(&self.dst)
    }

    /// Full source key for a key relative to the job's source prefix.
    pub fn src_key(&self, rel: &str) -> String {
        format!("{}{rel}", self.job.from.prefix)
    }

    /// Full destination key for a key relative to the job's destination prefix.
    pub fn dst_key(&self, rel: &str) -> String {
        format!("{}{rel}", self.job.to.prefix)
    }

    /// Writes an object at the source (multipart above one part, as a real uploader would).
    pub async fn put_src(&self, rel: &str, body: &[u8], attributes: Attributes) {
        put(&self.src, &self.src_key(rel), body, attributes).await
    }

    /// Writes `dir/`-style keys object_store cannot name, through the S3 SDK.
    /// Writes a source object through the server's own API, so a key object_store's `Path`
    /// cannot name (a `dir/` marker) can be seeded.
    pub async fn put_src_raw(&self, rel: &str, body: &[u8]) {
        use super::common::wire;
        let key = self.src_key(rel);
        let spec = &self.src.spec;
        match &spec.kind {
            ProviderKind::S3(_) => {
                let raw = self.src.s3.as_ref().expect("S3 sources have an SDK client");
                raw.client
                    .put_object()
                    .bucket(&raw.bucket)
                    .key(key)
                    .body(body.to_vec().into())
                    .send()
                    .await
                    .unwrap();
            }
            ProviderKind::Azure(a) => wire::Azure::from_env().put(&a.container, &key, body).unwrap(),
            ProviderKind::Gcs(g) => wire::GcsRaw::from_env().put(&g.bucket, &key, body).unwrap(),
            other => panic!("raw keys cannot be seeded into a {other:?} source"),
        }
    }

    pub async fn run(&self) -> JobReport {
        self.engine.run_job(&self.job, &self.src, &self.dst, false).await
    }

    pub async fn plan(&self) -> JobReport {
        self.engine.run_job(&self.job, &self.src, &self.dst, true).await
    }

    pub async fn verify(&self, level: ferry::plan::VerifyLevel) -> VerifyReport {
        verify_job(
            &self.job,
            &self.src,
            &self.dst,
            level,
            &self.journal,
            Arc::new(NoProgress),
            8,
        )
        .await
    }

    /// Verifies as a fresh machine would: no journal of the run that copied.
    pub async fn verify_without_journal(&self, level: ferry::plan::VerifyLevel) -> VerifyReport {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
        verify_job(
            &self.job,
            &self.src,
            &self.dst,
            level,
            &journal,
            Arc::new(NoProgress),
            8,
        )
        .await
    }

    /// Every object under the destination prefix: relative key -> bytes.
    pub async fn dst_contents(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let listed: Vec<_> = self.dst.list(&self.job.to.prefix).try_collect().await.unwrap();
        for l in listed {
            let rel = l.key.strip_prefix(&self.job.to.prefix).unwrap().to_string();
            let path = key_to_path(&l.key).unwrap_or_else(|e| panic!("destination key `{}`: {e}", l.key));
            let bytes = self.dst.inner.get(&path).await.unwrap().bytes().await.unwrap();
            assert_eq!(bytes.len() as u64, l.size, "listed size of `{}`", l.key);
            out.insert(rel, bytes.to_vec());
        }
        out
    }

    /// Overwrites a destination object's bytes and keeps its attributes, ferry's checksum
    /// metadata among them: damage that metadata cannot reveal.
    pub async fn put_dst_keeping_metadata(&self, rel: &str, body: &[u8]) {
        let key = self.dst_key(rel);
        let head = object_store::GetOptions {
            head: true,
            ..Default::default()
        };
        let kept = self
            .dst
            .inner
            .get_opts(&key_to_path(&key).unwrap(), head)
            .await
            .unwrap()
            .attributes;
        put(&self.dst, &key, body, kept).await
    }
}

async fn put(store: &Store, key: &str, body: &[u8], attributes: Attributes) {
    let path = key_to_path(key).unwrap();
    if body.len() <= PART {
        store
            .inner
            .put_opts(
                &path,
                PutPayload::from(Bytes::copy_from_slice(body)),
                PutOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("seeding `{key}` into {}: {e}", store.name()));
    } else {
        let upload = store
            .inner
            .put_multipart_opts(
                &path,
                PutMultipartOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        for chunk in body.chunks(PART) {
            w.wait_for_capacity(4).await.unwrap();
            w.put(Bytes::copy_from_slice(chunk));
        }
        w.finish().await.unwrap();
    }
}
