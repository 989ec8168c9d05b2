//! How objects are written to an S3 provider (issue 16): the plan's `sse`, `sse-kms-key-id` and
//! `storage-class`, applied on every path a byte is written by, whichever client writes it.
//!
//! - object_store (single PUTs, dumps and manifests through `WriteMultipart`, multipart uploads):
//!   encryption through `AmazonS3Builder`, which adds its headers to every PUT and
//!   CreateMultipartUpload; the storage class through [`StorageClassed`], which wraps the store,
//!   because object_store has no builder setting for it, only the per-request
//!   `Attribute::StorageClass`, and a wrapper cannot be forgotten by a new caller.
//! - the AWS SDK (resumable multipart uploads, CopyObject, UploadPartCopy): [`S3Raw::sse`],
//!   [`S3Raw::sse_kms_key_id`] and [`S3Raw::storage_class`], set on each CreateMultipartUpload and
//!   CopyObject. A server-side copy sets them explicitly: S3 does not carry the source's class
//!   to a copy, and leaves its encryption to the destination bucket's default.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    Attribute, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

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

/// The store itself where the plan names no storage class, else wrapped in [`StorageClassed`].
pub(super) fn with_storage_class(store: Arc<dyn ObjectStore>, w: &S3Write) -> Arc<dyn ObjectStore> {
    match &w.storage_class {
        Some(class) => Arc::new(StorageClassed {
            inner: store,
            class: class.clone(),
        }),
        None => store,
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

/// An S3 store whose every write carries `x-amz-storage-class`: PUTs and CreateMultipartUpload
/// (the class of a multipart object is the upload's). Reads, listings and deletes pass through.
#[derive(Debug)]
pub(super) struct StorageClassed {
    inner: Arc<dyn ObjectStore>,
    class: String,
}

impl StorageClassed {
    /// The plan's class, unless the caller set one.
    fn classed(&self, attributes: &mut object_store::Attributes) {
        if attributes.get(&Attribute::StorageClass).is_none() {
            attributes.insert(Attribute::StorageClass, self.class.clone().into());
        }
    }
}

impl fmt::Display for StorageClassed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (storage class {})", self.inner, self.class)
    }
}

#[async_trait::async_trait]
impl ObjectStore for StorageClassed {
    async fn put_opts(&self, location: &Path, payload: PutPayload, mut opts: PutOptions) -> Result<PutResult> {
        self.classed(&mut opts.attributes);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        mut opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.classed(&mut opts.attributes);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    /// object_store's CopyObject takes no attributes, so a copy through it would land in
    /// STANDARD: refused rather than done in the wrong class (ferry copies on the server through
    /// the SDK, `sync/server_side`, which sets the class).
    async fn copy_opts(&self, from: &Path, to: &Path, _: CopyOptions) -> Result<()> {
        Err(object_store::Error::NotSupported {
            source: format!("copying `{from}` to `{to}` would not keep storage class {}", self.class).into(),
        })
    }

    async fn rename_opts(&self, from: &Path, to: &Path, _: RenameOptions) -> Result<()> {
        self.copy_opts(from, to, CopyOptions::default()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn every_write_carries_the_class_unless_one_is_given() {
        let w = S3Write {
            storage_class: Some("STANDARD_IA".into()),
            ..Default::default()
        };
        let store = with_storage_class(Arc::new(InMemory::new()), &w);
        store.put(&Path::from("a"), "x".into()).await.unwrap();
        let got = store.get(&Path::from("a")).await.unwrap();
        assert_eq!(
            got.attributes.get(&Attribute::StorageClass).map(|v| v.as_ref()),
            Some("STANDARD_IA")
        );
        let mut up = store.put_multipart(&Path::from("b")).await.unwrap();
        up.put_part("y".into()).await.unwrap();
        up.complete().await.unwrap();
        let got = store.get(&Path::from("b")).await.unwrap();
        assert_eq!(
            got.attributes.get(&Attribute::StorageClass).map(|v| v.as_ref()),
            Some("STANDARD_IA")
        );
        assert!(store.copy(&Path::from("a"), &Path::from("c")).await.is_err());
    }
}
