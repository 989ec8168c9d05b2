//! What every integration test that needs the real servers shares.
//! (A directory module, so cargo does not build it as a test target of its own.)

#![allow(dead_code)] // each test target uses a different part

pub mod db;
pub mod names;
pub mod oracle;
pub mod proxy;
pub mod resume;
pub mod sqlite;
pub mod wire;

/// Whether the real test servers are up (tests/servers/up.sh exports FERRY_TEST_SERVERS=1). In
/// CI a missing server is a failure, never a skip; on a developer's machine without them the
/// test says loudly that it skipped.
pub fn servers_available(name: &str) -> bool {
    if std::env::var("FERRY_TEST_SERVERS").is_ok_and(|v| v == "1") {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!("{name}: CI is set but the test servers are not (FERRY_TEST_SERVERS != 1): run tests/servers/up.sh");
    }
    eprintln!("SKIPPED {name}: no test servers (run `tests/run` or source tests/servers/up.sh's env file)");
    false
}

/// A variable the server script exports.
pub fn env(v: &str) -> String {
    std::env::var(v).unwrap_or_else(|_| panic!("{v} is not set: run tests/servers/up.sh"))
}

/// Bytes that crossed a [`counting_proxy`], each way.
#[derive(Default)]
pub struct Traffic {
    pub sent: std::sync::atomic::AtomicU64,
    pub received: std::sync::atomic::AtomicU64,
}

/// Forwards 127.0.0.1:<returned port> to `upstream` (`host:port`), counting bytes both ways.
pub async fn counting_proxy(upstream: String, traffic: std::sync::Arc<Traffic>) -> u16 {
    proxy(upstream, traffic, None).await
}

/// Forwards 127.0.0.1:<returned port> to `upstream` (`host:port`), each connection's bytes paced
/// to `rate` bytes a second each way: a dump or a download that takes long enough to be stopped
/// half-way, whatever the machine's speed.
pub async fn slow_proxy(upstream: String, rate: f64) -> u16 {
    proxy(upstream, Default::default(), Some(rate)).await
}

async fn proxy(upstream: String, traffic: std::sync::Arc<Traffic>, rate: Option<f64>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, traffic) = (upstream.clone(), traffic.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::join!(
                    pump(&mut cr, &mut sw, &traffic.sent, rate),
                    pump(&mut sr, &mut cw, &traffic.received, rate)
                );
            });
        }
    });
    port
}

async fn pump(
    r: &mut tokio::net::tcp::OwnedReadHalf,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    counter: &std::sync::atomic::AtomicU64,
    rate: Option<f64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Paced: small reads, each followed by the time its bytes take at `rate`.
    let mut buf = vec![0u8; if rate.is_some() { 16 << 10 } else { 64 << 10 }];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if let Some(rate) = rate {
            tokio::time::sleep(std::time::Duration::from_secs_f64(n as f64 / rate)).await;
        }
    }
    let _ = w.shutdown().await;
}

/// A deterministic byte pattern (xorshift), fast to make in bulk.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// An object_store client for one bucket of a test S3 server (path style, plain http).
pub fn s3_store(
    endpoint: &str,
    bucket: &str,
    key: &str,
    secret: &str,
) -> std::sync::Arc<dyn object_store::ObjectStore> {
    std::sync::Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(key)
            .with_secret_access_key(secret)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()
            .unwrap(),
    )
}

/// Every file under `dir`, as paths relative to it, sorted.
pub fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// `ferry run --json PLAN` in `dir` with only `vars` (and PATH) in its environment: `HOME` and
/// the AWS config files in `dir` (never the real `~/.aws`), the instance metadata service off
/// unless `vars` set an `AWS_EC2_METADATA*` variable (issue 16).
pub fn ferry_clean_env(dir: &std::path::Path, plan: &std::path::Path, vars: &[(&str, String)]) -> std::process::Output {
    let out = ferry_clean_command(dir, plan, vars).output().unwrap();
    eprintln!(
        "ferry -> {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ferry run --json PLAN` in `dir` with nothing of the caller's environment but `PATH`: `HOME`
/// and the AWS config files are in `dir`, IMDS is off unless `vars` point somewhere, then
/// `vars`. Output piped.
pub fn ferry_clean_command(
    dir: &std::path::Path,
    plan: &std::path::Path,
    vars: &[(&str, String)],
) -> std::process::Command {
    let mut c = std::process::Command::new(oracle::ferry_bin());
    c.args(["run", "--json"])
        .arg(plan)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("AWS_CONFIG_FILE", dir.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("aws-credentials"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if !vars.iter().any(|(k, _)| k.starts_with("AWS_EC2_METADATA")) {
        c.env("AWS_EC2_METADATA_DISABLED", "true");
    }
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

/// Copies the tree `from` to `to` (files and folders).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// The tests' Python (`FERRY_TEST_PYTHON`, which tests/servers/up.sh exports, else `python3`), if
/// it can import `module` (an independent parser: prometheus_client, yaml). Without it the test
/// says it skipped, or fails under CI, where up.sh has installed it.
pub fn python_with(module: &str, test: &str) -> Option<String> {
    let python = std::env::var("FERRY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!("{test}: {python} cannot import {module} under CI: run tests/servers/up.sh");
    }
    eprintln!("SKIPPED {test}: {python} cannot import {module} (tests/servers/up.sh installs it)");
    None
}

/// SIGKILLs `child` once `traffic` saw `at` bytes sent (within two minutes); fails the test if
/// the child ended first. Returns the bytes sent by then.
pub fn sigkill_once_sent(child: &mut std::process::Child, traffic: &Traffic, at: u64) -> u64 {
    use std::sync::atomic::Ordering;
    let started = std::time::Instant::now();
    while traffic.sent.load(Ordering::Relaxed) < at
        && started.elapsed() < std::time::Duration::from_secs(120)
        && child.try_wait().unwrap().is_none()
    {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first run ended before the kill"
    );
    // SAFETY: kill(2) on our own child, not yet waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    traffic.sent.load(Ordering::Relaxed)
}

/// `sealed` decrypted by the age crate's reader with the X25519 identity `secret`.
pub fn age_decrypt(sealed: &[u8], secret: &str) -> Vec<u8> {
    use std::io::Read;
    let id: age::x25519::Identity = secret.parse().unwrap();
    let mut out = Vec::new();
    age::Decryptor::new(sealed)
        .unwrap()
        .decrypt(std::iter::once(&id as &dyn age::Identity))
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// What one `ferry` process printed.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Runs `cmd` (a `ferry` command line, `args` for the log) to the end; prints its stderr.
    pub fn of(args: &[&str], cmd: &mut std::process::Command) -> Out {
        let out = cmd.output().unwrap();
        let o = Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!("ferry {args:?} -> {:?}\n{}", o.code, o.stderr);
        o
    }

    /// Its stdout as the `--json` document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}
