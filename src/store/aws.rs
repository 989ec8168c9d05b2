//! Opening an S3 provider: one credentials provider ([`AwsCreds`]), one endpoint and one region,
//! given to both clients, object_store's and the AWS SDK's (issue 16). The SDK client is always
//! built, whatever the credentials' source, because exact listings, resumed multipart uploads and
//! server-side copies need it (see `Store::s3`).

use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::Credentials;
use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;

use super::aws_creds::AwsCreds;
use super::{classed, client_options, env_secret, retry_config, s3_write, ProviderError, S3Raw};
use crate::plan::{ProviderSpec, S3Spec};
use crate::throttle::Throttle;

/// Opens both clients of an S3 provider.
pub(super) fn open(
    provider: &ProviderSpec,
    spec: &S3Spec,
    throttle: &Arc<Throttle>,
) -> Result<(Arc<dyn ObjectStore>, S3Raw), ProviderError> {
    let perr = |message: String, hint: Option<&str>| ProviderError {
        provider: provider.name.clone(),
        message: crate::redact::redact(&message),
        hint: hint.map(str::to_string),
    };
    let endpoint = endpoint(spec).map_err(|(m, h)| perr(m, Some(h)))?;
    let region = region(spec);
    // Nothing from the environment but what is set here: credentials, region and endpoint are
    // decided once, above and in `credentials`, for both clients alike.
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&spec.bucket)
        .with_client_options(client_options(provider))
        .with_retry(retry_config())
        .with_http_connector(crate::throttle::object_store_http::Connector(throttle.clone()))
        .with_virtual_hosted_style_request(!spec.path_style)
        .with_region(&region);
    if let Some(e) = &endpoint {
        b = b.with_endpoint(e);
    }
    b = s3_write::with_encryption(b, &spec.s3_write);
    if let Some(var) = &spec.sse_c_key_env {
        b = b.with_ssec_encryption(sse_c_key(&provider.name, var)?.expose());
    }
    let creds = if spec.anonymous {
        b = b.with_skip_signature(true);
        None
    } else {
        let creds = credentials(&provider.name, spec, &region)?;
        b = b.with_credentials(Arc::new(creds.clone()));
        Some(creds)
    };
    let raw = sdk_client(spec, endpoint.as_deref(), &region, creds, throttle.clone());
    let store = Arc::new(b.build().map_err(|e| perr(e.to_string(), None))?);
    Ok((
        classed::with_storage_class(store, spec.s3_write.storage_class.as_deref()),
        raw,
    ))
}

/// The SSE-C key in `var`: base64 of 32 bytes (AES-256), as the AWS CLI's `--sse-c-key` takes it
/// and as object_store sends it. Checked here, so a wrong key is named before any request.
fn sse_c_key(provider: &str, var: &str) -> Result<crate::redact::Secret, ProviderError> {
    use base64::Engine;
    let key = env_secret(provider, "sse-c-key-env", var)?;
    match base64::engine::general_purpose::STANDARD.decode(key.expose().trim()) {
        Ok(raw) if raw.len() == 32 => Ok(crate::redact::Secret::new(key.expose().trim().to_string())),
        Ok(raw) => Err(ProviderError {
            provider: provider.into(),
            message: format!(
                "the SSE-C key in `{var}` (named by `sse-c-key-env`) is {} bytes; AES-256 needs 32",
                raw.len()
            ),
            hint: Some("put the key in base64 in the variable, e.g. `openssl rand -base64 32`".into()),
        }),
        Err(_) => Err(ProviderError {
            provider: provider.into(),
            message: format!("the SSE-C key in `{var}` (named by `sse-c-key-env`) is not base64"),
            hint: Some("put the key in base64 in the variable, e.g. `openssl rand -base64 32`".into()),
        }),
    }
}

/// The plan's endpoint, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (as the AWS SDKs
/// and CLI read them, `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` included). Plain http only with
/// `allow-http`, as for the plan's own endpoint.
fn endpoint(spec: &S3Spec) -> Result<Option<String>, (String, &'static str)> {
    if spec.endpoint.is_some() {
        return Ok(spec.endpoint.clone());
    }
    let var = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    if var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    for name in ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"] {
        let Some(e) = var(name) else { continue };
        if e.starts_with("http://") && !spec.allow_http {
            return Err((
                format!("`{name}` is `{e}`, plain http"),
                "set `allow-http = true` in the provider if that is intended",
            ));
        }
        if !e.starts_with("http://") && !e.starts_with("https://") {
            return Err((
                format!("`{name}` (`{e}`) must start with http:// or https://"),
                "fix the variable",
            ));
        }
        return Ok(Some(e));
    }
    Ok(None)
}

/// The plan's region, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`: one
/// answer for both clients (they sign with it).
fn region(spec: &S3Spec) -> String {
    let var = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    spec.region
        .clone()
        .or_else(|| var("AWS_REGION"))
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into())
}

/// The provider's credentials: the keys its `*-env` keys name (read now, so a missing variable
/// stops the run before anything is reached), else the SDK's chain; a role on top of either.
fn credentials(name: &str, spec: &S3Spec, region: &str) -> Result<AwsCreds, ProviderError> {
    let base = match (&spec.access_key_id_env, &spec.secret_access_key_env) {
        (Some(k), Some(s)) => {
            let key = env_secret(name, "access-key-id-env", k)?;
            let secret = env_secret(name, "secret-access-key-env", s)?;
            let token = match &spec.session_token_env {
                Some(t) => Some(env_secret(name, "session-token-env", t)?.expose().to_string()),
                // The environment's AWS_SESSION_TOKEN belongs to the environment's keys only.
                None => None,
            };
            Some(Credentials::new(
                key.expose(),
                secret.expose(),
                token,
                None,
                "ferry-plan",
            ))
        }
        _ => None,
    };
    let var = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let from = match (&spec.access_key_id_env, &spec.aws.profile, var("AWS_PROFILE")) {
        (Some(k), _, _) => format!("keys from `{k}`"),
        (None, Some(p), _) => format!("profile `{p}`"),
        (None, None, Some(p)) => format!("profile `{p}` (AWS_PROFILE)"),
        (None, None, None) => {
            "the AWS credential chain (environment, profile, web identity, ECS, instance role)".into()
        }
    };
    let source = match &spec.aws.role_arn {
        Some(arn) => format!("role `{arn}` assumed with {from}"),
        None => from,
    };
    Ok(AwsCreds::new(source, region.to_string(), spec.aws.clone(), base))
}

fn sdk_client(
    spec: &S3Spec,
    endpoint: Option<&str>,
    region: &str,
    creds: Option<AwsCreds>,
    throttle: Arc<Throttle>,
) -> S3Raw {
    use aws_sdk_s3::config::{BehaviorVersion, IdentityCache, Region};
    let mut c = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        // ferry sends its own per-part CRC32C header; the SDK's default streaming-trailer
        // checksums are not understood by every S3-compatible server.
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        // As object_store's client: 8 attempts with backoff, and 429 counted as throttling
        // (the SDK's own classifiers know S3's error codes, not every S3-compatible server's).
        .retry_config(
            aws_sdk_s3::config::retry::RetryConfig::standard()
                .with_max_attempts(8)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(15)),
        )
        .retry_classifier(StatusCodeRetry)
        .http_client(crate::throttle::sdk_http::client(throttle))
        .region(Region::new(region.to_string()))
        // `AwsCreds` caches, shared with object_store; a second cache here would refresh on
        // its own schedule.
        .identity_cache(IdentityCache::no_cache())
        .force_path_style(spec.path_style);
    let source = match creds {
        Some(creds) => {
            let source = creds.source().to_string();
            c = c.credentials_provider(creds);
            source
        }
        None => {
            c = c.allow_no_auth();
            "anonymous requests".into()
        }
    };
    if let Some(e) = endpoint {
        c = c.endpoint_url(e);
    }
    S3Raw {
        client: aws_sdk_s3::Client::from_conf(c.build()),
        bucket: spec.bucket.clone(),
        source,
        write: spec.s3_write.clone(),
    }
}

/// Classifies 429 as throttling and 500/502/503/504 as server errors, whatever the body says.
#[derive(Debug)]
struct StatusCodeRetry;

impl aws_sdk_s3::config::retry::ClassifyRetry for StatusCodeRetry {
    fn classify_retry(
        &self,
        ctx: &aws_sdk_s3::config::interceptors::InterceptorContext,
    ) -> aws_sdk_s3::config::retry::RetryAction {
        use aws_sdk_s3::config::retry::RetryAction;
        match ctx.response().map(|r| r.status().as_u16()) {
            Some(429) => RetryAction::throttling_error(),
            Some(500 | 502 | 503 | 504) => RetryAction::server_error(),
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "ferry status-code classifier"
    }
}
