//! One object's copy: read from the source (If-Match on the listed version), hashed on the way,
//! checked (the byte count, the source's MD5 ETag) before the destination object is completed,
//! and written in one PUT, as an object_store multipart upload, or as a resumable S3 upload
//! (`resumable`); retried whole for transient failures. Why an object failed is a [`CopyError`].

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetResult, GetResultPayload, MultipartUpload, PutMultipartOptions, PutOptions,
    PutPayload, PutResult,
};

use super::parts::{contiguous, part_size, PartStream};
use super::resumable::ResumableUpload;
use super::seal::{seal_whole, PartSeal};
use super::{server_side, Engine};
use crate::checksum::{self, Digest, StreamHasher};
use crate::progress::Progress;
use crate::redact::redact;
use crate::store::{key_to_path, EtagVerdict, Listed, Restore, Store};

/// Chunk size when reading local files ourselves (object_store's own is 8 KiB).
const FILE_CHUNK: usize = 1 << 20;
/// Attempts per object for transient failures (object_store already retries each request).
const ATTEMPTS: usize = 3;

/// Why one object failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum CopyError {
    #[error("{0}")]
    Store(#[from] object_store::Error),
    #[error("{0}")]
    Permanent(String),
    #[error("{0}")]
    Transient(String),
    /// Failed, and its multipart upload could not be aborted either.
    #[error("{source} (its upload could not be aborted; the next run will)")]
    OpenUpload { upload_id: String, source: Box<CopyError> },
}

impl CopyError {
    pub(super) fn retryable(&self) -> bool {
        match self {
            // A local disk's refusals (a link on the path, a folder in the way, a full disk)
            // do not heal in a second.
            CopyError::Store(object_store::Error::Generic {
                store: "LocalStore", ..
            }) => false,
            CopyError::Store(e) => !matches!(
                e,
                object_store::Error::NotFound { .. }
                    | object_store::Error::Precondition { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ),
            CopyError::Permanent(_) => false,
            CopyError::Transient(_) => true,
            CopyError::OpenUpload { source, .. } => source.retryable(),
        }
    }

    /// The upload left open by this failure, to be journaled and aborted later.
    pub(super) fn open_upload(&self) -> Option<String> {
        match self {
            CopyError::OpenUpload { upload_id, .. } => Some(upload_id.clone()),
            _ => None,
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            CopyError::OpenUpload { source, .. } => {
                format!(
                    "{} (its upload could not be aborted; the next run will)",
                    source.describe()
                )
            }
            CopyError::Store(object_store::Error::Precondition { .. }) => {
                "source changed while it was being read; it will be copied whole on the next run".into()
            }
            CopyError::Store(object_store::Error::Generic {
                store: "LocalStore",
                source,
            }) => redact(&source.to_string()),
            CopyError::Store(object_store::Error::NotFound { .. }) => {
                "source object disappeared after it was listed".into()
            }
            other => redact(&other.to_string()),
        }
    }
}

/// What one successful copy produced.
pub(super) struct Copied {
    /// SHA-256 of the bytes; none for a server-side copy of an object ferry never hashed.
    pub(super) sha256: Option<String>,
    /// At a destination that encrypts: SHA-256 of the ciphertext stored.
    pub(super) stored_sha256: Option<String>,
    pub(super) dst_etag: Option<String>,
}

impl Engine {
    pub(super) async fn copy_with_retries(
        &self,
        job: &str,
        src: &Store,
        dst: &Store,
        item: &Listed,
        dst_key: &str,
    ) -> Result<Copied, CopyError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.copy_object(job, src, dst, item, dst_key).await {
                Ok(c) => return Ok(c),
                Err(e) if attempt < ATTEMPTS && e.retryable() => {
                    self.progress.message(&format!(
                        "retrying `{}` (attempt {}/{ATTEMPTS}): {}",
                        crate::keys::shown(&item.key),
                        attempt + 1,
                        e.describe()
                    ));
                    tokio::time::sleep(std::time::Duration::from_millis(250 << attempt)).await;
                }
                Err(e) => {
                    self.progress.skipped_bytes(item.size);
                    return Err(e);
                }
            }
        }
    }

    /// Streams one object from source to destination, hashing as it goes.
    async fn copy_object(
        &self,
        job: &str,
        src: &Store,
        dst: &Store,
        item: &Listed,
        dst_key: &str,
    ) -> Result<Copied, CopyError> {
        let src_path = key_to_path(&item.key).map_err(|e| CopyError::Permanent(format!("not copied: source {e}")))?;
        let dst_path =
            key_to_path(dst_key).map_err(|e| CopyError::Permanent(format!("not copied: destination {e}")))?;
        if dst.caps.backslash_is_slash && dst_key.contains('\\') {
            return Err(CopyError::Permanent(format!(
                "not copied: provider `{}` stores `\\` in a key as `/`, so this key would arrive renamed",
                dst.name()
            )));
        }
        check_restored(src, item).await?;
        let limits = dst.caps.limits;
        let mut part = part_size(item.size, self.configured_part(), &limits).map_err(CopyError::Permanent)?;
        if dst.seal.is_some() {
            // Encrypted parts are whole 64 KiB chunks of plaintext (`crypt::objects`).
            part = part.next_multiple_of(crate::crypt::objects::CHUNK);
        }
        if let (Some(s), Some(d)) = (&src.s3, &dst.s3) {
            // A server-side copy would store the plaintext: never into a provider that encrypts.
            if self.opts.server_side_copy && src.same_s3_service(dst) && dst.seal.is_none() {
                return server_side::copy(s, d, item, dst_key, part).await;
            }
        }

        let expect_md5 = src.etag_md5(item.etag.as_deref());
        if item.size <= part {
            return self
                .copy_whole(src, dst, item, src_path, (dst_key, dst_path), expect_md5)
                .await;
        }

        let (attributes, parts) = self.source_parts(src, dst, item, src_path, part).await?;
        let hasher = StreamHasher::new(expect_md5.is_some());
        if let Some(raw) = &dst.s3 {
            let resumable = ResumableUpload {
                engine: self,
                src,
                dst,
                raw,
                job,
                item,
                dst_key,
                part,
            };
            return resumable.run(attributes, parts, hasher, expect_md5).await;
        }
        let mut sealing = None;
        if let Some(seal) = &dst.seal {
            sealing = Some(PartSeal::fresh(seal, item.size, part)?);
        }
        let upload = dst
            .inner
            .put_multipart_opts(
                &dst_path,
                PutMultipartOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await?;
        self.upload_parts(src, dst, item, upload, (parts, sealing), hasher, expect_md5)
            .await
    }

    /// An object up to one part: read whole (its share of the memory budget held), checked, and
    /// sent in one PUT with ferry's SHA-256 in its metadata where the destination keeps it.
    async fn copy_whole(
        &self,
        src: &Store,
        dst: &Store,
        item: &Listed,
        src_path: Path,
        (dst_key, dst_path): (&str, Path),
        expect_md5: Option<String>,
    ) -> Result<Copied, CopyError> {
        // A single PUT to a store whose ETags are MD5s is answered with the MD5 of what arrived:
        // checked against the MD5 of what was sent.
        let check_put = dst.md5_etags();
        let mut hasher = StreamHasher::new(expect_md5.is_some() || check_put);
        let progress = &*self.progress;
        let opts = src.read_options(item);
        let got = src.inner.get_opts(&src_path, opts).await?;
        let mut attributes = carry_attributes(&got.attributes, dst);
        let mut body = body_stream(got);
        let _permit = self.reserve(item.size).await;
        let mut chunks = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            progress.bytes(chunk.len() as u64);
            if let Some(b) = &self.bandwidth {
                b.pace(chunk.len()).await;
            }
            chunks.push(chunk);
        }
        let digest = hasher.finish();
        check_read(src, item, &digest, expect_md5.as_deref(), progress).await?;
        let (payload, stored) = match &dst.seal {
            Some(seal) => {
                let (sealed, stored) = seal_whole(seal, contiguous(chunks)).await?;
                (PutPayload::from(sealed), Some(stored))
            }
            None => (PutPayload::from_iter(chunks), None),
        };
        // What was stored: the plaintext, or its ciphertext (whose plaintext's hash would
        // confirm a guess of the content, so it is not published).
        let written = stored.as_ref().unwrap_or(&digest);
        if dst.caps.user_metadata {
            attributes.insert(
                Attribute::Metadata(checksum::metadata_key(dst.spec.store_type()).into()),
                written.sha256.clone().into(),
            );
        }
        let put = PutOptions {
            attributes,
            ..Default::default()
        };
        let res = dst.inner.put_opts(&dst_path, payload, put).await?;
        if check_put {
            check_written(dst, dst_key, &res, written, progress).await?;
        }
        Ok(Copied {
            stored_sha256: stored.map(|d| d.sha256),
            sha256: Some(digest.sha256),
            dst_etag: dst.written_tag(&res),
        })
    }

    /// A large object's attributes and its bytes as parts. From a server: its headers from a
    /// HEAD, its bytes as parts read by range in parallel. From a local disk: one sequential
    /// read, cut into parts.
    async fn source_parts(
        &self,
        src: &Store,
        dst: &Store,
        item: &Listed,
        src_path: Path,
        part: u64,
    ) -> Result<(Attributes, PartStream), CopyError> {
        if src.spec.store_type() == crate::plan::StoreType::Local {
            let opts = src.read_options(item);
            let got = src.inner.get_opts(&src_path, opts).await?;
            return Ok((
                carry_attributes(&got.attributes, dst),
                self.stream_as_parts(body_stream(got), part),
            ));
        }
        let head = GetOptions {
            head: true,
            ..src.read_options(item)
        };
        let attributes = carry_attributes(&src.inner.get_opts(&src_path, head).await?.attributes, dst);
        Ok((attributes, self.read_parts(src, src_path, item, part)))
    }

    /// A multipart upload through object_store: the parts sent as they are read and hashed, the
    /// read checked, then completed; any failure aborts it.
    #[allow(clippy::too_many_arguments)]
    async fn upload_parts(
        &self,
        src: &Store,
        dst: &Store,
        item: &Listed,
        mut upload: Box<dyn MultipartUpload>,
        (parts, mut sealing): (PartStream, Option<PartSeal>),
        mut hasher: StreamHasher,
        expect_md5: Option<String>,
    ) -> Result<Copied, CopyError> {
        let streamed = self
            .stream_parts(&mut upload, parts, &mut hasher, sealing.as_mut())
            .await;
        let digest = hasher.finish();
        let checked = match streamed {
            Ok(()) => check_read(src, item, &digest, expect_md5.as_deref(), &*self.progress).await,
            Err(e) => Err(e),
        };
        let done = match checked {
            Ok(()) => upload.complete().await.map_err(CopyError::from),
            Err(e) => Err(e),
        };
        match done {
            Ok(res) => Ok(Copied {
                sha256: Some(digest.sha256),
                stored_sha256: sealing.map(|s| s.finish().sha256),
                dst_etag: dst.written_tag(&res),
            }),
            Err(e) => {
                // Never leave a partial upload behind to be mistaken for an object or billed.
                let _ = upload.abort().await;
                Err(e)
            }
        }
    }
}

/// The attributes to write at the destination: content headers and user metadata, where the
/// destination keeps them. ferry's own checksum key is recomputed, never carried. Azure metadata
/// names must be C# identifiers, so `-` in a name becomes `_` there (documented in docs/providers).
fn carry_attributes(src: &Attributes, dst: &Store) -> Attributes {
    let mut out = Attributes::new();
    // A local source's mode and mtime, for a local destination to apply.
    if dst.local.is_some() {
        for name in [crate::store::local::ATTR_MODE, crate::store::local::ATTR_MTIME] {
            let k = Attribute::Metadata(name.into());
            if let Some(v) = src.get(&k) {
                out.insert(k, v.clone());
            }
        }
    }
    // Encrypted objects carry no content headers or user metadata: they describe the plaintext.
    if !dst.caps.user_metadata || dst.seal.is_some() {
        return out;
    }
    for (k, v) in src.iter() {
        let keep = match k {
            Attribute::ContentType
            | Attribute::ContentEncoding
            | Attribute::ContentDisposition
            | Attribute::ContentLanguage
            | Attribute::CacheControl => true,
            Attribute::Metadata(m) => {
                m != checksum::METADATA_KEY
                    && m != checksum::METADATA_KEY_AZURE
                    && m != crate::store::local::ATTR_MODE
                    && m != crate::store::local::ATTR_MTIME
            }
            _ => false,
        };
        if !keep {
            continue;
        }
        match k {
            Attribute::Metadata(m) if dst.spec.store_type() == crate::plan::StoreType::Azure && m.contains('-') => {
                out.insert(Attribute::Metadata(m.replace('-', "_").into()), v.clone());
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// The bytes read must be the bytes listed: the same count, and the source's MD5 where it
/// publishes one. Otherwise the read was truncated or corrupted, and nothing is written.
///
/// A listed ETag only looks like an MD5: SSE-KMS and SSE-C objects have 32-hex ETags that are
/// not. So a disagreement is corruption only once the server says the object is neither
/// ([`Store::etag_is_md5`]); if it is, the byte count is what is checked, and ferry's SHA-256
/// of the bytes (recorded with the object) is what later proves them.
/// An archived S3 object (it keeps its class when restored) is readable only with a finished
/// restore, which only a HEAD shows (`x-amz-restore`): checked before any GET, by `run` and by
/// `plan` alike, so the plan names exactly the objects the run would fail.
pub(super) async fn check_restored(src: &Store, item: &Listed) -> Result<(), CopyError> {
    let (Some(class), Some(raw)) = (item.archived_class(), &src.s3) else {
        return Ok(());
    };
    let reason = match raw.restore_state(&item.key).await? {
        Restore::Restored => return Ok(()),
        Restore::InProgress => "its restore is still in progress",
        Restore::None => "restore it first",
    };
    Err(CopyError::Permanent(format!("archived ({class}): {reason}")))
}

pub(super) async fn check_read(
    src: &Store,
    item: &Listed,
    digest: &Digest,
    expect_md5: Option<&str>,
    progress: &dyn Progress,
) -> Result<(), CopyError> {
    if digest.bytes != item.size {
        return Err(CopyError::Transient(format!(
            "read {} bytes but the source listed {} (truncated or changed)",
            digest.bytes, item.size
        )));
    }
    let (Some(want), Some(got)) = (expect_md5, digest.md5.as_deref()) else {
        return Ok(());
    };
    if want == got {
        return Ok(());
    }
    not_an_md5(src, &item.key, progress).await.map_err(|why| {
        CopyError::Transient(format!(
            "bytes read do not match the source's MD5 ETag ({got} != {want}; {why}): corrupted on the way out"
        ))
    })
}

/// A single PUT is answered with the destination's ETag: where it is an MD5, it must be the MD5
/// of the bytes sent, or what arrived is not what was sent (unless the server says the object
/// is SSE-KMS or SSE-C, whose ETags are not MD5s). The object is then failed, not journaled as
/// copied; the next attempt or run sends it again.
async fn check_written(
    dst: &Store,
    dst_key: &str,
    written: &PutResult,
    digest: &Digest,
    progress: &dyn Progress,
) -> Result<(), CopyError> {
    let (Some(sent), Some(answered)) = (digest.md5.as_deref(), dst.etag_md5(written.e_tag.as_deref())) else {
        return Ok(());
    };
    if sent == answered {
        return Ok(());
    }
    not_an_md5(dst, dst_key, progress).await.map_err(|why| {
        CopyError::Transient(format!(
            "the destination answered the PUT with the MD5 ETag {answered}, but the bytes sent have MD5 \
             {sent} ({why}): what arrived is not what was sent"
        ))
    })
}

/// An MD5 ferry computed disagrees with `key`'s ETag: Ok when the server says the object is
/// SSE-KMS or SSE-C (said once per store, at -v), otherwise what the server said, for the error.
async fn not_an_md5(store: &Store, key: &str, progress: &dyn Progress) -> Result<(), String> {
    match store.etag_is_md5(key).await {
        EtagVerdict::Opaque { why, learned } => {
            if learned {
                progress.message(&crate::keys::shown(&format!(
                    "provider `{}`: `{key}` is {why}, so its ETags are not MD5s; for the rest of this \
                     run its objects are checked by size and ferry's SHA-256, not by ETag",
                    store.name()
                )));
            }
            Ok(())
        }
        EtagVerdict::Md5(why) => Err(why),
    }
}

/// The response body as a stream of chunks. Local files are read here in 1 MiB chunks on the
/// blocking pool; object_store's own file stream uses 8 KiB chunks, which costs 128x the calls.
pub fn body_stream(got: GetResult) -> BoxStream<'static, object_store::Result<Bytes>> {
    match got.payload {
        GetResultPayload::File(file, path) => {
            let end = got.range.end;
            let start = got.range.start;
            futures::stream::try_unfold((file, start), move |(mut file, pos)| {
                let path = path.clone();
                async move {
                    if pos >= end {
                        return Ok(None);
                    }
                    let want = ((end - pos) as usize).min(FILE_CHUNK);
                    let (file, buf) = tokio::task::spawn_blocking(move || {
                        use std::io::{Read, Seek, SeekFrom};
                        let mut buf = vec![0u8; want];
                        file.seek(SeekFrom::Start(pos))?;
                        let mut filled = 0;
                        while filled < want {
                            let n = file.read(&mut buf[filled..])?;
                            if n == 0 {
                                break;
                            }
                            filled += n;
                        }
                        buf.truncate(filled);
                        Ok::<_, std::io::Error>((file, buf))
                    })
                    .await
                    .map_err(|e| object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    })?
                    .map_err(|e| object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: format!("reading `{}`: {e}", path.display()).into(),
                    })?;
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let next = pos + buf.len() as u64;
                    Ok(Some((Bytes::from(buf), (file, next))))
                }
            })
            .boxed()
        }
        GetResultPayload::Stream(s) => s,
    }
}
