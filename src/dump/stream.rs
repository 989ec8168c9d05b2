//! The byte pipes of a dump and a restore. Out: a tool's stdout (or a file) is read on a
//! blocking thread, compressed with zstd and hashed there ([`produce`]), and handed in chunks
//! through a small channel to the uploader, which hands them to object_store's
//! [`WriteMultipart`] ([`upload_parts`]). Back: the stored bytes are downloaded into a channel ([`feed`]) and a
//! blocking thread hashes, decompresses and writes them into the restore's sink ([`consume`]).
//! Both ends hash the stored bytes, so the restore checks what the dump recorded.

use std::io::{self, Read, Write};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::WriteMultipart;
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

/// Feeds the channel into `upload`, whose [`WriteMultipart`] cuts the bytes into parts of its
/// chunk size (every part but the last exactly that size) and uploads each in a task of its
/// own. Before taking a chunk it waits until fewer than [`DUMP_PARTS_IN_FLIGHT`] parts are
/// uploading: meanwhile the channel is not read, so the producer blocks, and memory stays near
/// `(DUMP_PARTS_IN_FLIGHT + 1) x part`, whatever the dump's size (a chunk, about [`CHUNK`], is
/// smaller than a part, so one chunk starts at most one part). Returns once every full part
/// is uploaded, so a failed part fails the dump before it is judged; the last, short part stays
/// buffered for `finish`, which uploads it and completes the upload (or aborts it).
pub(super) async fn upload_parts(
    upload: &mut WriteMultipart,
    rx: &mut mpsc::Receiver<(Bytes, u64)>,
    progress: &dyn Progress,
) -> object_store::Result<()> {
    while let Some((chunk, raw)) = rx.recv().await {
        progress.bytes(raw);
        upload.wait_for_capacity(DUMP_PARTS_IN_FLIGHT).await?;
        upload.put(chunk);
    }
    upload.wait_for_capacity(0).await
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

    /// A multipart upload that keeps each part's size and counts the parts uploading at once.
    #[derive(Debug, Default)]
    struct Parts {
        sizes: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
        busy: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        most_busy: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl object_store::MultipartUpload for Parts {
        fn put_part(&mut self, data: object_store::PutPayload) -> object_store::UploadPart {
            use std::sync::atomic::Ordering::SeqCst;
            self.sizes.lock().unwrap().push(data.content_length());
            let (busy, most) = (self.busy.clone(), self.most_busy.clone());
            most.fetch_max(busy.fetch_add(1, SeqCst) + 1, SeqCst);
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                busy.fetch_sub(1, SeqCst);
                Ok(())
            })
        }
        async fn complete(&mut self) -> object_store::Result<object_store::PutResult> {
            Ok(object_store::PutResult {
                e_tag: None,
                version: None,
                extensions: Default::default(),
            })
        }
        async fn abort(&mut self) -> object_store::Result<()> {
            Ok(())
        }
    }

    /// Chunks of uneven sizes (smaller than a part, as the producer's are) become parts of
    /// exactly the part size but the last, never more than `DUMP_PARTS_IN_FLIGHT` uploading at
    /// once, every byte counted once.
    #[tokio::test]
    async fn upload_parts_cuts_exact_parts_and_bounds_the_parts_in_flight() {
        let parts = Parts::default();
        let (sizes, most_busy) = (parts.sizes.clone(), parts.most_busy.clone());
        let mut upload = WriteMultipart::new_with_chunk_size(Box::new(parts), 4000);
        let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
        let feeder = tokio::spawn(async move {
            for n in (0..40).map(|i| 100 + i * 37) {
                tx.send((Bytes::from(vec![1u8; n]), n as u64)).await.unwrap();
            }
        });
        let counted = Counted::default();
        upload_parts(&mut upload, &mut rx, &counted).await.unwrap();
        feeder.await.unwrap();
        upload.finish().await.unwrap();
        let total: usize = (0..40).map(|i| 100 + i * 37).sum();
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), total);
        assert!(sizes[..sizes.len() - 1].iter().all(|&s| s == 4000), "{sizes:?}");
        assert!(most_busy.load(std::sync::atomic::Ordering::SeqCst) <= DUMP_PARTS_IN_FLIGHT);
        assert_eq!(counted.0.load(std::sync::atomic::Ordering::SeqCst), total as u64);
    }

    /// Progress that adds up the bytes reported.
    #[derive(Default)]
    struct Counted(std::sync::atomic::AtomicU64);

    impl Progress for Counted {
        fn bytes(&self, n: u64) {
            self.0.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
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
