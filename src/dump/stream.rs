//! The byte pipes of a dump and a restore. Out: a tool's stdout (or a file) is read on a
//! blocking thread, compressed with zstd and hashed there ([`produce`]), and handed in chunks
//! through a small channel to the uploader, which fills the parts of a multipart upload
//! ([`upload_parts`]). Back: the stored bytes are downloaded into a channel ([`feed`]) and a
//! blocking thread hashes, decompresses and writes them into the restore's sink ([`consume`]).
//! Both ends hash the stored bytes, so the restore checks what the dump recorded.

use std::io::{self, Read, Write};

use bytes::Bytes;
use futures::stream::{BoxStream, FuturesUnordered};
use futures::StreamExt;
use object_store::{MultipartUpload, PutPayload};
use tokio::sync::mpsc;

use super::DUMP_PARTS_IN_FLIGHT;
use crate::checksum::{Digest, StreamHasher};
use crate::plan::Compression;
use crate::progress::Progress;
use crate::redact::redact;

/// zstd's default level: about the speed of `pg_dump` itself, so compression does not slow a dump.
const ZSTD_LEVEL: i32 = 3;
/// Compressed bytes per message from the compressing thread to the uploader.
const CHUNK: usize = 1 << 20;
/// Messages queued between the compressing thread and the uploader (bounded: memory stays flat).
pub(super) const CHANNEL_DEPTH: usize = 4;
/// Read size from a tool's stdout or a file.
pub(super) const READ_BUF: usize = 256 * 1024;
/// The first bytes of a zstd frame, to recognise a dump written without a record.
pub(super) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// What the producer read and stored.
pub(super) struct Produced {
    pub(super) raw: u64,
    pub(super) digest: Digest,
}

/// Reads `input` to the end on a blocking thread, compresses and hashes it, and sends
/// `(stored bytes, raw bytes consumed)` chunks to the uploader.
pub(super) fn produce(
    mut input: Box<dyn Read + Send>,
    compression: Compression,
    tx: mpsc::Sender<(Bytes, u64)>,
) -> io::Result<Produced> {
    let mut hasher = StreamHasher::new(false);
    let mut raw = 0u64;
    let mut buf = vec![0u8; READ_BUF];
    let send = |data: Vec<u8>, raw: u64, hasher: &mut StreamHasher| -> io::Result<()> {
        hasher.update(&data);
        tx.blocking_send((Bytes::from(data), raw))
            .map_err(|_| io::Error::other("the upload stopped"))
    };
    match compression {
        Compression::None => loop {
            let n = read_full(&mut input, &mut buf)?;
            if n == 0 {
                break;
            }
            raw += n as u64;
            send(buf[..n].to_vec(), n as u64, &mut hasher)?;
        },
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(Vec::with_capacity(CHUNK * 2), ZSTD_LEVEL)?;
            // The frame checksum lets the decoder catch corruption before a restore finishes.
            enc.include_checksum(true)?;
            let mut pending = 0u64;
            loop {
                let n = match input.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    break;
                }
                raw += n as u64;
                pending += n as u64;
                enc.write_all(&buf[..n])?;
                // Also flush on raw volume, so highly compressible data still reports progress.
                if enc.get_ref().len() >= CHUNK || pending >= 8 * CHUNK as u64 {
                    let out = std::mem::replace(enc.get_mut(), Vec::with_capacity(CHUNK * 2));
                    send(out, pending, &mut hasher)?;
                    pending = 0;
                }
            }
            let out = enc.finish()?;
            send(out, pending, &mut hasher)?;
        }
    }
    Ok(Produced {
        raw,
        digest: hasher.finish(),
    })
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Fills parts from the channel and uploads them, at most [`DUMP_PARTS_IN_FLIGHT`] at a time,
/// driving the uploads while waiting for more data. Every part but the last is exactly `part`.
pub(super) async fn upload_parts(
    upload: &mut Box<dyn MultipartUpload>,
    rx: &mut mpsc::Receiver<(Bytes, u64)>,
    part: u64,
    progress: &dyn Progress,
) -> object_store::Result<()> {
    let mut inflight = FuturesUnordered::new();
    let mut buf: Vec<Bytes> = Vec::new();
    let mut buf_len = 0u64;
    let mut parts = 0u64;
    loop {
        let msg = tokio::select! {
            Some(r) = inflight.next(), if !inflight.is_empty() => {
                r?;
                continue;
            }
            m = rx.recv() => m,
        };
        let Some((mut chunk, raw)) = msg else { break };
        progress.bytes(raw);
        while buf_len + chunk.len() as u64 >= part {
            buf.push(chunk.split_to((part - buf_len) as usize));
            inflight.push(upload.put_part(PutPayload::from_iter(std::mem::take(&mut buf))));
            parts += 1;
            buf_len = 0;
            if inflight.len() >= DUMP_PARTS_IN_FLIGHT {
                inflight.next().await.transpose()?;
            }
        }
        if !chunk.is_empty() {
            buf_len += chunk.len() as u64;
            buf.push(chunk);
        }
    }
    if buf_len > 0 || parts == 0 {
        inflight.push(upload.put_part(PutPayload::from_iter(buf)));
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    Ok(())
}

/// Sends the downloaded body, `first` chunk first, to the consumer until either ends. Returns
/// why the download failed, if it did (redacted); a consumer that stopped has its own error.
pub(super) async fn feed(
    first: Bytes,
    mut body: BoxStream<'static, object_store::Result<Bytes>>,
    tx: mpsc::Sender<Bytes>,
) -> Option<String> {
    let mut download_error = None;
    // An empty first chunk is skipped, not taken for the end of the object.
    if first.is_empty() || tx.send(first).await.is_ok() {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) => {
                    if tx.send(b).await.is_err() {
                        break; // the consumer stopped; its error says why
                    }
                }
                Err(e) => {
                    download_error = Some(redact(&e.to_string()));
                    break;
                }
            }
        }
    }
    drop(tx);
    download_error
}

/// Reads the stored bytes from the channel on a blocking thread, hashes them, decompresses them
/// into `sink`. Returns the sink unclosed, so the caller can kill a restore tool before it sees
/// end-of-input when anything went wrong.
pub(super) fn consume(
    mut rx: mpsc::Receiver<Bytes>,
    compression: Compression,
    mut sink: Box<dyn Write + Send>,
) -> (Result<u64, ConsumeError>, Option<Digest>, Box<dyn Write + Send>) {
    let mut hasher = StreamHasher::new(false);
    let mut sink_failed = false;
    let result = (|| -> io::Result<u64> {
        let mut counter = CountingWriter {
            inner: &mut sink,
            count: 0,
            failed: &mut sink_failed,
        };
        match compression {
            Compression::None => {
                while let Some(b) = rx.blocking_recv() {
                    hasher.update(&b);
                    counter.write_all(&b)?;
                }
                counter.flush()?;
            }
            Compression::Zstd => {
                let mut dec = zstd::stream::write::Decoder::new(&mut counter)?;
                while let Some(b) = rx.blocking_recv() {
                    hasher.update(&b);
                    dec.write_all(&b)?;
                }
                // Errors on a truncated frame, and the frame checksum catches corrupted bytes.
                dec.flush()?;
                dec.finish()?;
                counter.flush()?;
            }
        }
        Ok(counter.count)
    })();
    let digest = result.is_ok().then(|| hasher.finish());
    let result = result.map_err(|e| {
        if sink_failed {
            ConsumeError::Sink(e)
        } else {
            ConsumeError::Input(e)
        }
    });
    (result, digest, sink)
}

/// Where a restore stream broke: in the stored bytes (decompression), or writing them out.
#[derive(Debug)]
pub(super) enum ConsumeError {
    Input(io::Error),
    Sink(io::Error),
}

/// Counts what reaches the sink, and remembers whether the sink (not the decoder) failed.
struct CountingWriter<'a> {
    inner: &'a mut Box<dyn Write + Send>,
    count: u64,
    failed: &'a mut bool,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf).inspect_err(|_| *self.failed = true)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| *self.failed = true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read back after `consume` has taken ownership of it.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// produce -> stored bytes -> consume, returning the restored bytes and both digests.
    fn roundtrip(compression: Compression, data: &[u8]) -> (Vec<u8>, Digest, Digest) {
        let (tx, mut rx) = mpsc::channel(4);
        let input: Box<dyn Read + Send> = Box::new(io::Cursor::new(data.to_vec()));
        let producer = std::thread::spawn(move || produce(input, compression, tx));
        let (tx2, rx2) = mpsc::channel(4);
        let out = Shared::default();
        let sink = out.clone();
        let consumer = std::thread::spawn(move || consume(rx2, compression, Box::new(sink)));
        let mut raw = 0;
        while let Some((b, r)) = rx.blocking_recv() {
            raw += r;
            tx2.blocking_send(b).unwrap();
        }
        drop(tx2);
        let produced = producer.join().unwrap().unwrap();
        assert_eq!((produced.raw, raw), (data.len() as u64, data.len() as u64));
        let (res, digest, _sink) = consumer.join().unwrap();
        assert_eq!(res.map_err(|e| format!("{e:?}")).unwrap(), data.len() as u64);
        let restored = out.0.lock().unwrap().clone();
        (restored, produced.digest, digest.unwrap())
    }

    #[test]
    fn stream_compresses_hashes_and_decompresses() {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for c in [Compression::Zstd, Compression::None] {
            let (back, produced, consumed) = roundtrip(c, &data);
            assert_eq!(back, data);
            assert_eq!(produced.sha256, consumed.sha256, "both ends hash the stored bytes");
        }
    }

    #[test]
    fn truncated_zstd_is_an_error() {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.write_all(&vec![7u8; 1 << 20]).unwrap();
        let full = enc.finish().unwrap();
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Bytes::copy_from_slice(&full[..full.len() - 3])).unwrap();
        drop(tx);
        let (res, digest, _) = consume(rx, Compression::Zstd, Box::new(io::sink()));
        assert!(
            matches!(res, Err(ConsumeError::Input(_))) && digest.is_none(),
            "{res:?}"
        );
    }
}
