//! The plan's `storage-class` on every write to a provider (issue 16): S3 classes, Azure access
//! tiers, GCS classes. object_store has no builder setting for it, only the per-request
//! `Attribute::StorageClass` (`x-amz-storage-class`, `x-ms-access-tier`, `x-goog-storage-class`),
//! so the store is wrapped: a wrapper cannot be forgotten by a new caller.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    Attribute, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// The store itself where the plan names no storage class, else wrapped in [`StorageClassed`].
pub(super) fn with_storage_class(store: Arc<dyn ObjectStore>, class: Option<&str>) -> Arc<dyn ObjectStore> {
    match class {
        Some(class) => Arc::new(StorageClassed {
            inner: store,
            class: class.to_string(),
        }),
        None => store,
    }
}

/// A store whose every write carries the plan's storage class: PUTs and multipart uploads (the
/// class of a multipart object is given when the upload starts: S3's CreateMultipartUpload,
/// GCS's initiate; Azure's Put Block List). Reads, listings and deletes pass through.
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

    /// object_store's copy takes no attributes, so a copy through it would land in the default
    /// class: refused rather than done in the wrong class (ferry copies on the server only
    /// between S3 buckets, through the SDK, `sync/server_side`, which sets the class).
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
        let store = with_storage_class(Arc::new(InMemory::new()), Some("STANDARD_IA"));
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
