//! The byte pipes of a dump and a restore. Out: a tool's stdout (or a file) is read on a
//! blocking thread, compressed with zstd, encrypted with age when the provider encrypts
//! (`crypt`), and hashed there ([`produce`]), and handed in chunks through a small channel to
//! the uploader, which hands them to object_store's [`WriteMultipart`] ([`upload_parts`]).
//! Back: the stored bytes are downloaded into a channel ([`feed`]) and a blocking thread
//! hashes, decrypts, decompresses and writes them into the restore's sink ([`consume`]).
//! Both ends hash the stored bytes, so the restore checks what the dump recorded, and `verify`
//! can without the key; an encrypted dump also has its raw bytes hashed at both ends.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::WriteMultipart;
use tokio::sync::mpsc;

use super::DUMP_PARTS_IN_FLIGHT;
use crate::checksum::{Digest, StreamHasher};
use crate::crypt::Opener;
use crate::plan::Compression;
use crate::progress::Progress;
use crate::redact::redact;

/// zstd level 1, not the default 3: compression runs on the cores the dump tool, the database
/// and (`ferry run --restore`) the restore share. Measured on a 192 MB `pg_dump -Fc` archive of
/// 1.2M rows (benches/db_move.sh): level 3 took 3.9 s of ferry's CPU, level 1 about a quarter of
/// that, and stored 38.9 MB against 41.3 MB (on other data level 1 is typically a few percent
/// larger).
const ZSTD_LEVEL: i32 = 1;
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
    /// SHA-256 of the raw bytes (before compression), taken when the dump is encrypted: the
    /// stored bytes' SHA-256 can be checked without the key, this one only with it.
    pub(super) raw_sha256: Option<String>,
}

/// Reads `input` to the end on a blocking thread, compresses, encrypts (with `seal`) and hashes
/// it, and sends `(stored bytes, raw bytes consumed)` chunks to the uploader.
pub(super) fn produce(
    mut input: Box<dyn Read + Send>,
    compression: Compression,
    seal: Option<age::Encryptor>,
    tx: mpsc::Sender<(Bytes, u64)>,
) -> io::Result<Produced> {
    let mut raw_hasher = seal.as_ref().map(|_| StreamHasher::new(false));
    let pending = Rc::new(Cell::new(0u64));
    let out = ChunkSender {
        tx,
        buf: Vec::with_capacity(CHUNK * 2),
        hasher: StreamHasher::new(false),
        pending: pending.clone(),
    };
    let sealed = match seal {
        Some(e) => Sealed::Age(e.wrap_output(out)?),
        None => Sealed::Plain(out),
    };
    let mut packed = match compression {
        Compression::None => Packed::Raw(sealed),
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(sealed, ZSTD_LEVEL)?;
            // The frame checksum lets the decoder catch corruption before a restore finishes.
            enc.include_checksum(true)?;
            Packed::Zstd(enc)
        }
    };
    let mut raw = 0u64;
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = read_full(&mut input, &mut buf)?;
        if n == 0 {
            break;
        }
        raw += n as u64;
        pending.set(pending.get() + n as u64);
        if let Some(h) = &mut raw_hasher {
            h.update(&buf[..n]);
        }
        packed.write_all(&buf[..n])?;
    }
    let digest = packed.finish()?.finish()?.finish()?;
    Ok(Produced {
        raw,
        digest,
        raw_sha256: raw_hasher.map(|h| h.finish().sha256),
    })
}

/// The end of the producer's pipe: hashes the stored bytes and sends them in chunks of about
/// [`CHUNK`], each with the raw bytes read since the last (`pending`, counted by the reader).
struct ChunkSender {
    tx: mpsc::Sender<(Bytes, u64)>,
    buf: Vec<u8>,
    hasher: StreamHasher,
    pending: Rc<Cell<u64>>,
}

impl ChunkSender {
    fn send(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK * 2));
        self.hasher.update(&data);
        self.tx
            .blocking_send((Bytes::from(data), self.pending.replace(0)))
            .map_err(|_| io::Error::other("the upload stopped"))
    }

    /// Sends what is left; the stored bytes' digest.
    fn finish(mut self) -> io::Result<Digest> {
        self.send()?;
        Ok(self.hasher.finish())
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        // Also sent on raw volume, so highly compressible data still reports progress.
        if self.buf.len() >= CHUNK || self.pending.get() >= 8 * CHUNK as u64 {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The stored bytes, encrypted to the provider's recipients or not.
enum Sealed {
    Plain(ChunkSender),
    Age(age::stream::StreamWriter<ChunkSender>),
}

impl Sealed {
    fn finish(self) -> io::Result<ChunkSender> {
        match self {
            Sealed::Plain(c) => Ok(c),
            // Writes the last, flagged age chunk: without it a reader sees a truncated file.
            Sealed::Age(w) => w.finish(),
        }
    }
}

impl Write for Sealed {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(c) => c.write(data),
            Sealed::Age(w) => w.write(data),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The raw bytes, compressed or not, on their way to [`Sealed`].
enum Packed {
    Raw(Sealed),
    Zstd(zstd::stream::write::Encoder<'static, Sealed>),
}

impl Packed {
    fn finish(self) -> io::Result<Sealed> {
        match self {
            Packed::Raw(s) => Ok(s),
            Packed::Zstd(e) => e.finish(),
        }
    }
}

impl Write for Packed {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Packed::Raw(s) => s.write(data),
            Packed::Zstd(e) => e.write(data),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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

/// How a restore stream ended, and what was hashed on the way.
pub(super) struct Consumed {
    /// The bytes written to the sink, or where the stream broke.
    pub(super) result: Result<u64, ConsumeError>,
    /// SHA-256 of the stored bytes, when all of them were read.
    pub(super) stored: Option<Digest>,
    /// SHA-256 of the raw bytes written to the sink, when the dump was decrypted (encrypted dumps
    /// record it, see [`Produced::raw_sha256`]).
    pub(super) raw: Option<Digest>,
}

/// Reads the stored bytes from the channel on a blocking thread, hashes them, decrypts them
/// (with `open`: the provider's identities and the dump's key, for errors), decompresses them
/// into `sink`. Returns the sink unclosed, so the caller can kill a restore tool before it sees
/// end-of-input when anything went wrong.
pub(super) fn consume(
    mut rx: mpsc::Receiver<Bytes>,
    compression: Compression,
    open: Option<(Arc<Opener>, String)>,
    mut sink: Box<dyn Write + Send>,
) -> (Consumed, Box<dyn Write + Send>) {
    let mut stored = StreamHasher::new(false);
    let mut raw = open.as_ref().map(|_| StreamHasher::new(false));
    let mut sink_failed = false;
    let result = (|| -> io::Result<u64> {
        let mut counter = CountingWriter {
            inner: &mut sink,
            count: 0,
            failed: &mut sink_failed,
            hasher: raw.as_mut(),
        };
        let mut input = ChannelReader {
            rx: &mut rx,
            hasher: &mut stored,
            current: Bytes::new(),
        };
        // age authenticates every 64 KiB chunk and the last one is flagged, so a damaged or
        // truncated dump fails here, before the end of input reaches the tool.
        let mut source: Box<dyn Read + '_> = match &open {
            Some((opener, key)) => Box::new(opener.reader(key, &mut input).map_err(io::Error::other)?),
            None => Box::new(&mut input),
        };
        match compression {
            Compression::None => pump(&mut source, &mut counter)?,
            Compression::Zstd => {
                let mut dec = zstd::stream::write::Decoder::new(&mut counter)?;
                pump(&mut source, &mut dec)?;
                // Errors on a truncated frame, and the frame checksum catches corrupted bytes.
                dec.flush()?;
                dec.finish()?;
            }
        }
        counter.flush()?;
        Ok(counter.count)
    })();
    let ok = result.is_ok();
    let result = result.map_err(|e| {
        if sink_failed {
            ConsumeError::Sink(e)
        } else {
            ConsumeError::Input(e)
        }
    });
    let consumed = Consumed {
        result,
        stored: ok.then(|| stored.finish()),
        raw: raw.filter(|_| ok).map(StreamHasher::finish),
    };
    (consumed, sink)
}

/// Copies `from` into `to` in [`READ_BUF`] pieces.
fn pump(from: &mut dyn Read, to: &mut dyn Write) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => to.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The downloaded chunks as a reader, hashing each as it is taken.
struct ChannelReader<'a> {
    rx: &'a mut mpsc::Receiver<Bytes>,
    hasher: &'a mut StreamHasher,
    current: Bytes,
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.hasher.update(&b);
                    self.current = b;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Where a restore stream broke: in the stored bytes (decompression), or writing them out.
#[derive(Debug)]
pub(super) enum ConsumeError {
    Input(io::Error),
    Sink(io::Error),
}

/// Counts (and hashes, when asked) what reaches the sink, and remembers whether the sink (not
/// the decoder) failed.
struct CountingWriter<'a> {
    inner: &'a mut Box<dyn Write + Send>,
    count: u64,
    failed: &'a mut bool,
    hasher: Option<&'a mut StreamHasher>,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf).inspect_err(|_| *self.failed = true)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
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

    /// produce -> stored bytes -> consume, returning the restored bytes, both stored digests
    /// and both raw digests (encrypted only).
    fn roundtrip(
        compression: Compression,
        keys: Option<(&crate::crypt::Sealer, Arc<Opener>)>,
        data: &[u8],
    ) -> (Vec<u8>, Vec<u8>, Digest, Consumed) {
        let (tx, mut rx) = mpsc::channel(4);
        let input: Box<dyn Read + Send> = Box::new(io::Cursor::new(data.to_vec()));
        let seal = keys.as_ref().map(|(s, _)| s.encryptor());
        let producer = std::thread::spawn(move || produce(input, compression, seal, tx));
        let (tx2, rx2) = mpsc::channel(4);
        let out = Shared::default();
        let sink = out.clone();
        let open = keys.map(|(_, o)| (o, "k".to_string()));
        let consumer = std::thread::spawn(move || consume(rx2, compression, open, Box::new(sink)));
        let (mut raw, mut stored) = (0, Vec::new());
        while let Some((b, r)) = rx.blocking_recv() {
            raw += r;
            stored.extend_from_slice(&b);
            tx2.blocking_send(b).unwrap();
        }
        drop(tx2);
        let produced = producer.join().unwrap().unwrap();
        assert_eq!((produced.raw, raw), (data.len() as u64, data.len() as u64));
        let (consumed, _sink) = consumer.join().unwrap();
        let count = consumed.result.as_ref().map_err(|e| format!("{e:?}")).unwrap();
        assert_eq!(*count, data.len() as u64);
        assert_eq!(consumed.raw.as_ref().map(|d| d.sha256.clone()), produced.raw_sha256);
        let restored = out.0.lock().unwrap().clone();
        (restored, stored, produced.digest, consumed)
    }

    #[test]
    fn stream_compresses_hashes_and_decompresses() {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for c in [Compression::Zstd, Compression::None] {
            let (back, _, produced, consumed) = roundtrip(c, None, &data);
            assert_eq!(back, data);
            let consumed = consumed.stored.unwrap();
            assert_eq!(produced.sha256, consumed.sha256, "both ends hash the stored bytes");
        }
    }

    /// Encrypted: what is stored is an age file whose plaintext is the compressed dump (checked
    /// with age and zstd themselves), both ends agree on both digests, and the raw digest is the
    /// SHA-256 of the input.
    #[test]
    fn stream_encrypts_and_decrypts() {
        use age::secrecy::ExposeSecret;
        use sha2::Digest as _;
        let id = age::x25519::Identity::generate();
        std::env::set_var("FERRY_T_STREAM_RCPT", id.to_public().to_string());
        std::env::set_var("FERRY_T_STREAM_ID", id.to_string().expose_secret());
        let spec = crate::plan::ProviderSpec {
            name: "vault".into(),
            preset: None,
            line: 1,
            kind: crate::plan::ProviderKind::Memory,
            encrypt: Some(crate::plan::EncryptSpec {
                to: crate::plan::EncryptTo::Recipients {
                    file: None,
                    env: Some("FERRY_T_STREAM_RCPT".into()),
                },
                identity_file: None,
                identity_env: Some("FERRY_T_STREAM_ID".into()),
            }),
        };
        let sealer = crate::crypt::Sealer::load(&spec).unwrap().unwrap();
        let opener = Arc::new(Opener::load(&spec, "k").unwrap());
        let data: Vec<u8> = b"PLAINTEXT-MARKER ".iter().cycle().take(2_000_000).copied().collect();
        let want = format!("{:x}", sha2::Sha256::digest(&data));
        for c in [Compression::Zstd, Compression::None] {
            let (back, stored, produced, consumed) = roundtrip(c, Some((&sealer, opener.clone())), &data);
            assert_eq!(back, data);
            assert!(stored.starts_with(b"age-encryption.org/v1\n"));
            assert!(!stored.windows(16).any(|w| w == b"PLAINTEXT-MARKER"));
            assert_eq!(consumed.stored.unwrap().sha256, produced.sha256);
            assert_eq!(consumed.raw.unwrap().sha256, want);
            let mut plain = Vec::new();
            let ids = [&id as &dyn age::Identity];
            age::Decryptor::new(&stored[..])
                .unwrap()
                .decrypt(ids.into_iter())
                .unwrap()
                .read_to_end(&mut plain)
                .unwrap();
            if c == Compression::Zstd {
                plain = zstd::decode_all(&plain[..]).unwrap();
            }
            assert_eq!(plain, data);
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
        let (c, _) = consume(rx, Compression::Zstd, None, Box::new(io::sink()));
        assert!(
            matches!(c.result, Err(ConsumeError::Input(_))) && c.stored.is_none(),
            "{:?}",
            c.result
        );
    }
}
