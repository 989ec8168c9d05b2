//! Copies into a provider that encrypts (issue 18): each object is encrypted on the blocking pool
//! as its parts go by (`crypt::objects`), and the bytes stored are hashed too, so the journal and
//! the manifest keep both the plaintext's SHA-256 (what `verify --deep` checks with the key) and
//! the ciphertext's (what `verify` checks without it).

use std::sync::Arc;

use bytes::Bytes;

use super::copy::CopyError;
use crate::checksum::{Digest, StreamHasher};
use crate::crypt::{ObjectKeys, ObjectSealer};
use crate::store::Listed;

/// One object's encryption, part after part, in order.
pub(super) struct PartSeal {
    sealer: Arc<ObjectSealer>,
    keys: Arc<ObjectKeys>,
    part: u64,
    size: u64,
    /// The stored bytes' hasher; taken while a part is on the blocking pool.
    stored: Option<StreamHasher>,
}

impl PartSeal {
    /// A multipart upload's: keys derived from its identity, so a resumed run encrypts its
    /// missing parts under the key of the parts the server holds.
    pub(super) fn resumable(
        sealer: &Arc<ObjectSealer>,
        (job, dst_key, upload_id): (&str, &str, &str),
        item: &Listed,
        part: u64,
    ) -> Result<PartSeal, CopyError> {
        let size = item.size.to_string();
        let identity = [
            job,
            dst_key,
            item.etag.as_deref().unwrap_or(""),
            &size,
            upload_id,
            &part.to_string(),
        ];
        let keys = sealer.keys_for(&identity).map_err(cannot)?;
        Ok(PartSeal::with_keys(sealer, keys, item.size, part))
    }

    /// An upload that is not resumed: fresh keys.
    pub(super) fn fresh(sealer: &Arc<ObjectSealer>, size: u64, part: u64) -> Result<PartSeal, CopyError> {
        Ok(PartSeal::with_keys(
            sealer,
            ObjectSealer::fresh_keys().map_err(cannot)?,
            size,
            part,
        ))
    }

    fn with_keys(sealer: &Arc<ObjectSealer>, keys: ObjectKeys, size: u64, part: u64) -> PartSeal {
        PartSeal {
            sealer: sealer.clone(),
            keys: Arc::new(keys),
            part,
            size,
            stored: Some(StreamHasher::new(false)),
        }
    }

    /// Part `number` (from 1) encrypted, and hashed as stored.
    pub(super) async fn seal(&mut self, number: i32, plain: Bytes) -> Result<Bytes, CopyError> {
        let offset = (number as u64 - 1) * self.part;
        let last = offset + plain.len() as u64 >= self.size;
        let (sealer, keys) = (self.sealer.clone(), self.keys.clone());
        let mut hasher = self.stored.take().expect("parts are sealed one at a time");
        let (sealed, hasher) = tokio::task::spawn_blocking(move || {
            let mut buf = owned(plain);
            let sealed = sealer.seal_in_place(&keys, offset, &mut buf, last).map(|()| buf);
            if let Ok(s) = &sealed {
                hasher.update(s);
            }
            (sealed, hasher)
        })
        .await
        .map_err(|e| CopyError::Permanent(format!("encryption stopped: {e}")))?;
        self.stored = Some(hasher);
        sealed.map(Bytes::from).map_err(cannot)
    }

    /// The stored bytes' digest, once every part is sealed.
    pub(super) fn finish(mut self) -> Digest {
        self.keys.forget_header();
        self.stored.take().expect("no part in flight").finish()
    }
}

/// A whole object encrypted under fresh keys, with the digest of what will be stored (its MD5
/// too, to hold a PUT's ETag to).
pub(super) async fn seal_whole(sealer: &Arc<ObjectSealer>, plain: Bytes) -> Result<(Bytes, Digest), CopyError> {
    let sealer = sealer.clone();
    tokio::task::spawn_blocking(move || {
        let mut sealed = owned(plain);
        let keys = ObjectSealer::fresh_keys().map_err(cannot)?;
        sealer.seal_in_place(&keys, 0, &mut sealed, true).map_err(cannot)?;
        let mut h = StreamHasher::new(true);
        h.update(&sealed);
        Ok((Bytes::from(sealed), h.finish()))
    })
    .await
    .map_err(|e| CopyError::Permanent(format!("encryption stopped: {e}")))?
}

/// The buffer itself where it is ours alone (then a part is never held twice), else a copy.
fn owned(b: Bytes) -> Vec<u8> {
    match b.try_into_mut() {
        Ok(m) => Vec::from(m),
        Err(shared) => shared.to_vec(),
    }
}

fn cannot(e: std::io::Error) -> CopyError {
    CopyError::Permanent(format!("cannot encrypt: {e}"))
}
