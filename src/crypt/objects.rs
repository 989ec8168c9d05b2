//! Encrypted objects (issue 18): the [age v1](https://age-encryption.org/v1) format, written by
//! ferry part by part so that a multipart upload killed half-way resumes inside the object like
//! a plain one.
//!
//! Why not `age::Encryptor`: it draws its own random file key and nonce and encrypts from the
//! first byte on, with no way to set either. A resumed upload must produce part N's ciphertext
//! alone, under the key the parts already at the server were encrypted with. So the file key and
//! payload nonce of a multipart upload are derived (HMAC-SHA256) from a secret kept in the state
//! directory and the upload's identity (job, key, source version, upload id): the resumed run
//! derives the same ones and encrypts from part N's first chunk. A whole object (one PUT) gets
//! fresh random ones. Losing the state directory only loses the resume: the journal is gone too,
//! and the open upload is aborted and started again.
//!
//! The recipients' stanzas come from age (`Recipient::wrap_file_key`); what is written here is the
//! framing of the header, its MAC and the STREAM payload: 64 KiB ChaCha20-Poly1305 chunks, an
//! 11-byte big-endian counter and a last-chunk flag as nonce. Tests decrypt what this writes with
//! age's reader and with the Go `age` command, which shares no code with it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza};
use age_core::primitives::hkdf;
use base64::Engine as _;
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::AGE_MAGIC;

/// Plaintext bytes per payload chunk.
pub const CHUNK: u64 = 64 * 1024;
/// Poly1305 tag per chunk.
const TAG: u64 = 16;
/// The payload nonce that follows the header.
const NONCE: usize = 16;
/// The state directory's key-derivation secret (mode 0600): see the module's comment.
pub const SECRET_FILE: &str = "object-keys.secret";
/// Where the headers of encrypted uploads in progress are kept (see [`ObjectKeys`]).
pub const HEADERS_DIR: &str = "object-headers";

type Recipients = Arc<Vec<Box<dyn age::Recipient + Send + Sync>>>;

/// Encrypts objects for one provider's recipients.
pub struct ObjectSealer {
    recipients: Recipients,
    /// Header, MAC line and payload nonce: the same for every object of these recipients (an
    /// X25519 stanza has one length), so sizes are known before anything is encrypted.
    head_len: u64,
    /// Read from the state directory by a run that writes ([`ObjectSealer::load_secret`]),
    /// with that directory.
    secret: OnceLock<([u8; 32], PathBuf)>,
}

impl std::fmt::Debug for ObjectSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectSealer")
            .field("recipients", &self.recipients.len())
            .finish_non_exhaustive()
    }
}

/// The file key and payload cipher of one encrypted object.
pub struct ObjectKeys {
    file_key: [u8; 16],
    nonce: [u8; NONCE],
    payload: ChaCha20Poly1305,
    /// A resumable upload's header, kept in the state directory (`HEADERS_DIR`): its stanzas
    /// wrap the file key with a random ephemeral key, so a header made again would differ, and
    /// the stored bytes' SHA-256 could no longer be computed from the parts sealed again.
    header: Option<(Vec<u8>, PathBuf)>,
}

impl Drop for ObjectKeys {
    fn drop(&mut self) {
        self.file_key = [0; 16];
    }
}

impl ObjectKeys {
    fn new(file_key: [u8; 16], nonce: [u8; NONCE]) -> ObjectKeys {
        let key = hkdf(&nonce, b"payload", &file_key);
        ObjectKeys {
            file_key,
            nonce,
            payload: ChaCha20Poly1305::new((&key).into()),
            header: None,
        }
    }

    /// Removes the kept header of a resumable upload once it is complete.
    pub fn forget_header(&self) {
        if let Some((_, path)) = &self.header {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl ObjectSealer {
    pub(super) fn new(recipients: Recipients) -> io::Result<ObjectSealer> {
        let mut s = ObjectSealer {
            recipients,
            head_len: 0,
            secret: OnceLock::new(),
        };
        s.head_len = s.header(&[0; 16])?.len() as u64 + NONCE as u64;
        Ok(s)
    }

    /// Reads the state directory's secret, creating it (0600) on first use.
    pub fn load_secret(&self, state_dir: &Path) -> io::Result<()> {
        if self.secret.get().is_some() {
            return Ok(());
        }
        let path = state_dir.join(SECRET_FILE);
        let secret = match std::fs::read(&path) {
            Ok(b) => b.try_into().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("`{}` is not 32 bytes: remove it to start over", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut b = [0u8; 32];
                getrandom::getrandom(&mut b).map_err(io::Error::other)?;
                write_private(&path, &b)?;
                b
            }
            Err(e) => return Err(e),
        };
        let _ = self.secret.set((secret, state_dir.to_path_buf()));
        Ok(())
    }

    /// The keys of the multipart upload named by `identity` (job, key, source version, upload
    /// id): the same on every run that has the same state directory.
    pub fn keys_for(&self, identity: &[&str]) -> io::Result<ObjectKeys> {
        let (secret, state_dir) = self
            .secret
            .get()
            .ok_or_else(|| io::Error::other("the state directory's object key secret is not loaded"))?;
        let derive = |label: &str| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
            mac.update(label.as_bytes());
            for part in identity {
                // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
                mac.update(&(part.len() as u64).to_be_bytes());
                mac.update(part.as_bytes());
            }
            mac.finalize().into_bytes()
        };
        let (k, n) = (derive("ferry object file key"), derive("ferry object nonce"));
        let mut keys = ObjectKeys::new(
            k[..16].try_into().expect("32 bytes"),
            n[..NONCE].try_into().expect("32 bytes"),
        );
        let name: String = derive("ferry object header")[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = state_dir.join(HEADERS_DIR).join(name);
        let header = match std::fs::read(&path) {
            Ok(h) if h.len() as u64 + NONCE as u64 == self.head_len => h,
            _ => {
                let h = self.header(&keys.file_key)?;
                write_private(&path, &h)?;
                h
            }
        };
        keys.header = Some((header, path));
        Ok(keys)
    }

    /// Fresh random keys, for an object sent in one request.
    pub fn fresh_keys() -> io::Result<ObjectKeys> {
        let mut b = [0u8; 32];
        getrandom::getrandom(&mut b).map_err(io::Error::other)?;
        Ok(ObjectKeys::new(
            b[..16].try_into().expect("32 bytes"),
            b[16..].try_into().expect("16 bytes"),
        ))
    }

    /// The stored size of a `plain`-byte object.
    pub fn sealed_len(&self, plain: u64) -> u64 {
        self.head_len + plain + TAG * chunks(plain)
    }

    /// The plaintext size of a stored object of `sealed` bytes, if it can be one.
    pub fn plain_len(&self, sealed: u64) -> Option<u64> {
        let payload = sealed.checked_sub(self.head_len)?;
        let n = payload.div_ceil(CHUNK + TAG).max(1);
        let plain = payload.checked_sub(n * TAG)?;
        (self.sealed_len(plain) == sealed).then_some(plain)
    }

    /// Encrypts the part of an object that starts at plaintext `offset` (a multiple of
    /// [`CHUNK`]); `last`: it ends the object. The first part carries the header. Every part
    /// but the last must be a whole number of chunks.
    pub fn seal_part(&self, keys: &ObjectKeys, offset: u64, plain: &[u8], last: bool) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(plain.len() + self.overhead(offset, plain.len() as u64, last) as usize);
        buf.extend_from_slice(plain);
        self.seal_in_place(keys, offset, &mut buf, last)?;
        Ok(buf)
    }

    /// [`ObjectSealer::seal_part`] in `buf` itself: the plaintext becomes the ciphertext, so a
    /// part is never held twice (a large buffer grows by `mremap`, not by a copy).
    pub fn seal_in_place(&self, keys: &ObjectKeys, offset: u64, buf: &mut Vec<u8>, last: bool) -> io::Result<()> {
        let plain = buf.len();
        if offset % CHUNK != 0 || (!last && plain as u64 % CHUNK != 0) {
            return Err(io::Error::other(format!(
                "encrypted parts must be whole {CHUNK}-byte chunks (part at {offset}, {plain} bytes)"
            )));
        }
        let head = if offset == 0 { self.head_len as usize } else { 0 };
        let count = self.overhead(offset, plain as u64, last).saturating_sub(head as u64) / TAG;
        buf.resize(plain + head + (count * TAG) as usize, 0);
        let count = count as usize;
        let (chunk, tag) = (CHUNK as usize, TAG as usize);
        // From the last chunk back: each moves to a place at or after where it was, so a chunk
        // not yet moved is never overwritten.
        for i in (0..count).rev() {
            let (from, len) = (i * chunk, chunk.min(plain - i * chunk));
            let to = head + i * (chunk + tag);
            buf.copy_within(from..from + len, to);
            let nonce = chunk_nonce(offset / CHUNK + i as u64, last && i + 1 == count);
            let t = keys
                .payload
                .encrypt_in_place_detached((&nonce).into(), b"", &mut buf[to..to + len])
                .map_err(|_| io::Error::other("ChaCha20-Poly1305 refused a chunk"))?;
            buf[to + len..to + len + tag].copy_from_slice(&t);
        }
        if head > 0 {
            let header = match &keys.header {
                Some((h, _)) => h.clone(),
                None => self.header(&keys.file_key)?,
            };
            if header.len() + NONCE != head {
                return Err(io::Error::other("an age header changed length between objects"));
            }
            buf[..header.len()].copy_from_slice(&header);
            buf[header.len()..head].copy_from_slice(&keys.nonce);
        }
        Ok(())
    }

    /// Bytes a part of `plain` bytes at `offset` gains: the header on the first, a tag a chunk
    /// (the last part of an empty object is one empty chunk).
    fn overhead(&self, offset: u64, plain: u64, last: bool) -> u64 {
        let head = if offset == 0 { self.head_len } else { 0 };
        let count = if last { chunks(plain) } else { plain / CHUNK };
        head + TAG * count
    }

    /// `plain` as one whole encrypted object, under fresh keys.
    pub fn seal_whole(&self, plain: &[u8]) -> io::Result<Vec<u8>> {
        self.seal_part(&Self::fresh_keys()?, 0, plain, true)
    }

    /// The age header for `file_key`: the version line, one stanza per recipient, the MAC.
    fn header(&self, file_key: &[u8; 16]) -> io::Result<Vec<u8>> {
        let key = FileKey::new(Box::new(*file_key));
        let mut out = AGE_MAGIC.to_vec();
        for r in self.recipients.iter() {
            let (stanzas, _labels) = r.wrap_file_key(&key).map_err(io::Error::other)?;
            stanzas.iter().for_each(|s| write_stanza(&mut out, s));
        }
        out.extend_from_slice(b"---");
        let mac_key = hkdf(&[], b"header", key.expose_secret());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&mac_key).expect("HMAC takes any key length");
        mac.update(&out);
        out.push(b' ');
        out.extend_from_slice(b64().encode(mac.finalize().into_bytes()).as_bytes());
        out.push(b'\n');
        Ok(out)
    }
}

/// Writes `bytes` to `path` whole or not at all (beside, synced, renamed), the file mode 0600
/// and a missing folder 0700, as the state directory's other files (`journal`).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().expect("a file in the state directory");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    io::Write::write_all(&mut f, bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Payload chunks of a `plain`-byte object: an empty object still has one (empty, last).
fn chunks(plain: u64) -> u64 {
    plain.div_ceil(CHUNK).max(1)
}

/// STREAM's nonce: an 11-byte big-endian chunk counter, then 1 on the last chunk.
fn chunk_nonce(counter: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = last as u8;
    n
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD_NO_PAD
}

/// `-> TAG ARGS…`, then the body in base64 lines of 64 columns, the last one shorter (empty if
/// need be), as the spec requires.
fn write_stanza(out: &mut Vec<u8>, s: &Stanza) {
    out.extend_from_slice(b"-> ");
    out.extend_from_slice(s.tag.as_bytes());
    for a in &s.args {
        out.push(b' ');
        out.extend_from_slice(a.as_bytes());
    }
    out.push(b'\n');
    let body = b64().encode(&s.body);
    for line in body.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    if body.len() % 64 == 0 {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::str::FromStr;

    fn pair() -> (age::x25519::Identity, ObjectSealer) {
        let id = age::x25519::Identity::generate();
        let r: Box<dyn age::Recipient + Send + Sync> = Box::new(id.to_public());
        (id, ObjectSealer::new(Arc::new(vec![r])).unwrap())
    }

    fn open(id: &age::x25519::Identity, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let d = age::Decryptor::new(sealed).map_err(|e| e.to_string())?;
        let mut r = d
            .decrypt(std::iter::once(id as &dyn age::Identity))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn whole_objects_of_every_chunk_shape_open_with_age() {
        let (id, s) = pair();
        for n in [
            0,
            1,
            CHUNK as usize - 1,
            CHUNK as usize,
            CHUNK as usize + 1,
            3 * CHUNK as usize,
        ] {
            let plain = data(n);
            let sealed = s.seal_whole(&plain).unwrap();
            assert_eq!(sealed.len() as u64, s.sealed_len(n as u64), "{n} bytes");
            assert_eq!(s.plain_len(sealed.len() as u64), Some(n as u64));
            assert_eq!(open(&id, &sealed).unwrap(), plain, "{n} bytes");
        }
    }

    #[test]
    fn parts_sealed_apart_and_again_make_one_age_file() {
        let (id, s) = pair();
        let state = tempfile::tempdir().unwrap();
        s.load_secret(state.path()).unwrap();
        let part = 2 * CHUNK as usize;
        let plain = data(5 * CHUNK as usize + 100);
        let ident = ["job", "key", "etag", "upload-1"];
        let keys = s.keys_for(&ident).unwrap();
        let mut sealed = Vec::new();
        for (i, p) in plain.chunks(part).enumerate() {
            let last = (i + 1) * part >= plain.len();
            sealed.extend(s.seal_part(&keys, (i * part) as u64, p, last).unwrap());
        }
        assert_eq!(open(&id, &sealed).unwrap(), plain);
        // A resumed run derives the same keys: the second part comes out byte for byte the same.
        let again = s.keys_for(&ident).unwrap();
        let p2 = s.seal_part(&again, part as u64, &plain[part..2 * part], false).unwrap();
        let at = s.head_len as usize + part + 2 * TAG as usize;
        assert_eq!(&sealed[at..at + p2.len()], &p2[..]);
        assert_eq!(
            &sealed[..s.head_len as usize],
            &s.seal_part(&again, 0, &plain[..part], false).unwrap()[..s.head_len as usize]
        );
        // Another upload id, other keys.
        let other = s.keys_for(&["job", "key", "etag", "upload-2"]).unwrap();
        assert_ne!(other.file_key, keys.file_key);
    }

    #[test]
    fn a_wrong_identity_or_a_flipped_byte_fails() {
        let (id, s) = pair();
        let sealed = s.seal_whole(b"secret payload").unwrap();
        let other = age::x25519::Identity::generate();
        assert!(open(&other, &sealed).is_err());
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open(&id, &bad).is_err());
        assert!(!sealed.windows(7).any(|w| w == b"payload"));
    }

    #[test]
    fn two_recipients_each_open() {
        let (a, b) = (age::x25519::Identity::generate(), age::x25519::Identity::generate());
        let rs: Vec<Box<dyn age::Recipient + Send + Sync>> = vec![
            Box::new(age::x25519::Recipient::from_str(&a.to_public().to_string()).unwrap()),
            Box::new(b.to_public()),
        ];
        let s = ObjectSealer::new(Arc::new(rs)).unwrap();
        let sealed = s.seal_whole(&data(200_000)).unwrap();
        assert_eq!(sealed.len() as u64, s.sealed_len(200_000));
        assert_eq!(open(&a, &sealed).unwrap(), data(200_000));
        assert_eq!(open(&b, &sealed).unwrap(), data(200_000));
    }

    #[test]
    fn misaligned_parts_are_refused() {
        let (_, s) = pair();
        let k = ObjectSealer::fresh_keys().unwrap();
        assert!(s.seal_part(&k, 100, b"x", true).is_err());
        assert!(s.seal_part(&k, 0, &data(1000), false).is_err());
    }
}
