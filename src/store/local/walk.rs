//! The walk behind [`LocalStore::list_exact`]: depth-first, each folder read whole and sorted
//! so keys come out in byte order, every path opened below its parent's descriptor with
//! `O_NOFOLLOW`, and every entry that cannot be copied reported by name instead of failing the
//! listing.

use super::*;

/// A name as a key segment, or why it cannot be one. Invalid bytes are shown as `\xNN`.
fn name_to_segment(name: &[u8]) -> Result<&str, (String, &'static str)> {
    match std::str::from_utf8(name) {
        Ok(s) if s.chars().any(|c| c.is_ascii_control()) => {
            Err((s.to_string(), "contains a control character, which a key cannot carry"))
        }
        Ok(s) => Ok(s),
        Err(_) => Err((escape_bytes(name), "is not valid UTF-8, which a key must be")),
    }
}

/// The bytes as text, with every byte that is not part of valid UTF-8 written `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

pub(super) fn is_temp(name: &[u8]) -> bool {
    name.starts_with(TEMP_START) && name.last() == Some(&TEMP_END)
}

/// The pid a temporary name was made by (`.ferry-tmp.PID.N\xFF`).
pub(super) fn temp_pid(name: &[u8]) -> Option<i32> {
    let rest = &name[TEMP_START.len()..name.len() - 1];
    let pid = rest.split(|b| *b == b'.').next()?;
    std::str::from_utf8(pid).ok()?.parse().ok()
}

fn pid_alive(pid: i32) -> bool {
    // Signal 0 checks existence; EPERM means it exists under another user.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// One directory being walked: its key prefix and its entries, sorted, consumed from the back.
struct Frame {
    fd: OwnedFd,
    prefix: String,
    entries: Vec<(Vec<u8>, bool)>,
    /// Why nothing below this folder can be copied (a folder name on the way is no key).
    inherited: Option<String>,
}

fn read_sorted(fd: &OwnedFd) -> io::Result<Vec<(Vec<u8>, bool)>> {
    let mut entries = Vec::new();
    for e in rustix::fs::Dir::read_from(fd)? {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let is_dir = match e.file_type() {
            FileType::Directory => true,
            FileType::Unknown => rustix::fs::statat(fd, e.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                .unwrap_or(false),
            _ => false,
        };
        entries.push((name.to_vec(), is_dir));
    }
    // A folder sorts as its name followed by `/`, so the walk yields full keys in byte order.
    let sort_key = |(n, d): &(Vec<u8>, bool)| {
        let mut k = n.clone();
        if *d {
            k.push(b'/');
        }
        k
    };
    entries.sort_by_cached_key(|e| std::cmp::Reverse(sort_key(e)));
    Ok(entries)
}

type Sender = tokio::sync::mpsc::Sender<Result<Listed, object_store::Error>>;

fn problem(key: String, reason: impl Into<String>) -> Listed {
    Listed {
        key,
        size: 0,
        etag: None,
        version: None,
        problem: Some(reason.into()),
        class: None,
    }
}

/// The depth-first, byte-ordered walk behind [`LocalStore::list_exact`]; stops early when the
/// consumer goes away.
pub(super) fn walk_tree(shared: &Shared, prefix: &str, tx: &Sender) -> Result<(), object_store::Error> {
    let mut fd = rustix::fs::openat(&shared.root_fd, c".", DIR_FLAGS, Mode::empty())
        .map_err(|e| os_error(prefix, "list", e.into()))?;
    for seg in prefix.trim_end_matches('/').split('/').filter(|s| !s.is_empty()) {
        fd = match rustix::fs::openat(&fd, cstr(seg), DIR_FLAGS, Mode::empty()) {
            Ok(f) => f,
            // A prefix that does not exist holds nothing, as on every object store.
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(os_error(prefix, "list", e.into())),
        };
    }
    let entries = read_sorted(&fd).map_err(|e| os_error(prefix, "list", e))?;
    let mut stack = vec![Frame {
        fd,
        prefix: prefix.to_string(),
        entries,
        inherited: None,
    }];
    let send = |item: Listed| tx.blocking_send(Ok(item)).is_ok();
    while let Some(frame) = stack.last_mut() {
        let Some((name, is_dir)) = frame.entries.pop() else {
            stack.pop();
            continue;
        };
        if is_temp(&name) {
            if shared.clean && temp_pid(&name).is_none_or(|p| !pid_alive(p)) {
                let _ = rustix::fs::unlinkat(&frame.fd, OsStr::from_bytes(&name), AtFlags::empty());
            }
            continue;
        }
        // A name no key can carry is still walked (by its raw bytes), so every file under it is
        // named in the report; its key shows the invalid bytes as `\xNN`.
        let (segment, name_problem) = match name_to_segment(&name) {
            Ok(s) => (s.to_string(), None),
            Err((shown, why)) => (shown, Some(why)),
        };
        let key = format!("{}{segment}", frame.prefix);
        let raw = OsStr::from_bytes(&name);
        let cannot = name_problem
            .map(|why| {
                if is_dir {
                    format!("a folder on its path has a name that {why}")
                } else {
                    format!("its name {why}")
                }
            })
            .or_else(|| frame.inherited.clone());
        let item = if is_dir {
            match enter(&frame.fd, raw, &key, cannot) {
                Ok(child) => {
                    stack.push(child);
                    continue;
                }
                Err(reported) => *reported,
            }
        } else {
            match file_entry(&frame.fd, raw, key, cannot) {
                Some(item) => item,
                None => continue,
            }
        };
        if !send(item) {
            return Ok(());
        }
    }
    Ok(())
}

/// A folder of the walk opened and read, or the entry that reports why it cannot be.
fn enter(parent: &OwnedFd, raw: &OsStr, key: &str, cannot: Option<String>) -> Result<Frame, Box<Listed>> {
    let opened = rustix::fs::openat(parent, raw, DIR_FLAGS, Mode::empty())
        .map_err(io::Error::from)
        .and_then(|fd| Ok((read_sorted(&fd)?, fd)));
    match opened {
        Ok((entries, fd)) => Ok(Frame {
            fd,
            prefix: format!("{key}/"),
            entries,
            inherited: cannot,
        }),
        // Swapped for a link since it was read: reported like any link.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(Box::new(problem(
            key.to_string(),
            kind_problem(FileType::Symlink).expect("a problem"),
        ))),
        Err(e) => Err(Box::new(problem(
            format!("{key}/"),
            format!("cannot read this folder ({e}); nothing inside it was listed"),
        ))),
    }
}

/// A file's listing entry (with why it cannot be copied, if it cannot); None when it is gone
/// since its folder was read (not an object any more), or has become a folder.
fn file_entry(parent: &OwnedFd, raw: &OsStr, key: String, cannot: Option<String>) -> Option<Listed> {
    Some(match rustix::fs::statat(parent, raw, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => return None,
        Err(e) => problem(key, format!("cannot read its metadata: {}", io::Error::from(e))),
        Ok(st) => match kind_problem(FileType::from_raw_mode(st.st_mode)) {
            Some(p) => problem(key, p),
            None if FileType::from_raw_mode(st.st_mode) == FileType::Directory => return None,
            None => Listed {
                key,
                size: st.st_size as u64,
                etag: Some(etag(&st)),
                version: None,
                problem: cannot,
                class: None,
            },
        },
    })
}
