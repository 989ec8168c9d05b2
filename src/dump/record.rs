//! The record written beside every dump (`KEY.ferry.json`): its layout, reading and writing it,
//! which stored bytes a record accepts, and the order of writes that lets a fixed-key dump (a
//! template without `{timestamp}`) fail at any step without losing the previous good dump.
//!
//! A fixed key holds one dump and one record, and no store can replace two objects at once. So
//! for a fixed key the record is written *first*, while the new dump is still an open multipart
//! upload, and it names the dump already at the key as `previous`. Whichever of the two dumps
//! the key holds after a failure, the record describes it: restore accepts the bytes whose size
//! and SHA-256 match either entry. After the upload completes, the record is written once more
//! without `previous`. Dumps under `{timestamp}` keys never replace anything and keep the plain
//! order: complete the upload, then write the record.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::report::store_error;
use super::{DumpError, TableSum, RECORD_SUFFIX};
use crate::crypt::{is_sealed, CryptError, Opener, Sealer};
use crate::plan::{Compression, DatabaseJob, DbEngine};
use crate::redact::redact;
use crate::store::{key_to_path, Store};

/// The record written beside every complete dump (`KEY.ferry.json`): what `restore` reads to find
/// the newest dump, how to decompress it, which checksum its bytes must have, and which job and
/// engine wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DumpRecord {
    pub format: u32,
    pub job: String,
    pub engine: DbEngine,
    pub key: String,
    pub compression: Compression,
    /// SHA-256 of the stored (compressed, maybe encrypted) bytes.
    pub sha256: String,
    pub bytes_stored: u64,
    pub bytes_raw: u64,
    /// SHA-256 of the raw dump (the tool's output, before compression): encrypted dumps only,
    /// checked by a restore, which has the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_raw: Option<String>,
    /// When the dump finished, RFC 3339 UTC.
    pub created: String,
    /// The tool and its version, e.g. `pg_dump (PostgreSQL) 15.20`.
    pub tool: String,
    /// The source, password removed (a URL without its password, or a file path).
    pub source: String,
    /// Every table's row count and content checksum, taken in the dump's own snapshot where the
    /// engine allows it (see `dump_inner`): what a restore is verified against when the source
    /// is gone. Absent in records written before ferry took them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<BTreeMap<String, TableSum>>,
    /// Fixed keys only, while a new dump is being put in place: the dump the key held before,
    /// which the key still holds if the new one failed. Empty in a finished record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<PreviousDump>,
    /// A directory-format dump (`jobs > 1`): every file `pg_dump -Fd` wrote, each one object
    /// under `KEY/`, and no object at `KEY` itself. `sha256` is then that of the `sha256sum`
    /// listing of these files (`HASH  NAME\n` by name) and the sizes are their sums.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<DumpFile>,
    /// The server's roles (`globals = true`), stored beside the dump at `KEY.globals.sql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<DumpFile>,
}

/// One object of a dump other than the dump stream itself: a file of a directory-format dump,
/// or the globals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DumpFile {
    /// The file's name as the tool wrote it (`toc.dat`, `3456.dat`, `globals.sql`).
    pub name: String,
    /// Where it is stored.
    pub key: String,
    /// SHA-256 of the stored (compressed, maybe encrypted) bytes.
    pub sha256: String,
    pub bytes_stored: u64,
    pub bytes_raw: u64,
}

/// A dump a fixed key may still hold: enough to recognise and read its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PreviousDump {
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_raw: Option<String>,
    pub bytes_stored: u64,
    pub compression: Compression,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<BTreeMap<String, TableSum>>,
}

impl DumpRecord {
    fn as_previous(&self) -> PreviousDump {
        PreviousDump {
            sha256: self.sha256.clone(),
            sha256_raw: self.sha256_raw.clone(),
            bytes_stored: self.bytes_stored,
            compression: self.compression,
            created: self.created.clone(),
            tables: self.tables.clone(),
        }
    }

    /// The dumps this record accepts for stored bytes of `size`: those of that size (the record's
    /// own first). When none has that size, the record's own, so that the SHA-256 check reports
    /// the damage.
    pub(crate) fn candidates(&self, size: Option<u64>) -> Vec<PreviousDump> {
        let all: Vec<PreviousDump> = std::iter::once(self.as_previous())
            .chain(self.previous.iter().cloned())
            .collect();
        let fit: Vec<PreviousDump> = all
            .iter()
            .filter(|c| size.is_none_or(|s| s == c.bytes_stored))
            .cloned()
            .collect();
        if fit.is_empty() {
            vec![self.as_previous()]
        } else {
            fit
        }
    }

    /// Refuses a record written by another job or for another engine: `restore` of one job
    /// must never write another job's data.
    pub(crate) fn check_owner(&self, job: &DatabaseJob, key: &str) -> Result<(), DumpError> {
        let wrong = |message: String| DumpError::WrongDump {
            job: job.name.clone(),
            key: key.into(),
            message,
        };
        if self.job != job.name {
            return Err(wrong(format!("its record says it is a dump of job `{}`", self.job)));
        }
        if self.engine != job.engine {
            return Err(wrong(format!(
                "it is a {:?} dump, but the job's engine is {:?}",
                self.engine, job.engine
            )));
        }
        Ok(())
    }
}

pub(crate) fn record_key(key: &str) -> String {
    format!("{key}{RECORD_SUFFIX}")
}

/// Where the globals of the dump at `key` are stored (`globals = true`).
pub(crate) fn globals_key(key: &str) -> String {
    format!("{key}.globals.sql")
}

/// Deletes the dump at `key` (the files of a directory dump under `KEY/` first), its globals,
/// then its record (a dump is never left behind without one); any already gone is no error.
/// The error names the object that could not be deleted.
pub(crate) async fn delete_dump(store: &Store, key: &str) -> Result<(), String> {
    // A directory dump has no object at its key; a local store has a folder there (which a
    // single-stream dump's file is not: listing "under" a file is an error there).
    let local = store.spec.local_root().map(|r| r.join(key));
    let folder = local
        .as_ref()
        .filter(|d| d.symlink_metadata().is_ok_and(|m| m.is_dir()));
    let files: Vec<String> = if local.is_some() && folder.is_none() {
        Vec::new()
    } else {
        store
            .list(&format!("{key}/"))
            .try_filter_map(|item| async move { Ok(item.problem.is_none().then_some(item.key)) })
            .try_collect()
            .await
            .map_err(|e| format!("cannot list the files of old dump `{key}`: {}", redact(&e.to_string())))?
    };
    for k in &files {
        delete_object(store, k).await?;
    }
    match folder {
        Some(f) => {
            // Emptied: only an empty folder is removed.
            let _ = std::fs::remove_dir(f);
        }
        None => delete_object(store, key).await?,
    }
    delete_object(store, &globals_key(key)).await?;
    delete_object(store, &record_key(key)).await
}

/// Deletes the object at `k`; already gone is no error.
async fn delete_object(store: &Store, k: &str) -> Result<(), String> {
    let r = match key_to_path(k) {
        Ok(p) => match store.inner.delete(&p).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(redact(&e.to_string())),
        },
        Err(e) => Err(e.to_string()),
    };
    r.map_err(|e| format!("cannot delete old dump `{k}`: {e}"))
}

/// The record of the dump at `key` as stored (its bytes, to put back) and parsed (or why it
/// does not parse or cannot be decrypted); `None` when there is none.
type Stored = (bytes::Bytes, Result<DumpRecord, Unread>);

/// Why a stored record could not be read.
enum Unread {
    NotARecord(String),
    /// Encrypted, and this provider's keys do not open it.
    Sealed(CryptError),
}

async fn read_record_bytes(job: &DatabaseJob, store: &Store, key: &str) -> Result<Option<Stored>, DumpError> {
    let rkey = record_key(key);
    let serr = |m: String| store_error(job, store, &rkey, m);
    let path = key_to_path(&rkey).map_err(|e| serr(e.to_string()))?;
    let got = match store.inner.get(&path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(serr(redact(&e.to_string()))),
    };
    let bytes = got.bytes().await.map_err(|e| serr(redact(&e.to_string())))?;
    // Encrypted records are recognised by their bytes, not by the plan, so that a provider whose
    // `encrypt-*` keys were added or removed still reads the records it holds.
    let plain = if is_sealed(&bytes) {
        match Opener::load(&store.spec, key).and_then(|o| o.open(key, &bytes)) {
            Ok(p) => p,
            Err(e) => return Ok(Some((bytes, Err(Unread::Sealed(e))))),
        }
    } else {
        bytes.to_vec()
    };
    let record =
        serde_json::from_slice(&plain).map_err(|e| Unread::NotARecord(format!("not a ferry dump record: {e}")));
    Ok(Some((bytes, record)))
}

/// The record of the dump at `key`; an encrypted one needs the provider's identity.
pub(crate) async fn read_record(job: &DatabaseJob, store: &Store, key: &str) -> Result<Option<DumpRecord>, DumpError> {
    match read_record_bytes(job, store, key).await? {
        None => Ok(None),
        Some((_, Ok(r))) => Ok(Some(r)),
        Some((_, Err(Unread::NotARecord(m)))) => Err(store_error(job, store, &record_key(key), m)),
        Some((_, Err(Unread::Sealed(e)))) => Err(DumpError::crypt(job, e)),
    }
}

/// Writes `bytes` as the record of the dump at `key`, encrypted when the provider encrypts; the
/// error is the store's (or the keys'), redacted.
async fn put_record(store: &Store, key: &str, bytes: Vec<u8>) -> Result<(), String> {
    let bytes = match Sealer::load(&store.spec).map_err(|e| redact(&e.to_string()))? {
        Some(s) => s.seal(&bytes).map_err(|e| e.to_string())?,
        None => bytes,
    };
    put_stored(store, key, bytes).await
}

/// Writes `bytes` as they are (a record as stored: encrypted or not) as the record of the dump
/// at `key`.
async fn put_stored(store: &Store, key: &str, bytes: Vec<u8>) -> Result<(), String> {
    let path = key_to_path(&record_key(key)).map_err(|e| e.to_string())?;
    store
        .put_private(&path, PutPayload::from(bytes))
        .await
        .map(|_| ())
        .map_err(|e| redact(&e.to_string()))
}

/// Writes a finished record (plain order: after the dump object is complete).
pub(crate) async fn write_record(store: &Store, record: &DumpRecord) -> Result<(), String> {
    put_record(
        store,
        &record.key,
        serde_json::to_vec_pretty(record).expect("a record serializes"),
    )
    .await
}

/// The size of the object at `key`, `None` if there is none.
async fn size_at(job: &DatabaseJob, store: &Store, key: &str) -> Result<Option<u64>, DumpError> {
    let path = key_to_path(key).map_err(|e| store_error(job, store, key, e.to_string()))?;
    match store.inner.head(&path).await {
        Ok(m) => Ok(Some(m.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_error(job, store, key, redact(&e.to_string()))),
    }
}

/// What a fixed-key dump needs to undo its record if the upload cannot be completed: the
/// record that was at the key, byte for byte.
pub(crate) struct Switch {
    old: Option<bytes::Bytes>,
}

/// Fixed keys, step 1 of 2: before the upload is completed, writes `record` naming the dump the
/// key holds now as `previous`. On error nothing has changed at the key (a failed PUT writes
/// nothing); the caller aborts the upload.
pub(crate) async fn write_record_first(
    job: &DatabaseJob,
    store: &Store,
    record: &mut DumpRecord,
) -> Result<Switch, DumpError> {
    let key = record.key.clone();
    // A store error stops the dump: the previous dump could not be described, and a failure
    // later could leave it without a valid record. A record that does not parse describes
    // nothing, and the key's dump was unverifiable already.
    let old = read_record_bytes(job, store, &key).await?;
    let size = size_at(job, store, &key).await?;
    record.previous = match (&old, size) {
        (Some((_, Ok(r))), Some(size)) => r
            .candidates(Some(size))
            .into_iter()
            .filter(|c| c.bytes_stored == size)
            .collect(),
        _ => Vec::new(),
    };
    write_record(store, record).await.map_err(|e| {
        store_error(
            job,
            store,
            &record_key(&key),
            format!("writing the dump record failed: {e}; the previous dump and its record are kept"),
        )
    })?;
    Ok(Switch {
        old: old.map(|(b, _)| b),
    })
}

/// Fixed keys, step 2 of 2, after the upload completed: the record without `previous`. If this
/// write fails, the record written first still describes the new dump.
pub(crate) async fn finish_record(store: &Store, record: &mut DumpRecord) {
    if !record.previous.is_empty() {
        record.previous.clear();
        let _ = write_record(store, record).await;
    }
}

/// Fixed keys, after the upload could not be completed: unless the key may hold the new dump
/// after all (a completion that failed in its answer only: the object has the new dump's size),
/// the record that was there is put back byte for byte, or removed if there was none. When the
/// key may hold either, the record written first stays: it describes both.
pub(crate) async fn undo_record_first(job: &DatabaseJob, store: &Store, record: &DumpRecord, switch: Switch) {
    let size = size_at(job, store, &record.key).await;
    if matches!(size, Ok(Some(s)) if s == record.bytes_stored) || size.is_err() {
        return;
    }
    match switch.old {
        Some(bytes) => {
            let _ = put_stored(store, &record.key, bytes.to_vec()).await;
        }
        None => {
            if let Ok(p) = key_to_path(&record_key(&record.key)) {
                let _ = store.inner.delete(&p).await;
            }
        }
    }
}
