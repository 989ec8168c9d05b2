//! ferry's own local-disk store, behind object_store's `ObjectStore` trait.
//!
//! object_store's `LocalFileSystem` was measured unfit for an evacuation tool (issue 12): it hides
//! `NAME#digits` files (its own staging names), follows symlinks both ways, lists in no order,
//! never fsyncs, and one odd entry fails the whole listing. This store owns the rules instead:
//!
//! - **Exact names.** A key is the file's path below the root, byte for byte. A name that cannot
//!   be a key (not UTF-8, a control character) is listed as an entry with a `problem`, so the
//!   engine reports it as not copied and the walk goes on. Nothing is filtered by name, except
//!   ferry's own temporaries, whose names end in a byte that is not UTF-8 (so no key can take one).
//! - **Byte order, streamed.** Each directory is read whole and sorted with a folder's name
//!   followed by `/`, so a depth-first walk yields keys in byte order (`photos-old/`,
//!   `photos.zip`, `photos/x`) and local listings merge with any other sorted listing. Memory is
//!   one directory's names per level, not the tree.
//! - **No link is followed.** Every path below the root is opened one component at a time with
//!   `O_NOFOLLOW` relative to the parent's descriptor: a symlink (or a folder swapped for one) is
//!   never read, written or deleted through. Listed links, FIFOs, sockets and devices are
//!   reported, never opened; an unreadable folder is reported and the rest of the tree listed.
//! - **Atomic, durable writes.** Bytes go to a temporary beside the target, which is renamed
//!   over it when complete, so no partial file ever carries a final name. Durability is a group
//!   commit: [`LocalStore::sync`] (one `syncfs`) runs before the journal records objects done,
//!   not one `fsync` per file. Temporaries of a dead process are removed by the next writable
//!   listing.
//! - **Modes and times kept.** A file read from a local source carries its permission bits and
//!   mtime as attributes ([`ATTR_MODE`], [`ATTR_MTIME`]) that a local destination applies.
//! - **Torn reads caught.** A file whose size, mtime or ctime changes while it is read fails with
//!   a precondition error instead of being recorded with a checksum of neither version.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    UploadPart,
};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};

use super::Listed;

mod walk;
mod write;

pub use walk::escape_bytes;
use walk::walk_tree;
use write::{Temp, Upload};

/// Attribute carrying a local source file's permission bits (octal), applied by a local destination.
pub const ATTR_MODE: &str = "ferry-local-mode";
/// Attribute carrying a local source file's mtime (`seconds.nanoseconds`), applied likewise.
pub const ATTR_MTIME: &str = "ferry-local-mtime";
/// Start of a temporary file's name; the name ends in [`TEMP_END`].
const TEMP_START: &[u8] = b".ferry-tmp.";
/// 0xFF never occurs in UTF-8, so no key can name a temporary.
const TEMP_END: u8 = 0xFF;
/// Bytes read per request from a file.
const CHUNK: u64 = 1 << 20;
/// Entries the walker sends ahead of its consumer.
const WALK_AHEAD: usize = 1024;
const STORE: &str = "LocalStore";

/// A local directory tree as a store. Cheap to clone.
#[derive(Clone)]
pub struct LocalStore {
    shared: Arc<Shared>,
}

struct Shared {
    root: PathBuf,
    /// The root, opened once: every path below it is resolved from this descriptor.
    root_fd: OwnedFd,
    /// Something was written since the last [`LocalStore::sync`].
    dirty: AtomicBool,
    /// Remove stale temporaries while listing (a writable destination only).
    clean: bool,
    next_temp: AtomicU64,
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalStore({})", self.shared.root.display())
    }
}

impl fmt::Display for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalStore({})", self.shared.root.display())
    }
}

/// What an entry of the tree is, when it is not a file ferry can copy.
fn kind_problem(ft: FileType) -> Option<&'static str> {
    match ft {
        FileType::RegularFile | FileType::Directory => None,
        FileType::Symlink => Some("is a symbolic link; ferry does not follow links, so it was not copied"),
        FileType::Fifo => Some("is a FIFO, not a regular file; not read"),
        FileType::Socket => Some("is a socket, not a regular file; not read"),
        FileType::CharacterDevice | FileType::BlockDevice => Some("is a device, not a regular file; not read"),
        _ => Some("is not a regular file; not read"),
    }
}

// `Stat`'s field types differ by architecture (`c_ulong` here, `u32` there).
#[allow(clippy::unnecessary_cast)]
fn etag(st: &Stat) -> String {
    let mtime_ns = (st.st_mtime as i128) * 1_000_000_000 + st.st_mtime_nsec as i128;
    format!("{:x}-{:x}-{:x}", st.st_ino as u64, mtime_ns, st.st_size as u64)
}

// `Stat`'s field types differ by architecture (`c_ulong` here, `u32` there).
#[allow(clippy::unnecessary_cast)]
fn mtime(st: &Stat) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(st.st_mtime as i64, st.st_mtime_nsec as u32).unwrap_or_default()
}

fn meta(key: &str, st: &Stat) -> ObjectMeta {
    ObjectMeta {
        location: Path::parse(key).unwrap_or_default(),
        last_modified: mtime(st),
        size: st.st_size as u64,
        e_tag: Some(etag(st)),
        version: None,
    }
}

/// Which parts of a file's state must stay put while it is read.
// `Stat`'s field types differ by architecture (`c_ulong` here, `u32` there).
#[allow(clippy::unnecessary_cast)]
fn mtime_attr(st: &Stat) -> String {
    format!("{}.{}", st.st_mtime as i64, st.st_mtime_nsec as u64)
}

// `Stat`'s field types differ by architecture (`c_ulong` here, `u32` there).
#[allow(clippy::unnecessary_cast)]
fn fingerprint(st: &Stat) -> (u64, i64, u64, i64, u64) {
    (
        st.st_size as u64,
        st.st_mtime as i64,
        st.st_mtime_nsec as u64,
        st.st_ctime as i64,
        st.st_ctime_nsec as u64,
    )
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("keys hold no NUL (a control character)")
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: message.into(),
    }
}

/// An error of the operating system for `key`, mapped to object_store's kinds.
fn os_error(key: &str, what: &str, e: io::Error) -> object_store::Error {
    let path = key.to_string();
    match e.raw_os_error() {
        Some(libc::ENOENT) => object_store::Error::NotFound { path, source: e.into() },
        Some(libc::EACCES | libc::EPERM) => object_store::Error::PermissionDenied { path, source: e.into() },
        // O_NOFOLLOW on a link (ELOOP) or a file where a folder was expected (ENOTDIR).
        Some(libc::ELOOP | libc::ENOTDIR) => generic(format!(
            "cannot {what} `{key}`: a symbolic link or a file stands on its path ({e}); ferry never \
             reads, writes or deletes through links"
        )),
        _ => generic(format!("cannot {what} `{key}`: {e}")),
    }
}

fn join(e: tokio::task::JoinError) -> object_store::Error {
    object_store::Error::JoinError { source: e }
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);

impl LocalStore {
    /// Opens the tree at `root` (which must exist). `writable`: this store is a destination, so
    /// listings also remove temporaries left by processes that no longer run.
    pub fn open(root: &FsPath, writable: bool) -> io::Result<LocalStore> {
        // The root itself may be a link the user chose; nothing below it is followed.
        let root_fd = rustix::fs::open(
            root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(LocalStore {
            shared: Arc::new(Shared {
                root: root.to_path_buf(),
                root_fd,
                dirty: AtomicBool::new(false),
                clean: writable,
                next_temp: AtomicU64::new(0),
            }),
        })
    }

    /// Makes everything written so far durable (one `syncfs` of the root's filesystem), if
    /// anything was. The journal calls this before it records objects as done.
    pub fn sync(&self) -> io::Result<()> {
        if self.shared.dirty.swap(false, Ordering::AcqRel) {
            if let Err(e) = rustix::fs::syncfs(&self.shared.root_fd) {
                self.shared.dirty.store(true, Ordering::Release);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Streams every entry below a folder-like prefix (`""` or ending in `/`) in byte order of
    /// keys. Files that cannot be copied are entries with a `problem`; a prefix that cannot be
    /// opened at all (a link, a file) is an error of the whole listing.
    pub fn list_exact(&self, prefix: &str) -> BoxStream<'static, Result<Listed, object_store::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel(WALK_AHEAD);
        let shared = self.shared.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = walk_tree(&shared, &prefix, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) }).boxed()
    }

    /// The folder holding `key`, opened without following links; with `create`, missing folders
    /// are made. Returns it with the key's last segment.
    fn parent<'k>(&self, key: &'k str, create: bool) -> Result<(OwnedFd, &'k str), object_store::Error> {
        let (dirs, name) = match key.rsplit_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, key),
        };
        let mut fd = rustix::fs::openat(&self.shared.root_fd, c".", DIR_FLAGS, Mode::empty())
            .map_err(|e| os_error(key, "open the root for", e.into()))?;
        for seg in dirs.into_iter().flat_map(|d| d.split('/')) {
            let c = cstr(seg);
            fd = match rustix::fs::openat(&fd, &c, DIR_FLAGS, Mode::empty()) {
                Ok(f) => f,
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&fd, &c, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(os_error(key, "create a folder for", e.into())),
                    }
                    rustix::fs::openat(&fd, &c, DIR_FLAGS, Mode::empty())
                        .map_err(|e| os_error(key, "open a folder of", e.into()))?
                }
                Err(e) => return Err(os_error(key, "open a folder of", e.into())),
            };
        }
        Ok((fd, name))
    }

    /// Opens a regular file for reading, never through a link, never a FIFO or device.
    fn open_file(&self, key: &str) -> Result<(File, Stat), object_store::Error> {
        let (dir, name) = self.parent(key, false)?;
        // NONBLOCK: opening a FIFO must not hang; it is refused below.
        let fd = rustix::fs::openat(
            &dir,
            cstr(name),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| os_error(key, "read", e.into()))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| os_error(key, "read", e.into()))?;
        if let Some(p) = kind_problem(FileType::from_raw_mode(st.st_mode)) {
            return Err(generic(format!("`{key}` {p}")));
        }
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Err(object_store::Error::NotFound {
                path: key.into(),
                source: "is a folder".into(),
            });
        }
        Ok((File::from(fd), st))
    }

    /// A temporary file beside `key`'s final place, with its folder.
    fn create_temp(&self, key: &str) -> Result<Temp, object_store::Error> {
        let (dir, name) = self.parent(key, true)?;
        let n = self.shared.next_temp.fetch_add(1, Ordering::Relaxed);
        let mut tmp = format!(".ferry-tmp.{}.{n}", std::process::id()).into_bytes();
        tmp.push(TEMP_END);
        let tmp = CString::new(tmp).expect("no NUL");
        let fd = rustix::fs::openat(
            &dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| os_error(key, "write", e.into()))?;
        Ok(Temp {
            store: self.clone(),
            dir: Arc::new(dir),
            tmp,
            name: cstr(name),
            key: key.to_string(),
            file: Arc::new(File::from(fd)),
            done: false,
        })
    }
}

/// Reads `range` of an open file in chunks on the blocking pool; after the last byte, the
/// file's size, mtime and ctime must be what they were when it was opened.
fn read_stream(
    key: String,
    file: File,
    opened: Stat,
    range: Range<u64>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    let file = Arc::new(file);
    futures::stream::try_unfold(range.start, move |pos| {
        let (file, key) = (file.clone(), key.clone());
        async move {
            if pos >= range.end {
                let now = tokio::task::spawn_blocking({
                    let file = file.clone();
                    move || rustix::fs::fstat(&*file)
                })
                .await
                .map_err(join)?
                .map_err(|e| os_error(&key, "read", e.into()))?;
                if fingerprint(&now) != fingerprint(&opened) {
                    return Err(object_store::Error::Precondition {
                        path: key,
                        source: "the file changed while it was being read".into(),
                    });
                }
                return Ok(None);
            }
            let want = (range.end - pos).min(CHUNK) as usize;
            let buf = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; want];
                let mut filled = 0;
                while filled < want {
                    let n = file.read_at(&mut buf[filled..], pos + filled as u64)?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                buf.truncate(filled);
                Ok::<_, io::Error>(buf)
            })
            .await
            .map_err(join)?
            .map_err(|e| os_error(&key, "read", e))?;
            if buf.is_empty() {
                return Err(object_store::Error::Precondition {
                    path: key,
                    source: "the file shrank while it was being read".into(),
                });
            }
            let next = pos + buf.len() as u64;
            Ok(Some((Bytes::from(buf), next)))
        }
    })
    .boxed()
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if !matches!(opts.mode, PutMode::Overwrite) {
            return Err(object_store::Error::NotImplemented {
                operation: "conditional put".into(),
                implementer: STORE.into(),
            });
        }
        let store = self.clone();
        let key = location.to_string();
        tokio::task::spawn_blocking(move || {
            let mut temp = store.create_temp(&key)?;
            let mut pos = 0u64;
            for chunk in payload.iter() {
                temp.file
                    .write_all_at(chunk, pos)
                    .map_err(|e| os_error(&key, "write", e))?;
                pos += chunk.len() as u64;
            }
            temp.finish(&opts.attributes)
        })
        .await
        .map_err(join)?
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let store = self.clone();
        let key = location.to_string();
        let temp = tokio::task::spawn_blocking(move || store.create_temp(&key))
            .await
            .map_err(join)??;
        Ok(Box::new(Upload {
            temp: Some(temp),
            offset: 0,
            attributes: opts.attributes,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let store = self.clone();
        let key = location.to_string();
        let (file, st) = tokio::task::spawn_blocking(move || store.open_file(&key))
            .await
            .map_err(join)??;
        let key = location.to_string();
        let meta = meta(&key, &st);
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(r) => r.as_range(meta.size).map_err(|e| generic(format!("`{key}`: {e}")))?,
            None => 0..meta.size,
        };
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(ATTR_MODE.into()),
            format!("{:o}", st.st_mode & 0o777).into(),
        );
        attributes.insert(Attribute::Metadata(ATTR_MTIME.into()), mtime_attr(&st).into());
        let body = if options.head {
            futures::stream::empty().boxed()
        } else {
            read_stream(key, file, st, range.clone())
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(body),
            meta,
            range,
            attributes,
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let store = self.clone();
        locations
            .then(move |p| {
                let store = store.clone();
                async move {
                    let p = p?;
                    let key = p.to_string();
                    tokio::task::spawn_blocking(move || {
                        let (dir, name) = match store.parent(&key, false) {
                            Err(object_store::Error::NotFound { .. }) => return Ok(()),
                            r => r?,
                        };
                        // unlinkat removes a link itself, never what it points to; a folder is
                        // refused (EISDIR) rather than emptied.
                        match rustix::fs::unlinkat(&dir, cstr(name), AtFlags::empty()) {
                            Ok(()) | Err(rustix::io::Errno::NOENT) => {
                                store.shared.dirty.store(true, Ordering::Release);
                                Ok(())
                            }
                            Err(e) => Err(os_error(&key, "delete", e.into())),
                        }
                    })
                    .await
                    .map_err(join)??;
                    Ok(p)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let prefix = prefix.map(|p| format!("{p}/")).unwrap_or_default();
        let store = self.clone();
        // The trait's listing has no place for problems: it carries the copyable files only.
        // ferry's engine lists through `list_exact`, which reports the rest.
        self.list_exact(&prefix)
            .filter_map(move |r| {
                let store = store.clone();
                async move {
                    match r {
                        Ok(l) if l.problem.is_none() => Some(store.head_meta(&l.key).await),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    }
                }
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, _prefix: Option<&Path>) -> object_store::Result<ListResult> {
        Err(object_store::Error::NotImplemented {
            operation: "list_with_delimiter".into(),
            implementer: STORE.into(),
        })
    }

    async fn copy_opts(&self, _from: &Path, _to: &Path, _options: CopyOptions) -> object_store::Result<()> {
        Err(object_store::Error::NotImplemented {
            operation: "copy".into(),
            implementer: STORE.into(),
        })
    }
}

impl LocalStore {
    async fn head_meta(&self, key: &str) -> object_store::Result<ObjectMeta> {
        let store = self.clone();
        let k = key.to_string();
        let (_, st) = tokio::task::spawn_blocking(move || store.open_file(&k))
            .await
            .map_err(join)??;
        Ok(meta(key, &st))
    }

    /// The root directory.
    pub fn root(&self) -> &FsPath {
        &self.shared.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;

    async fn keys(store: &LocalStore, prefix: &str) -> Vec<(String, Option<String>)> {
        store
            .list_exact(prefix)
            .map_ok(|l| (l.key, l.problem))
            .try_collect()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn lists_in_byte_order_with_exact_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "photos/x",
            "photos.zip",
            "photos-old/y",
            "dir.txt",
            "dir/z",
            "issue#42",
            "100%",
            "a b/[c]",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        let store = LocalStore::open(root, false).unwrap();
        let got: Vec<String> = keys(&store, "").await.into_iter().map(|(k, _)| k).collect();
        let mut want = got.clone();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(got.len(), 8);
        assert!(got.contains(&"issue#42".to_string()));
        assert_eq!(keys(&store, "photos/").await, vec![("photos/x".to_string(), None)]);
        assert!(keys(&store, "missing/").await.is_empty());
    }

    #[tokio::test]
    async fn odd_entries_are_reported_and_the_walk_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let root = dir.path();
        std::fs::write(root.join("ok"), "1").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link-dir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("link-file")).unwrap();
        std::fs::write(root.join(OsStr::from_bytes(b"bad\xff")), "x").unwrap();
        std::fs::write(root.join("nl\nname"), "x").unwrap();
        let fifo = cstr(root.join("fifo").to_str().unwrap());
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let store = LocalStore::open(root, false).unwrap();
        let got = keys(&store, "").await;
        let problems: Vec<&str> = got
            .iter()
            .filter(|(_, p)| p.is_some())
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(problems, vec!["bad\\xff", "fifo", "link-dir", "link-file", "nl\nname"]);
        assert!(got.contains(&("ok".to_string(), None)));
        // Reads and writes refuse to pass through a link.
        assert!(store.get(&Path::parse("link-file").unwrap()).await.is_err());
        let through = Path::parse("link-dir/new").unwrap();
        assert!(store.put(&through, PutPayload::from_static(b"x")).await.is_err());
        assert!(store.delete(&Path::parse("link-dir/secret").unwrap()).await.is_err());
        assert!(!outside.path().join("new").exists());
        assert!(outside.path().join("secret").exists());
    }

    #[tokio::test]
    async fn writes_are_atomic_and_keep_modes() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let f = src.path().join("key.pem");
        std::fs::write(&f, "private").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let (s, d) = (
            LocalStore::open(src.path(), false).unwrap(),
            LocalStore::open(dst.path(), true).unwrap(),
        );
        let p = Path::parse("key.pem").unwrap();
        let got = s.get(&p).await.unwrap();
        let attributes = got.attributes.clone();
        let bytes = got.bytes().await.unwrap();
        d.put_opts(
            &Path::parse("sub/key.pem").unwrap(),
            bytes.into(),
            PutOptions {
                attributes,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let out = dst.path().join("sub/key.pem");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&out).unwrap(), b"private");
        assert_eq!(
            std::fs::metadata(&out).unwrap().modified().unwrap(),
            std::fs::metadata(&f).unwrap().modified().unwrap()
        );
        // An aborted upload leaves nothing under any name.
        let mut up = d.put_multipart(&Path::parse("big").unwrap()).await.unwrap();
        up.put_part(PutPayload::from_static(b"half")).await.unwrap();
        up.abort().await.unwrap();
        let names: Vec<_> = std::fs::read_dir(dst.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sub")]);
        d.sync().unwrap();
    }

    #[test]
    fn temporaries_are_recognised() {
        let mut name = b".ferry-tmp.123.7".to_vec();
        name.push(TEMP_END);
        assert!(walk::is_temp(&name));
        assert_eq!(walk::temp_pid(&name), Some(123));
        assert!(!walk::is_temp(b".ferry-tmp.123.7"));
        assert_eq!(escape_bytes(b"a\xffb"), "a\\xffb");
    }
}
