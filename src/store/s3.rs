//! S3 listings through the AWS SDK (see `Store::s3` for why not object_store's), with keys
//! asked for URL-encoded and decoded here; the parts of an open multipart upload (which a
//! resumed copy does not send again); and how an object is encrypted, which decides whether its
//! ETag is an MD5.

use std::collections::HashMap;

use aws_sdk_s3::types::EncodingType;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::xml::{self, Node};
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
                                class: o.storage_class().map(|c| c.as_str().to_string()),
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

/// The parts of an open multipart upload: part number -> (ETag as listed, size).
pub type Parts = HashMap<i32, (String, u64)>;

impl S3Raw {
    /// Aborts upload `upload_id` of `key`; false when the server could not be told, or the
    /// upload would not stay gone (it stays open; the caller journals it for the next run).
    ///
    /// With `settle`, the abort is checked: a part upload still in flight when the abort
    /// arrives "might or might not succeed", and AWS advises aborting more than once and making
    /// sure ListParts finds nothing
    /// (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_AbortMultipartUpload.html>). A copy
    /// that fails part-way drops its other part requests, and one already on its way (a slow
    /// link, a proxy) can land after the abort and open the upload again on servers that keep
    /// uploads as folders (SeaweedFS did, in the fault tests). So the upload is looked for
    /// again after a pause, and aborted again while it is found.
    pub async fn abort_upload(&self, key: &str, upload_id: &str, settle: bool) -> bool {
        const PAUSES_MS: [u64; 3] = [500, 1000, 2000];
        for (round, pause) in std::iter::once(0).chain(PAUSES_MS).enumerate() {
            if round > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                match self.list_parts(key, upload_id).await {
                    // Still there (or back): abort again below.
                    Ok(_) => {}
                    Err(e) if e.starts_with("NoSuchUpload") => {
                        // Gone; one more look after the longest pause catches a late part.
                        if round >= 2 {
                            return true;
                        }
                        continue;
                    }
                    Err(_) => {}
                }
            }
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await;
            let told = match aborted {
                Ok(_) => true,
                // Already gone: nothing is open.
                Err(e) => e
                    .as_service_error()
                    .is_some_and(|s| s.meta().code() == Some("NoSuchUpload")),
            };
            if !told {
                return false;
            }
            if !settle {
                return true;
            }
        }
        false
    }
}

impl S3Raw {
    /// ListParts, page by page: every part the server holds for upload `upload_id` of `key`.
    ///
    /// A server may answer 200 with a page the SDK refuses to read: moto names the root
    /// `ListPartsResponse` where S3 documents `ListPartsResult`. Such an answer is read here, from
    /// its body as received, accepting either root. The error says why the parts could not be
    /// listed (the upload is gone, the server refused, the page is unreadable).
    /// <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListParts.html>
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Parts, String> {
        let mut parts = Parts::new();
        let mut marker: Option<String> = None;
        loop {
            let sent = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let page = match sent {
                Ok(out) => PartsPage {
                    parts: out
                        .parts()
                        .iter()
                        .filter_map(|p| {
                            Some((
                                p.part_number()?,
                                (p.e_tag()?.to_string(), p.size().unwrap_or(0).max(0) as u64),
                            ))
                        })
                        .collect(),
                    next: match (out.is_truncated(), out.next_part_number_marker()) {
                        (Some(true), Some(m)) => Some(m.to_string()),
                        _ => None,
                    },
                },
                Err(e) => match refused_2xx_body(&e) {
                    Some(body) => parse_parts_page(body).map_err(|p| format!("unreadable ListParts answer: {p}"))?,
                    // The server's own words where it refused (`NoSuchUpload: …`).
                    None => {
                        return Err(match e.as_service_error().map(|s| s.meta()) {
                            Some(m) if m.code().is_some() => {
                                format!("{}: {}", m.code().unwrap_or_default(), m.message().unwrap_or_default())
                            }
                            _ => sdk_error(e).to_string(),
                        })
                    }
                },
            };
            parts.extend(page.parts);
            match page.next {
                // A server that names the page it just sent as the next one would never end.
                Some(m) if marker.as_deref() != Some(m.as_str()) => marker = Some(m),
                Some(m) => return Err(format!("ListParts repeats its page after part `{m}`")),
                None => return Ok(parts),
            }
        }
    }
}

impl S3Raw {
    /// CompleteMultipartUpload of `upload_id` from `parts`; the new object's ETag.
    ///
    /// moto answers 200 with a `CompleteMultipartUploadResponse` root where S3 documents
    /// `CompleteMultipartUploadResult`, and the SDK refuses to read it; such an answer is read
    /// here, from its body as received. S3 may answer 200 with an `<Error>` body when a
    /// completion fails after it started
    /// (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html>): that,
    /// and any answer without an ETag, stays an error.
    pub async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: aws_sdk_s3::types::CompletedMultipartUpload,
    ) -> Result<Option<String>, object_store::Error> {
        let sent = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(parts)
            .send()
            .await;
        match sent {
            Ok(o) => Ok(o.e_tag().map(str::to_string)),
            Err(e) => {
                let read = refused_2xx_body(&e).and_then(|body| completed_etag(body).ok());
                match read {
                    Some(etag) => Ok(Some(etag)),
                    None => Err(sdk_error(e)),
                }
            }
        }
    }
}

/// The ETag of a CompleteMultipartUpload answer whose root is `CompleteMultipartUploadResult`
/// (S3) or `CompleteMultipartUploadResponse` (moto).
fn completed_etag(body: &[u8]) -> Result<String, String> {
    let mut etag = None;
    xml::walk(body, |node| match node {
        Node::Open { start, parent: None } => match start.local_name().as_ref() {
            b"CompleteMultipartUploadResult" | b"CompleteMultipartUploadResponse" => Ok(()),
            other => Err(format!("root `<{}>`", String::from_utf8_lossy(other))),
        },
        Node::Close {
            name: b"ETag",
            parent: Some(_),
            text,
        } => {
            etag = Some(std::mem::take(text));
            Ok(())
        }
        _ => Ok(()),
    })?;
    etag.filter(|e| !e.trim().is_empty()).ok_or_else(|| "no ETag".into())
}

impl S3Raw {
    async fn head(
        &self,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::head_object::HeadObjectOutput, object_store::Error> {
        self.client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(sdk_error)
    }

    /// How `key` is encrypted at rest, from a HEAD.
    pub async fn encryption(&self, key: &str) -> Result<Encryption, object_store::Error> {
        let head = self.head(key).await?;
        Ok(Encryption {
            sse: head.server_side_encryption().map(|s| s.as_str().to_string()),
            customer_algorithm: head.sse_customer_algorithm().map(str::to_string),
        })
    }

    /// Whether an archived (`GLACIER`, `DEEP_ARCHIVE`) object can be read now, from a HEAD's
    /// `x-amz-restore`: a restored copy lists with its archive class all the same, so the
    /// listing alone cannot tell. <https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html>
    pub async fn restore_state(&self, key: &str) -> Result<Restore, object_store::Error> {
        Ok(Restore::of(self.head(key).await?.restore()))
    }
}

/// An archived object's restore, as `x-amz-restore` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// No restore asked for (no header).
    None,
    /// `ongoing-request="true"`: asked for, not readable yet (hours for Glacier).
    InProgress,
    /// `ongoing-request="false", expiry-date=…`: a readable copy exists until the expiry date.
    Restored,
}

impl Restore {
    fn of(header: Option<&str>) -> Restore {
        let Some(h) = header else { return Restore::None };
        let ongoing = h
            .split(',')
            .filter_map(|part| part.trim().strip_prefix("ongoing-request="))
            .map(|v| v.trim_matches('"').eq_ignore_ascii_case("true"))
            .next();
        match ongoing {
            Some(false) => Restore::Restored,
            Some(true) => Restore::InProgress,
            // A header ferry cannot read: do not claim the object is readable.
            None => Restore::None,
        }
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

/// The body of a 2xx answer the SDK could not parse. moto names some roots otherwise than S3
/// documents them (`ListPartsResponse`, `CompleteMultipartUploadResponse`,
/// `GetBucketVersioningResponse`), and the SDK refuses those; their callers read the body as
/// received. None for any other error.
pub(super) fn refused_2xx_body<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> Option<&[u8]> {
    e.raw_response()
        .filter(|r| r.status().is_success())
        .and_then(|r| r.body().bytes())
}

/// One ListParts page: its parts, and the marker of the next page (none on the last).
#[derive(Debug, Default, PartialEq)]
struct PartsPage {
    parts: Vec<(i32, (String, u64))>,
    next: Option<String>,
}

/// A ListParts page as XML, its root named `ListPartsResult` (S3) or `ListPartsResponse` (moto).
fn parse_parts_page(body: &[u8]) -> Result<PartsPage, String> {
    let mut page = PartsPage::default();
    let (mut number, mut etag, mut size) = (None, None, None);
    let mut truncated = false;
    let mut next = None;
    let mut root = false;
    xml::walk(body, |node| {
        let (name, parent, text) = match node {
            Node::Open { start, parent: None } => {
                let name = start.local_name();
                if !matches!(name.as_ref(), b"ListPartsResult" | b"ListPartsResponse") {
                    return Err(format!("root `<{}>`", String::from_utf8_lossy(name.as_ref())));
                }
                root = true;
                return Ok(());
            }
            Node::Open { .. } => return Ok(()),
            Node::Close { name, parent, text } => (name, parent, text),
        };
        match (name, parent) {
            (b"PartNumber", Some(b"Part")) => {
                number = Some(text.trim().parse().map_err(|_| format!("bad PartNumber `{text}`"))?)
            }
            (b"ETag", Some(b"Part")) => etag = Some(std::mem::take(text)),
            (b"Size", Some(b"Part")) => size = Some(text.trim().parse().map_err(|_| format!("bad Size `{text}`"))?),
            (b"Part", _) => {
                let n = number.take().ok_or("a part without a PartNumber")?;
                let e = etag.take().ok_or_else(|| format!("part {n} without an ETag"))?;
                let s = size.take().ok_or_else(|| format!("part {n} without a Size"))?;
                page.parts.push((n, (e, s)));
            }
            (b"IsTruncated", Some(_)) => truncated = text.trim() == "true",
            (b"NextPartNumberMarker", Some(_)) if !text.trim().is_empty() => next = Some(text.trim().to_string()),
            _ => {}
        }
        Ok(())
    })?;
    if !root {
        return Err("no ListParts root".into());
    }
    page.next = next.filter(|_| truncated);
    Ok(page)
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
pub(super) fn url_decoded(key: &str) -> Result<String, std::str::Utf8Error> {
    let spaced = key.replace('+', " ");
    Ok(percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()?
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header as AWS documents it, in both states; anything else is not "readable".
    #[test]
    fn restore_header_states() {
        assert_eq!(Restore::of(None), Restore::None);
        assert_eq!(Restore::of(Some("ongoing-request=\"true\"")), Restore::InProgress);
        assert_eq!(
            Restore::of(Some(
                "ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\""
            )),
            Restore::Restored
        );
        assert_eq!(Restore::of(Some("garbage")), Restore::None);
    }

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

    /// moto's answer (issue 13): the SDK refuses its root; every part is read from it.
    #[test]
    fn list_parts_pages_read_with_either_root() {
        let moto = r#"<?xml version="1.0" encoding="utf-8"?>
<ListPartsResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>ferry-a</Bucket><Key>k</Key><UploadId>u</UploadId><PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>2</NextPartNumberMarker><MaxParts>1000</MaxParts><IsTruncated>false</IsTruncated><Part><PartNumber>1</PartNumber><LastModified>2026-11-30T08:51:29.000Z</LastModified><ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag><Size>5242880</Size></Part><Part><PartNumber>2</PartNumber><ETag>&quot;aa&quot;</ETag><Size>7</Size></Part><Initiator><ID>x</ID></Initiator><StorageClass>STANDARD</StorageClass></ListPartsResponse>"#;
        let page = parse_parts_page(moto.as_bytes()).unwrap();
        assert_eq!(
            page.parts,
            vec![
                (1, ("\"d41d8cd98f00b204e9800998ecf8427e\"".to_string(), 5242880)),
                (2, ("\"aa\"".to_string(), 7))
            ]
        );
        // Not truncated: the marker it names is not a next page.
        assert_eq!(page.next, None);
        let s3 = "<ListPartsResult><IsTruncated>true</IsTruncated><NextPartNumberMarker>1</NextPartNumberMarker>\
                  <Part><PartNumber>1</PartNumber><ETag>e</ETag><Size>3</Size></Part></ListPartsResult>";
        let page = parse_parts_page(s3.as_bytes()).unwrap();
        assert_eq!(page.parts, vec![(1, ("e".to_string(), 3))]);
        assert_eq!(page.next.as_deref(), Some("1"));
    }

    /// moto's CompleteMultipartUpload answer is read; S3's 200-with-an-error is not a completion.
    #[test]
    fn completed_etag_read_from_either_root_and_never_from_an_error() {
        let moto = r#"<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>http://x/b/k</Location><Bucket>b</Bucket><Key>k</Key><ETag>"0123-2"</ETag></CompleteMultipartUploadResponse>"#;
        assert_eq!(completed_etag(moto.as_bytes()).unwrap(), "\"0123-2\"");
        let s3 = "<CompleteMultipartUploadResult><ETag>&quot;e-3&quot;</ETag></CompleteMultipartUploadResult>";
        assert_eq!(completed_etag(s3.as_bytes()).unwrap(), "\"e-3\"");
        let error = "<Error><Code>InternalError</Code><Message>m</Message></Error>";
        assert_eq!(completed_etag(error.as_bytes()).unwrap_err(), "root `<Error>`");
        assert!(completed_etag(b"<CompleteMultipartUploadResult></CompleteMultipartUploadResult>").is_err());
        assert!(completed_etag(b"").is_err());
    }

    #[test]
    fn a_list_parts_answer_that_is_not_one_is_an_error() {
        let err = parse_parts_page(b"<Error><Code>NoSuchUpload</Code></Error>").unwrap_err();
        assert_eq!(err, "root `<Error>`");
        assert!(parse_parts_page(b"<ListPartsResult><Part><PartNumber>1</PartNumber>").is_err());
        assert!(parse_parts_page(
            b"<ListPartsResult><Part><PartNumber>1</PartNumber><Size>1</Size></Part></ListPartsResult>"
        )
        .is_err());
        assert!(parse_parts_page(b"").is_err());
    }
}
