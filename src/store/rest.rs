//! What the Azure and GCS raw listings share: one listing page fetched through the store's
//! throttled HTTP client (so a listing takes request slots like every other request of the
//! store), retried with backoff on throttling, server errors and dropped connections, and a
//! failed answer turned into a redacted object_store error. Each service's request and page
//! format live in `azure` and `gcs`; this module knows neither.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::client::{HttpClient, HttpRequest};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use super::Listed;
use crate::redact::redact;

/// Everything but RFC 3986's unreserved characters is percent-encoded in a query value or a path
/// segment, so a prefix or page token with `+`, `&`, `/` or a control character arrives intact.
pub(super) const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A query value or path segment, percent-encoded.
pub(super) fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

/// As object_store's client (see `provider::retry_config`): 8 attempts, backoff from 100 ms
/// doubling to 15 s, and no new attempt after 90 s.
const ATTEMPTS: u32 = 8;
const RETRY_FOR: Duration = Duration::from_secs(90);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// How much of an error body is quoted in the message.
const QUOTED: usize = 300;

/// Answers worth another attempt: request timeout, throttling, and the transient server errors.
pub(super) fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// The cause of an error from a service that did not answer, or answered only with statuses
/// worth a retry (408, 429, 5xx), until ferry gave up: the service is not available now,
/// rather than refusing the request (see [`super::probe::unavailable`]). Reads as its message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unavailable(pub String);

/// Fetches one page: `request` builds the request afresh for each attempt (a token may have been
/// refreshed; Azure signs the date). `store` names the service in errors (`MicrosoftAzure`,
/// `GCS`), `what` the request (`listing container `c` under `p/``).
pub(super) async fn fetch<F, Fut>(
    client: &HttpClient,
    store: &'static str,
    what: &str,
    mut request: F,
) -> object_store::Result<Bytes>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = object_store::Result<HttpRequest>>,
{
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let problem = match client.execute(request().await?).await {
            Ok(res) => {
                let status = res.status().as_u16();
                let body = res.into_body().bytes().await;
                match body {
                    Ok(b) if (200..300).contains(&status) => return Ok(b),
                    Ok(b) if !retryable(status) => return Err(status_error(store, what, status, &b)),
                    Ok(b) => format!("HTTP {status}: {}", quote(&b)),
                    Err(e) => format!("HTTP {status}, then the body was cut off: {e}"),
                }
            }
            Err(e) => without_queries(&super::error_chain(&e)),
        };
        if attempt >= ATTEMPTS || started.elapsed() + backoff > RETRY_FOR {
            return Err(object_store::Error::Generic {
                store,
                source: Box::new(Unavailable(redact(&format!(
                    "{what}: {problem} (gave up after {attempt} attempts)"
                )))),
            });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A listing as a stream of its pages' entries. `page(token)` fetches one page and returns its
/// entries with the token of the next page (none after the last); the first call gets none.
/// A page is fetched only when the previous one has been consumed, so memory holds one page
/// whatever the listing's length; an error ends the stream.
pub(super) fn paged<F, Fut>(page: F) -> BoxStream<'static, object_store::Result<Listed>>
where
    F: Fn(Option<String>) -> Fut + Send + 'static,
    Fut: Future<Output = object_store::Result<(Vec<Listed>, Option<String>)>> + Send + 'static,
{
    // `next`: Some(token) for the page to fetch (token None for the first), None once done.
    futures::stream::try_unfold((page, Some(None)), |(page, next)| async move {
        let Some(token) = next else {
            return Ok::<_, object_store::Error>(None);
        };
        let (items, token) = page(token).await?;
        Ok(Some((items, (page, token.map(Some)))))
    })
    .map_ok(|items| futures::stream::iter(items.into_iter().map(Ok)))
    .try_flatten()
    .boxed()
}

/// A transport error's text with the query of every URL in it cut off: reqwest names the URL
/// it failed on, and an Azure SAS token travels in the query.
fn without_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = [rest.find("http://"), rest.find("https://")]
        .into_iter()
        .flatten()
        .min()
    {
        let url_end = rest[at..]
            .find(|c: char| c.is_whitespace() || c == ')' || c == '"' || c == '\'')
            .map_or(rest.len(), |n| at + n);
        let url = &rest[at..url_end];
        out.push_str(&rest[..at]);
        out.push_str(url.split('?').next().unwrap_or(url));
        rest = &rest[url_end..];
    }
    out.push_str(rest);
    out
}

/// The start of an error body, on one line.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A refused listing as the object_store error of its kind, so callers tell "not found" and
/// "forbidden" from a transient failure as they do for object_store's own listings.
fn status_error(store: &'static str, what: &str, status: u16, body: &[u8]) -> object_store::Error {
    let message = redact(&format!("{what}: HTTP {status}: {}", quote(body)));
    let path = what.to_string();
    match status {
        404 => object_store::Error::NotFound {
            path,
            source: message.into(),
        },
        401 => object_store::Error::Unauthenticated {
            path,
            source: message.into(),
        },
        403 => object_store::Error::PermissionDenied {
            path,
            source: message.into(),
        },
        409 => object_store::Error::AlreadyExists {
            path,
            source: message.into(),
        },
        _ => object_store::Error::Generic {
            store,
            source: message.into(),
        },
    }
}

/// A page that could not be read as the service's listing format.
pub(super) fn bad_page(store: &'static str, what: &str, e: impl std::fmt::Display) -> object_store::Error {
    object_store::Error::Generic {
        store,
        source: redact(&format!("{what}: unreadable answer: {e}")).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_characters_stay_as_they_are() {
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode("a b+c/d&e=f\t%"), "a%20b%2Bc%2Fd%26e%3Df%09%25");
        assert_eq!(encode("ü"), "%C3%BC");
    }

    #[test]
    fn urls_in_transport_errors_lose_their_queries() {
        assert_eq!(
            without_queries(
                "error sending request for url (https://a.blob.core.windows.net/c?restype=container&sig=SECRET): \
                 connection refused; http://x/y?z=1 then"
            ),
            "error sending request for url (https://a.blob.core.windows.net/c): connection refused; http://x/y then"
        );
        assert_eq!(without_queries("no url here"), "no url here");
    }

    #[test]
    fn refusals_keep_their_kind() {
        assert!(matches!(
            status_error("GCS", "x", 404, b"nope"),
            object_store::Error::NotFound { .. }
        ));
        assert!(matches!(
            status_error("GCS", "x", 403, b""),
            object_store::Error::PermissionDenied { .. }
        ));
        assert!(matches!(
            status_error("GCS", "x", 401, b""),
            object_store::Error::Unauthenticated { .. }
        ));
        let e = status_error("GCS", "listing bucket `b`", 400, b"<Error>\n  bad\n</Error>");
        assert_eq!(
            e.to_string(),
            "Generic GCS error: listing bucket `b`: HTTP 400: <Error> bad </Error>"
        );
    }
}
