//! Where a byte gets hashed. Every byte ferry moves passes through a [`StreamHasher`] exactly
//! once, as it streams; nothing is re-read to compute a checksum.
//!
//! ferry's content checksum is SHA-256: collision-resistant (an audit can trust it), natively
//! understood by S3 (`x-amz-checksum-sha256`) and fast on CPUs with SHA extensions (measured in
//! docs/architecture.md). MD5 is computed only when the source publishes one to check the read
//! against (an S3 single-part ETag), so corruption on the way out is caught, not copied.

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// The algorithm name recorded in manifests and journals.
pub const ALGORITHM: &str = "sha256";
/// User-metadata key under which ferry stores the checksum with the object, where the
/// destination keeps metadata (S3 `x-amz-meta-ferry-sha256`, GCS `x-goog-meta-ferry-sha256`).
pub const METADATA_KEY: &str = "ferry-sha256";
/// The same for Azure, whose metadata names must be C# identifiers (no `-`).
pub const METADATA_KEY_AZURE: &str = "ferry_sha256";

/// The checksum metadata key for a kind of store.
pub fn metadata_key(kind: crate::catalog::StoreType) -> &'static str {
    match kind {
        crate::catalog::StoreType::Azure => METADATA_KEY_AZURE,
        _ => METADATA_KEY,
    }
}

/// The result of hashing one object's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub sha256: String,
    pub md5: Option<String>,
    pub bytes: u64,
}

/// Hashes a byte stream incrementally.
pub struct StreamHasher {
    sha: Sha256,
    md5: Option<Md5>,
    bytes: u64,
}

impl StreamHasher {
    /// `with_md5`: also compute MD5 (to check a source's MD5 ETag).
    pub fn new(with_md5: bool) -> StreamHasher {
        StreamHasher {
            sha: Sha256::new(),
            md5: with_md5.then(Md5::new),
            bytes: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
        if let Some(m) = &mut self.md5 {
            m.update(data);
        }
        self.bytes += data.len() as u64;
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn finish(self) -> Digest {
        Digest {
            sha256: hex(&self.sha.finalize()),
            md5: self.md5.map(|m| hex(&m.finalize())),
            bytes: self.bytes,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The MD5 an ETag stands for, if it is a plain single-part MD5 ETag (32 hex digits, no `-N`
/// multipart suffix). Only meaningful for stores whose capabilities say `md5_etag`.
pub fn md5_from_etag(etag: &str) -> Option<String> {
    let t = etag.trim_start_matches("W/").trim_matches('"');
    (t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())).then(|| t.to_ascii_lowercase())
}

/// The ETag S3 gives a completed multipart upload whose parts had these (MD5) ETags: the MD5
/// of the parts' binary MD5s, then `-N`. None when a part's ETag is not an MD5 (SSE-KMS, SSE-C,
/// servers that do not use MD5s): then the completed object cannot be proven to be ours by
/// its ETag.
pub fn multipart_etag<'a>(part_etags: impl ExactSizeIterator<Item = &'a str>) -> Option<String> {
    use md5::Digest as _;
    let n = part_etags.len();
    let mut md5 = Md5::new();
    for e in part_etags {
        let hex = md5_from_etag(e)?;
        let bytes: Option<Vec<u8>> = (0..16)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
            .collect();
        md5.update(bytes?);
    }
    Some(format!("{}-{n}", hex(&md5.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etags_follow_s3s_rule() {
        // Two parts "hello " and "world": MD5(MD5("hello ") || MD5("world")) + "-2".
        use md5::Digest as _;
        let part = |b: &[u8]| hex(&Md5::digest(b));
        let (a, b) = (part(b"hello "), part(b"world"));
        let mut both = Md5::digest(b"hello ").to_vec();
        both.extend_from_slice(&Md5::digest(b"world"));
        let want = format!("{}-2", hex(&Md5::digest(&both)));
        let quoted = [format!("\"{a}\""), b.clone()];
        assert_eq!(multipart_etag(quoted.iter().map(String::as_str)), Some(want));
        // A part ETag that is no MD5 (SSE-KMS style) proves nothing.
        assert_eq!(multipart_etag([a.as_str(), "not-an-md5"].into_iter()), None);
    }

    #[test]
    fn known_vectors() {
        let mut h = StreamHasher::new(true);
        h.update(b"hello ");
        h.update(b"world");
        let d = h.finish();
        assert_eq!(
            d.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(d.md5.as_deref(), Some("5eb63bbbe01eeed093cb22bb8f5acdc3"));
        assert_eq!(d.bytes, 11);
    }

    #[test]
    fn etag_forms() {
        assert_eq!(
            md5_from_etag("\"5EB63BBBE01EEED093CB22BB8F5ACDC3\"").as_deref(),
            Some("5eb63bbbe01eeed093cb22bb8f5acdc3")
        );
        assert_eq!(md5_from_etag("\"5eb63bbbe01eeed093cb22bb8f5acdc3-2\""), None);
        assert_eq!(md5_from_etag("0x8D9"), None);
    }
}
