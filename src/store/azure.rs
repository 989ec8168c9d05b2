//! Azure Blob listings through the List Blobs call itself, names exactly as the container holds
//! them. Copying, reading and writing stay with object_store.
//!
//! object_store's Azure listing parses every name into a `Path`: one blob named `a//b`, `a/./b`
//! or with a tab fails the whole listing ("Encountered object with invalid path"), and a `dir/`
//! marker comes back as `dir`. This lister reads the same pages
//! (`GET {container}?restype=container&comp=list`, 5,000 names a page, in the service's order)
//! and reports each name as stored; what ferry cannot carry is refused per object by
//! `key_to_path`. Requests are signed by object_store's own [`AzureAuthorizer`] with the store's
//! credential provider (SharedKey, SAS or bearer token) and go through the store's throttled
//! client. Names with characters XML 1.0 cannot carry arrive percent-encoded, marked
//! `Encoded="true"`. <https://learn.microsoft.com/en-us/rest/api/storageservices/list-blobs>

use super::rest::{self, encode};
use super::xml::{self, Node};
use super::Listed;
use super::{client_options, env_secret, raw_client, retry_config, ProviderError, RawLister};
use crate::plan::{AzureSpec, ProviderSpec};
use crate::redact;
use crate::throttle::Throttle;
use futures::stream::BoxStream;
use object_store::azure::{AzureAuthorizer, AzureConfigKey, AzureCredentialProvider, MicrosoftAzureBuilder};
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody};
use object_store::ObjectStore;
use std::sync::Arc;

const STORE: &str = "MicrosoftAzure";
/// The REST API version asked for (object_store's own): `Encoded` names exist since 2019-12-12.
const API_VERSION: &str = "2023-11-03";
/// Azurite's account when none is named (object_store's `EMULATOR_ACCOUNT`).
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

/// A container's listing endpoint and the credentials to sign for it.
#[derive(Debug, Clone)]
pub struct AzureRaw {
    client: HttpClient,
    /// None when the store skips signing (public containers).
    credentials: Option<AzureCredentialProvider>,
    account: String,
    container: String,
    /// `{service}/{container}`, with the account as the first path segment on the emulator.
    url: String,
    /// The blob service's URL (`https://ACCOUNT.blob.core.windows.net`), for container calls.
    service: String,
}

/// Where a container is, read from the builder before `build` consumes it, by the rules
/// object_store's builder applies (emulator, explicit endpoint, Fabric, public cloud).
#[derive(Debug, Clone)]
pub struct Site {
    account: String,
    container: String,
    url: String,
    service: String,
    pub emulator: bool,
    signed: bool,
}

fn truthy(v: Option<String>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes" | "y"))
}

impl Site {
    pub fn of(b: &MicrosoftAzureBuilder) -> Result<Site, String> {
        let get = |k: AzureConfigKey| b.get_config_value(&k);
        let container = get(AzureConfigKey::ContainerName).ok_or("no container name")?;
        let emulator = truthy(get(AzureConfigKey::UseEmulator));
        let (account, service) = if emulator {
            let account = get(AzureConfigKey::AccountName).unwrap_or_else(|| EMULATOR_ACCOUNT.into());
            let base = std::env::var("AZURITE_BLOB_STORAGE_URL").unwrap_or_else(|_| "http://127.0.0.1:10000".into());
            let service = format!("{}/{}", base.trim_end_matches('/'), encode(&account));
            (account, service)
        } else {
            let account = get(AzureConfigKey::AccountName).ok_or("no account name")?;
            let service = match get(AzureConfigKey::Endpoint) {
                Some(e) => e,
                None if truthy(get(AzureConfigKey::UseFabricEndpoint)) => {
                    format!("https://{account}.blob.fabric.microsoft.com")
                }
                None => format!("https://{account}.blob.core.windows.net"),
            };
            (account, service)
        };
        let service = service.trim_end_matches('/').to_string();
        Ok(Site {
            url: format!("{service}/{}", encode(&container)),
            service,
            account,
            container,
            emulator,
            signed: !truthy(get(AzureConfigKey::SkipSignature)),
        })
    }
}

impl AzureRaw {
    /// `credentials`: the built store's provider (`MicrosoftAzure::credentials`).
    pub fn new(site: Site, credentials: &AzureCredentialProvider, client: HttpClient) -> AzureRaw {
        AzureRaw {
            client,
            credentials: site.signed.then(|| credentials.clone()),
            account: site.account,
            container: site.container,
            url: site.url,
            service: site.service,
        }
    }

    /// Every container of the account (List Containers), by name.
    pub async fn list_containers(&self) -> object_store::Result<Vec<String>> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut url = format!("{}/?comp=list", self.service);
            if let Some(m) = &marker {
                url.push_str(&format!("&marker={}", encode(m)));
            }
            let what = format!("listing the containers of account `{}`", self.account);
            let body = rest::fetch(&self.client, STORE, &what, || self.request(http::Method::GET, &url)).await?;
            let (page, next) = parse_containers(&body).map_err(|e| rest::bad_page(STORE, &what, e))?;
            names.extend(page);
            match next {
                Some(m) => marker = Some(m),
                None => return Ok(names),
            }
        }
    }

    /// Whether container `name` exists (Get Container Properties).
    pub async fn container_exists(&self, name: &str) -> object_store::Result<bool> {
        let url = format!("{}/{}?restype=container", self.service, encode(name));
        let what = format!("reading container `{name}`");
        match rest::fetch(&self.client, STORE, &what, || self.request(http::Method::HEAD, &url)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates container `name` (Create Container); one that exists already is left as it is.
    pub async fn create_container(&self, name: &str) -> object_store::Result<()> {
        let url = format!("{}/{}?restype=container", self.service, encode(name));
        let what = format!("creating container `{name}`");
        match rest::fetch(&self.client, STORE, &what, || self.request(http::Method::PUT, &url)).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every blob under `prefix`, one page at a time: a page is fetched when the previous one
    /// has been consumed, so memory holds one page whatever the container's size.
    pub fn list(&self, prefix: &str) -> BoxStream<'static, object_store::Result<Listed>> {
        let (this, prefix) = (self.clone(), prefix.to_string());
        rest::paged(move |marker: Option<String>| {
            let (this, prefix) = (this.clone(), prefix.clone());
            async move { this.page(&prefix, marker.as_deref()).await }
        })
    }

    async fn page(&self, prefix: &str, marker: Option<&str>) -> object_store::Result<(Vec<Listed>, Option<String>)> {
        let mut url = format!("{}?restype=container&comp=list", self.url);
        if !prefix.is_empty() {
            url.push_str(&format!("&prefix={}", encode(prefix)));
        }
        if let Some(m) = marker {
            url.push_str(&format!("&marker={}", encode(m)));
        }
        let what = format!("listing container `{}` under `{prefix}`", self.container);
        let body = rest::fetch(&self.client, STORE, &what, || self.request(http::Method::GET, &url)).await?;
        parse_page(&body).map_err(|e| rest::bad_page(STORE, &what, e))
    }

    async fn request(&self, method: http::Method, url: &str) -> object_store::Result<HttpRequest> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(url)
            .header("x-ms-version", API_VERSION)
            .header(http::header::CONTENT_LENGTH, "0")
            .body(HttpRequestBody::empty())
            .map_err(|e| rest::bad_page(STORE, url, e))?;
        if let Some(c) = &self.credentials {
            let credential = c.get_credential().await?;
            AzureAuthorizer::new(&credential, &self.account).try_authorize(&mut req)?;
        }
        Ok(req)
    }
}

/// What a `<Blob>` element said, as far as ferry needs it.
#[derive(Default)]
struct Blob {
    name: Option<String>,
    size: Option<u64>,
    etag: Option<String>,
    tier: Option<String>,
    directory: bool,
}

/// One List Blobs page: its blobs, and the marker of the next page (none on the last).
/// Directories of accounts with a hierarchical namespace are left out, as object_store does:
/// they hold no data and are made by writing blobs beneath them.
fn parse_page(xml: &[u8]) -> Result<(Vec<Listed>, Option<String>), String> {
    let mut encoded = false;
    let mut blob: Option<Blob> = None;
    let mut blobs = Vec::new();
    let mut next = None;
    xml::walk(xml, |node| {
        let (name, parent, text) = match node {
            Node::Open { start, .. } => {
                let name = start.local_name();
                if name.as_ref() == b"Blob" {
                    blob = Some(Blob::default());
                } else if name.as_ref() == b"Name" {
                    let attr = start.try_get_attribute("Encoded").map_err(|e| e.to_string())?;
                    encoded = attr.is_some_and(|a| a.value.eq_ignore_ascii_case(b"true"));
                }
                return Ok(());
            }
            Node::Close { name, parent, text } => (name, parent, text),
        };
        match (name, parent, blob.as_mut()) {
            (b"Name", Some(b"Blob"), Some(b)) => {
                b.name = Some(if encoded {
                    percent_encoding::percent_decode_str(text)
                        .decode_utf8()
                        .map_err(|e| format!("encoded name `{text}` is not UTF-8: {e}"))?
                        .into_owned()
                } else {
                    std::mem::take(text)
                });
            }
            (b"Content-Length", Some(b"Properties"), Some(b)) => {
                b.size = Some(
                    text.trim()
                        .parse()
                        .map_err(|_| format!("bad Content-Length `{text}`"))?,
                );
            }
            (b"Etag", Some(b"Properties"), Some(b)) => b.etag = Some(std::mem::take(text)),
            (b"AccessTier", Some(b"Properties"), Some(b)) => b.tier = Some(std::mem::take(text)),
            (b"ResourceType", Some(b"Properties"), Some(b)) => b.directory = text == "directory",
            (b"Blob", _, _) => {
                let b = blob.take().expect("a Blob element was opened");
                let key = b.name.ok_or("a blob without a Name")?;
                let size = b.size.ok_or_else(|| format!("blob `{key}` without a Content-Length"))?;
                if !b.directory {
                    blobs.push(Listed {
                        key,
                        size,
                        etag: b.etag,
                        version: None,
                        problem: None,
                        class: b.tier,
                    });
                }
            }
            (b"NextMarker", Some(b"EnumerationResults"), _) if !text.is_empty() => {
                next = Some(std::mem::take(text));
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok((blobs, next))
}

/// One List Containers page: the containers' names, and the marker of the next page.
fn parse_containers(xml: &[u8]) -> Result<(Vec<String>, Option<String>), String> {
    let mut names = Vec::new();
    let mut next = None;
    xml::walk(xml, |node| {
        if let Node::Close { name, parent, text } = node {
            match (name, parent) {
                (b"Name", Some(b"Container")) => names.push(std::mem::take(text)),
                (b"NextMarker", Some(b"EnumerationResults")) if !text.is_empty() => next = Some(std::mem::take(text)),
                _ => {}
            }
        }
        Ok(())
    })?;
    Ok((names, next))
}

/// Opens an Azure Blob provider: object_store's client for reads and writes, and ferry's own lister
/// (exact keys) over the same credentials and throttle.
pub(super) fn open(
    provider: &ProviderSpec,
    spec: &AzureSpec,
    throttle: &Arc<Throttle>,
) -> Result<(Arc<dyn ObjectStore>, RawLister), ProviderError> {
    let gated = || crate::throttle::object_store_http::Connector(throttle.clone());
    // A source the plan names explicitly (SAS, connection string, CLI) is the only one used: the
    // builder then starts empty, so a stray `AZURE_STORAGE_ACCOUNT_KEY` (which object_store
    // would prefer) cannot sign instead. Otherwise object_store's environment chain applies.
    let explicit = spec.sas_token_env.is_some() || spec.connection_string_env.is_some() || spec.use_azure_cli;
    let mut b = if explicit {
        MicrosoftAzureBuilder::new()
    } else {
        MicrosoftAzureBuilder::from_env()
    }
    .with_container_name(&spec.container)
    .with_client_options(client_options(provider))
    .with_retry(retry_config())
    .with_http_connector(gated());
    if let Some(var) = &spec.connection_string_env {
        let text = env_secret(&provider.name, "connection-string-env", var)?;
        let cs = ConnectionString::parse(text.expose())
            .map_err(|e| ProviderError::of(provider, format!("the connection string in `{var}` {e}"), None))?;
        if cs.endpoint.starts_with("http://") && !spec.allow_http {
            return Err(ProviderError::of(
                provider,
                format!("the connection string in `{var}` has a plain http endpoint"),
                Some("set `allow-http = true` if that is intended (Azurite, private networks)"),
            ));
        }
        b = b.with_account(&cs.account).with_endpoint(cs.endpoint.clone());
        b = match &cs.auth {
            ConnectionAuth::Key(k) => b.with_access_key(k.expose()),
            ConnectionAuth::Sas(t) => b.with_config(AzureConfigKey::SasKey, t.expose()),
        };
    }
    if let Some(a) = &spec.account {
        b = b.with_account(a);
    }
    if let Some(e) = &spec.endpoint {
        b = b.with_endpoint(e.clone());
    }
    if let Some(k) = &spec.access_key_env {
        b = b.with_access_key(env_secret(&provider.name, "access-key-env", k)?.expose());
    } else if let Ok(v) = std::env::var("AZURE_STORAGE_ACCESS_KEY") {
        redact::register(&v);
    }
    if let Some(var) = &spec.sas_token_env {
        let token = env_secret(&provider.name, "sas-token-env", var)?;
        // Each part is registered too: errors may quote the signature alone, decoded or not.
        for part in token.expose().trim_start_matches('?').split('&') {
            if let Some(("sig", sig)) = part.split_once('=') {
                redact::register(sig);
                if let Ok(d) = percent_encoding::percent_decode_str(sig).decode_utf8() {
                    redact::register(&d);
                }
            }
        }
        b = b.with_config(AzureConfigKey::SasKey, token.expose());
    }
    if spec.use_azure_cli {
        b = b.with_config(AzureConfigKey::UseAzureCli, "true");
    }
    if spec.anonymous {
        b = b.with_skip_signature(true);
    }
    let site = Site::of(&b).map_err(|e| ProviderError::of(provider, e, None))?;
    let options = client_options(provider).with_allow_http(spec.allow_http || site.emulator);
    let client = raw_client(&options, throttle).map_err(|e| ProviderError::of(provider, e, None))?;
    let built = b
        .build()
        .map_err(|e| ProviderError::of(provider, e.to_string(), None))?;
    let lister = RawLister::Azure(AzureRaw::new(site, built.credentials(), client));
    Ok((
        super::classed::with_storage_class(Arc::new(built), spec.storage_class.as_deref()),
        lister,
    ))
}

/// An Azure Storage connection string, as the portal and `az storage account
/// show-connection-string` print it: `Key=Value` pairs separated by `;`. Only what a Blob client
/// needs is read. <https://learn.microsoft.com/en-us/azure/storage/common/storage-configure-connection-string>
struct ConnectionString {
    account: String,
    endpoint: String,
    auth: ConnectionAuth,
}

enum ConnectionAuth {
    Key(crate::redact::Secret),
    Sas(crate::redact::Secret),
}

/// Azurite's well-known account (documented by Microsoft, not a secret).
const EMULATOR_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl ConnectionString {
    /// Parsed; an error names the missing or unknown part, never a value.
    fn parse(text: &str) -> Result<ConnectionString, String> {
        let mut kv = std::collections::HashMap::new();
        for part in text.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| "has a part without `=` (expected `Key=Value;…`)".to_string())?;
            kv.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let get = |k: &str| kv.get(k).filter(|v| !v.is_empty()).cloned();
        if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            let proxy = get("developmentstorageproxyuri").unwrap_or_else(|| "http://127.0.0.1".into());
            return Ok(ConnectionString {
                account: EMULATOR_ACCOUNT.into(),
                endpoint: format!("{}:10000/{EMULATOR_ACCOUNT}", proxy.trim_end_matches('/')),
                auth: ConnectionAuth::Key(crate::redact::Secret::new(EMULATOR_KEY.into())),
            });
        }
        let account = get("accountname");
        let endpoint = match (get("blobendpoint"), &account) {
            (Some(e), _) => e.trim_end_matches('/').to_string(),
            (None, Some(a)) => format!(
                "{}://{a}.blob.{}",
                get("defaultendpointsprotocol").unwrap_or_else(|| "https".into()),
                get("endpointsuffix").unwrap_or_else(|| "core.windows.net".into())
            ),
            (None, None) => return Err("names neither `AccountName` nor `BlobEndpoint`".into()),
        };
        // With only a BlobEndpoint (a SAS connection string), the account is its host's first label.
        let account = account
            .or_else(|| {
                let host = endpoint.split("://").nth(1)?.split(['/', ':']).next()?;
                host.split('.').next().map(str::to_string)
            })
            .ok_or("names no account")?;
        let auth = match (get("accountkey"), get("sharedaccesssignature")) {
            (Some(k), _) => ConnectionAuth::Key(crate::redact::Secret::new(k)),
            (None, Some(s)) => ConnectionAuth::Sas(crate::redact::Secret::new(s)),
            (None, None) => return Err("has neither `AccountKey` nor `SharedAccessSignature`".into()),
        };
        Ok(ConnectionString {
            account,
            endpoint,
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three shapes the portal and Azurite's docs print; errors name parts, not values.
    #[test]
    fn connection_strings() {
        let key = ConnectionString::parse(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5PQ==;\
             BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
        )
        .unwrap();
        assert_eq!(key.account, "devstoreaccount1");
        assert_eq!(key.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert!(matches!(&key.auth, ConnectionAuth::Key(k) if k.expose() == "a2V5PQ=="));

        let public =
            ConnectionString::parse("AccountName=acct;AccountKey=k;EndpointSuffix=core.chinacloudapi.cn").unwrap();
        assert_eq!(public.endpoint, "https://acct.blob.core.chinacloudapi.cn");

        let sas = ConnectionString::parse(
            "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2020&sig=abc%3D",
        )
        .unwrap();
        assert_eq!(sas.account, "acct");
        assert!(matches!(&sas.auth, ConnectionAuth::Sas(s) if s.expose() == "sv=2020&sig=abc%3D"));

        let dev = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(dev.endpoint, "http://127.0.0.1:10000/devstoreaccount1");

        let e = ConnectionString::parse("AccountName=acct;Secret-Thing").err().unwrap();
        assert!(!e.contains("Secret-Thing"), "{e}");
        let e = ConnectionString::parse("AccountName=acct").err().unwrap();
        assert_eq!(e, "has neither `AccountKey` nor `SharedAccessSignature`");
    }

    /// A page as the List Blobs reference shows it, with the odd names Azure itself can return.
    const PAGE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="https://acct.blob.core.windows.net/" ContainerName="c">
  <Prefix>p/</Prefix>
  <Marker />
  <MaxResults>5000</MaxResults>
  <Blobs>
    <Blob>
      <Name>p/a&#x9;b &amp; c </Name>
      <Properties>
        <Last-Modified>Mon, 30 Nov 2026 06:15:15 GMT</Last-Modified>
        <Etag>0x8DBB1C0F29B4E7A</Etag>
        <Content-Length>12</Content-Length>
      </Properties>
    </Blob>
    <Blob>
      <Name Encoded="true">p%2Fctl%01key%1B</Name>
      <Properties><Content-Length>3</Content-Length><Etag>"0x1"</Etag></Properties>
    </Blob>
    <Blob>
      <Name>p/dir/</Name>
      <Properties><Content-Length>0</Content-Length></Properties>
    </Blob>
    <Blob>
      <Name>p/hns-dir</Name>
      <Properties><Content-Length>0</Content-Length><ResourceType>directory</ResourceType></Properties>
    </Blob>
    <Blob><Name><![CDATA[p/a//b/./c]]></Name><Properties><Content-Length>1</Content-Length></Properties></Blob>
  </Blobs>
  <NextMarker>2!96!MDAwMDIx</NextMarker>
</EnumerationResults>"#;

    #[test]
    fn names_arrive_exactly_as_stored() {
        let (blobs, next) = parse_page(PAGE.as_bytes()).unwrap();
        let keys: Vec<&str> = blobs.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(keys, ["p/a\tb & c ", "p/ctl\u{1}key\u{1b}", "p/dir/", "p/a//b/./c"]);
        assert_eq!(blobs[0].size, 12);
        assert_eq!(blobs[0].etag.as_deref(), Some("0x8DBB1C0F29B4E7A"));
        assert_eq!(blobs[1].etag.as_deref(), Some("\"0x1\""));
        assert_eq!(blobs[2].etag, None);
        assert_eq!(next.as_deref(), Some("2!96!MDAwMDIx"));
    }

    #[test]
    fn the_last_page_has_no_marker() {
        let page = r#"<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>"#;
        assert_eq!(parse_page(page.as_bytes()).unwrap(), (vec![], None));
        let page = r#"<EnumerationResults><Blobs></Blobs><NextMarker></NextMarker></EnumerationResults>"#;
        assert_eq!(parse_page(page.as_bytes()).unwrap(), (vec![], None));
    }

    #[test]
    fn a_broken_page_is_an_error_not_a_short_listing() {
        let cut = parse_page(b"<EnumerationResults><Blobs><Blob><Name>x</Name><Properties><Content-Length>1</Content-Length></Properties></Blob>");
        assert_eq!(cut.unwrap_err(), "the page ends inside `<Blobs>`");
        assert!(parse_page(b"<EnumerationResults><Blobs><Blob><Properties><Content-Length>1</Content-Length></Properties></Blob></Blobs></EnumerationResults>").is_err());
    }

    #[test]
    fn sites_follow_the_builder() {
        let emulator = MicrosoftAzureBuilder::new()
            .with_container_name("c")
            .with_use_emulator(true);
        let s = Site::of(&emulator).unwrap();
        assert!(s.url.ends_with("/devstoreaccount1/c"), "{}", s.url);
        let endpoint = MicrosoftAzureBuilder::new()
            .with_container_name("c")
            .with_account("a")
            .with_endpoint("http://127.0.0.1:10000/a/".into());
        assert_eq!(Site::of(&endpoint).unwrap().url, "http://127.0.0.1:10000/a/c");
        let cloud = MicrosoftAzureBuilder::new()
            .with_container_name("c")
            .with_account("a")
            .with_skip_signature(true);
        let s = Site::of(&cloud).unwrap();
        assert_eq!(s.url, "https://a.blob.core.windows.net/c");
        assert!(!s.signed);
    }
}
