//! S3 listings through the AWS SDK (see `Store::s3` for why not object_store's), with keys
//! asked for URL-encoded and decoded here; and how an object is encrypted, which decides
//! whether its ETag is an MD5.

use aws_sdk_s3::types::EncodingType;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{sdk_error, Listed, S3Raw};
use crate::redact;

impl S3Raw {
    /// ListObjectsV2, page by page, keys exactly as stored.
    ///
    /// Asked with `encoding-type=url`: XML 1.0 cannot carry some characters a key may hold
    /// (`\x01`, ESC), and a server answering with them raw makes the page unreadable (moto), or
    /// replaces them (SeaweedFS answers U+FFFD), so the listing would fail or name keys that do
    /// not exist. <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html>
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<Listed, object_store::Error>> {
        let pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .encoding_type(EncodingType::Url)
            .into_paginator()
            .send();
        futures::stream::unfold(pages, |mut pages| async move { pages.next().await.map(|p| (p, pages)) })
            .map(|page| match page {
                Ok(p) => {
                    let items: Vec<Result<Listed, object_store::Error>> = page_keys(&p)
                        .into_iter()
                        .map(|(key, o)| {
                            Ok(Listed {
                                key: key?,
                                size: o.size().unwrap_or(0).max(0) as u64,
                                etag: o.e_tag().map(str::to_string),
                                version: None,
                                problem: None,
                            })
                        })
                        .collect();
                    futures::stream::iter(items).left_stream()
                }
                Err(e) => futures::stream::iter(vec![Err(sdk_error(e))]).right_stream(),
            })
            .flatten()
            .boxed()
    }
}

impl S3Raw {
    /// How `key` is encrypted at rest, from a HEAD.
    pub async fn encryption(&self, key: &str) -> Result<Encryption, object_store::Error> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(Encryption {
            sse: head.server_side_encryption().map(|s| s.as_str().to_string()),
            customer_algorithm: head.sse_customer_algorithm().map(str::to_string),
        })
    }
}

/// An object's encryption as a HEAD reports it: `x-amz-server-side-encryption` and
/// `x-amz-server-side-encryption-customer-algorithm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    pub sse: Option<String>,
    pub customer_algorithm: Option<String>,
}

impl Encryption {
    /// Whether the object's ETag is not an MD5 of its bytes, although it looks like one: AWS
    /// documents that for SSE-KMS (and DSSE-KMS) and SSE-C objects; SSE-S3 (`AES256`) and
    /// unencrypted single-part objects have MD5 ETags.
    /// <https://docs.aws.amazon.com/AmazonS3/latest/API/API_Object.html>
    pub fn etag_is_opaque(&self) -> bool {
        self.customer_algorithm.is_some() || matches!(self.sse.as_deref(), Some("aws:kms" | "aws:kms:dsse"))
    }
}

impl std::fmt::Display for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.customer_algorithm, &self.sse) {
            (Some(a), _) => write!(f, "encrypted with SSE-C (`{a}`)"),
            (None, Some(s)) => write!(f, "encrypted with `{s}`"),
            (None, None) => write!(f, "no server-side encryption reported"),
        }
    }
}

/// The keys of a ListObjectsV2 page, decoded where the server says it encoded them (a server
/// that ignores `encoding-type` answers without `EncodingType`, and its keys are taken as they
/// are).
pub(super) fn page_keys(
    page: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output,
) -> Vec<(Result<String, object_store::Error>, &aws_sdk_s3::types::Object)> {
    let encoded = page.encoding_type() == Some(&EncodingType::Url);
    page.contents()
        .iter()
        .filter_map(|o| {
            let key = o.key()?;
            let key = if encoded {
                url_decoded(key).map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: redact::redact(&format!("listed key `{key}` is not URL-encoded UTF-8: {e}")).into(),
                })
            } else {
                Ok(key.to_string())
            };
            Some((key, o))
        })
        .collect()
}

/// A key as S3 encodes it for `encoding-type=url`: a form value, space as `+` (S3, SeaweedFS;
/// moto writes `%20`) and a literal `+` as `%2B` (all three).
fn url_decoded(key: &str) -> Result<String, std::str::Utf8Error> {
    let spaced = key.replace('+', " ");
    Ok(percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()?
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kms_and_customer_keys_make_an_etag_opaque() {
        let enc = |sse: Option<&str>, c: Option<&str>| Encryption {
            sse: sse.map(str::to_string),
            customer_algorithm: c.map(str::to_string),
        };
        assert!(enc(Some("aws:kms"), None).etag_is_opaque());
        assert!(enc(Some("aws:kms:dsse"), None).etag_is_opaque());
        assert!(enc(None, Some("AES256")).etag_is_opaque());
        // SSE-S3 and no encryption keep MD5 ETags.
        assert!(!enc(Some("AES256"), None).etag_is_opaque());
        assert!(!enc(None, None).etag_is_opaque());
        assert_eq!(enc(Some("aws:kms"), None).to_string(), "encrypted with `aws:kms`");
    }

    #[test]
    fn url_encoded_keys_decode_to_what_was_stored() {
        // As SeaweedFS and S3 write them (space as `+`), and as moto does (`%20`).
        assert_eq!(url_decoded("q/a+b").unwrap(), "q/a b");
        assert_eq!(url_decoded("q/a%20b").unwrap(), "q/a b");
        assert_eq!(url_decoded("q/a%2Bb").unwrap(), "q/a+b");
        assert_eq!(url_decoded("q/a%2520b").unwrap(), "q/a%20b");
        assert_eq!(url_decoded("q/x%01y%1B%09%C3%BC").unwrap(), "q/x\u{1}y\u{1b}\tü");
        assert!(url_decoded("q/%FF").is_err());
    }
}
