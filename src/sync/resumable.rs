//! Resumable multipart uploads to S3 through the AWS SDK: the upload id and part size are
//! journaled before the first part is sent, so a killed run continues the upload (ListParts
//! says which parts the server holds) instead of starting over; uploads a killed run left that
//! no object continues are aborted at the end of the job.

use std::collections::HashMap;

use futures::StreamExt;
use object_store::{Attribute, Attributes};

use super::copy::{check_read, Copied, CopyError};
use super::decide::same_etag;
use super::parts::{contiguous, joined, PartStream, PartTasks, PARTS_IN_FLIGHT};
use super::seal::PartSeal;
use super::Engine;
use crate::checksum::{self, StreamHasher};
use crate::journal::{Record, State};
use crate::store::{norm_etag, Listed, Store};

/// A multipart upload to S3 through the AWS SDK whose upload id and part size are journaled
/// before the first part is sent, so a killed run resumes it: the parts the server already holds
/// (ListParts is authoritative) are read and hashed from the source again but not re-sent, and a
/// source whose ETag changed since aborts the old upload and starts over. object_store's
/// `MultipartUpload` does not expose its upload id, hence the SDK here.
pub(super) struct ResumableUpload<'a> {
    pub(super) engine: &'a Engine,
    pub(super) src: &'a Store,
    pub(super) dst: &'a Store,
    /// `dst`'s SDK client.
    pub(super) raw: &'a crate::store::S3Raw,
    pub(super) job: &'a str,
    pub(super) item: &'a Listed,
    pub(super) dst_key: &'a str,
    pub(super) part: u64,
}

impl ResumableUpload<'_> {
    fn record(&self, upload_id: &str) -> Record {
        Record {
            job: self.job.to_string(),
            key: self.item.key.clone(),
            state: State::InFlight,
            src_size: self.item.size,
            src_etag: self.item.etag.clone(),
            dst_key: self.dst_key.to_string(),
            dst_etag: None,
            sha256: None,
            stored_sha256: None,
            error: None,
            upload_id: Some(upload_id.to_string()),
            part_size: Some(self.part),
        }
    }

    /// The upload to continue, with the parts the server holds, if the journal has one for
    /// exactly this source version, destination key and part size. Any other open upload for
    /// this object is aborted.
    async fn resume_point(&self) -> Result<Option<(String, HashMap<i32, (String, u64)>)>, CopyError> {
        let Some(r) = self.engine.journal.get(self.job, &self.item.key).ok().flatten() else {
            return Ok(None);
        };
        let Some(upload_id) = r.upload_id.clone().filter(|_| r.state != State::Done) else {
            return Ok(None);
        };
        // Starting a new upload forgets the journaled one: it must be closed first, or this
        // attempt fails (and is retried) rather than leave it open and billed.
        let close = |why: &str| {
            let why = why.to_string();
            let (key, id) = (r.dst_key.clone(), upload_id.clone());
            async move {
                if abort_upload(self.raw, &key, &id).await {
                    Ok(None)
                } else {
                    Err(CopyError::Transient(format!(
                        "{why}, and its upload `{id}` could not be aborted"
                    )))
                }
            }
        };
        let changed = if !same_etag(&r.src_etag, &self.item.etag) || r.src_size != self.item.size {
            Some("the source changed since its upload started")
        } else if r.part_size != Some(self.part) {
            Some("the part size changed since its upload started")
        } else if r.dst_key != self.dst_key {
            Some("the destination key changed since its upload started")
        } else {
            None
        };
        if let Some(why) = changed {
            self.engine.restarting(self.job, &self.item.key, why);
            return close(why).await;
        }
        // A resume that cannot list its parts sends every part again: that must be said, with
        // the server's reason, not silently paid for (issue 13).
        let parts = match self.raw.list_parts(self.dst_key, &upload_id).await {
            Ok(parts) => parts,
            Err(e) => {
                let why = format!("the parts of upload `{upload_id}` could not be listed: {e}");
                self.engine.restarting(self.job, &self.item.key, &why);
                return close(&why).await;
            }
        };
        Ok(Some((upload_id, parts)))
    }

    pub(super) async fn run(
        &self,
        attributes: Attributes,
        parts: PartStream,
        mut hasher: StreamHasher,
        expect_md5: Option<String>,
    ) -> Result<Copied, CopyError> {
        let (upload_id, done) = match self.resume_point().await? {
            Some(r) => r,
            None => (self.create(attributes).await?, HashMap::new()),
        };
        let mut sealing = match &self.dst.seal {
            Some(seal) => Some(PartSeal::resumable(
                seal,
                (self.job, self.dst_key, &upload_id),
                self.item,
                self.part,
            )?),
            None => None,
        };
        let result = self
            .stream(&upload_id, &done, parts, (&mut hasher, sealing.as_mut()))
            .await;
        let digest = hasher.finish();
        let progress = &*self.engine.progress;
        let checked = match result {
            Ok(parts) => check_read(self.src, self.item, &digest, expect_md5.as_deref(), progress)
                .await
                .map(|()| parts),
            Err(e) => Err(e),
        };
        let outcome = match checked {
            Ok(parts) => self.complete(&upload_id, parts).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(dst_etag) => Ok(Copied {
                sha256: Some(digest.sha256),
                stored_sha256: sealing.map(|s| s.finish().sha256),
                dst_etag,
            }),
            Err(e) => {
                // A failure we see (not a kill) closes the upload: nothing half-written remains.
                // If even that fails, the upload id goes into the journal for the next run.
                if abort_upload(self.raw, self.dst_key, &upload_id).await {
                    Err(e)
                } else {
                    Err(CopyError::OpenUpload {
                        upload_id,
                        source: Box::new(e),
                    })
                }
            }
        }
    }

    /// Starts a new upload with the object's attributes and journals its id, durably, before
    /// any part is sent.
    async fn create(&self, attributes: Attributes) -> Result<String, CopyError> {
        let mut req = self
            .raw
            .client
            .create_multipart_upload()
            .bucket(&self.raw.bucket)
            .key(self.dst_key);
        let mut meta = HashMap::new();
        for (k, v) in attributes.iter() {
            let v = v.to_string();
            req = match k {
                Attribute::ContentType => req.content_type(v),
                Attribute::ContentEncoding => req.content_encoding(v),
                Attribute::ContentDisposition => req.content_disposition(v),
                Attribute::ContentLanguage => req.content_language(v),
                Attribute::CacheControl => req.cache_control(v),
                Attribute::Metadata(m) => {
                    meta.insert(m.to_string(), v);
                    req
                }
                _ => req,
            };
        }
        let out = req
            .set_metadata((!meta.is_empty()).then_some(meta))
            .set_server_side_encryption(self.raw.sse())
            .set_ssekms_key_id(self.raw.sse_kms_key_id())
            .set_storage_class(self.raw.storage_class())
            .send()
            .await
            .map_err(sdk)?;
        let id = out
            .upload_id()
            .ok_or_else(|| CopyError::Transient("CreateMultipartUpload returned no upload id".into()))?
            .to_string();
        // Durable before the first part: a kill from here on leaves a known upload.
        self.engine
            .journal
            .put(self.record(&id))
            .map_err(|e| CopyError::Permanent(e.to_string()))?;
        self.engine
            .journal
            .flush()
            .map_err(|e| CopyError::Permanent(e.to_string()))?;
        Ok(id)
    }

    /// Completes the upload from its parts (number, ETag); the destination ETag it got.
    async fn complete(&self, upload_id: &str, parts: Vec<(i32, String)>) -> Result<Option<String>, CopyError> {
        // Part ETags of a store known to hold SSE-KMS or SSE-C objects are no MD5s and prove
        // nothing.
        let expected = checksum::multipart_etag(parts.iter().map(|(_, e)| e.as_str())).filter(|_| self.dst.md5_etags());
        let completed = completed_upload(parts);
        match self.raw.complete_upload(self.dst_key, upload_id, completed).await {
            Ok(etag) => Ok(etag),
            // A real failure may leave an older object of the same size at the key. Only an
            // object provably made of our parts (its ETag is the one our parts' MD5s give)
            // counts as completed.
            Err(e) => self.confirm_completed(expected).await.ok_or(CopyError::Store(e)),
        }
    }

    async fn confirm_completed(&self, expected: Option<String>) -> Option<Option<String>> {
        let expected = expected?;
        let head = self
            .raw
            .client
            .head_object()
            .bucket(&self.raw.bucket)
            .key(self.dst_key)
            .send()
            .await
            .ok()?;
        let etag = head.e_tag()?.to_string();
        let ours = head.content_length() == Some(self.dst.stored_len(self.item.size) as i64)
            && norm_etag(&etag).eq_ignore_ascii_case(&expected);
        ours.then_some(Some(etag))
    }

    /// Reads the whole source, hashing every byte; sends the parts the server does not hold.
    async fn stream(
        &self,
        upload_id: &str,
        done: &HashMap<i32, (String, u64)>,
        mut source: PartStream,
        (hasher, mut sealing): (&mut StreamHasher, Option<&mut PartSeal>),
    ) -> Result<Vec<(i32, String)>, CopyError> {
        let mut parts: Vec<(i32, String)> = Vec::new();
        let mut inflight = PartTasks::default();
        let mut number: i32 = 0;
        while let Some(next) = source.next().await {
            let (data, permit) = next?;
            data.iter().for_each(|c| hasher.update(c));
            number += 1;
            let n = number;
            // Sealed even when the server holds the part: the stored bytes' hash needs them.
            let data = match sealing.as_deref_mut() {
                Some(seal) => seal.seal(n, contiguous(data)).await?,
                None => contiguous(data),
            };
            if let Some((etag, _)) = done.get(&n).filter(|(_, size)| *size == data.len() as u64) {
                parts.push((n, etag.clone()));
                continue;
            }
            let crc = crc32c::crc32c(&data).to_be_bytes();
            let fut = self
                .raw
                .client
                .upload_part()
                .bucket(&self.raw.bucket)
                .key(self.dst_key)
                .upload_id(upload_id)
                .part_number(n)
                .content_length(data.len() as i64)
                .checksum_crc32_c(base64(&crc))
                .body(aws_sdk_s3::primitives::ByteStream::from(data))
                .send();
            // Its own task, for the reason given in `Engine::stream_parts`.
            inflight.0.push(tokio::spawn(async move {
                let r = fut.await;
                drop(permit);
                (n, part_etag(r))
            }));
            if inflight.0.len() >= PARTS_IN_FLIGHT {
                let (n, r) = joined(inflight.0.next().await.expect("non-empty"))?;
                parts.push((n, r?));
            }
        }
        while let Some(r) = inflight.0.next().await {
            let (n, r) = joined(r)?;
            parts.push((n, r?));
        }
        parts.sort_by_key(|p| p.0);
        Ok(parts)
    }
}

/// The CompleteMultipartUpload body for parts (number, ETag) in order.
pub(super) fn completed_upload(parts: Vec<(i32, String)>) -> aws_sdk_s3::types::CompletedMultipartUpload {
    aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .into_iter()
                .map(|(n, e)| {
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(n)
                        .e_tag(e)
                        .build()
                })
                .collect(),
        ))
        .build()
}

fn part_etag<E: std::error::Error + Send + Sync + 'static>(
    r: Result<aws_sdk_s3::operation::upload_part::UploadPartOutput, E>,
) -> Result<String, CopyError> {
    let out = r.map_err(sdk)?;
    out.e_tag()
        .map(str::to_string)
        .ok_or_else(|| CopyError::Transient("UploadPart returned no ETag".into()))
}

pub(super) fn sdk<E: std::error::Error + Send + Sync + 'static>(e: E) -> CopyError {
    CopyError::Store(crate::store::sdk_error(e))
}

/// Aborts an upload after a failed attempt, until the server shows it gone (see
/// [`crate::store::S3Raw::abort_upload`]); false: it stays open (the next run aborts it).
pub(super) async fn abort_upload(raw: &crate::store::S3Raw, key: &str, upload_id: &str) -> bool {
    raw.abort_upload(key, upload_id, true).await
}

/// Standard base64 (RFC 4648, padded), as checksum headers want it.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Aborts the uploads a killed run left open for objects this run did not continue (deleted or
/// excluded since), and forgets them.
pub(super) async fn abort_orphans(engine: &Engine, job: &str, dst: &Store) -> usize {
    let Some(raw) = &dst.s3 else { return 0 };
    let Ok(open) = engine.journal.in_flight(job) else {
        return 0;
    };
    let mut n = 0;
    for (key, upload_id) in open {
        let dst_key = engine
            .journal
            .get(job, &key)
            .ok()
            .flatten()
            .map(|r| r.dst_key)
            .unwrap_or_default();
        if raw.abort_upload(&dst_key, &upload_id, false).await {
            let _ = engine.journal.forget(job, &key);
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod base64_tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foob"), "Zm9vYg==");
        assert_eq!(super::base64(&[0xe3, 0x06, 0x9e, 0x3c]), "4waePA==");
    }
}
