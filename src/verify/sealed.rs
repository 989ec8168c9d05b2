//! Verifying objects at a destination that encrypts (issue 18). Without the key, what can be
//! proven is that the stored bytes are the ones ferry wrote: their size (the plaintext's plus
//! the age header and a tag per 64 KiB) and, at `checksum`, their SHA-256 against the journal's
//! `stored_sha256`. With the key (`--deep` and the provider's `decrypt-identity-*`), every object
//! is decrypted and its plaintext's SHA-256 held to the source's.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use tokio::sync::mpsc;

use super::hash_object;
use crate::checksum::{Digest, StreamHasher};
use crate::crypt::{CryptError, Opener};
use crate::error::Error;
use crate::journal::Record;
use crate::plan::{ObjectJob, VerifyLevel};
use crate::progress::Progress;
use crate::redact::redact;
use crate::store::{key_to_path, Listed, Store};
use crate::sync::body_stream;
use crate::sync::decide::same_etag;

/// For `--deep` at a destination that encrypts: the provider's identities, checked against the
/// first encrypted object found so that a wrong key stops the verify at once (exit 2) rather
/// than failing every object. None where the destination does not encrypt or `level` is not
/// deep.
pub async fn deep_opener(job: &ObjectJob, dst: &Store, level: VerifyLevel) -> Result<Option<Arc<Opener>>, Error> {
    if dst.seal.is_none() || level != VerifyLevel::Deep {
        return Ok(None);
    }
    let usage = |e: CryptError| {
        let why = match e {
            CryptError::NoIdentity { provider, .. } => format!(
                "objects at provider `{provider}` are encrypted, and it has no `decrypt-identity-file` or `decrypt-identity-env` to read them"
            ),
            CryptError::WrongIdentity { provider, key, via } => {
                format!("`{key}` is encrypted to other recipients: provider `{provider}`'s {via} does not match")
            }
            e => e.to_string(),
        };
        Error::usage(redact(&format!("job `{}`: verify --deep: {why}", job.name)))
    };
    let opener = Opener::load(&dst.spec, &format!("{}:{}", dst.name(), job.to.prefix)).map_err(usage)?;
    let prefix = key_to_path(job.to.prefix.trim_end_matches('/')).ok();
    let mut listing = dst.inner.list(prefix.as_ref());
    while let Some(Ok(meta)) = listing.next().await {
        let head = dst
            .inner
            .get_opts(
                &meta.location,
                object_store::GetOptions {
                    range: Some((0..meta.size.min(4096)).into()),
                    ..Default::default()
                },
            )
            .await;
        let Ok(head) = head else { continue };
        let Ok(bytes) = head.bytes().await else { continue };
        if crate::crypt::is_sealed(&bytes) {
            opener.check(meta.location.as_ref(), &bytes).map_err(usage)?;
            break;
        }
    }
    Ok(Some(Arc::new(opener)))
}

/// [`super::check_one`] for an encrypted destination object `d` of source `item`.
pub(super) async fn check_sealed(
    dst: &Store,
    level: VerifyLevel,
    (item, dst_key, d): (&Listed, &str, &Listed),
    record: Option<Record>,
    opener: Option<&Arc<Opener>>,
    progress: &dyn Progress,
) -> Result<u64, String> {
    let expected = dst.stored_len(item.size);
    if d.size != expected {
        return Err(format!(
            "size differs: source {} bytes ({expected} encrypted), destination {} bytes",
            item.size, d.size
        ));
    }
    if level == VerifyLevel::Size {
        return Ok(0);
    }
    let stored_sha = record.as_ref().and_then(|r| r.stored_sha256.clone());
    if level == VerifyLevel::Checksum {
        let Some(stored_sha) = stored_sha else {
            return Err("encrypted, and no journal row records what was stored: `verify --deep` with the provider's `decrypt-identity-*` checks it".into());
        };
        if record.as_ref().is_some_and(|r| same_etag(&r.dst_etag, &d.etag)) {
            return Ok(0);
        }
        let (got, n) = hash_object(dst, dst_key, progress, false).await?;
        return same("stored", &got.sha256, &stored_sha).map(|()| n);
    }
    let Some(opener) = opener else {
        return Err("encrypted: `--deep` needs the provider's `decrypt-identity-*`".into());
    };
    let (stored, plain, n) = decrypt_and_hash(dst, dst_key, opener.clone(), progress).await?;
    if let Some(s) = &stored_sha {
        same("stored", &stored.sha256, s)?;
    }
    if plain.bytes != item.size {
        return Err(format!("decrypted to {} bytes, source has {}", plain.bytes, item.size));
    }
    Ok(n).and_then(|n| match record.and_then(|r| r.sha256) {
        Some(sha) => same("decrypted", &plain.sha256, &sha).map(|()| n),
        None => Err("no journal row records the source's SHA-256 to hold the plaintext to".into()),
    })
}

fn same(what: &str, got: &str, expected: &str) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("content differs: {what} sha256 {got}, expected {expected}"))
    }
}

/// Reads an encrypted object once: the stored bytes hashed here, their plaintext decrypted and
/// hashed on the blocking pool by age's own reader.
async fn decrypt_and_hash(
    dst: &Store,
    key: &str,
    opener: Arc<Opener>,
    progress: &dyn Progress,
) -> Result<(Digest, Digest, u64), String> {
    let path = key_to_path(key).map_err(|e| e.to_string())?;
    let got = dst
        .inner
        .get(&path)
        .await
        .map_err(|e| redact(&format!("cannot read `{key}` from `{}`: {e}", dst.name())))?;
    let mut body = body_stream(got);
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let name = key.to_string();
    let plain = tokio::task::spawn_blocking(move || -> Result<Digest, String> {
        let input = Chunks {
            rx: &mut rx,
            current: Bytes::new(),
        };
        let mut reader = opener.reader(&name, input).map_err(|e| e.to_string())?;
        let mut h = StreamHasher::new(false);
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = reader.read(&mut buf).map_err(|e| format!("cannot decrypt: {e}"))?;
            if n == 0 {
                return Ok(h.finish());
            }
            h.update(&buf[..n]);
        }
    });
    let mut stored = StreamHasher::new(false);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| redact(&format!("reading `{key}` from `{}`: {e}", dst.name())))?;
        progress.bytes(chunk.len() as u64);
        stored.update(&chunk);
        if tx.send(chunk).await.is_err() {
            break;
        }
    }
    drop(tx);
    let plain = plain.await.map_err(|e| format!("decryption stopped: {e}"))??;
    let stored = stored.finish();
    let n = stored.bytes;
    Ok((stored, plain, n))
}

/// Chunks from the channel as a reader.
struct Chunks<'a> {
    rx: &'a mut mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
