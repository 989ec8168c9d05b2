//! How objects are written to an S3 provider (issue 16): the plan's `sse`, `sse-kms-key-id` and
//! `storage-class`, applied on every path a byte is written by, whichever client writes it.
//!
//! - object_store (single PUTs, dumps and manifests through `WriteMultipart`, multipart uploads):
//!   encryption through `AmazonS3Builder`, which adds its headers to every PUT and
//!   CreateMultipartUpload; the storage class through `classed::StorageClassed`, which wraps
//!   the store (as for Azure and GCS).
//! - the AWS SDK (resumable multipart uploads, CopyObject, UploadPartCopy): [`S3Raw::sse`],
//!   [`S3Raw::sse_kms_key_id`] and [`S3Raw::storage_class`], set on each CreateMultipartUpload and
//!   CopyObject. A server-side copy sets them explicitly: S3 does not carry the source's class
//!   to a copy, and leaves its encryption to the destination bucket's default.

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use super::S3Raw;
use crate::plan::S3Write;

/// object_store's builder with the plan's encryption: its headers go on every PUT and
/// CreateMultipartUpload it sends.
pub(super) fn with_encryption(b: AmazonS3Builder, w: &S3Write) -> AmazonS3Builder {
    // object_store does not export the encryption key enum; its documented names parse to it.
    let key = |name: &str| name.parse::<AmazonS3ConfigKey>().expect("object_store's own key name");
    let Some(sse) = w.sse else { return b };
    let b = b.with_config(key("aws_server_side_encryption"), sse.as_str());
    match &w.kms_key_id {
        Some(k) => b.with_config(key("aws_sse_kms_key_id"), k),
        None => b,
    }
}

impl S3Raw {
    /// `x-amz-server-side-encryption` for the SDK's writes.
    pub fn sse(&self) -> Option<aws_sdk_s3::types::ServerSideEncryption> {
        self.write.sse.map(|s| s.as_str().into())
    }

    /// `x-amz-server-side-encryption-aws-kms-key-id` for the SDK's writes.
    pub fn sse_kms_key_id(&self) -> Option<String> {
        self.write.kms_key_id.clone()
    }

    /// `x-amz-storage-class` for the SDK's writes.
    pub fn storage_class(&self) -> Option<aws_sdk_s3::types::StorageClass> {
        self.write.storage_class.as_deref().map(Into::into)
    }
}
