//! Server-side copy between buckets of one S3 service (same endpoint, region and credentials):
//! CopyObject for an object up to one part, UploadPartCopy in parts above it, as the AWS CLI
//! does. No object byte passes through ferry, so there is nothing to hash and no checksum is
//! recorded: the `ferry-sha256` metadata the source may carry is copied with the object but not
//! vouched for (nothing checked it against the bytes). Verification relies on the MD5 ETags
//! (single-part) or a re-read.

use futures::StreamExt;

use super::copy::{Copied, CopyError};
use super::parts::{joined, PartTasks, PARTS_IN_FLIGHT};
use super::resumable::{abort_upload, completed_upload, sdk};
use crate::store::{Listed, S3Raw};

/// `bucket/key` with the key percent-encoded, as `x-amz-copy-source` wants it.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Copies `item` from `src` to `dst_key` in `dst` on the server.
pub(super) async fn copy(
    src: &S3Raw,
    dst: &S3Raw,
    item: &Listed,
    dst_key: &str,
    part: u64,
) -> Result<Copied, CopyError> {
    let source = copy_source(&src.bucket, &item.key);
    let head = src
        .client
        .head_object()
        .bucket(&src.bucket)
        .key(&item.key)
        .set_if_match(item.etag.clone())
        .send()
        .await
        .map_err(sdk)?;

    if item.size <= part {
        let out = dst
            .client
            .copy_object()
            .bucket(&dst.bucket)
            .key(dst_key)
            .copy_source(&source)
            .set_copy_source_if_match(item.etag.clone())
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Copy)
            // The destination's settings, stated: a copy keeps neither the source's class nor
            // (without them) any encryption but the destination bucket's default.
            .set_server_side_encryption(dst.sse())
            .set_ssekms_key_id(dst.sse_kms_key_id())
            .set_storage_class(dst.storage_class())
            .send()
            .await
            .map_err(sdk)?;
        let dst_etag = out.copy_object_result().and_then(|r| r.e_tag()).map(str::to_string);
        return Ok(Copied {
            sha256: None,
            stored_sha256: None,
            dst_etag,
        });
    }

    let upload_id = create_upload(dst, dst_key, &head).await?;
    let completed = match copy_parts(dst, item, dst_key, &source, &upload_id, part).await {
        Ok(parts) => dst
            .complete_upload(dst_key, &upload_id, completed_upload(parts))
            .await
            .map_err(CopyError::Store),
        Err(e) => Err(e),
    };
    match completed {
        Ok(dst_etag) => Ok(Copied {
            sha256: None,
            stored_sha256: None,
            dst_etag,
        }),
        Err(e) => {
            if abort_upload(dst, dst_key, &upload_id).await {
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

/// Starts the destination's multipart upload with the source's headers and metadata (`head`).
async fn create_upload(
    dst: &S3Raw,
    dst_key: &str,
    head: &aws_sdk_s3::operation::head_object::HeadObjectOutput,
) -> Result<String, CopyError> {
    let created = dst
        .client
        .create_multipart_upload()
        .bucket(&dst.bucket)
        .key(dst_key)
        .set_content_type(head.content_type().map(str::to_string))
        .set_content_encoding(head.content_encoding().map(str::to_string))
        .set_content_disposition(head.content_disposition().map(str::to_string))
        .set_content_language(head.content_language().map(str::to_string))
        .set_cache_control(head.cache_control().map(str::to_string))
        .set_metadata(head.metadata().cloned())
        .set_server_side_encryption(dst.sse())
        .set_ssekms_key_id(dst.sse_kms_key_id())
        .set_storage_class(dst.storage_class())
        .send()
        .await
        .map_err(sdk)?;
    created
        .upload_id()
        .map(str::to_string)
        .ok_or_else(|| CopyError::Transient("CreateMultipartUpload returned no upload id".into()))
}

/// Copies the object's byte ranges into the upload as its parts, up to [`PARTS_IN_FLIGHT`] at
/// once, each pinned to the listed ETag; the parts (number, ETag) in order.
async fn copy_parts(
    dst: &S3Raw,
    item: &Listed,
    dst_key: &str,
    source: &str,
    upload_id: &str,
    part: u64,
) -> Result<Vec<(i32, String)>, CopyError> {
    let mut tasks = PartTasks::default();
    let mut parts: Vec<(i32, String)> = Vec::new();
    let (mut start, mut number) = (0u64, 0i32);
    while start < item.size {
        let end = (start + part).min(item.size) - 1;
        number += 1;
        let n = number;
        let fut = dst
            .client
            .upload_part_copy()
            .bucket(&dst.bucket)
            .key(dst_key)
            .upload_id(upload_id)
            .part_number(n)
            .copy_source(source)
            .copy_source_range(format!("bytes={start}-{end}"))
            .set_copy_source_if_match(item.etag.clone())
            .send();
        tasks.0.push(tokio::spawn(async move {
            let r = fut.await.map_err(sdk).and_then(|o| {
                o.copy_part_result()
                    .and_then(|r| r.e_tag())
                    .map(str::to_string)
                    .ok_or_else(|| CopyError::Transient("UploadPartCopy returned no ETag".into()))
            });
            (n, r)
        }));
        if tasks.0.len() >= PARTS_IN_FLIGHT {
            let (n, r) = joined(tasks.0.next().await.expect("non-empty"))?;
            parts.push((n, r?));
        }
        start = end + 1;
    }
    while let Some(r) = tasks.0.next().await {
        let (n, r) = joined(r)?;
        parts.push((n, r?));
    }
    parts.sort_by_key(|p| p.0);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_source_encodes_the_key_not_the_slashes() {
        assert_eq!(super::copy_source("b", "a b/100%/ü+x"), "b/a%20b/100%25/%C3%BC%2Bx");
    }
}
