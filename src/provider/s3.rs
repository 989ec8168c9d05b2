//! S3 listings through the AWS SDK (see `Store::s3` for why not object_store's), with keys
//! asked for URL-encoded and decoded here.

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
