//! The secret search (issue 8): known credential values reach ferry through every door it has
//! (variables named by `*-env` keys, the AWS environment chain, an Azure key, a database URL
//! with a password, a wrong secret), ferry runs every command with `--json` and `-vv`, in
//! human and JSON form, including runs that fail (wrong secret, objects that cannot be copied,
//! a verify that finds a difference), and then every byte ferry wrote is searched for those
//! values: stdout, stderr, the state directory after each command (journal.sqlite with its -wal
//! and -shm, manifests), the local destination, and every object ferry wrote at SeaweedFS,
//! moto and Azurite, manifests included. Each value is searched raw, percent-encoded, base64 and
//! hex. The test prints the count per value; it must be 0.
//!
//! Issue 14 added three doors: a database URL whose password and `sslpassword` sit in its query
//! (the dump must run, and no child may get either in its argv), an `endpoint` with user info, and
//! an alphanumeric secret pasted into a `*-env` key (both refused with exit 2). Every child ferry
//! starts is searched too: its `/proc/PID/cmdline`, logged by a wrapper on `PATH` in front of each
//! database tool, and sampled from `/proc` while ferry runs.

mod common;
use common::{env, s3_store as s3, servers_available};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt};

/// The credential values handed to ferry, by a name for the report.
struct Secrets(Vec<(&'static str, String)>);

impl Secrets {
    fn known() -> Secrets {
        Secrets(vec![
            // SeaweedFS checks signatures, so these are its real test credentials.
            ("seaweed access key id", env("FERRY_TEST_SEAWEED_KEY")),
            ("seaweed secret", env("FERRY_TEST_SEAWEED_SECRET")),
            ("wrong seaweed secret", "wrong-secret-Zq8vN3xKp1".into()),
            // moto accepts anything: these arrive through the AWS environment chain.
            ("AWS_ACCESS_KEY_ID (chain)", "AKIAFERRYSECRETTEST7".into()),
            ("AWS_SECRET_ACCESS_KEY (chain)", "moto/chain+Secret=Hx72pQw9".into()),
            ("azurite account key", env("FERRY_TEST_AZURITE_KEY")),
            ("database password", "pw-S3cret-9f3Kd".into()),
            (
                "database URL",
                "postgres://app:pw-S3cret-9f3Kd@127.0.0.1:5432/test".into(),
            ),
            // Issue 14. The server trusts 127.0.0.1, so neither value is checked and the dump
            // runs; without a client key libpq ignores `sslpassword`.
            ("database query password", "qpw-Lm4Zt8Rv2".into()),
            ("database sslpassword", "Ssl-Pass-7Hq2xVb".into()),
            ("endpoint user (key id)", "AKIAFERRYENDPOINT9Q".into()),
            ("endpoint password", "ep-Secret-4Wq9Lz".into()),
            ("secret pasted into a *-env key", "Hx72pQw9Zk3LmN8vRt5YbC4d".into()),
        ])
    }

    fn get(&self, name: &str) -> &str {
        &self.0.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// Each value in the forms a leak could take.
    fn needles(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for (name, v) in &self.0 {
            let forms = [
                ("raw", v.as_bytes().to_vec()),
                ("percent-encoded", percent(v).into_bytes()),
                ("base64", base64(v.as_bytes()).into_bytes()),
                ("hex", hex(v.as_bytes()).into_bytes()),
            ];
            let mut seen: Vec<Vec<u8>> = Vec::new();
            for (form, bytes) in forms {
                if !seen.contains(&bytes) {
                    seen.push(bytes.clone());
                    out.push((format!("{name} [{form}]"), bytes));
                }
            }
        }
        out
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || hay.len() < needle.len() {
        return 0;
    }
    let first = needle[0];
    let mut n = 0;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()].iter().position(|&b| b == first) {
            None => break,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    n += 1;
                }
                i += 1;
            }
        }
    }
    n
}

/// Everything ferry wrote, as (where, bytes).
#[derive(Default)]
struct Haystack(Vec<(String, Vec<u8>)>);

impl Haystack {
    fn add(&mut self, what: String, bytes: Vec<u8>) {
        self.0.push((what, bytes));
    }

    /// Every file under `dir` (the state directory, the local destination).
    fn add_tree(&mut self, label: &str, dir: &Path) {
        for f in common::file_names(dir) {
            let p = dir.join(f);
            if let Ok(b) = std::fs::read(&p) {
                self.add(format!("{label}: {}", p.display()), b);
            }
        }
    }

    fn bytes(&self) -> usize {
        self.0.iter().map(|(_, b)| b.len()).sum()
    }
}

struct World {
    dir: tempfile::TempDir,
    /// Wrappers for the database tools, first on `PATH`; each logs its cmdline to `children.log`.
    bin: PathBuf,
    /// Command lines of ferry's descendants seen in `/proc` while it ran.
    sampled: Vec<String>,
    /// (command, expected exit code, actual) for the issue 14 refusals, asserted after the search.
    codes: Vec<(String, i32, Option<i32>)>,
    prefix: String,
    secrets: Secrets,
    hay: Haystack,
    commands: usize,
}

impl World {
    fn plan(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs ferry with the secrets in its environment; everything it printed, and the state
    /// directory and local destination as they are afterwards, go into the haystack.
    fn ferry(&mut self, args: &[&str], plan: &str, expect: Option<i32>) -> Output {
        let s = &self.secrets;
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .arg(self.plan(plan))
            .current_dir(self.dir.path())
            .env("FERRY_SECRET_SW_KEY", s.get("seaweed access key id"))
            .env("FERRY_SECRET_SW_SECRET", s.get("seaweed secret"))
            .env("FERRY_SECRET_SW_BAD", s.get("wrong seaweed secret"))
            .env("AWS_ACCESS_KEY_ID", s.get("AWS_ACCESS_KEY_ID (chain)"))
            .env("AWS_SECRET_ACCESS_KEY", s.get("AWS_SECRET_ACCESS_KEY (chain)"))
            // Not AWS_SESSION_TOKEN: ferry would send it with SeaweedFS's plan credentials
            // (see `ambient_session_token_is_not_sent_with_plan_credentials`).
            .env_remove("AWS_SESSION_TOKEN")
            .env("FERRY_SECRET_AZ_KEY", s.get("azurite account key"))
            .env("FERRY_SECRET_DB_URL", s.get("database URL"))
            .env(
                "FERRY_SECRET_DB_SSL_URL",
                format!(
                    "postgres://postgres@127.0.0.1:5432/test?sslmode=prefer&password={}&sslpassword={}",
                    s.get("database query password"),
                    s.get("database sslpassword")
                ),
            )
            .env("PATH", path)
            // Whatever logging a library might do, at its most verbose.
            .env("RUST_LOG", "trace")
            .env("RUST_BACKTRACE", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
        while !waiter.is_finished() {
            for line in descendants_cmdlines(pid) {
                if !self.sampled.contains(&line) {
                    self.sampled.push(line);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let out = waiter.join().unwrap();
        self.commands += 1;
        let label = format!("ferry {} {plan}", args.join(" "));
        eprintln!(
            "{label} -> {:?}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(code) = expect {
            assert_eq!(out.status.code(), Some(code), "{label}");
        }
        self.hay.add(format!("{label}: stdout"), out.stdout.clone());
        self.hay.add(format!("{label}: stderr"), out.stderr.clone());
        self.hay
            .add_tree(&format!("after {label}"), &self.dir.path().join("state"));
        self.hay
            .add_tree(&format!("after {label}"), &self.dir.path().join("out"));
        out
    }
}

/// The cmdlines (NULs shown as spaces) of every live descendant of `root`, from `/proc`.
fn descendants_cmdlines(root: u32) -> Vec<String> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // `pid (comm) state ppid ...`: the comm may hold spaces, so split after its `)`.
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            parent.push((pid, ppid));
        }
    }
    let mut family = vec![root];
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, ppid) in &parent {
            if family.contains(ppid) && !family.contains(pid) {
                family.push(*pid);
                grew = true;
            }
        }
    }
    family[1..]
        .iter()
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .filter(|c| !c.is_empty())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .collect()
}

/// A directory of wrappers named like the database tools: each appends its own
/// `/proc/PID/cmdline` to `log`, then runs the real tool with the same arguments.
fn tool_wrappers(dir: &Path, log: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in [
        "pg_dump",
        "pg_restore",
        "psql",
        "mariadb",
        "mariadb-dump",
        "mysql",
        "mysqldump",
    ] {
        let Some(real) = std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file()) else {
            continue;
        };
        let script = bin.join(tool);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ntr '\\0' ' ' < /proc/$$/cmdline >> '{}'\necho >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                log.display(),
                real.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// Every object under each prefix (ferry's data and its manifests), into the haystack.
async fn add_objects(hay: &mut Haystack, label: &str, store: &dyn ObjectStore, prefixes: &[String]) {
    for prefix in prefixes {
        let p = OsPath::parse(prefix.trim_end_matches('/')).unwrap();
        let listed: Vec<_> = store.list(Some(&p)).try_collect().await.unwrap();
        for m in listed {
            let b = store.get(&m.location).await.unwrap().bytes().await.unwrap();
            hay.add(format!("{label}: {}", m.location), b.to_vec());
        }
    }
}

async fn delete_under(store: &dyn ObjectStore, prefixes: &[String]) {
    for prefix in prefixes {
        let p = OsPath::parse(prefix.trim_end_matches('/')).unwrap();
        if let Ok(listed) = store.list(Some(&p)).try_collect::<Vec<_>>().await {
            for m in listed {
                let _ = store.delete(&m.location).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_output() {
    let test = "no_secret_reaches_any_output";
    if !servers_available(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let id = format!(
        "secrets-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    );
    let prefix = format!("{id}/");
    let p = dir.path();
    std::fs::create_dir_all(p.join("src/sub")).unwrap();
    std::fs::write(p.join("src/a.txt"), b"alpha\n").unwrap();
    std::fs::write(p.join("src/sub/b.bin"), vec![7u8; 70_000]).unwrap();
    // Above the 5 MiB part size: a multipart upload, with its upload ids and ETags.
    let big: Vec<u8> = (0..6 * 1024 * 1024 + 3).map(|i| (i % 251) as u8).collect();
    std::fs::write(p.join("src/big.bin"), big).unwrap();

    let sw = |name: &str, secret_env: &str| {
        format!(
            "[providers.{name}]\ntype = \"s3\"\nbucket = \"ferry-b\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             allow-http = true\npath-style = true\naccess-key-id-env = \"FERRY_SECRET_SW_KEY\"\n\
             secret-access-key-env = \"{secret_env}\"\n",
            env("FERRY_TEST_SEAWEED_ENDPOINT")
        )
    };
    // moto without `*-env` keys: ferry takes AWS_ACCESS_KEY_ID/SECRET/SESSION_TOKEN from the
    // environment, as the AWS chain does.
    let moto = |bucket: &str| {
        format!(
            "[providers.mo]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             allow-http = true\npath-style = true\n",
            env("FERRY_TEST_MOTO_ENDPOINT")
        )
    };
    let az = format!(
        "[providers.az]\ntype = \"azure\"\naccount = \"{}\"\ncontainer = \"ferry-b\"\nendpoint = \"{}\"\n\
         allow-http = true\naccess-key-env = \"FERRY_SECRET_AZ_KEY\"\n",
        env("FERRY_TEST_AZURITE_ACCOUNT"),
        env("FERRY_TEST_AZURITE_ENDPOINT")
    );
    let head = "[settings]\npart-size = \"5MiB\"\nstate-dir = \"state\"\n\n\
                [providers.src]\ntype = \"local\"\nroot = \"src\"\n\n\
                [providers.out]\ntype = \"local\"\nroot = \"out\"\n\n";
    let jobs = format!(
        "[[objects]]\nname = \"{id}-sw\"\nfrom = \"src:\"\nto = \"sw:{prefix}\"\n\n\
         [[objects]]\nname = \"{id}-mo\"\nfrom = \"src:\"\nto = \"mo:{prefix}\"\n\n\
         [[objects]]\nname = \"{id}-az\"\nfrom = \"src:\"\nto = \"az:{prefix}\"\n\n\
         [[objects]]\nname = \"{id}-lo\"\nfrom = \"src:\"\nto = \"out:local/\"\n"
    );
    let good = format!(
        "{head}{}\n{}\n{az}\n{jobs}",
        sw("sw", "FERRY_SECRET_SW_SECRET"),
        moto("ferry-b")
    );
    std::fs::write(p.join("good.toml"), &good).unwrap();
    std::fs::write(
        p.join("wrong-secret.toml"),
        format!(
            "{head}{}\n{}\n{az}\n{jobs}",
            sw("sw", "FERRY_SECRET_SW_BAD"),
            moto("ferry-b")
        ),
    )
    .unwrap();
    std::fs::write(
        p.join("database.toml"),
        format!(
            "{good}\n[[databases]]\nname = \"{id}-db\"\nengine = \"postgres\"\nurl-env = \"FERRY_SECRET_DB_URL\"\n\
             to = \"out:db/\"\nrestore-to-env = \"FERRY_SECRET_DB_URL\"\n"
        ),
    )
    .unwrap();
    // Issue 14: a URL with its password and `sslpassword` in the query; an endpoint with user
    // info; a secret pasted where a variable name belongs.
    std::fs::write(
        p.join("database-ssl.toml"),
        format!(
            "{head}[[databases]]\nname = \"{id}-ssl\"\nengine = \"postgres\"\nurl-env = \"FERRY_SECRET_DB_SSL_URL\"\n\
             to = \"out:db-ssl/\"\n"
        ),
    )
    .unwrap();
    let secrets = Secrets::known();
    std::fs::write(
        p.join("endpoint-user-info.toml"),
        format!(
            // A bucket that does not exist: the error names the endpoint, where code that
            // accepts user info prints the key id (issue 14).
            "{head}[providers.mo]\ntype = \"s3\"\nbucket = \"ferry-missing-14\"\nendpoint = \"http://{}:{}@{}\"\n\
             region = \"us-east-1\"\nallow-http = true\npath-style = true\n\n\
             [[objects]]\nname = \"{id}-ep\"\nfrom = \"src:\"\nto = \"mo:{prefix}ep/\"\n",
            secrets.get("endpoint user (key id)"),
            secrets.get("endpoint password"),
            env("FERRY_TEST_MOTO_ENDPOINT").trim_start_matches("http://"),
        ),
    )
    .unwrap();
    std::fs::write(
        p.join("pasted-secret.toml"),
        format!(
            "{head}[providers.mo]\ntype = \"s3\"\nbucket = \"ferry-b\"\nendpoint = \"{}\"\n\
             region = \"us-east-1\"\nallow-http = true\npath-style = true\n\
             access-key-id-env = \"FERRY_SECRET_SW_KEY\"\nsecret-access-key-env = \"{}\"\n\n\
             [[objects]]\nname = \"{id}-paste\"\nfrom = \"src:\"\nto = \"mo:{prefix}paste/\"\n",
            env("FERRY_TEST_MOTO_ENDPOINT"),
            secrets.get("secret pasted into a *-env key"),
        ),
    )
    .unwrap();
    // A source whose objects cannot all be copied (a `dir/` marker): failure reasons printed.
    std::fs::write(
        p.join("failing.toml"),
        format!(
            "{head}{}\n[[objects]]\nname = \"{id}-fail\"\nfrom = \"mo:{prefix}in/\"\nto = \"out:failing/\"\n",
            moto("ferry-a")
        ),
    )
    .unwrap();

    let moto_a = s3(&env("FERRY_TEST_MOTO_ENDPOINT"), "ferry-a", "any", "any");
    {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let c = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("any", "any", None, None, "test"))
                .endpoint_url(env("FERRY_TEST_MOTO_ENDPOINT"))
                .force_path_style(true)
                .build(),
        );
        for (k, body) in [("in/ok.txt", &b"ok"[..]), ("in/photos/", &b""[..])] {
            c.put_object()
                .bucket("ferry-a")
                .key(format!("{prefix}{k}"))
                .body(body.to_vec().into())
                .send()
                .await
                .unwrap();
        }
    }

    let children_log = dir.path().join("children.log");
    let bin = tool_wrappers(dir.path(), &children_log);
    let mut w = World {
        bin,
        sampled: Vec::new(),
        codes: Vec::new(),
        dir,
        prefix: prefix.clone(),
        secrets,
        hay: Haystack::default(),
        commands: 0,
    };
    let flags: [&[&'static str]; 2] = [&["--json", "-vv"], &["-vv"]];
    // The good plan: everything succeeds.
    for f in flags {
        let with = |cmd: &[&'static str]| -> Vec<&'static str> { [cmd, f].concat() };
        w.ferry(&with(&["check"]), "good.toml", Some(0));
        w.ferry(&with(&["check", "--connect"]), "good.toml", Some(0));
        w.ferry(&with(&["plan"]), "good.toml", Some(0));
        w.ferry(&with(&["run"]), "good.toml", Some(0));
        w.ferry(&with(&["verify"]), "good.toml", Some(0));
        w.ferry(&with(&["verify", "--deep"]), "good.toml", Some(0));
        w.ferry(&with(&["status"]), "good.toml", Some(0));
    }
    // A wrong secret: refused before anything is written.
    for f in flags {
        let with = |cmd: &[&'static str]| -> Vec<&'static str> { [cmd, f].concat() };
        w.ferry(&with(&["check", "--connect"]), "wrong-secret.toml", Some(2));
        w.ferry(&with(&["plan"]), "wrong-secret.toml", Some(2));
        w.ferry(&with(&["run"]), "wrong-secret.toml", Some(2));
        w.ferry(&with(&["verify", "--deep"]), "wrong-secret.toml", Some(2));
    }
    // A database job whose URL carries a password (whatever ferry does with it today).
    for f in flags {
        let with = |cmd: &[&'static str]| -> Vec<&'static str> { [cmd, f].concat() };
        w.ferry(&with(&["check"]), "database.toml", None);
        w.ferry(&with(&["check", "--connect"]), "database.toml", None);
        w.ferry(&with(&["run"]), "database.toml", None);
        w.ferry(&with(&["status"]), "database.toml", None);
    }
    // Issue 14: the dump with secrets in the URL's query runs; the other two plans are refused
    // before anything is written. Exit codes are asserted after the search, so that on code
    // that accepts them the search reports what leaked.
    for f in flags {
        let with = |cmd: &[&'static str]| -> Vec<&'static str> { [cmd, f].concat() };
        for (cmd, plan, code) in [
            (&["check"][..], "database-ssl.toml", 0),
            (&["check", "--connect"], "database-ssl.toml", 0),
            (&["run"], "database-ssl.toml", 0),
            (&["status"], "database-ssl.toml", 0),
            (&["check"], "endpoint-user-info.toml", 2),
            (&["plan"], "endpoint-user-info.toml", 2),
            (&["run"], "endpoint-user-info.toml", 2),
            (&["verify"], "endpoint-user-info.toml", 2),
            (&["check"], "pasted-secret.toml", 2),
            (&["plan"], "pasted-secret.toml", 2),
            (&["run"], "pasted-secret.toml", 2),
        ] {
            let args = with(cmd);
            let got = w.ferry(&args, plan, None).status.code();
            w.codes.push((format!("ferry {} {plan}", args.join(" ")), code, got));
        }
    }
    // Objects that fail, and a verify that finds a difference.
    for f in flags {
        let with = |cmd: &[&'static str]| -> Vec<&'static str> { [cmd, f].concat() };
        w.ferry(&with(&["run"]), "failing.toml", Some(1));
        w.ferry(&with(&["status"]), "failing.toml", Some(0));
    }
    let victim = w.dir.path().join("out/local/sub/b.bin");
    let mut b = std::fs::read(&victim).unwrap();
    b[12_345] ^= 1;
    std::fs::write(&victim, b).unwrap();
    for f in flags {
        let with = |cmd: &[&'static str]| -> Vec<&'static str> { [cmd, f].concat() };
        w.ferry(&with(&["verify", "--deep"]), "good.toml", Some(1));
    }

    // Every object ferry wrote at the servers, and each job's manifest (which ferry keeps at
    // the destination store's root, `.ferry/manifests/<job>.jsonl`).
    let sw_store = s3(
        &env("FERRY_TEST_SEAWEED_ENDPOINT"),
        "ferry-b",
        &env("FERRY_TEST_SEAWEED_KEY"),
        &env("FERRY_TEST_SEAWEED_SECRET"),
    );
    let mo_store = s3(&env("FERRY_TEST_MOTO_ENDPOINT"), "ferry-b", "any", "any");
    let az_store: Arc<dyn ObjectStore> = Arc::new(
        MicrosoftAzureBuilder::new()
            .with_account(env("FERRY_TEST_AZURITE_ACCOUNT"))
            .with_access_key(env("FERRY_TEST_AZURITE_KEY"))
            .with_container_name("ferry-b")
            .with_endpoint(env("FERRY_TEST_AZURITE_ENDPOINT"))
            .with_allow_http(true)
            .build()
            .unwrap(),
    );
    let before = w.hay.0.len();
    let stores = [("sw", &sw_store), ("mo", &mo_store), ("az", &az_store)];
    for (job, store) in stores {
        add_objects(&mut w.hay, job, &**store, std::slice::from_ref(&w.prefix)).await;
        let manifest = OsPath::parse(format!(".ferry/manifests/{id}-{job}.jsonl")).unwrap();
        let b = store
            .get(&manifest)
            .await
            .unwrap_or_else(|e| panic!("no manifest for `{id}-{job}`: {e}"))
            .bytes()
            .await
            .unwrap();
        w.hay.add(format!("{job}: {manifest}"), b.to_vec());
    }
    // What the refused plans (issue 14) would have copied is searched too, but counted apart:
    // it must not exist, which is asserted after the search.
    let refused =
        |what: &str| what.contains(&format!("{}paste/", w.prefix)) || what.contains(&format!("{}ep/", w.prefix));
    let written_by_refused: Vec<String> = w.hay.0[before..]
        .iter()
        .map(|(what, _)| what.clone())
        .filter(|what| refused(what))
        .collect();
    let remote = w.hay.0.len() - before - written_by_refused.len();
    assert_eq!(remote, 3 * 4, "ferry's 3 objects and a manifest at each of 3 servers");

    // The children's command lines: as each database tool logged its own, and as sampled.
    let logged = std::fs::read_to_string(&children_log).unwrap_or_default();
    let dumps = logged
        .lines()
        .filter(|l| l.contains("pg_dump") && l.contains("--dbname="))
        .count();
    assert!(dumps >= 2, "the wrappers saw no pg_dump of the ssl job:\n{logged}");
    println!(
        "CHILD CMDLINES: {} logged by the tool wrappers, {} distinct sampled from /proc",
        logged.lines().count(),
        w.sampled.len()
    );
    w.hay.add(
        "children's /proc/PID/cmdline, logged by the wrappers".into(),
        logged.into_bytes(),
    );
    let sampled = w.sampled.join("\n");
    w.hay
        .add("children's /proc/PID/cmdline, sampled".into(), sampled.into_bytes());
    // And the dump records of the ssl job (`source`), read like the rest of `out/`.
    w.hay.add_tree("records", &w.dir.path().join("out/db-ssl"));

    // The search. First, that it can find: every form of every value, planted in a haystack.
    let needles = w.secrets.needles();
    for (name, needle) in &needles {
        let planted = [&b"ferry wrote: "[..], needle, b"\n"].concat();
        assert_eq!(count(&planted, needle), 1, "the search cannot find {name}");
    }
    // And that the haystack holds what ferry printed (the job names appear in its output).
    assert!(w.hay.0.iter().any(|(_, b)| count(b, id.as_bytes()) > 0));
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (what, hay) in &w.hay.0 {
        for (name, needle) in &needles {
            let n = count(hay, needle);
            if n > 0 {
                found.entry(name.clone()).or_default().push(format!("{what} ({n}x)"));
            }
        }
    }
    println!(
        "SECRET SEARCH: {} ferry commands, {} outputs and files, {} bytes searched ({remote} objects read back from the servers)",
        w.commands,
        w.hay.0.len(),
        w.hay.bytes()
    );
    for (name, _) in &w.secrets.0 {
        let n: usize = found
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{name} [")))
            .map(|(_, v)| v.len())
            .sum();
        println!("  {name}: {n} occurrences");
    }
    let total: usize = found.values().map(Vec::len).sum();
    println!("SECRET OCCURRENCES: {total}");

    for (job, store) in stores {
        delete_under(&**store, std::slice::from_ref(&w.prefix)).await;
        let _ = store
            .delete(&OsPath::parse(format!(".ferry/manifests/{id}-{job}.jsonl")).unwrap())
            .await;
    }
    delete_under(&*moto_a, std::slice::from_ref(&w.prefix)).await;

    assert!(total == 0, "secrets leaked: {found:#?}");
    assert!(
        written_by_refused.is_empty(),
        "refused plans wrote {written_by_refused:#?}"
    );
    for (what, want, got) in &w.codes {
        assert_eq!(*got, Some(*want), "{what}");
    }
}

/// An AWS_SESSION_TOKEN in the environment (say, for the source on AWS) must not be sent with
/// credentials the plan names for another provider: SeaweedFS then rejects the signature, as
/// Wasabi or R2 would. Nor may the token be printed.
#[test]
fn ambient_session_token_is_not_sent_with_plan_credentials() {
    let test = "ambient_session_token_is_not_sent_with_plan_credentials";
    if !servers_available(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/a.txt"), b"a").unwrap();
    let id = format!("session-token-{}", std::process::id());
    let plan = dir.path().join("p.toml");
    std::fs::write(
        &plan,
        format!(
            "[providers.src]\ntype = \"local\"\nroot = \"src\"\n\n\
             [providers.sw]\ntype = \"s3\"\nbucket = \"ferry-b\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             allow-http = true\npath-style = true\naccess-key-id-env = \"FERRY_TEST_SEAWEED_KEY\"\n\
             secret-access-key-env = \"FERRY_TEST_SEAWEED_SECRET\"\n\n\
             [[objects]]\nname = \"{id}\"\nfrom = \"src:\"\nto = \"sw:{id}/\"\n",
            env("FERRY_TEST_SEAWEED_ENDPOINT")
        ),
    )
    .unwrap();
    let token = "FwoGZXIvYXdzEFERRYsessionTOKEN4711";
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", "--json", "-vv"])
        .arg(&plan)
        .env("AWS_SESSION_TOKEN", token)
        .output()
        .unwrap();
    let text = [out.stdout.clone(), out.stderr.clone()].concat();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(count(&text, token.as_bytes()), 0, "the token was printed");
    assert_eq!(out.status.code(), Some(0), "the plan's credentials alone must be used");
}
