//! Direct access to the test servers, independent of ferry: plain HTTP/1.1 over a socket, an
//! Azure SharedKey signer, fake-gcs-server's JSON API and the AWS SDK. Test oracles read
//! destinations through these, never through ferry's `Store`, so a bug in ferry's store layer
//! cannot hide itself.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use sha2::{Digest, Sha256};

/// One HTTP answer.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `http://host:port/base` -> (`host:port`, `/base` without a trailing `/`).
pub fn split_endpoint(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("test servers speak plain http");
    match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].trim_end_matches('/').to_string()),
        None => (rest.to_string(), String::new()),
    }
}

/// One request on a fresh connection (`Connection: close`), the whole answer read.
pub fn request(
    method: &str,
    host: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let mut head = format!("{method} {path_and_query} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| std::io::Error::other("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&b[..nl]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        b = &b[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Percent-encodes every byte but ASCII letters, digits, `-._~` and the bytes in `keep`.
pub fn pct(s: &[u8], keep: &str) -> String {
    let mut out = String::new();
    for &c in s {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) || keep.as_bytes().contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as a space when `plus` is set).
pub fn unpct(s: &str, plus: bool) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let v = u8::from_str_radix(&s[i + 1..i + 3], 16).expect("bad % escape");
                out.push(v);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64(data: &[u8]) -> String {
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn unbase64(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c).expect("not base64") as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(msg).finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Decodes the five XML entities and numeric references.
pub fn xml_unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let j = rest[i..].find(';').expect("unterminated entity") + i;
        let ent = &rest[i + 1..j];
        match ent {
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "amp" => out.push('&'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            _ if ent.starts_with("#x") => {
                out.push(char::from_u32(u32::from_str_radix(&ent[2..], 16).unwrap()).unwrap())
            }
            _ if ent.starts_with('#') => out.push(char::from_u32(ent[1..].parse().unwrap()).unwrap()),
            _ => panic!("unknown entity &{ent};"),
        }
        rest = &rest[j + 1..];
    }
    out.push_str(rest);
    out
}

/// Azure Blob through SharedKey-signed REST calls (Azurite).
pub struct Azure {
    host: String,
    /// The account path of an emulator endpoint (`/devstoreaccount1`).
    base: String,
    account: String,
    key: Vec<u8>,
}

impl Azure {
    pub fn from_env() -> Azure {
        let (host, base) = split_endpoint(&super::env("FERRY_TEST_AZURITE_ENDPOINT"));
        Azure {
            host,
            base,
            account: super::env("FERRY_TEST_AZURITE_ACCOUNT"),
            key: unbase64(&super::env("FERRY_TEST_AZURITE_KEY")),
        }
    }

    /// `path`: already percent-encoded, after the account path. `query`: decoded pairs.
    fn send(&self, method: &str, path: &str, query: &[(&str, &str)], extra: &[(&str, &str)], body: &[u8]) -> Response {
        self.try_send(method, path, query, extra, body)
            .unwrap_or_else(|e| panic!("azurite {method} {path}: {e}"))
    }

    fn try_send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let date = httpdate_now();
        let mut xms: BTreeMap<String, String> = BTreeMap::new();
        xms.insert("x-ms-date".into(), date);
        xms.insert("x-ms-version".into(), "2021-12-02".into());
        for (k, v) in extra {
            xms.insert(k.to_string(), v.to_string());
        }
        let url_path = format!("{}{path}", self.base);
        let mut q: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_lowercase(), v.to_string())).collect();
        q.sort();
        let resource =
            format!("/{}{url_path}", self.account) + &q.iter().map(|(k, v)| format!("\n{k}:{v}")).collect::<String>();
        let len = if body.is_empty() {
            String::new()
        } else {
            body.len().to_string()
        };
        let sts = format!("{method}\n\n\n{len}\n{}", "\n".repeat(8))
            + &xms.iter().map(|(k, v)| format!("{k}:{v}\n")).collect::<String>()
            + &resource;
        let sig = base64(&hmac_sha256(&self.key, sts.as_bytes()));
        let mut headers: Vec<(String, String)> = xms.into_iter().collect();
        headers.push(("Authorization".into(), format!("SharedKey {}:{sig}", self.account)));
        let qs = query
            .iter()
            .map(|(k, v)| format!("{k}={}", pct(v.as_bytes(), "")))
            .collect::<Vec<_>>()
            .join("&");
        let pq = if qs.is_empty() {
            url_path
        } else {
            format!("{url_path}?{qs}")
        };
        request(method, &self.host, &pq, &headers, body)
    }

    /// An account SAS for the Blob service (containers and objects), with `permissions`
    /// (`rl`: read and list), valid for a day, signed with the account key as the reference
    /// says for version 2020-12-06 and later.
    /// <https://learn.microsoft.com/en-us/rest/api/storageservices/create-account-sas>
    pub fn account_sas(&self, permissions: &str) -> String {
        let (version, expiry) = ("2021-08-06", "2099-01-01T00:00:00Z");
        let sts = format!("{}\n{permissions}\nb\nco\n\n{expiry}\n\n\n{version}\n\n", self.account);
        let sig = base64(&hmac_sha256(&self.key, sts.as_bytes()));
        format!(
            "sv={version}&ss=b&srt=co&sp={permissions}&se={}&sig={}",
            pct(expiry.as_bytes(), ""),
            pct(sig.as_bytes(), "")
        )
    }

    fn blob_path(container: &str, name: &str) -> String {
        format!("/{container}/{}", pct(name.as_bytes(), "/"))
    }

    pub fn put(&self, container: &str, name: &str, body: &[u8]) -> Result<(), String> {
        let r = self.send(
            "PUT",
            &Self::blob_path(container, name),
            &[],
            &[("x-ms-blob-type", "BlockBlob")],
            body,
        );
        (r.status == 201)
            .then_some(())
            .ok_or_else(|| format!("HTTP {}: {}", r.status, r.text()))
    }

    /// Set Blob Tier (`Hot`, `Cool`, `Archive`, ...).
    pub fn set_tier(&self, container: &str, name: &str, tier: &str) -> Result<(), String> {
        let r = self.send(
            "PUT",
            &Self::blob_path(container, name),
            &[("comp", "tier")],
            &[("x-ms-access-tier", tier)],
            b"",
        );
        (r.status == 200 || r.status == 202)
            .then_some(())
            .ok_or_else(|| format!("HTTP {}: {}", r.status, r.text()))
    }

    /// The blob's access tier, from Get Blob Properties (`x-ms-access-tier`).
    pub fn tier(&self, container: &str, name: &str) -> Result<String, String> {
        let r = self.send("HEAD", &Self::blob_path(container, name), &[], &[], b"");
        match (r.status, r.header("x-ms-access-tier")) {
            (200, Some(t)) => Ok(t.to_string()),
            (status, _) => Err(format!("HTTP {status}, no tier")),
        }
    }

    pub fn get(&self, container: &str, name: &str) -> Result<Vec<u8>, String> {
        let r = self.send("GET", &Self::blob_path(container, name), &[], &[], b"");
        (r.status == 200)
            .then_some(r.body.clone())
            .ok_or_else(|| format!("HTTP {}: {}", r.status, r.text()))
    }

    pub fn delete(&self, container: &str, name: &str) {
        let _ = self.try_send("DELETE", &Self::blob_path(container, name), &[], &[], b"");
    }

    /// Every container of the account (first page: the tests' accounts hold fewer than 5000).
    pub fn containers(&self) -> Result<Vec<String>, String> {
        let r = self
            .try_send("GET", "/", &[("comp", "list")], &[], b"")
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("list containers HTTP {}: {}", r.status, r.text()));
        }
        let text = r.text();
        Ok(text
            .split("<Name>")
            .skip(1)
            .filter_map(|t| t.split("</Name>").next())
            .map(xml_unescape)
            .collect())
    }

    /// Every blob name under `prefix`, all pages.
    pub fn list(&self, container: &str, prefix: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let mut q = vec![("restype", "container"), ("comp", "list"), ("prefix", prefix)];
            if !marker.is_empty() {
                q.push(("marker", &marker));
            }
            let r = self
                .try_send("GET", &format!("/{container}"), &q, &[], b"")
                .map_err(|e| e.to_string())?;
            if r.status != 200 {
                return Err(format!("list HTTP {}: {}", r.status, r.text()));
            }
            let text = r.text();
            let mut rest = text.as_str();
            while let Some(i) = rest.find("<Name") {
                let open_end = rest[i..].find('>').unwrap() + i;
                let encoded = rest[i..open_end].contains("Encoded=\"true\"");
                let close = rest[open_end..].find("</Name>").unwrap() + open_end;
                let raw = xml_unescape(&rest[open_end + 1..close]);
                out.push(if encoded {
                    String::from_utf8(unpct(&raw, false)).unwrap()
                } else {
                    raw
                });
                rest = &rest[close..];
            }
            marker = text
                .split("<NextMarker>")
                .nth(1)
                .and_then(|t| t.split("</NextMarker>").next())
                .map(xml_unescape)
                .unwrap_or_default();
            if marker.is_empty() {
                return Ok(out);
            }
        }
    }
}

/// An RFC 1123 date for `x-ms-date`.
pub fn httpdate_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// fake-gcs-server's own JSON API (`FERRY_TEST_GCS_RAW_ENDPOINT`), bypassing the write shim.
pub struct GcsRaw {
    host: String,
}

impl GcsRaw {
    pub fn from_env() -> GcsRaw {
        GcsRaw {
            host: split_endpoint(&super::env("FERRY_TEST_GCS_RAW_ENDPOINT")).0,
        }
    }

    /// Creates bucket `name` (`buckets.insert`); one that exists is fine.
    pub fn create_bucket(&self, name: &str) -> Result<(), String> {
        let body = format!("{{\"name\":\"{name}\"}}");
        let headers = [("Content-Type".to_string(), "application/json".to_string())];
        let r = request(
            "POST",
            &self.host,
            "/storage/v1/b?project=test",
            &headers,
            body.as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        matches!(r.status, 200 | 409)
            .then_some(())
            .ok_or_else(|| format!("HTTP {}: {}", r.status, r.text()))
    }

    pub fn put(&self, bucket: &str, name: &str, body: &[u8]) -> Result<(), String> {
        let pq = format!(
            "/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
            pct(name.as_bytes(), "")
        );
        let r = request("POST", &self.host, &pq, &[], body).map_err(|e| e.to_string())?;
        (r.status == 200)
            .then_some(())
            .ok_or_else(|| format!("HTTP {}: {}", r.status, r.text()))
    }

    pub fn get(&self, bucket: &str, name: &str) -> Result<Vec<u8>, String> {
        let pq = format!("/storage/v1/b/{bucket}/o/{}?alt=media", pct(name.as_bytes(), ""));
        let r = request("GET", &self.host, &pq, &[], b"").map_err(|e| e.to_string())?;
        (r.status == 200)
            .then_some(r.body.clone())
            .ok_or_else(|| format!("HTTP {}: {}", r.status, r.text()))
    }

    /// The object's `storageClass`, from its JSON metadata.
    pub fn storage_class(&self, bucket: &str, name: &str) -> Result<String, String> {
        let pq = format!("/storage/v1/b/{bucket}/o/{}", pct(name.as_bytes(), ""));
        let r = request("GET", &self.host, &pq, &[], b"").map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| format!("HTTP {}: {e}", r.status))?;
        v["storageClass"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no storageClass: {v}"))
    }

    pub fn delete(&self, bucket: &str, name: &str) {
        let pq = format!("/storage/v1/b/{bucket}/o/{}", pct(name.as_bytes(), ""));
        let _ = request("DELETE", &self.host, &pq, &[], b"");
    }

    pub fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut pq = format!("/storage/v1/b/{bucket}/o?prefix={}", pct(prefix.as_bytes(), ""));
            if !token.is_empty() {
                pq.push_str(&format!("&pageToken={}", pct(token.as_bytes(), "")));
            }
            let r = request("GET", &self.host, &pq, &[], b"").map_err(|e| e.to_string())?;
            if r.status != 200 {
                return Err(format!("list HTTP {}: {}", r.status, r.text()));
            }
            let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
            for it in v["items"].as_array().into_iter().flatten() {
                out.push(it["name"].as_str().unwrap().to_string());
            }
            token = v["nextPageToken"].as_str().unwrap_or("").to_string();
            if token.is_empty() {
                return Ok(out);
            }
        }
    }
}

/// Runs a future to completion on a private runtime (the tests themselves are synchronous).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// An AWS SDK client for one of the S3 test servers (`SEAWEED`, `MOTO` or `MOTO_IAM`).
pub fn s3_sdk(which: &str) -> aws_sdk_s3::Client {
    let v = |s: &str| super::env(&format!("FERRY_TEST_{which}_{s}"));
    s3_sdk_at(&v("ENDPOINT"), &v("KEY"), &v("SECRET"))
}

/// An AWS SDK client for an S3 server at `endpoint` (path style, region us-east-1).
pub fn s3_sdk_at(endpoint: &str, key: &str, secret: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let v = |s: &str| match s {
        "KEY" => key.to_string(),
        "SECRET" => secret.to_string(),
        _ => endpoint.to_string(),
    };
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(v("KEY"), v("SECRET"), None, None, "test"))
            .endpoint_url(v("ENDPOINT"))
            .force_path_style(true)
            .build(),
    )
}

pub fn s3_put(c: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) -> Result<(), String> {
    block_on(c.put_object().bucket(bucket).key(key).body(body.to_vec().into()).send())
        .map(|_| ())
        .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
}

pub fn s3_get(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    block_on(async {
        let o = c
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        o.body
            .collect()
            .await
            .map(|b| b.into_bytes().to_vec())
            .map_err(|e| e.to_string())
    })
}

pub fn s3_delete(c: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    let _ = block_on(c.delete_object().bucket(bucket).key(key).send());
}

/// Every key under `prefix`, all pages. Asks for `encoding-type=url` so keys with characters
/// XML 1.0 cannot carry (ESC) still list, and decodes them.
pub fn s3_list(c: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<Vec<String>, String> {
    block_on(async {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let r = c
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .encoding_type(aws_sdk_s3::types::EncodingType::Url)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
            for o in r.contents() {
                let k = o.key().unwrap_or_default();
                out.push(String::from_utf8(unpct(k, true)).map_err(|e| e.to_string())?);
            }
            token = r.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    })
}
