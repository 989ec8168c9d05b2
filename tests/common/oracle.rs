//! Oracles for issue 12 ("nothing lost in silence"): run the real `ferry` binary, read what it
//! left directly (std::fs, the AWS SDK, plain HTTP), and list every way the run broke the
//! contract: each source object arrives byte-identical or is named in the run's JSON `failed`
//! with exit code 1; `source == copied + unchanged + failed` per job.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::wire;

pub fn sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// A key as ferry names it: UTF-8 as is, each invalid byte as `\xNN`.
pub fn lossy(key: &[u8]) -> String {
    let mut out = String::new();
    for chunk in key.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// [`lossy`] with upper-case hex digits (`\xFF`): either spelling names the key.
pub fn lossy_upper(key: &[u8]) -> String {
    let mut out = String::new();
    for chunk in key.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// A key for messages: the lossy form with control characters escaped too.
pub fn show(key: &[u8]) -> String {
    abbreviate(&lossy(key).escape_debug().to_string())
}

/// Long texts (a 255-byte name) cut in the middle, for readable messages.
pub fn abbreviate(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    if c.len() <= 120 {
        return s.to_string();
    }
    let head: String = c[..60].iter().collect();
    let tail: String = c[c.len() - 40..].iter().collect();
    format!("{head}…({} chars)…{tail}", c.len())
}

pub fn path_of(root: &Path, key: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(key))
}

/// Writes a file at `root/key`, creating its folders.
pub fn write_file(root: &Path, key: &[u8], body: &[u8]) {
    let p = path_of(root, key);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap_or_else(|e| panic!("mkdir for {}: {e}", show(key)));
    std::fs::write(&p, body).unwrap_or_else(|e| panic!("write {}: {e}", show(key)));
}

/// Every regular file under `dir`, relative path bytes -> content. Symbolic links are not
/// followed (a file behind a link is not "at the destination"); `skip_top` names top-level
/// entries to leave out (ferry's `.ferry`).
pub fn files(dir: &Path, skip_top: &[&str]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut |rel, p, m| {
        if skip_top
            .iter()
            .any(|s| rel == s.as_bytes() || rel.starts_with(format!("{s}/").as_bytes()))
        {
            return false;
        }
        if m.file_type().is_file() {
            out.insert(rel.to_vec(), std::fs::read(p).unwrap());
        }
        true
    });
    out
}

/// A description of every entry under `dir` (file SHA-256 and mode, link target, folder, FIFO),
/// to compare a tree before and after a run.
pub fn describe(dir: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut |rel, p, m| {
        let t = m.file_type();
        let d = if t.is_symlink() {
            format!("link -> {}", std::fs::read_link(p).unwrap().display())
        } else if t.is_file() {
            format!(
                "file {:o} {}",
                m.permissions().mode() & 0o7777,
                sha256(&std::fs::read(p).unwrap())
            )
        } else if t.is_dir() {
            "dir".into()
        } else {
            "other".into()
        };
        out.insert(lossy(rel), d);
        true
    });
    out
}

/// Depth-first over `dir` without following links; `f` returns false to skip a subtree.
fn walk(root: &Path, dir: &Path, f: &mut dyn FnMut(&[u8], &Path, &std::fs::Metadata) -> bool) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        if f(&rel, &p, &m) && m.file_type().is_dir() {
            walk(root, &p, f);
        }
    }
}

/// What one `ferry` process did.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub json: Option<serde_json::Value>,
    pub timed_out: bool,
}

impl Ran {
    pub fn job(&self, name: &str) -> Option<&serde_json::Value> {
        self.json.as_ref()?["jobs"]
            .as_array()?
            .iter()
            .find(|j| j["job"] == name)
    }
    /// The failed keys of a job.
    pub fn failed(&self, name: &str) -> Vec<String> {
        self.job(name)
            .and_then(|j| j["failed"].as_array())
            .map(|a| a.iter().map(|f| f["key"].as_str().unwrap_or("").to_string()).collect())
            .unwrap_or_default()
    }
    /// A short account for assertion messages.
    pub fn summary(&self) -> String {
        let tail: Vec<&str> = self.stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "ferry exit {:?}{}\n--- stderr (tail) ---\n{}",
            self.code,
            if self.timed_out { " (KILLED: timed out)" } else { "" },
            tail.join("\n")
        )
    }
}

pub fn ferry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

/// Runs `ferry ARGS PLAN`, killing it (SIGKILL, by its pid) after `timeout`.
pub fn ferry(args: &[&str], plan: &Path, timeout: Duration) -> Ran {
    let mut child = Command::new(ferry_bin())
        .args(args)
        .arg(plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let ot = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut s).ok();
        s
    });
    let et = std::thread::spawn(move || {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut s).ok();
        s
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            child.kill().ok();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = String::from_utf8_lossy(&ot.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&et.join().unwrap()).into_owned();
    let json = serde_json::from_str(stdout.trim()).ok();
    eprintln!(
        "ferry {args:?} -> {:?}{}\n{stderr}",
        status.code(),
        if timed_out { " (timed out)" } else { "" }
    );
    Ran {
        code: status.code(),
        stdout,
        stderr,
        json,
        timed_out,
    }
}

/// One job as the oracle sees it: the source (what the store really held before the run, keys
/// relative to `from`) and the destination read back after it (relative to `to`).
pub struct Seen<'a> {
    pub job: &'a str,
    /// The job's `from` prefix, to form the full source keys ferry names in `failed`.
    pub from: &'a str,
    pub to: &'a str,
    pub src: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    pub dst: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    /// Source entries that cannot be copied (links, FIFOs), relative to `from`: each must be
    /// named in `failed` or elsewhere in the job's JSON, with exit 1. ferry may count them as
    /// source objects or not.
    pub special: &'a [Vec<u8>],
}

/// Whether `text` is a string value anywhere inside `v`.
pub fn json_has_string(v: &serde_json::Value, text: &str) -> bool {
    match v {
        serde_json::Value::String(s) => s == text,
        serde_json::Value::Array(a) => a.iter().any(|x| json_has_string(x, text)),
        serde_json::Value::Object(o) => o.values().any(|x| json_has_string(x, text)),
        _ => false,
    }
}

/// Every breach of the issue-12 contract in one run, as readable lines (empty: none).
pub fn contract(ran: &Ran, jobs: &[Seen]) -> Vec<String> {
    let mut v = Vec::new();
    if ran.timed_out {
        v.push("ferry did not finish in time (killed)".into());
    }
    if !matches!(ran.code, Some(0) | Some(1)) {
        v.push(format!("exit code {:?}: neither 0 nor 1", ran.code));
    }
    if ran.json.is_none() {
        v.push(format!("stdout is not one JSON document: {:.300}", ran.stdout));
        return v;
    }
    let mut any_failed = false;
    for s in jobs {
        let Some(j) = ran.job(s.job) else {
            v.push(format!("job `{}` is missing from the JSON", s.job));
            continue;
        };
        let n = |k: &str| j[k]["objects"].as_u64().unwrap_or(u64::MAX);
        let failed = ran.failed(s.job);
        any_failed |= !failed.is_empty() || !j["error"].is_null();
        if n("source") != n("copied") + n("unchanged") + failed.len() as u64 {
            v.push(format!(
                "job `{}`: invariant broken: source {} != copied {} + unchanged {} + failed {}",
                s.job,
                n("source"),
                n("copied"),
                n("unchanged"),
                failed.len()
            ));
        }
        let counted = s.src.len() as u64..=(s.src.len() + s.special.len()) as u64;
        if !counted.contains(&n("source")) {
            v.push(format!(
                "job `{}`: ferry counted {} source objects; the source holds {}{}",
                s.job,
                n("source"),
                s.src.len(),
                if s.special.is_empty() {
                    String::new()
                } else {
                    format!(" files and {} links/FIFOs", s.special.len())
                }
            ));
        }
        for sp in s.special {
            let full = lossy(&[s.from.as_bytes(), sp].concat());
            any_failed = true;
            if !json_has_string(j, &full) && !json_has_string(j, &lossy(sp)) {
                v.push(format!(
                    "job `{}`: `{}` (a link or FIFO) is named nowhere in the JSON (SILENT SKIP)",
                    s.job,
                    show(full.as_bytes())
                ));
            }
        }
        for (rel, body) in s.src {
            let full: Vec<u8> = [s.from.as_bytes(), rel].concat();
            let dst_full: Vec<u8> = [s.to.as_bytes(), rel].concat();
            let named = failed
                .iter()
                .any(|f| f == &lossy(&full) || f == &lossy_upper(&full) || f == &lossy(&dst_full));
            match s.dst.get(rel) {
                Some(got) if got == body => {}
                Some(got) if !named => v.push(format!(
                    "job `{}`: `{}` arrived with other content (sha256 {} != {}) and is not in `failed`",
                    s.job,
                    show(&full),
                    &sha256(got)[..12],
                    &sha256(body)[..12]
                )),
                None if !named => v.push(format!(
                    "job `{}`: `{}` is missing at the destination and not in `failed` (SILENT LOSS)",
                    s.job,
                    show(&full)
                )),
                _ => {}
            }
        }
        for f in &failed {
            let known = s.src.keys().any(|rel| {
                let full: Vec<u8> = [s.from.as_bytes(), rel].concat();
                f == &lossy(&full) || f == &lossy_upper(&full)
            });
            if !known {
                eprintln!(
                    "note: job `{}`: `failed` names `{}`, which is no source key",
                    s.job,
                    abbreviate(f)
                );
            }
        }
        for rel in s.dst.keys() {
            if !s.src.contains_key(rel) {
                v.push(format!(
                    "job `{}`: destination holds `{}{}`, which is no source key (renamed?)",
                    s.job,
                    s.to,
                    show(rel)
                ));
            }
        }
    }
    if any_failed && ran.code != Some(1) {
        v.push(format!("objects failed but the exit code is {:?}, not 1", ran.code));
    }
    v
}

/// Panics with every breach and ferry's own account, or returns quietly.
pub fn assert_contract(what: &str, ran: &Ran, jobs: &[Seen]) {
    let v = contract(ran, jobs);
    if !v.is_empty() {
        let failed: Vec<String> = jobs
            .iter()
            .flat_map(|s| {
                ran.job(s.job)
                    .and_then(|j| j["failed"].as_array().cloned())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|f| {
                        format!(
                            "  {}: {} — {}",
                            s.job,
                            abbreviate(&f["key"].to_string()),
                            abbreviate(&f["reason"].to_string())
                        )
                    })
            })
            .take(60)
            .collect();
        let errors: Vec<String> = jobs
            .iter()
            .filter_map(|s| {
                ran.job(s.job)
                    .filter(|j| !j["error"].is_null())
                    .map(|j| format!("  {}: {}", s.job, j["error"]))
            })
            .collect();
        panic!(
            "{what}: {} breach(es) of issue 12's contract:\n  {}\nferry's `failed` (first 60):\n{}\njob errors:\n{}\n{}",
            v.len(),
            v.join("\n  "),
            failed.join("\n"),
            errors.join("\n"),
            ran.summary()
        );
    }
}

/// A store the hostile-name and listing tests read and write directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Local,
    Seaweed,
    Moto,
    Azurite,
    Gcs,
}

/// One side of a job: a store, and (for servers) a bucket and a unique key prefix.
pub struct Side {
    pub kind: Kind,
    /// Local: the root directory.
    pub root: PathBuf,
    pub bucket: String,
    /// Servers: a prefix unique to this test run (`name-pid-nanos/`); local: empty.
    pub base: String,
    /// SeaweedFS: name its preset (`providers/seaweedfs.toml`: listing order, `\` quirks), as
    /// its users should. Without it ferry must cope on its own (issue 12's listing-order case).
    pub preset: bool,
}

impl Side {
    pub fn new(kind: Kind, root: PathBuf, bucket: &str, test: &str) -> Side {
        let base = if kind == Kind::Local {
            String::new()
        } else {
            format!("{test}-{}-{}/", std::process::id(), nanos())
        };
        Side {
            kind,
            root,
            bucket: bucket.into(),
            base,
            preset: true,
        }
    }

    pub fn needs_server(&self) -> bool {
        self.kind != Kind::Local
    }

    /// The `[providers.NAME]` table for this side.
    pub fn provider(&self, name: &str) -> String {
        let e = super::env;
        let body = match self.kind {
            Kind::Local => format!(
                "type = \"local\"\nroot = {}\n",
                toml_str(&self.root.display().to_string())
            ),
            Kind::Seaweed | Kind::Moto => {
                let v = if self.kind == Kind::Seaweed { "SEAWEED" } else { "MOTO" };
                let preset = if self.kind == Kind::Seaweed && self.preset {
                    "preset = \"seaweedfs\"\n"
                } else {
                    ""
                };
                format!(
                    "{preset}type = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nallow-http = true\n\
                     path-style = true\naccess-key-id-env = \"FERRY_TEST_{v}_KEY\"\n\
                     secret-access-key-env = \"FERRY_TEST_{v}_SECRET\"\n",
                    self.bucket,
                    e(&format!("FERRY_TEST_{v}_ENDPOINT"))
                )
            }
            Kind::Azurite => format!(
                "type = \"azure\"\naccount = \"{}\"\ncontainer = \"{}\"\nendpoint = \"{}\"\nallow-http = true\n\
                 access-key-env = \"FERRY_TEST_AZURITE_KEY\"\n",
                e("FERRY_TEST_AZURITE_ACCOUNT"),
                self.bucket,
                e("FERRY_TEST_AZURITE_ENDPOINT")
            ),
            // object_store writes to fake-gcs-server only through the shim.
            Kind::Gcs => format!(
                "type = \"gcs\"\nbucket = \"{}\"\nendpoint = \"{}\"\nallow-http = true\nanonymous = true\n",
                self.bucket,
                e("FERRY_TEST_GCS_ENDPOINT")
            ),
        };
        format!("[providers.{name}]\n{body}\n")
    }

    /// Puts one object (key relative to `base`) straight into the store, not through ferry.
    pub fn seed(&self, key: &[u8], body: &[u8]) -> Result<(), String> {
        let full = || String::from_utf8([self.base.as_bytes(), key].concat()).expect("server keys are UTF-8");
        match self.kind {
            Kind::Local => {
                write_file(&self.root, key, body);
                Ok(())
            }
            Kind::Seaweed => wire::s3_put(&wire::s3_sdk("SEAWEED"), &self.bucket, &full(), body),
            Kind::Moto => wire::s3_put(&wire::s3_sdk("MOTO"), &self.bucket, &full(), body),
            Kind::Azurite => wire::Azure::from_env().put(&self.bucket, &full(), body),
            Kind::Gcs => wire::GcsRaw::from_env().put(&self.bucket, &full(), body),
        }
    }

    /// Deletes one object (key relative to `base`) straight from the store.
    pub fn remove(&self, key: &[u8]) {
        let full = || String::from_utf8([self.base.as_bytes(), key].concat()).unwrap();
        match self.kind {
            Kind::Local => std::fs::remove_file(path_of(&self.root, key)).unwrap(),
            Kind::Seaweed => wire::s3_delete(&wire::s3_sdk("SEAWEED"), &self.bucket, &full()),
            Kind::Moto => wire::s3_delete(&wire::s3_sdk("MOTO"), &self.bucket, &full()),
            Kind::Azurite => wire::Azure::from_env().delete(&self.bucket, &full()),
            Kind::Gcs => wire::GcsRaw::from_env().delete(&self.bucket, &full()),
        }
    }

    /// Deletes everything under `base` from a server, without panicking (it runs in `drop`,
    /// also while a failed test unwinds): test keys with control characters must not stay
    /// behind to break other tests' listings of the shared buckets.
    pub fn clear(&self) {
        if self.base.is_empty() || std::env::var("FERRY_TEST_SERVERS").map_or(true, |v| v != "1") {
            return;
        }
        let base = self.base.as_str();
        match self.kind {
            Kind::Local => {}
            Kind::Seaweed | Kind::Moto => {
                let which = if self.kind == Kind::Seaweed { "SEAWEED" } else { "MOTO" };
                let c = wire::s3_sdk(which);
                for k in wire::s3_list(&c, &self.bucket, base).unwrap_or_default() {
                    wire::s3_delete(&c, &self.bucket, &k);
                }
            }
            Kind::Azurite => {
                let a = wire::Azure::from_env();
                for k in a.list(&self.bucket, base).unwrap_or_default() {
                    a.delete(&self.bucket, &k);
                }
            }
            Kind::Gcs => {
                let g = wire::GcsRaw::from_env();
                for k in g.list(&self.bucket, base).unwrap_or_default() {
                    g.delete(&self.bucket, &k);
                }
            }
        }
    }

    /// Everything the store holds under `base + prefix`, keys relative to it, read directly.
    /// A listing or read the server itself refuses panics: the oracle must be sound.
    pub fn read_all(&self, prefix: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let full = format!("{}{prefix}", self.base);
        let rel = |k: &str| k.strip_prefix(&full).unwrap().as_bytes().to_vec();
        let ok = |r: Result<Vec<u8>, String>, k: &str| r.unwrap_or_else(|e| panic!("reading `{k}` back: {e}"));
        let mut out = BTreeMap::new();
        match self.kind {
            Kind::Local => {
                let dir = self.root.join(prefix);
                let skip: &[&str] = if prefix.is_empty() { &[".ferry"] } else { &[] };
                return files(&dir, skip);
            }
            Kind::Seaweed | Kind::Moto => {
                let c = wire::s3_sdk(if self.kind == Kind::Seaweed { "SEAWEED" } else { "MOTO" });
                for k in wire::s3_list(&c, &self.bucket, &full).unwrap() {
                    out.insert(rel(&k), ok(wire::s3_get(&c, &self.bucket, &k), &k));
                }
            }
            Kind::Azurite => {
                let a = wire::Azure::from_env();
                for k in a.list(&self.bucket, &full).unwrap() {
                    out.insert(rel(&k), ok(a.get(&self.bucket, &k), &k));
                }
            }
            Kind::Gcs => {
                let g = wire::GcsRaw::from_env();
                for k in g.list(&self.bucket, &full).unwrap() {
                    out.insert(rel(&k), ok(g.get(&self.bucket, &k), &k));
                }
            }
        }
        out
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        if std::env::var_os("FERRY_TEST_KEEP").is_none() {
            self.clear();
        }
    }
}

pub fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000
}

/// A TOML basic string (JSON's escapes are TOML's).
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Writes `DIR/p.toml`: `settings` (TOML lines, may be empty), then one job `j` copying the
/// local folder `DIR/src` to the local folder `DIR/dst`. Returns the plan's path.
pub fn local_plan(dir: &Path, settings: &str) -> PathBuf {
    let plan = dir.join("p.toml");
    std::fs::write(
        &plan,
        format!(
            "{settings}[providers.src]\ntype = \"local\"\nroot = {}\n[providers.dst]\ntype = \"local\"\nroot = {}\n\
             [[objects]]\nname = \"j\"\nfrom = \"src:\"\nto = \"dst:\"\n",
            toml_str(&dir.join("src").display().to_string()),
            toml_str(&dir.join("dst").display().to_string())
        ),
    )
    .unwrap();
    plan
}

/// Watches folders for any access (inotify): proof that nothing was read or written there.
pub struct Watch {
    fd: i32,
    dirs: BTreeMap<i32, PathBuf>,
}

impl Watch {
    /// Watches `root` and every folder under it (links not followed).
    pub fn tree(root: &Path) -> Watch {
        // SAFETY: plain syscalls on a descriptor this struct owns.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        let mut w = Watch {
            fd,
            dirs: BTreeMap::new(),
        };
        // Folders first, watches after: the walk itself would show up as reads.
        let mut dirs = vec![root.to_path_buf()];
        walk(root, root, &mut |_, p, m| {
            if m.file_type().is_dir() {
                dirs.push(p.to_path_buf());
            }
            true
        });
        for d in dirs {
            w.add(&d);
        }
        w
    }

    fn add(&mut self, dir: &Path) {
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        let mask = libc::IN_OPEN
            | libc::IN_ACCESS
            | libc::IN_MODIFY
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_ATTRIB;
        // SAFETY: a valid C string and our descriptor.
        let wd = unsafe { libc::inotify_add_watch(self.fd, c.as_ptr(), mask) };
        assert!(wd >= 0, "inotify_add_watch {}", dir.display());
        self.dirs.insert(wd, dir.to_path_buf());
    }

    /// The events so far, as `OPEN /path/name` lines.
    pub fn events(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // SAFETY: reading into a buffer we own.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            let mut i = 0;
            while i < n as usize {
                // SAFETY: the kernel writes whole inotify_event records.
                let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf[i..].as_ptr().cast()) };
                let hdr = std::mem::size_of::<libc::inotify_event>();
                let name = &buf[i + hdr..i + hdr + ev.len as usize];
                let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap()).into_owned();
                let what = [
                    (libc::IN_OPEN, "OPEN"),
                    (libc::IN_ACCESS, "READ"),
                    (libc::IN_MODIFY, "WRITE"),
                    (libc::IN_CREATE, "CREATE"),
                    (libc::IN_DELETE, "DELETE"),
                    (libc::IN_MOVED_FROM, "MOVE-FROM"),
                    (libc::IN_MOVED_TO, "MOVE-TO"),
                    (libc::IN_ATTRIB, "ATTRIB"),
                ]
                .iter()
                .filter(|(m, _)| ev.mask & m != 0)
                .map(|(_, s)| *s)
                .collect::<Vec<_>>()
                .join("|");
                let dir = self
                    .dirs
                    .get(&ev.wd)
                    .map(|d| d.display().to_string())
                    .unwrap_or_default();
                if !what.is_empty() {
                    out.push(format!("{what} {dir}/{name}"));
                }
                i += hdr + ev.len as usize;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: our descriptor, closed once.
        unsafe { libc::close(self.fd) };
    }
}
