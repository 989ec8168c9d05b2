//! Reaching a store before anything is written: one cheap listing request per location, which
//! tells an unreachable endpoint or a refused credential before a run starts, and names the
//! keys of the first page that no run can carry.

use std::time::Duration;

use aws_sdk_s3::types::EncodingType;
use futures::{StreamExt, TryStreamExt};

use super::rest::{retryable, Unavailable};
use super::{key_to_path, prefix_path, s3, sdk_message, KeyError, Store};

impl Store {
    /// Reaches the store with one cheap request, for `check --connect`, and returns the keys of
    /// the first listed page (up to [`PROBE_PAGE`] keys) that ferry cannot carry, so they are
    /// named before a run reports them as failed.
    /// Reachability and permission are judged: S3 asks for one page through the SDK (which
    /// retries like every other request), Azure and GCS through their raw listings (which
    /// retry too), other stores list one page, retried a few times so one cut-off response
    /// does not fail a whole run.
    pub async fn probe(&self, prefix: &str) -> Result<Vec<Uncarriable>, object_store::Error> {
        if let Some(raw) = &self.s3 {
            let page = raw
                .client
                .list_objects_v2()
                .bucket(&raw.bucket)
                .prefix(prefix)
                .max_keys(PROBE_PAGE as i32)
                .encoding_type(EncodingType::Url)
                .send()
                .await
                .map_err(|e| sdk_reach_error(raw, e))?;
            let keys: Vec<String> = s3::page_keys(&page)
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Result<_, _>>()?;
            return Ok(uncarriable(keys));
        }
        if let Some(raw) = &self.raw {
            let keys: Vec<String> = raw
                .list(prefix)
                .take(PROBE_PAGE)
                .map_ok(|l| l.key)
                .try_collect()
                .await?;
            return Ok(uncarriable(keys));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let p = prefix_path(prefix).map_err(|e| object_store::Error::Generic {
                store: "ferry",
                source: format!("prefix `{prefix}`: {e}").into(),
            })?;
            let mut s = self.inner.list(p.as_ref());
            match s.next().await {
                // A key object_store cannot name is the transfer's business (reported per object).
                Some(Err(object_store::Error::InvalidPath { .. })) => return Ok(Vec::new()),
                Some(Err(e)) if attempt >= 4 || !transient(&e) => return Err(e),
                Some(Err(_)) => tokio::time::sleep(Duration::from_millis(200 << attempt)).await,
                _ => return Ok(Vec::new()),
            }
        }
    }
}

/// Whether `e` comes from credentials that the setup says cannot exist (see `aws_creds`).
/// An SDK error on a request that reaches an S3 store (a probe, a bucket call) as an
/// object_store error: one that did not answer, or answered only with statuses worth a retry,
/// is [`Unavailable`] (exit 3); a refusal names its HTTP status and the credentials' source.
pub(super) fn sdk_reach_error<E>(
    raw: &super::S3Raw,
    e: aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> object_store::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    // The HTTP status tells "forbidden" from "not found" at a glance, and the credentials'
    // source which keys were refused, or failed to load.
    let status = e.raw_response().map(|r| r.status().as_u16());
    let misconfigured = credentials_misconfigured(&e);
    let text = sdk_message(e);
    let from = if text.contains(&raw.source) {
        String::new()
    } else {
        format!("{}: ", raw.source)
    };
    let source: Box<dyn std::error::Error + Send + Sync> = match status {
        Some(code) if !retryable(code) => format!("{from}HTTP {code}: Generic S3 error: {text}").into(),
        Some(code) => Box::new(Unavailable(format!("{from}HTTP {code}: Generic S3 error: {text}"))),
        // Credentials that cannot be had as configured (a profile that does not exist): no
        // request was sent, and waiting will not help.
        None if misconfigured => format!("{from}{text}").into(),
        // No answer: the SDK's dispatch or timeout failure, after its retries.
        None => Box::new(Unavailable(format!("{from}{text}"))),
    };
    object_store::Error::Generic { store: "S3", source }
}

fn credentials_misconfigured(e: &(dyn std::error::Error + 'static)) -> bool {
    use aws_credential_types::provider::error::CredentialsError;
    let mut cause = Some(e);
    while let Some(c) = cause {
        if matches!(
            c.downcast_ref::<CredentialsError>(),
            Some(CredentialsError::InvalidConfiguration(_))
        ) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Keys the probe looks at: one page of a ListObjectsV2, GCS's page, a fifth of Azure's.
pub const PROBE_PAGE: usize = 1000;

/// A listed key that ferry cannot carry, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncarriable {
    pub key: String,
    pub reason: KeyError,
}

fn uncarriable(keys: Vec<String>) -> Vec<Uncarriable> {
    keys.into_iter()
        .filter_map(|key| key_to_path(&key).err().map(|reason| Uncarriable { key, reason }))
        .collect()
}

/// Errors worth another attempt: not "not found", "forbidden", "unauthenticated" or bad input.
fn transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotImplemented { .. }
    )
}

/// Whether a failed probe means "not available now" (exit 3: retry later) rather than "refused"
/// (exit 2: fix the plan or the credentials): no answer (DNS, a refused connection, a timeout)
/// or only answers worth a retry (408, 429, 5xx) until ferry gave up. A service that answered
/// 400, 401, 403 or 404 is reachable, and the plan, the bucket or the credentials are wrong.
pub fn unavailable(e: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<Unavailable>() {
            return true;
        }
        if let Some(h) = c.downcast_ref::<HttpError>() {
            if matches!(
                h.kind(),
                HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Timeout | HttpErrorKind::Interrupted
            ) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}
