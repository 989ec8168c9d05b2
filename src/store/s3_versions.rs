//! What a versioned S3 bucket keeps beside its current objects: noncurrent versions and delete
//! markers. ferry copies current objects only (as `aws s3 sync` and rclone do by default); these
//! are counted so that a move does not leave a bucket's history behind without a word.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectVersions.html>

use aws_sdk_s3::types::EncodingType;

use super::s3::{refused_2xx_body, url_decoded};
use super::xml::{self, Node};
use super::{sdk_error, S3Raw};
use crate::redact;

/// One version that is not the current object of its key, or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldVersion {
    pub key: String,
    pub size: u64,
    pub delete_marker: bool,
}

impl S3Raw {
    /// Whether versioning was ever turned on (`Enabled` or `Suspended`): only then can a bucket
    /// hold old versions, so an unversioned bucket costs one request and no second listing.
    pub async fn versioned(&self) -> Result<bool, object_store::Error> {
        match self.client.get_bucket_versioning().bucket(&self.bucket).send().await {
            Ok(out) => Ok(out.status().is_some()),
            // An S3-compatible server without versioning: nothing to count.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 501) => Ok(false),
            // moto answers with a `GetBucketVersioningResponse` root where S3 documents
            // `VersioningConfiguration`, and the SDK refuses it: read from the body as received.
            Err(e) => match refused_2xx_body(&e) {
                Some(body) => versioning_status(body).map_err(|why| object_store::Error::Generic {
                    store: "S3",
                    source: format!("unreadable GetBucketVersioning answer: {why}").into(),
                }),
                None => Err(sdk_error(e)),
            },
        }
    }

    /// Every noncurrent version and every delete marker under `prefix`, page by page, keys
    /// exactly as stored (asked URL-encoded, as `list` does, and decoded here).
    pub async fn old_versions(
        &self,
        prefix: &str,
        mut each: impl FnMut(OldVersion),
    ) -> Result<(), object_store::Error> {
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .encoding_type(EncodingType::Url)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(sdk_error)?;
            // With `encoding-type=url`, keys and NextKeyMarker come back encoded.
            let encoded = page.encoding_type() == Some(&EncodingType::Url);
            let key = |k: Option<&str>| -> Result<String, object_store::Error> {
                let k = k.unwrap_or_default();
                if !encoded {
                    return Ok(k.to_string());
                }
                url_decoded(k).map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: redact::redact(&format!("listed version key `{k}` is not URL-encoded UTF-8: {e}")).into(),
                })
            };
            for v in page.versions().iter().filter(|v| v.is_latest() != Some(true)) {
                each(OldVersion {
                    key: key(v.key())?,
                    size: v.size().unwrap_or(0).max(0) as u64,
                    delete_marker: false,
                });
            }
            for m in page.delete_markers() {
                each(OldVersion {
                    key: key(m.key())?,
                    size: 0,
                    delete_marker: true,
                });
            }
            if page.is_truncated() != Some(true) {
                return Ok(());
            }
            key_marker = page.next_key_marker().map(|k| key(Some(k))).transpose()?;
            version_marker = page.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() {
                return Err(object_store::Error::Generic {
                    store: "S3",
                    source: "ListObjectVersions: a truncated page without NextKeyMarker".into(),
                });
            }
        }
    }
}

/// Whether a GetBucketVersioning body (any root) has a `Status` (`Enabled` or `Suspended`).
fn versioning_status(body: &[u8]) -> Result<bool, String> {
    let mut status = false;
    xml::walk(body, |node| {
        if let Node::Close {
            name: b"Status", text, ..
        } = node
        {
            status = !text.trim().is_empty();
        }
        Ok(())
    })?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::versioning_status;

    /// S3's documented answer and moto's, enabled, suspended and never turned on.
    #[test]
    fn versioning_answers() {
        let s3 = br#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;
        let moto = br#"<?xml version="1.0" encoding="UTF-8"?><GetBucketVersioningResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Suspended</Status></GetBucketVersioningResponse>"#;
        let never = br#"<GetBucketVersioningResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>"#;
        assert_eq!(versioning_status(s3), Ok(true));
        assert_eq!(versioning_status(moto), Ok(true));
        assert_eq!(versioning_status(never), Ok(false));
    }
}
