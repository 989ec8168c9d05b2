//! Fixed-key dumps (a template without `{timestamp}`) keep the previous good dump and its record
//! whatever step of the next dump fails (issue 13). A store wrapper injects the failures: the
//! PUT of a dump record, or the completion of the multipart upload. SQLite sources, so no
//! server is needed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ferry::dump::{self, DumpRecord, PreviousDump, RestoreOptions, RECORD_SUFFIX};
use ferry::plan::Plan;
use ferry::progress::NoProgress;
use ferry::store::Store;

mod common;
use common::sqlite::{make_sqlite, sqlite_rows};

/// A store that fails, when armed, every PUT of a dump record, or every multipart completion.
#[derive(Debug)]
struct Failing {
    inner: Arc<dyn object_store::ObjectStore>,
    records: Arc<AtomicBool>,
    complete: Arc<AtomicBool>,
}

impl std::fmt::Display for Failing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Failing({})", self.inner)
    }
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "failing",
        source: "injected failure".into(),
    }
}

#[derive(Debug)]
struct FailingUpload {
    inner: Box<dyn object_store::MultipartUpload>,
    complete: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl object_store::MultipartUpload for FailingUpload {
    fn put_part(&mut self, data: object_store::PutPayload) -> object_store::UploadPart {
        self.inner.put_part(data)
    }
    async fn complete(&mut self) -> object_store::Result<object_store::PutResult> {
        if self.complete.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.complete().await
    }
    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for Failing {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        if self.records.load(Ordering::SeqCst) && location.as_ref().ends_with(RECORD_SUFFIX) {
            return Err(injected());
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FailingUpload {
            inner,
            complete: self.complete.clone(),
        }))
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Issue 13: a dump to a fixed key (no `{timestamp}`) whose record cannot be written, or whose
/// upload cannot be completed, leaves the previous dump and its record exactly as they were, and
/// the previous dump still restores. The next good dump replaces both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_key_dump_keeps_the_previous_dump_when_the_next_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    make_sqlite(&p.join("app.db"), &[(1, "first")]);
    let text = "[providers.dst]\ntype = \"local\"\nroot = \"store\"\n\n[[databases]]\nname = \"main\"\n\
                engine = \"sqlite\"\npath = \"app.db\"\nrestore-to-path = \"restored.db\"\nto = \"dst:db/{name}.sqlite.zst\"\n";
    let plan = Plan::from_str(&p.join("plan.toml"), text).unwrap();
    let job = plan.databases[0].clone();
    let mut store = Store::open(&plan.providers["dst"], true).unwrap();
    let (records, complete) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    store.inner = Arc::new(Failing {
        inner: store.inner.clone(),
        records: records.clone(),
        complete: complete.clone(),
    });
    let object = p.join("store/db/main.sqlite.zst");
    let record = p.join(format!("store/db/main.sqlite.zst{RECORD_SUFFIX}"));

    let r = dump::dump(&job, &store, &NoProgress).await;
    assert!(r.ok(), "{r:#?}");
    let (good_object, good_record) = (std::fs::read(&object).unwrap(), std::fs::read(&record).unwrap());
    let rec: DumpRecord = serde_json::from_slice(&good_record).unwrap();
    assert_eq!(Some(rec.sha256.clone()), r.sha256);

    // The next version is larger, so the two dumps differ in size too.
    let rows: Vec<(i64, String)> = (1..=500)
        .map(|i| (i, format!("second {i} {}", "x".repeat(i as usize % 97))))
        .collect();
    let rows: Vec<(i64, &str)> = rows.iter().map(|(i, v)| (*i, v.as_str())).collect();
    make_sqlite(&p.join("app.db"), &rows);
    for (what, flag) in [("the record write", &records), ("the upload's completion", &complete)] {
        flag.store(true, Ordering::SeqCst);
        let r = dump::dump(&job, &store, &NoProgress).await;
        flag.store(false, Ordering::SeqCst);
        assert!(
            !r.ok() && r.error.as_deref().unwrap_or("").contains("injected"),
            "{what}: {r:#?}"
        );
        assert_eq!(
            std::fs::read(&object).ok().as_deref(),
            Some(&good_object[..]),
            "{what} failed: the previous dump must still be there"
        );
        assert_eq!(
            std::fs::read(&record).ok().as_deref(),
            Some(&good_record[..]),
            "{what} failed: its record too"
        );
    }
    let restored = dump::restore(&job, &store, &RestoreOptions::default()).await;
    assert!(restored.error.is_none(), "{restored:#?}");
    assert_eq!(sqlite_rows(&p.join("restored.db")), vec![(1, "first".to_string())]);

    // Killed between the record written first and the completion: the record names the new dump
    // and, as `previous`, the one the key still holds. Restore takes the bytes the key holds.
    let mut crashed: DumpRecord = serde_json::from_slice(&good_record).unwrap();
    crashed.previous = vec![PreviousDump {
        sha256: crashed.sha256.clone(),
        sha256_raw: crashed.sha256_raw.clone(),
        bytes_stored: crashed.bytes_stored,
        compression: crashed.compression,
        created: crashed.created.clone(),
        tables: crashed.tables.clone(),
    }];
    crashed.sha256 = "0".repeat(64);
    crashed.bytes_stored += 1000;
    std::fs::write(&record, serde_json::to_vec(&crashed).unwrap()).unwrap();
    let replace = RestoreOptions {
        replace: true,
        ..Default::default()
    };
    let restored = dump::restore(&job, &store, &replace).await;
    assert!(restored.error.is_none(), "{restored:#?}");
    assert_eq!(sqlite_rows(&p.join("restored.db")), vec![(1, "first".to_string())]);
    // Without `previous`, the same record does not describe the bytes: refused as damaged.
    crashed.previous.clear();
    std::fs::write(&record, serde_json::to_vec(&crashed).unwrap()).unwrap();
    let restored = dump::restore(&job, &store, &replace).await;
    let err = restored.error.clone().unwrap_or_default();
    assert!(err.contains("damaged") && err.contains("SHA-256"), "{restored:#?}");
    assert_eq!(sqlite_rows(&p.join("restored.db")), vec![(1, "first".to_string())]);

    // Nothing armed: the new dump replaces the old one, record included.
    let r = dump::dump(&job, &store, &NoProgress).await;
    assert!(r.ok(), "{r:#?}");
    let rec: DumpRecord = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(Some(rec.sha256.clone()), r.sha256);
    assert!(
        rec.previous.is_empty(),
        "a finished record names no previous dump: {rec:#?}"
    );
    assert_ne!(std::fs::read(&object).unwrap(), good_object);
    let restored = dump::restore(&job, &store, &replace).await;
    assert!(
        restored.ok(),
        "the new dump restores and matches the source: {restored:#?}"
    );
}
