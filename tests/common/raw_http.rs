//! Requests to the test servers' own HTTP APIs, sent byte for byte: every URL library
//! normalises `a/./b` to `a/b` before sending, so seeding keys like that needs a bare HTTP/1.1
//! connection; and Azurite's SharedKey signature, from the Azure docs, over that exact path.

use std::io::{Read, Write};

use super::env;

/// Percent-encodes everything but unreserved characters (and `/` in a path).
pub fn percent(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One request over a fresh HTTP/1.1 connection, the path sent exactly as given.
pub fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let host = host.split('/').next().unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let len = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
            if len == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + len]);
            rest = &rest[eol + 4 + len..];
        }
        body = out;
    }
    (status, body)
}

/// Azurite's blob REST API with SharedKey signatures, as the Azure docs define them:
/// <https://learn.microsoft.com/en-us/rest/api/storageservices/authorize-with-shared-key>
pub struct Azurite {
    /// `http://127.0.0.1:10000/devstoreaccount1`
    endpoint: String,
    account: String,
    key: Vec<u8>,
}

impl Azurite {
    pub fn new() -> Azurite {
        Azurite {
            endpoint: env("FERRY_TEST_AZURITE_ENDPOINT"),
            account: env("FERRY_TEST_AZURITE_ACCOUNT"),
            key: base64_decode(&env("FERRY_TEST_AZURITE_KEY")),
        }
    }

    /// `path`: container and blob, percent-encoded; `query`: `a=b&c=d`, values unencoded-safe.
    pub fn request(&self, method: &str, path: &str, query: &str, headers: &[(&str, &str)], body: &[u8], ok: &[u16]) {
        let base_path = self
            .endpoint
            .trim_start_matches("http://")
            .split_once('/')
            .map(|x| x.1)
            .unwrap_or("");
        let full_path = format!("/{base_path}/{path}");
        let date = httpdate();
        let mut ms: Vec<(String, String)> =
            vec![("x-ms-date".into(), date), ("x-ms-version".into(), "2021-08-06".into())];
        ms.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        ms.sort();
        let canon_headers: String = ms.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let mut q: Vec<(&str, &str)> = query
            .split('&')
            .filter(|s| !s.is_empty())
            .filter_map(|p| p.split_once('='))
            .collect();
        q.sort();
        let canon_query: String = q.iter().map(|(k, v)| format!("\n{k}:{v}")).collect();
        let length = if body.is_empty() {
            String::new()
        } else {
            body.len().to_string()
        };
        let to_sign = format!(
            "{method}\n\n\n{length}\n\n\n\n\n\n\n\n\n{canon_headers}/{}{full_path}{canon_query}",
            self.account
        );
        let sig = base64_encode(&hmac_sha256(&self.key, to_sign.as_bytes()));
        let auth = format!("SharedKey {}:{sig}", self.account);
        let mut all: Vec<(&str, &str)> = ms.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.push(("Authorization", &auth));
        let target = if query.is_empty() {
            full_path
        } else {
            format!("{full_path}?{query}")
        };
        let (status, resp) = http(&self.endpoint, method, &target, &all, body);
        assert!(
            ok.contains(&status),
            "{method} {target}: {status} {}",
            String::from_utf8_lossy(&resp)
        );
    }
}

pub fn httpdate() -> String {
    // RFC 1123 in GMT, from the system clock, without a date crate.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][m as usize - 1];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
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
        .to_vec()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(b: &[u8]) -> String {
    let mut out = String::new();
    for c in b.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
