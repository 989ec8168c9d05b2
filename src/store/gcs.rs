//! Google Cloud Storage listings through the JSON API's `objects.list`, names exactly as the
//! bucket holds them. Copying, reading and writing stay with object_store.
//!
//! object_store lists GCS through the XML API and parses every name into a `Path`: one object
//! named `a//b`, `a/./b` or with a tab fails the whole listing, a `dir/` marker comes back as
//! `dir`, and XML cannot carry a name with a control character at all. The JSON API carries any
//! name; pages (1,000 objects) come in lexicographic order of the UTF-8 bytes, which the merge in
//! `pairing` relies on. <https://cloud.google.com/storage/docs/json_api/v1/objects/list>
//!
//! **An object's identity is its generation.** GCS documents that one object can have different
//! ETags in the XML and JSON APIs, and object_store reads and writes through the XML API, so a
//! JSON `etag` would never match the `If-Match` of a read or the ETag an upload returned. The
//! generation is the same in both and changes whenever the data does, so it stands in the
//! listing's `etag` (and `version`): [`Store::read_options`](super::Store::read_options) reads
//! exactly that generation, and [`Store::written_tag`](super::Store::written_tag) journals the
//! generation an upload created.

use futures::stream::BoxStream;
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody};
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder, GoogleConfigKey};
use serde::Deserialize;

use super::rest::{self, encode};
use super::Listed;
use super::{client_options, env_secret, raw_client, retry_config, ProviderError, RawLister};
use crate::plan::{GcsSpec, ProviderSpec};
use crate::throttle::Throttle;
use object_store::ObjectStore;
use std::sync::Arc;

const STORE: &str = "GCS";
const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";
/// Only what ferry reads: the rest of each object's resource (ACLs above all) is not sent.
const FIELDS: &str = "nextPageToken,items(name,size,generation)";

/// A bucket's listing endpoint and the credentials to ask with.
#[derive(Debug, Clone)]
pub struct GcsRaw {
    client: HttpClient,
    /// Yields an empty token for emulators (`disable_oauth`): nothing is sent then.
    credentials: GcpCredentialProvider,
    bucket: String,
    /// `{base}/storage/v1/b/{bucket}/o`
    url: String,
    /// `{base}/storage/v1/b`, for bucket calls.
    buckets: String,
}

/// The service's base URL, read from the builder before `build` consumes it: the plan's
/// endpoint or `GOOGLE_BASE_URL`, else Google's.
pub fn base_url(b: &GoogleCloudStorageBuilder) -> String {
    b.get_config_value(&GoogleConfigKey::BaseUrl)
        .unwrap_or_else(|| DEFAULT_BASE_URL.into())
}

impl GcsRaw {
    /// `credentials`: the built store's provider (`GoogleCloudStorage::credentials`).
    pub fn new(base_url: &str, bucket: &str, credentials: &GcpCredentialProvider, client: HttpClient) -> GcsRaw {
        GcsRaw {
            client,
            credentials: credentials.clone(),
            bucket: bucket.to_string(),
            url: format!("{}/storage/v1/b/{}/o", base_url.trim_end_matches('/'), encode(bucket)),
            buckets: format!("{}/storage/v1/b", base_url.trim_end_matches('/')),
        }
    }

    /// Every bucket of `project` (`buckets.list`), by name.
    pub async fn list_buckets(&self, project: &str) -> object_store::Result<Vec<String>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Buckets {
            #[serde(default)]
            items: Vec<Named>,
            next_page_token: Option<String>,
        }
        #[derive(Deserialize)]
        struct Named {
            name: String,
        }
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}?project={}&fields=nextPageToken,items(name)",
                self.buckets,
                encode(project)
            );
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={}", encode(t)));
            }
            let what = format!("listing the buckets of project `{project}`");
            let body = rest::fetch(&self.client, STORE, &what, || {
                self.request(http::Method::GET, &url, None)
            })
            .await?;
            let page: Buckets = serde_json::from_slice(&body).map_err(|e| rest::bad_page(STORE, &what, e))?;
            names.extend(page.items.into_iter().map(|b| b.name));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(names),
            }
        }
    }

    /// Whether bucket `name` exists (`buckets.get`).
    pub async fn bucket_exists(&self, name: &str) -> object_store::Result<bool> {
        let url = format!("{}/{}?fields=name", self.buckets, encode(name));
        let what = format!("reading bucket `{name}`");
        match rest::fetch(&self.client, STORE, &what, || {
            self.request(http::Method::GET, &url, None)
        })
        .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates bucket `name` in `project` (`buckets.insert`), at `location` if given (else
    /// Google's default, the US multi-region); one that exists already is left as it is.
    pub async fn create_bucket(&self, project: &str, name: &str, location: Option<&str>) -> object_store::Result<()> {
        let url = format!("{}?project={}", self.buckets, encode(project));
        let mut body = serde_json::json!({ "name": name });
        if let Some(l) = location {
            body["location"] = l.into();
        }
        let body = body.to_string();
        let what = format!("creating bucket `{name}`");
        let create = || self.request(http::Method::POST, &url, Some(body.clone()));
        match rest::fetch(&self.client, STORE, &what, create).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every object under `prefix`, one page at a time: a page is fetched when the previous one
    /// has been consumed, so memory holds one page whatever the bucket's size.
    pub fn list(&self, prefix: &str) -> BoxStream<'static, object_store::Result<Listed>> {
        let (this, prefix) = (self.clone(), prefix.to_string());
        rest::paged(move |token: Option<String>| {
            let (this, prefix) = (this.clone(), prefix.clone());
            async move { this.page(&prefix, token.as_deref()).await }
        })
    }

    async fn page(&self, prefix: &str, token: Option<&str>) -> object_store::Result<(Vec<Listed>, Option<String>)> {
        let mut url = format!("{}?fields={}", self.url, encode(FIELDS));
        if !prefix.is_empty() {
            url.push_str(&format!("&prefix={}", encode(prefix)));
        }
        if let Some(t) = token {
            url.push_str(&format!("&pageToken={}", encode(t)));
        }
        let what = format!("listing bucket `{}` under `{prefix}`", self.bucket);
        let body = rest::fetch(&self.client, STORE, &what, || {
            self.request(http::Method::GET, &url, None)
        })
        .await?;
        parse_page(&body).map_err(|e| rest::bad_page(STORE, &what, e))
    }

    /// A request with the current token; `json`: a JSON body.
    async fn request(
        &self,
        method: http::Method,
        url: &str,
        json: Option<String>,
    ) -> object_store::Result<HttpRequest> {
        let mut req = http::Request::builder().method(method).uri(url);
        let credential = self.credentials.get_credential().await?;
        if !credential.bearer.is_empty() {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {}", credential.bearer));
        }
        let body = match json {
            Some(j) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                HttpRequestBody::from(j)
            }
            None => HttpRequestBody::empty(),
        };
        req.body(body).map_err(|e| rest::bad_page(STORE, &self.bucket, e))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    items: Vec<Object>,
    next_page_token: Option<String>,
}

/// The JSON API writes 64-bit numbers as strings; emulators may not.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Text(String),
    Number(u64),
}

impl Number {
    fn text(self) -> String {
        match self {
            Number::Text(s) => s,
            Number::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct Object {
    name: String,
    size: Number,
    generation: Option<Number>,
    #[serde(rename = "storageClass")]
    storage_class: Option<String>,
}

/// One `objects.list` page: its objects, and the token of the next page (none on the last).
fn parse_page(json: &[u8]) -> Result<(Vec<Listed>, Option<String>), String> {
    let page: Page = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let items = page
        .items
        .into_iter()
        .map(|o| {
            let size = o.size.text();
            let size = size
                .parse()
                .map_err(|_| format!("object `{}` has size `{size}`", o.name))?;
            let generation = o.generation.map(Number::text);
            Ok(Listed {
                key: o.name,
                size,
                etag: generation.clone(),
                version: generation,
                problem: None,
                class: o.storage_class,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok((items, page.next_page_token.filter(|t| !t.is_empty())))
}

/// Opens an GCS provider: object_store's client for reads and writes, and ferry's own lister
/// (exact keys) over the same credentials and throttle.
pub(super) fn open(
    provider: &ProviderSpec,
    spec: &GcsSpec,
    throttle: &Arc<Throttle>,
) -> Result<(Arc<dyn ObjectStore>, RawLister), ProviderError> {
    let gated = || crate::throttle::object_store_http::Connector(throttle.clone());
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(&spec.bucket)
        .with_client_options(client_options(provider))
        .with_retry(retry_config())
        .with_http_connector(gated());
    if let Some(e) = &spec.endpoint {
        b = b.with_config(GoogleConfigKey::BaseUrl, e);
    }
    if let Some(v) = &spec.service_account_env {
        let key = env_secret(&provider.name, "service-account-env", v)?;
        let text = key.expose().trim();
        b = if text.starts_with('{') {
            b.with_service_account_key(text)
        } else {
            b.with_service_account_path(text)
        };
    } else if spec.anonymous {
        // Emulators and public buckets: no OAuth round trip.
        let base = spec
            .endpoint
            .clone()
            .unwrap_or_else(|| "https://storage.googleapis.com".into());
        b = b.with_service_account_key(
            serde_json::json!({
                "gcs_base_url": base, "disable_oauth": true,
                "client_email": "", "private_key": "", "private_key_id": ""
            })
            .to_string(),
        );
    }
    let base = base_url(&b);
    let client = raw_client(&client_options(provider), throttle).map_err(|e| ProviderError::of(provider, e, None))?;
    let built = b
        .build()
        .map_err(|e| ProviderError::of(provider, e.to_string(), None))?;
    let bucket = spec.bucket.as_str();
    let lister = RawLister::Gcs(GcsRaw::new(&base, bucket, built.credentials(), client));
    Ok((
        super::classed::with_storage_class(Arc::new(built), spec.storage_class.as_deref()),
        lister,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_arrive_exactly_as_stored() {
        let page = br#"{"kind":"storage#objects","nextPageToken":"p/b",
            "items":[{"name":"p/a\tb ","size":"12","generation":"1796019328555927","etag":"CJ",
                      "storageClass":"ARCHIVE"},
                     {"name":"p/x\u0001y/./z//","size":3,"generation":7}]}"#;
        let (items, next) = parse_page(page).unwrap();
        assert_eq!(
            items,
            vec![
                Listed {
                    key: "p/a\tb ".into(),
                    size: 12,
                    etag: Some("1796019328555927".into()),
                    version: Some("1796019328555927".into()),
                    problem: None,
                    class: Some("ARCHIVE".into()),
                },
                Listed {
                    key: "p/x\u{1}y/./z//".into(),
                    size: 3,
                    etag: Some("7".into()),
                    version: Some("7".into()),
                    problem: None,
                    class: None,
                },
            ]
        );
        assert_eq!(next.as_deref(), Some("p/b"));
        // GCS's ARCHIVE class reads without a restore: reported, never held back.
        assert_eq!(items[0].archived_class(), None);
    }

    #[test]
    fn an_empty_bucket_is_one_empty_last_page() {
        assert_eq!(parse_page(br#"{"kind":"storage#objects"}"#).unwrap(), (vec![], None));
    }

    #[test]
    fn a_broken_page_is_an_error_not_a_short_listing() {
        assert!(parse_page(br#"{"items":[{"name":"a","size":"1"}"#).is_err());
        assert!(parse_page(br#"{"items":[{"name":"a","size":"-1"}]}"#).is_err());
    }
}
