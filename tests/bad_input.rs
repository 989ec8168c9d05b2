//! The bad-input catalogue (issue 8): every way a user can get a plan, an argument, the
//! environment or the data wrong, each with the exact exit code, the message that names the
//! thing to fix (file:line, key, provider, variable or object), and a check that nothing was
//! written: no destination directory, no journal, no object under the test's prefix.
//!
//! One `#[test]` per case (the `catalogue!` list at the bottom), all driven by [`run_case`].
//! `docs/errors.md` lists every case with its real message: `errors_md_lists_every_case` checks
//! it has a row for each case with the case's exit code; regenerate it from real output
//! with `FERRY_BLESS=1 cargo nextest run --test bad_input errors_md` (with the test servers up).

mod common;
use common::{env, file_names as files, servers_available};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Plan fragments.

const SRC_LOCAL: &str = "[providers.src]\ntype = \"local\"\nroot = \"src\"\n";
const DST_LOCAL: &str = "[providers.dst]\ntype = \"local\"\nroot = \"out\"\n";
const JOB: &str = "[[objects]]\nname = \"copy\"\nfrom = \"src:\"\nto = \"dst:\"\n";

/// A valid local -> local plan, with `extra` appended.
fn local_plan(extra: &str) -> String {
    format!("{SRC_LOCAL}\n{DST_LOCAL}\n{JOB}{extra}")
}

/// SeaweedFS as `[providers.NAME]` (bucket ferry-b), credentials from the given variables.
fn seaweed(name: &str, key_env: &str, secret_env: &str) -> String {
    format!(
        "[providers.{name}]\ntype = \"s3\"\nbucket = \"ferry-b\"\nendpoint = \"@SEAWEED@\"\nregion = \"us-east-1\"\n\
         allow-http = true\npath-style = true\naccess-key-id-env = \"{key_env}\"\nsecret-access-key-env = \"{secret_env}\"\n"
    )
}

/// moto as `[providers.src]` (bucket ferry-a): it stores any key verbatim (SeaweedFS refuses
/// `..` segments and folds `//`), so it stands in for a hostile S3 source.
fn moto_src() -> String {
    "[providers.src]\ntype = \"s3\"\nbucket = \"ferry-a\"\nendpoint = \"@MOTO@\"\nregion = \"us-east-1\"\n\
     allow-http = true\npath-style = true\naccess-key-id-env = \"FERRY_TEST_MOTO_KEY\"\nsecret-access-key-env = \"FERRY_TEST_MOTO_SECRET\"\n"
        .into()
}

// ---------------------------------------------------------------------------------------------
// A case.

/// What must be true of the destination and state after the run.
#[derive(Clone, Copy)]
enum Written {
    /// Nothing at all: no `out/`, no journal anywhere, no object under the prefix (S3 cases).
    Nothing,
    /// Part of the job ran (exit 1): the case's own check says what may and may not exist.
    Check(fn(&Ctx, &Output)),
}

struct Case {
    name: &'static str,
    /// What the user got wrong, for docs/errors.md.
    what: &'static str,
    /// Plan text; `@SEAWEED@`, `@MOTO@` (`@MOTO_BY_NAME@`: through `localhost`), `@PREFIX@` and
    /// `@PORT@` (a closed port) are filled in.
    plan: String,
    /// The command line before the plan path.
    args: Vec<&'static str>,
    /// Append the plan path to `args` (false for cases about the arguments themselves).
    plan_arg: bool,
    /// Variables set (Some) or removed (None) for ferry.
    env: Vec<(&'static str, Option<String>)>,
    /// Extra preparation (files, seeded objects) after `src/` is created.
    setup: Option<fn(&Ctx)>,
    servers: bool,
    exit: i32,
    /// Substrings stderr must contain; `@DIR@`, `@PREFIX@`, `@PORT@` are filled in, and
    /// `@LINE:text@` becomes the plan line number of the first line containing `text`.
    expect: Vec<&'static str>,
    /// Substrings stderr and stdout must NOT contain (a literal secret).
    forbid: Vec<&'static str>,
    written: Written,
    /// A known bug (its test is `#[ignore]`d until fixed): docs/errors.md says so.
    bug: Option<&'static str>,
}

fn case(name: &'static str, what: &'static str, plan: String) -> Case {
    Case {
        name,
        what,
        plan,
        args: vec!["run", "--json"],
        plan_arg: true,
        env: Vec::new(),
        setup: None,
        servers: false,
        exit: 2,
        expect: Vec::new(),
        forbid: Vec::new(),
        written: Written::Nothing,
        bug: None,
    }
}

impl Case {
    fn args(mut self, a: &[&'static str]) -> Case {
        self.args = a.to_vec();
        self
    }
    fn no_plan_arg(mut self) -> Case {
        self.plan_arg = false;
        self
    }
    fn env(mut self, k: &'static str, v: Option<&str>) -> Case {
        self.env.push((k, v.map(str::to_string)));
        self
    }
    fn setup(mut self, f: fn(&Ctx)) -> Case {
        self.setup = Some(f);
        self
    }
    fn servers(mut self) -> Case {
        self.servers = true;
        self
    }
    fn exit(mut self, code: i32) -> Case {
        self.exit = code;
        self
    }
    fn expect(mut self, e: &[&'static str]) -> Case {
        self.expect.extend_from_slice(e);
        self
    }
    fn forbid(mut self, e: &[&'static str]) -> Case {
        self.forbid.extend_from_slice(e);
        self
    }
    fn written(mut self, w: Written) -> Case {
        self.written = w;
        self
    }
    #[allow(dead_code)] // kept to mark a known bug in a case (none open now)
    fn bug(mut self, what: &'static str) -> Case {
        self.bug = Some(what);
        self
    }
}

/// One case's world: a temporary directory holding the plan, `src/` and (maybe) `out/`, a
/// unique key prefix for the shared buckets, and a port nothing listens on.
struct Ctx {
    dir: tempfile::TempDir,
    prefix: String,
    port: u16,
    /// A tmpfs mounted by the case, unmounted on drop.
    mounted: std::cell::RefCell<Option<PathBuf>>,
}

impl Ctx {
    fn new(name: &str) -> Ctx {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        Ctx {
            dir: tempfile::tempdir().unwrap(),
            prefix: format!(
                "bad-input-{}-{}-{}",
                name.replace('_', "-"),
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
                    % 1_000_000_000
            ),
            port,
            mounted: std::cell::RefCell::new(None),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn fill(&self, text: &str) -> String {
        let get = |v: &str| std::env::var(v).unwrap_or_else(|_| format!("<{v} unset>"));
        text.replace("@SEAWEED@", &get("FERRY_TEST_SEAWEED_ENDPOINT"))
            .replace("@MOTO@", &get("FERRY_TEST_MOTO_ENDPOINT"))
            .replace(
                "@MOTO_BY_NAME@",
                &get("FERRY_TEST_MOTO_ENDPOINT").replace("127.0.0.1", "localhost"),
            )
            .replace("@PREFIX@", &self.prefix)
            .replace("@PORT@", &self.port.to_string())
            .replace("@DIR@", &self.path().display().to_string())
    }
    /// Replaces what differs between runs, for docs/errors.md.
    fn normalize(&self, text: &str) -> String {
        let mut t = text
            .replace(&self.path().display().to_string(), "<dir>")
            .replace(&self.prefix, "<prefix>")
            .replace(&format!(":{}", self.port), ":<closed-port>");
        // Timings and request ids in object_store / S3 messages.
        for (re_start, re_end) in [(" in ", " - "), (" in ", ", after")] {
            while let Some(i) = t.find(re_start) {
                let rest = &t[i + re_start.len()..];
                match rest.find(re_end) {
                    Some(j) if j < 20 && rest[..j].ends_with('s') => {
                        t = format!("{} in <time>{}", &t[..i], &rest[j..]);
                    }
                    _ => break,
                }
            }
        }
        while let Some(i) = t.find("<RequestId>") {
            let Some(j) = t[i..].find("</RequestId>") else {
                break;
            };
            t = format!("{}<RequestID>…{}", &t[..i], &t[i + j..]);
        }
        t.replace("<RequestID>…</RequestId>", "<RequestId>…</RequestId>")
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if let Some(m) = self.mounted.borrow_mut().take() {
            let _ = Command::new("umount").arg(&m).status();
        }
    }
}

fn write(ctx: &Ctx, rel: &str, body: &[u8]) {
    let p = ctx.path().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// The data files at the local destination `out/` (ferry's own `.ferry/manifests/` left out).
fn out_files(ctx: &Ctx) -> Vec<String> {
    files(&ctx.path().join("out"))
        .into_iter()
        .filter(|f| !f.starts_with(".ferry/"))
        .collect()
}

/// Every file under `dir`, relative paths, sorted.
fn sdk(endpoint: &str, key: &str, secret: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(key, secret, None, None, "test"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build(),
    )
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Writes objects with exactly these keys (under the case's prefix) into moto's ferry-a.
fn seed_moto(ctx: &Ctx, keys: &[(&str, &[u8])]) {
    let c = sdk(
        &env("FERRY_TEST_MOTO_ENDPOINT"),
        &env("FERRY_TEST_MOTO_KEY"),
        &env("FERRY_TEST_MOTO_SECRET"),
    );
    block_on(async {
        for (k, body) in keys {
            c.put_object()
                .bucket("ferry-a")
                .key(format!("{}/{k}", ctx.prefix))
                .body(body.to_vec().into())
                .send()
                .await
                .unwrap_or_else(|e| panic!("seeding `{k}` into moto: {e:?}"));
        }
    });
}

/// Removes what `seed_moto` wrote.
fn delete_moto_seeds(ctx: &Ctx) {
    let c = sdk(
        &env("FERRY_TEST_MOTO_ENDPOINT"),
        &env("FERRY_TEST_MOTO_KEY"),
        &env("FERRY_TEST_MOTO_SECRET"),
    );
    block_on(async {
        let Ok(out) = c
            .list_objects_v2()
            .bucket("ferry-a")
            .prefix(format!("{}/", ctx.prefix))
            .send()
            .await
        else {
            return;
        };
        for o in out.contents() {
            if let Some(k) = o.key() {
                let _ = c.delete_object().bucket("ferry-a").key(k).send().await;
            }
        }
    });
}

/// Keys under the case's prefix in a bucket of SeaweedFS or moto.
fn objects_under(endpoint: &str, key: &str, secret: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let c = sdk(endpoint, key, secret);
    block_on(async {
        let out = c.list_objects_v2().bucket(bucket).prefix(prefix).send().await.unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    })
}

/// Nothing was written in the case's directory outside `src/`, `out/` and ferry's state.
fn assert_no_stray_files(ctx: &Ctx) {
    let outside: Vec<_> = files(ctx.path())
        .into_iter()
        .filter(|f| !f.starts_with("out/") && !f.starts_with("src/") && !f.starts_with(".ferry/") && f != "plan.toml")
        .collect();
    assert!(outside.is_empty(), "written outside the destination: {outside:?}");
}

/// ferry run again on the case's plan, after the case's own command (a check needing a second look).
fn ferry_again(ctx: &Ctx, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .current_dir(ctx.path())
        .args(args)
        .arg("plan.toml")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The keys ferry reported as not copied, with their reasons.
fn failures(out: &Output) -> Vec<(String, String)> {
    json(out)["jobs"][0]["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["key"].as_str().unwrap().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Running a case.

struct Ran {
    ctx: Ctx,
    out: Output,
    seconds: f64,
}

fn execute(c: &Case) -> Option<Ran> {
    if c.servers && !servers_available(c.name) {
        return None;
    }
    let ctx = Ctx::new(c.name);
    write(&ctx, "src/a.txt", b"alpha\n");
    write(&ctx, "src/b/c.txt", b"gamma\n");
    if let Some(f) = c.setup {
        f(&ctx);
    }
    if ctx.mounted.borrow().is_none() && c.name == "local_destination_out_of_space" {
        return None;
    }
    let plan = ctx.path().join("plan.toml");
    std::fs::write(&plan, ctx.fill(&c.plan)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.current_dir(ctx.path()).args(&c.args);
    if c.plan_arg {
        cmd.arg(&plan);
    }
    for (k, v) in &c.env {
        match v {
            Some(v) => cmd.env(k, ctx.fill(v)),
            None => cmd.env_remove(k),
        };
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    Some(Ran {
        ctx,
        out,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn expected(c: &Case, ctx: &Ctx) -> Vec<String> {
    let plan = ctx.fill(&c.plan);
    c.expect
        .iter()
        .map(|e| {
            let mut e = ctx.fill(e);
            while let Some(i) = e.find("@LINE:") {
                let rest = e[i + 6..].to_string();
                let end = rest.find('@').expect("`@LINE:text@` is closed");
                let marker = &rest[..end];
                let line = plan
                    .lines()
                    .position(|l| l.contains(marker))
                    .unwrap_or_else(|| panic!("`{marker}` is not in the plan"))
                    + 1;
                e = format!("{}{line}{}", &e[..i], &rest[end + 1..]);
            }
            e
        })
        .collect()
}

fn run_case(name: &str) {
    let cases = cases();
    let c = cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case `{name}`"));
    let Some(Ran { ctx, out, seconds }) = execute(c) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!(
        "CASE {name} ({}): exit {:?} in {seconds:.2}s\n{}",
        c.what,
        out.status.code(),
        ctx.normalize(stderr.trim_end())
    );
    assert_eq!(out.status.code(), Some(c.exit), "exit code\n{stderr}");
    for e in expected(c, &ctx) {
        assert!(stderr.contains(&e), "the message must contain `{e}`:\n{stderr}");
    }
    for f in &c.forbid {
        assert!(!stderr.contains(f) && !stdout.contains(f), "`{f}` must not be shown");
    }
    // --json: the document on stdout agrees with the exit code.
    if c.args.contains(&"--json") && !stdout.trim().is_empty() {
        let j = json(&out);
        assert_eq!(j["ok"], c.exit == 0, "{stdout}");
        assert_eq!(j["exit_code"], c.exit, "{stdout}");
    }
    match c.written {
        Written::Nothing => {
            let p = ctx.path();
            assert!(!p.join("out").exists(), "the destination was created");
            let journals: Vec<_> = files(p)
                .into_iter()
                .filter(|f| f.contains("journal.sqlite") || f.contains("manifests"))
                .collect();
            assert!(journals.is_empty(), "state was written: {journals:?}");
            if c.servers {
                for (v, bucket) in [("SEAWEED", "ferry-b"), ("MOTO", "ferry-b")] {
                    let left = objects_under(
                        &env(&format!("FERRY_TEST_{v}_ENDPOINT")),
                        &env(&format!("FERRY_TEST_{v}_KEY")),
                        &env(&format!("FERRY_TEST_{v}_SECRET")),
                        bucket,
                        &ctx.prefix,
                    );
                    assert!(left.is_empty(), "objects written to {v}: {left:?}");
                }
            }
        }
        Written::Check(f) => f(&ctx, &out),
    }
    if c.servers {
        delete_moto_seeds(&ctx);
    }
}

// ---------------------------------------------------------------------------------------------
// The catalogue.

fn cases() -> Vec<Case> {
    let unset_s3 =
        "[providers.dst]\ntype = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9\"\nallow-http = true\n\
                    access-key-id-env = \"FERRY_BAD_UNSET_KEY\"\nsecret-access-key-env = \"FERRY_BAD_UNSET_SECRET\"\n";
    let s3_dst = |key: &str, secret: &str| {
        format!(
            "{SRC_LOCAL}\n{}\n[[objects]]\nname = \"copy\"\nfrom = \"src:\"\nto = \"dst:@PREFIX@/\"\n",
            seaweed("dst", key, secret)
        )
    };
    let from_moto = format!(
        "{}\n{DST_LOCAL}\n[[objects]]\nname = \"copy\"\nfrom = \"src:@PREFIX@/\"\nto = \"dst:\"\n",
        moto_src()
    );
    vec![
        // -- the plan file and its syntax --------------------------------------------------
        case("plan_file_missing", "the plan path does not exist", String::new())
            .args(&["run", "--json", "no-such-plan.toml"])
            .no_plan_arg()
            .expect(&["cannot read plan `no-such-plan.toml`: No such file or directory (os error 2)"])
            .forbid(&["(os error 2): No such file or directory (os error 2)"]),
        case("plan_is_a_fifo", "the plan path is a FIFO (it would block a read forever)", String::new())
            .setup(|ctx| {
                let fifo = std::ffi::CString::new(ctx.path().join("fifo.toml").display().to_string()).unwrap();
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
            })
            .args(&["check", "fifo.toml"])
            .no_plan_arg()
            .expect(&["cannot read plan `fifo.toml`: not a regular file"]),
        case(
            "job_name_with_a_slash",
            "a job name that would be a path (`nightly/photos`)",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[objects]]\nname = \"nightly/photos\"\nfrom = \"src:\"\nto = \"dst:\"\n"),
        )
        .expect(&["plan.toml:@LINE:[[objects]]@:", "object job name `nightly/photos` is not allowed", "hint: a job name is letters"]),
        case("part_size_too_large", "`--part-size 16777216TiB` (overflowed part arithmetic: a panic)", local_plan(""))
            .args(&["run", "--json", "--part-size", "16777216TiB"])
            .expect(&["`16777216TiB` is too large"]),
        case(
            "malformed_toml",
            "TOML syntax error (unclosed table header)",
            format!("[providers.src\ntype = \"local\"\n\n{DST_LOCAL}"),
        )
        .expect(&["plan.toml:1:"]),
        case(
            "unknown_top_level_key",
            "a key that does not exist at the top level",
            format!("colour = \"red\"\n{}", local_plan("")),
        )
        .expect(&["plan.toml:@LINE:colour@:", "unknown field `colour`"]),
        case(
            "unknown_settings_key",
            "a misspelled `[settings]` key",
            format!("[settings]\nconcurency = 4\n\n{}", local_plan("")),
        )
        .expect(&["plan.toml:@LINE:concurency@:", "unknown field `concurency`"]),
        case(
            "unknown_provider_key",
            "a misspelled provider key",
            format!("[providers.src]\ntype = \"local\"\nrot = \"src\"\n\n{DST_LOCAL}\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:rot =@:", "unknown field `rot`"]),
        case(
            "unknown_job_key",
            "a misspelled `[[objects]]` key",
            local_plan("exclud = [\"tmp/**\"]\n"),
        )
        .expect(&["plan.toml:@LINE:exclud@:", "unknown field `exclud`"]),
        case(
            "unknown_database_key",
            "a misspelled `[[databases]]` key",
            local_plan("\n[[databases]]\nname = \"db\"\nengine = \"sqlite\"\npath = \"app.db\"\nto = \"dst:db/\"\nkeeep = 7\n"),
        )
        .expect(&["plan.toml:@LINE:keeep@:", "unknown field `keeep`"]),
        case(
            "retention_rule_without_timestamp",
            "`keep-daily` on a database job whose key has no `{timestamp}` to date its dumps by",
            local_plan("\n[[databases]]\nname = \"db\"\nengine = \"sqlite\"\npath = \"app.db\"\nto = \"dst:db/{name}.dump\"\nkeep-daily = 7\n"),
        )
        .expect(&["plan.toml:@LINE:keep-daily@:", "`keep-daily` needs `{timestamp}` in `to`", "hint: add {timestamp}"]),
        case(
            "wrong_type_settings",
            "a string where a number belongs",
            format!("[settings]\nconcurrency = \"many\"\n\n{}", local_plan("")),
        )
        .expect(&["plan.toml:@LINE:concurrency@:", "invalid type: string \"many\""]),
        case(
            "wrong_type_list",
            "a string where a list of globs belongs",
            local_plan("include = \"*.jpg\"\n"),
        )
        .expect(&["plan.toml:@LINE:include@:", "invalid type: string \"*.jpg\", expected a sequence"]),
        case(
            "wrong_type_bool",
            "a string where true/false belongs",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"s3\"\nbucket = \"b\"\nallow-http = \"yes\"\n\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:allow-http@:", "invalid type: string \"yes\", expected a boolean"]),
        case(
            "unknown_provider_type",
            "`type` is not a known store type",
            format!("[providers.src]\ntype = \"ftp\"\nroot = \"src\"\n\n{DST_LOCAL}\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:ftp@:", "unknown variant `ftp`", "`s3`", "`local`"]),
        case(
            "provider_without_type",
            "a provider with neither `type` nor `preset`",
            format!("[providers.src]\nroot = \"src\"\n\n{DST_LOCAL}\n{JOB}"),
        )
        .expect(&["plan.toml:1:", "provider `src`: missing `type`", "hint: type = \"s3\""]),
        case(
            "unknown_preset",
            "a misspelled `preset`",
            format!("{SRC_LOCAL}\n[providers.dst]\npreset = \"wasabbi\"\nbucket = \"b\"\n\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:providers.dst@:", "provider `dst`: unknown preset `wasabbi`", "hint: known presets:", "wasabi"]),
        case(
            "type_contradicts_preset",
            "`type` says one store, `preset` another",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"gcs\"\npreset = \"aws\"\nbucket = \"b\"\n\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:providers.dst@:", "provider `dst`", "contradicts preset `aws`"]),
        case(
            "key_for_another_type",
            "an S3 key on a local provider",
            format!("[providers.src]\ntype = \"local\"\nroot = \"src\"\nbucket = \"b\"\n\n{DST_LOCAL}\n{JOB}"),
        )
        .expect(&["plan.toml:1:", "provider `src`: key `bucket` does not apply to type `local`", "hint: keys for `local`: root"]),
        case(
            "local_without_root",
            "a local provider without `root`",
            format!("[providers.src]\ntype = \"local\"\n\n{DST_LOCAL}\n{JOB}"),
        )
        .expect(&["plan.toml:1:", "provider `src`: missing `root`"]),
        case(
            "s3_without_bucket",
            "an S3 provider without `bucket`",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"s3\"\nregion = \"us-east-1\"\n\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:providers.dst@:", "provider `dst`: missing `bucket`"]),
        case(
            "azure_without_container",
            "an Azure provider without `container`",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"azure\"\naccount = \"acct\"\n\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:providers.dst@:", "provider `dst`: missing `container`"]),
        // -- jobs ------------------------------------------------------------------------------
        case(
            "job_names_undefined_provider",
            "`from` names a provider the plan does not define",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[objects]]\nname = \"copy\"\nfrom = \"old:\"\nto = \"dst:\"\n"),
        )
        .expect(&["plan.toml:@LINE:old:@:", "`from` names provider `old`, which is not defined", "hint: defined providers: dst, src"]),
        case(
            "job_without_from",
            "a job with no `from`",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[objects]]\nname = \"copy\"\nto = \"dst:\"\n"),
        )
        .expect(&["plan.toml:@LINE:[[objects]]@:", "missing field `from`"]),
        case(
            "job_from_empty",
            "`from = \"\"`",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[objects]]\nname = \"copy\"\nfrom = \"\"\nto = \"dst:\"\n"),
        )
        .expect(&["plan.toml:@LINE:from =@:", "`from` = `` is not `provider:prefix`", "hint:"]),
        case(
            "job_to_without_provider",
            "`to` without the `provider:` part",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[objects]]\nname = \"copy\"\nfrom = \"src:\"\nto = \"backup/\"\n"),
        )
        .expect(&["plan.toml:@LINE:to =@:", "`to` = `backup/` is not `provider:prefix`"]),
        case(
            "prefix_not_ending_in_slash",
            "a prefix that is not a folder",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[objects]]\nname = \"copy\"\nfrom = \"src:photos\"\nto = \"dst:\"\n"),
        )
        .expect(&["plan.toml:@LINE:from =@:", "`from` prefix `photos` must be empty or end with `/`", "hint:"]),
        case(
            "prefix_starting_with_slash",
            "a prefix with a leading `/`",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[objects]]\nname = \"copy\"\nfrom = \"src:\"\nto = \"dst:/backup/\"\n"),
        )
        .expect(&["plan.toml:@LINE:to =@:", "`to` prefix `/backup/`", "not start with `/`"]),
        case(
            "overlap_same_provider_same_prefix",
            "source and destination are the same place",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[objects]]\nname = \"copy\"\nfrom = \"src:\"\nto = \"src:\"\n"),
        )
        .expect(&["plan.toml:@LINE:to =@:", "job `copy`: destination `src:` overlaps source `src:`", "hint:"]),
        case(
            "overlap_nested_prefix",
            "the destination is inside the source",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[objects]]\nname = \"copy\"\nfrom = \"src:a/\"\nto = \"src:a/backup/\"\n"),
        )
        .expect(&["job `copy`: destination `src:a/backup/` overlaps source `src:a/`"]),
        case(
            "overlap_two_names_one_bucket",
            "two provider names for the same bucket, same prefix",
            format!(
                "{}\n{}\n[[objects]]\nname = \"copy\"\nfrom = \"a:data/\"\nto = \"b:data/\"\n",
                seaweed("a", "K", "S").replace("@SEAWEED@", "http://127.0.0.1:8333"),
                seaweed("b", "K", "S").replace("@SEAWEED@", "http://127.0.0.1:8333")
            ),
        )
        .args(&["check", "--json"])
        .expect(&["plan.toml:@LINE:to =@:", "job `copy`: destination `b:data/` overlaps source `a:data/`"]),
        case(
            "overlap_endpoint_spelled_differently",
            "the same bucket through `http://host:port` and `http://host:port/`",
            format!(
                "{}\n{}\n[[objects]]\nname = \"copy\"\nfrom = \"a:data/\"\nto = \"b:data/\"\n",
                seaweed("a", "K", "S").replace("@SEAWEED@", "http://127.0.0.1:8333"),
                seaweed("b", "K", "S").replace("@SEAWEED@", "http://127.0.0.1:8333/")
            ),
        )
        .args(&["check", "--json"])
        .expect(&["job `copy`: destination `b:data/` overlaps source `a:data/`"]),
        case(
            "overlap_local_root_spelled_differently",
            "the same directory as `src` and `./src`",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"local\"\nroot = \"./src\"\n\n{JOB}"),
        )
        .expect(&["job `copy`: destination `dst:` overlaps source `src:`"]),
        case(
            "overlap_local_nested_roots",
            "the destination directory is inside the source directory",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"local\"\nroot = \"src/backup\"\n\n{JOB}"),
        )
        .expect(&["job `copy`: destination `dst:` overlaps source `src:`"]),
        case(
            "overlap_local_root_through_missing_folder",
            "the destination root `missing/../src/a-copy` is inside the source through a folder that does not exist (issue 14)",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"local\"\nroot = \"missing/../src/a-copy\"\n\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:to =@:", "job `copy`: destination `dst:` overlaps source `src:`", "hint:"])
        .written(Written::Check(|ctx, _| {
            // Not even the folders on the way: `missing/` and `src/a-copy/`.
            assert!(!ctx.path().join("missing").exists(), "`missing/` was created");
            assert!(!ctx.path().join("src/a-copy").exists(), "`src/a-copy/` was created");
            assert_eq!(files(ctx.path()), ["plan.toml", "src/a.txt", "src/b/c.txt"]);
        })),
        case(
            "overlap_same_bucket_by_address_and_name",
            "one moto bucket as `127.0.0.1:PORT` and `localhost:PORT`, `data/` copied to `data/sub/` (issue 14)",
            format!(
                "{}\n{}\n[[objects]]\nname = \"copy\"\nfrom = \"a:@PREFIX@/data/\"\nto = \"b:@PREFIX@/data/sub/\"\n",
                moto_src().replace("providers.src", "providers.a"),
                moto_src().replace("providers.src", "providers.b").replace("@MOTO@", "@MOTO_BY_NAME@"),
            ),
        )
        .servers()
        .setup(|ctx| seed_moto(ctx, &[("data/x.txt", b"x")]))
        .expect(&[
            "plan.toml:@LINE:to =@:",
            "job `copy`: destination `b:@PREFIX@/data/sub/` overlaps source `a:@PREFIX@/data/`",
        ])
        .written(Written::Check(|ctx, _| {
            let left = objects_under(
                &env("FERRY_TEST_MOTO_ENDPOINT"),
                &env("FERRY_TEST_MOTO_KEY"),
                &env("FERRY_TEST_MOTO_SECRET"),
                "ferry-a",
                &format!("{}/", ctx.prefix),
            );
            assert_eq!(left, [format!("{}/data/x.txt", ctx.prefix)], "only the seeded object");
            assert_eq!(files(ctx.path()), ["plan.toml", "src/a.txt", "src/b/c.txt"]);
        })),
        case(
            "duplicate_job_names",
            "two `[[objects]]` jobs with one name",
            local_plan("\n[[objects]]\nname = \"copy\"\nfrom = \"src:b/\"\nto = \"dst:b2/\"\n"),
        )
        .expect(&["two object jobs are named `copy`"]),
        case(
            "duplicate_name_object_and_database",
            "a database job named like an object job",
            local_plan("\n[[databases]]\nname = \"copy\"\nengine = \"sqlite\"\npath = \"app.db\"\nto = \"dst:db/\"\n"),
        )
        .expect(&["plan.toml:@LINE:[[databases]]@:", "two jobs are named `copy`"]),
        case(
            "empty_job_name",
            "`name = \"\"`",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[objects]]\nname = \"\"\nfrom = \"src:\"\nto = \"dst:\"\n"),
        )
        .expect(&["plan.toml:@LINE:[[objects]]@:", "object job has an empty `name`"]),
        case(
            "glob_does_not_compile",
            "an include glob with an unclosed `[`",
            local_plan("include = [\"photos/[a-\"]\n"),
        )
        .expect(&["plan.toml:", "job `copy`: `include` glob `photos/[a-`"]),
        case(
            "bad_part_size_in_plan",
            "`part-size` that is not a size",
            format!("[settings]\npart-size = \"12 parsecs\"\n\n{}", local_plan("")),
        )
        .expect(&["plan.toml:@LINE:part-size@:", "`settings.part-size`", "parsecs", "hint: write a size such as \"16MiB\""]),
        case(
            "bad_memory_limit_in_plan",
            "`memory-limit` that is not a size",
            format!("[settings]\nmemory-limit = \"lots\"\n\n{}", local_plan("")),
        )
        .expect(&["plan.toml:@LINE:memory-limit@:", "`settings.memory-limit`", "`lots` is not a size"]),
        case(
            "bad_bandwidth_in_plan",
            "`bandwidth` that is not a rate",
            format!("[settings]\nbandwidth = \"fast\"\n\n{}", local_plan("")),
        )
        .expect(&[
            "plan.toml:@LINE:bandwidth@:",
            "`settings.bandwidth`",
            "`fast` is not a bandwidth",
            "hint: write a rate such as \"50MiB/s\"",
        ]),
        case(
            "zero_bandwidth_in_plan",
            "a `bandwidth` of zero",
            format!("[settings]\nbandwidth = \"0MB/s\"\n\n{}", local_plan("")),
        )
        .expect(&["plan.toml:@LINE:bandwidth@:", "must be at least 1 byte per second"]),
        case(
            "sqlite_job_without_path",
            "a SQLite dump job without `path`",
            local_plan("\n[[databases]]\nname = \"db\"\nengine = \"sqlite\"\nto = \"dst:db/\"\n"),
        )
        .expect(&["plan.toml:@LINE:[[databases]]@:", "database `db`: sqlite needs `path`"]),
        case(
            "postgres_job_without_url_env",
            "a PostgreSQL dump job without `url-env`",
            local_plan("\n[[databases]]\nname = \"db\"\nengine = \"postgres\"\nto = \"dst:db/\"\n"),
        )
        .expect(&["plan.toml:@LINE:[[databases]]@:", "database `db`: `url-env` is required", "hint: name an environment variable"]),
        case(
            "unknown_database_engine",
            "`engine = \"oracle\"`",
            local_plan("\n[[databases]]\nname = \"db\"\nengine = \"oracle\"\nto = \"dst:db/\"\n"),
        )
        .expect(&["plan.toml:@LINE:oracle@:", "unknown variant `oracle`", "`postgres`"]),
        case(
            "database_url_variable_unset",
            "a database job's `url-env` names a variable that is not set",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[databases]]\nname = \"db\"\nengine = \"postgres\"\nurl-env = \"FERRY_BAD_UNSET_DB\"\nto = \"dst:db/\"\n"),
        )
        .env("FERRY_BAD_UNSET_DB", None)
        .expect(&["database `db`: environment variable `FERRY_BAD_UNSET_DB` (named by `url-env`) is not set"]),
        case(
            "database_url_not_a_url",
            "the variable holds something that is not a connection URL",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[databases]]\nname = \"db\"\nengine = \"postgres\"\nurl-env = \"FERRY_BAD_DB_URL\"\nto = \"dst:db/\"\n"),
        )
        .env("FERRY_BAD_DB_URL", Some("host=db user=app"))
        .expect(&["database `db`", "`FERRY_BAD_DB_URL` is not usable"]),
        case(
            "postgres_unreachable",
            "nothing listens at the PostgreSQL server's address",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[databases]]\nname = \"db\"\nengine = \"postgres\"\nurl-env = \"FERRY_BAD_DB_URL\"\nto = \"dst:db/\"\n"),
        )
        .env("FERRY_BAD_DB_URL", Some("postgres://postgres@127.0.0.1:@PORT@/test"))
        .exit(3)
        .expect(&["database `db` (plan line @LINE:[[databases]]@): cannot connect", "127.0.0.1", "Connection refused"]),
        case(
            "mysql_unreachable",
            "nothing listens at the MySQL server's address",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[databases]]\nname = \"db\"\nengine = \"mysql\"\nurl-env = \"FERRY_BAD_DB_URL\"\nto = \"dst:db/\"\n"),
        )
        .env("FERRY_BAD_DB_URL", Some("mysql://root@127.0.0.1:@PORT@/test"))
        .exit(3)
        .expect(&["database `db` (plan line @LINE:[[databases]]@): cannot connect", "Can't connect"]),
        case(
            "postgres_database_missing",
            "the PostgreSQL server answers, but the database does not exist",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[databases]]\nname = \"db\"\nengine = \"postgres\"\nurl-env = \"FERRY_BAD_DB_URL\"\nto = \"dst:db/\"\n"),
        )
        .servers()
        .env("FERRY_BAD_DB_URL", Some("postgres://postgres@127.0.0.1:5432/ferry_no_such_database"))
        .expect(&["database `db` (plan line @LINE:[[databases]]@): cannot connect", "ferry_no_such_database", "does not exist"]),
        case(
            "sqlite_source_missing",
            "a SQLite job's `path` does not exist",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[databases]]\nname = \"db\"\nengine = \"sqlite\"\npath = \"app.db\"\nto = \"dst:db/\"\n"),
        )
        .expect(&["database `db`", "app.db", "No such file"]),
        case(
            "restore_unknown_database",
            "`ferry restore --database` names no database job",
            local_plan("\n[[databases]]\nname = \"db\"\nengine = \"sqlite\"\npath = \"app.db\"\nto = \"dst:db/\"\n"),
        )
        .args(&["restore", "--json", "--database", "main"])
        .expect(&["no database job named `main`", "database jobs: db"]),
        case(
            "restore_without_target",
            "`ferry restore` for a job with no `restore-to-*`",
            local_plan("\n[[databases]]\nname = \"db\"\nengine = \"sqlite\"\npath = \"app.db\"\nto = \"dst:db/\"\n"),
        )
        .args(&["restore", "--json", "--database", "db"])
        .expect(&["database `db` has no restore target", "hint: set `restore-to-env` (postgres, mysql) or `restore-to-path` (sqlite)"]),
        // -- endpoints and credentials in the plan ------------------------------------------------
        case(
            "plain_http_without_allow_http",
            "an `http://` endpoint without `allow-http = true`",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:8333\"\n\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:providers.dst@:", "provider `dst`: endpoint `http://127.0.0.1:8333` is plain http", "hint: set `allow-http = true`"]),
        case(
            "endpoint_without_scheme",
            "an endpoint without `https://`",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"s3\"\nbucket = \"b\"\nendpoint = \"s3.example.com\"\n\n{JOB}"),
        )
        .expect(&["provider `dst`: endpoint `s3.example.com` must start with http:// or https://"]),
        case(
            "unknown_sse",
            "an `sse` value S3 does not take",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"s3\"\nbucket = \"b\"\nsse = \"kms\"\n\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:sse =@:7: provider `dst`: unknown `sse` value `kms`", "hint: sse = \"aws:kms\" | \"AES256\""]),
        case(
            "kms_key_without_sse_kms",
            "`sse-kms-key-id` without `sse = \"aws:kms\"`",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"s3\"\nbucket = \"b\"\nsse = \"AES256\"\nsse-kms-key-id = \"alias/backup\"\n\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:sse-kms-key-id@:18: provider `dst`: `sse-kms-key-id` needs `sse = \"aws:kms\"`"]),
        case(
            "unknown_storage_class",
            "a storage class spelled otherwise than S3 spells it",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"s3\"\nbucket = \"b\"\nstorage-class = \"glacier-ir\"\n\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:storage-class@:17: provider `dst`: unknown `storage-class` `glacier-ir`", "hint: it is spelt `GLACIER_IR`"]),
        case(
            "storage_class_on_azure",
            "an S3 storage class on Azure, which has access tiers",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"azure\"\ncontainer = \"c\"\nstorage-class = \"STANDARD_IA\"\n\n{JOB}"),
        )
        .expect(&["plan.toml:@LINE:storage-class@:17: provider `dst`: unknown `storage-class` `STANDARD_IA`", "hint: Azure's access tiers: Hot, Cool, Cold, Archive"]),
        case(
            "literal_secret_in_env_key",
            "a secret value where the name of a variable belongs",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"s3\"\nbucket = \"b\"\naccess-key-id-env = \"BACKUP_KEY_ID\"\n\
                     secret-access-key-env = \"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\"\n\n{JOB}"),
        )
        .expect(&["provider `dst`: `secret-access-key-env` must name an environment variable, got `<40 characters, hidden>`", "hint: secrets never go in a plan"])
        .forbid(&["wJalrXUtnFEMI", "K7MDENG"]),
        // Issue 14: letters and digits alone, but shaped like a key, not a name.
        case(
            "alphanumeric_secret_in_env_key",
            "a secret of letters and digits where the name of a variable belongs",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"s3\"\nbucket = \"b\"\naccess-key-id-env = \"BACKUP_KEY_ID\"\n\
                     secret-access-key-env = \"Hx72pQw9Zk3LmN8vRt5YbC4d\"\n\n{JOB}"),
        )
        .args(&["check"])
        .expect(&["provider `dst`: `secret-access-key-env` must name an environment variable, got `<24 characters, hidden>`: it looks like a secret, not a variable name", "hint: secrets never go in a plan"])
        .forbid(&["Hx72pQw9", "LmN8vRt5"]),
        // Issue 14: the key id used to be printed wherever the endpoint was.
        case(
            "endpoint_with_user_info",
            "credentials in an `endpoint` URL",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"s3\"\nbucket = \"b\"\n\
                     endpoint = \"https://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMIK7MDENG@s3.example.com\"\n\n{JOB}"),
        )
        .args(&["check"])
        .expect(&["plan.toml:@LINE:endpoint =@:12: provider `dst`: `endpoint` carries credentials (user info <41 characters, hidden>", "hint: remove `user:password"])
        .forbid(&["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMIK7MDENG"]),
        // Issue 14: ferry's own service file carries `sslpassword`; the user's cannot be named too.
        case(
            "database_url_secret_parameter_with_service",
            "a PostgreSQL URL with `sslpassword` and the user's own `service`",
            format!("{SRC_LOCAL}\n{DST_LOCAL}\n[[databases]]\nname = \"db\"\nengine = \"postgres\"\nurl-env = \"FERRY_BAD_DB_URL\"\nto = \"dst:db/\"\n"),
        )
        .env("FERRY_BAD_DB_URL", Some("postgres://app@127.0.0.1:5432/test?service=prod&sslpassword=SslPw-in-URL-77"))
        .expect(&["database `db`", "`FERRY_BAD_DB_URL` is not usable", "`sslpassword` cannot be combined with `service`", "hint: put the secret in your service file"])
        .forbid(&["SslPw-in-URL-77"]),
        case(
            "access_key_without_secret",
            "`access-key-id-env` without `secret-access-key-env`",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"s3\"\nbucket = \"b\"\naccess-key-id-env = \"MY_KEY\"\n\n{JOB}"),
        )
        .expect(&["provider `dst`: `access-key-id-env` and `secret-access-key-env` go together"]),
        // -- the command line ---------------------------------------------------------------------
        case("unknown_job_flag", "`--job` names no job in the plan", local_plan(""))
            .args(&["run", "--json", "--job", "copy-all"])
            .expect(&["no job named `copy-all`", "plan.toml", "jobs: copy"]),
        case("bad_part_size_flag", "`--part-size` that is not a size", local_plan(""))
            .args(&["run", "--part-size", "12parsecs"])
            .expect(&["--part-size", "12parsecs"]),
        case("bad_concurrency_flag", "`--concurrency` that is not a number", local_plan(""))
            .args(&["run", "--concurrency", "many"])
            .expect(&["--concurrency", "many"]),
        case("unknown_flag", "a flag ferry does not have", local_plan(""))
            .args(&["run", "--dryrun"])
            .expect(&["unexpected argument '--dryrun'", "a similar argument exists: '--dry-run'"]),
        case("missing_plan_argument", "`ferry run` without a plan", String::new())
            .args(&["run"])
            .no_plan_arg()
            .expect(&["<PLAN>"]),
        // -- one-liners (`ferry copy`/`ferry sync`, issue 17) ------------------------------
        case("oneliner_unknown_scheme", "`ferry copy` from a URL scheme ferry does not know", String::new())
            .args(&["copy", "ftp://host/x", "out"])
            .no_plan_arg()
            .expect(&["SRC `ftp://host/x`: unknown scheme `ftp://`"]),
        case("oneliner_az_without_account", "an `az://` location without `--to-account`", String::new())
            .args(&["copy", "src", "az://box/x"])
            .no_plan_arg()
            .expect(&["DST `az://box/x`: an az:// URL does not name the storage account: give --to-account NAME"]),
        case("oneliner_opt_not_a_bool", "`--to-opt path-style=maybe`", String::new())
            .args(&["copy", "src", "s3://b/x", "--to-opt", "path-style=maybe"])
            .no_plan_arg()
            .expect(&["--to-opt path-style: `maybe` is not a boolean"]),
        case("oneliner_secret_in_opt", "a secret key pasted into `--from-opt secret-access-key-env=`", String::new())
            .args(&[
                "sync",
                "s3://b/x",
                "out",
                "--from-opt",
                "access-key-id-env=K",
                "--from-opt",
                "secret-access-key-env=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ])
            .no_plan_arg()
            .expect(&["`secret-access-key-env` must name an environment variable", "provider `src` is SRC"])
            .forbid(&["wJalrXUtnFEMI"]),
        case(
            "state_dir_not_writable",
            "`--state-dir` under a regular file (the journal cannot be created)",
            local_plan(""),
        )
        .args(&["run", "--json", "--state-dir", "afile/state"])
        .setup(|ctx| write(ctx, "afile", b"not a directory"))
        .expect(&["afile/state", "Not a directory"]),
        // -- the environment ----------------------------------------------------------------------
        case(
            "credential_variable_unset",
            "the plan names a credentials variable that is not set",
            format!("{SRC_LOCAL}\n{unset_s3}\n{JOB}"),
        )
        .env("FERRY_BAD_UNSET_KEY", None)
        .env("FERRY_BAD_UNSET_SECRET", None)
        .expect(&["provider `dst`: environment variable `FERRY_BAD_UNSET_KEY` (named by `access-key-id-env`) is not set", "hint: export FERRY_BAD_UNSET_KEY=..."]),
        case(
            "credential_variable_empty",
            "the credentials variable is set but empty",
            format!("{SRC_LOCAL}\n{unset_s3}\n{JOB}"),
        )
        .env("FERRY_BAD_UNSET_KEY", Some(""))
        .env("FERRY_BAD_UNSET_SECRET", Some("x"))
        .expect(&["provider `dst`", "`FERRY_BAD_UNSET_KEY`"]),
        case(
            "azure_key_variable_unset",
            "`access-key-env` of an Azure provider is not set",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"azure\"\naccount = \"acct\"\ncontainer = \"c\"\n\
                     access-key-env = \"FERRY_BAD_UNSET_AZ\"\n\n{JOB}"),
        )
        .env("FERRY_BAD_UNSET_AZ", None)
        .expect(&["provider `dst`: environment variable `FERRY_BAD_UNSET_AZ` (named by `access-key-env`) is not set"]),
        case(
            "gcs_service_account_variable_unset",
            "`service-account-env` of a GCS provider is not set",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"gcs\"\nbucket = \"b\"\nservice-account-env = \"FERRY_BAD_UNSET_GCS\"\n\n{JOB}"),
        )
        .env("FERRY_BAD_UNSET_GCS", None)
        .expect(&["provider `dst`: environment variable `FERRY_BAD_UNSET_GCS` (named by `service-account-env`) is not set"]),
        case(
            "wrong_secret",
            "a wrong secret key (SeaweedFS checks SigV4)",
            s3_dst("FERRY_TEST_SEAWEED_KEY", "FERRY_BAD_WRONG_SECRET"),
        )
        .servers()
        .env("FERRY_BAD_WRONG_SECRET", Some("definitely-not-the-secret"))
        .expect(&["provider `dst` (plan line @LINE:providers.dst@)", "cannot list `dst:@PREFIX@/`", "403", "SignatureDoesNotMatch"])
        .forbid(&["definitely-not-the-secret"]),
        case(
            "wrong_access_key",
            "an access key id the server does not know",
            s3_dst("FERRY_BAD_WRONG_KEY", "FERRY_TEST_SEAWEED_SECRET"),
        )
        .servers()
        .env("FERRY_BAD_WRONG_KEY", Some("AKIAFERRYNOSUCHKEY01"))
        .expect(&["provider `dst` (plan line @LINE:providers.dst@)", "403", "InvalidAccessKeyId"]),
        case(
            "unreachable_endpoint",
            "nothing listens at the endpoint",
            format!(
                "{SRC_LOCAL}\n{}\n[[objects]]\nname = \"copy\"\nfrom = \"src:\"\nto = \"dst:@PREFIX@/\"\n",
                seaweed("dst", "FERRY_TEST_SEAWEED_KEY", "FERRY_TEST_SEAWEED_SECRET")
                    .replace("@SEAWEED@", "http://127.0.0.1:@PORT@")
            ),
        )
        .servers()
        .exit(3)
        .expect(&["provider `dst` (plan line @LINE:providers.dst@)", "cannot list `dst:@PREFIX@/`", "127.0.0.1:@PORT@", "Connection refused"]),
        case(
            "nonexistent_bucket",
            "the bucket does not exist",
            s3_dst("FERRY_TEST_SEAWEED_KEY", "FERRY_TEST_SEAWEED_SECRET")
                .replace("bucket = \"ferry-b\"", "bucket = \"ferry-no-such-bucket\""),
        )
        .servers()
        .expect(&["provider `dst` (plan line @LINE:providers.dst@)", "ferry-no-such-bucket", "NoSuchBucket"]),
        case(
            "check_connect_wrong_secret",
            "`check --connect` with a wrong secret",
            s3_dst("FERRY_TEST_SEAWEED_KEY", "FERRY_BAD_WRONG_SECRET"),
        )
        .servers()
        .args(&["check", "--connect", "--json"])
        .env("FERRY_BAD_WRONG_SECRET", Some("definitely-not-the-secret"))
        .expect(&["provider `dst`", "SignatureDoesNotMatch"])
        .forbid(&["definitely-not-the-secret"]),
        case(
            "check_connect_unreachable_azure",
            "`check --connect` when nothing listens at an Azure endpoint",
            format!(
                "{SRC_LOCAL}\n[providers.dst]\ntype = \"azure\"\naccount = \"devstoreaccount1\"\ncontainer = \"ferry-a\"\n\
                 endpoint = \"http://127.0.0.1:@PORT@/devstoreaccount1\"\nallow-http = true\naccess-key-env = \"FERRY_TEST_AZURITE_KEY\"\n\
                 [[objects]]\nname = \"copy\"\nfrom = \"src:\"\nto = \"dst:@PREFIX@/\"\n"
            ),
        )
        .servers()
        .args(&["check", "--connect", "--json"])
        .exit(3)
        .expect(&["provider `dst`", "cannot list `dst:@PREFIX@/`", "127.0.0.1:@PORT@"]),
        // -- local directories --------------------------------------------------------------------
        case("local_source_root_missing", "the source directory does not exist", local_plan(""))
            .setup(|ctx| std::fs::remove_dir_all(ctx.path().join("src")).unwrap())
            .expect(&["provider `src`: local root `@DIR@/src` does not exist or is not a directory"]),
        case("local_source_root_is_a_file", "the source `root` is a regular file", local_plan(""))
            .setup(|ctx| {
                std::fs::remove_dir_all(ctx.path().join("src")).unwrap();
                write(ctx, "src", b"a file");
            })
            .expect(&["provider `src`: local root `@DIR@/src` does not exist or is not a directory"]),
        case(
            "local_destination_not_writable",
            "the destination `root` cannot be created (under a regular file)",
            format!("{SRC_LOCAL}\n[providers.dst]\ntype = \"local\"\nroot = \"afile/out\"\n\n{JOB}"),
        )
        .setup(|ctx| write(ctx, "afile", b"not a directory"))
        .expect(&["provider `dst`: cannot create local root `@DIR@/afile/out`", "is not a directory"]),
        case(
            "local_destination_out_of_space",
            "the destination filesystem fills up (a 1 MiB tmpfs)",
            local_plan(""),
        )
        .setup(|ctx| {
            for i in 0..4 {
                write(ctx, &format!("src/big-{i}.bin"), &vec![i as u8 + 1; 600 * 1024]);
            }
            let out = ctx.path().join("out");
            std::fs::create_dir_all(&out).unwrap();
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
                .arg(&out)
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                *ctx.mounted.borrow_mut() = Some(out);
            } else {
                eprintln!("SKIPPED local_destination_out_of_space: cannot mount a tmpfs here (needs root)");
            }
        })
        .exit(1)
        .expect(&["No space left on device", "big-"])
        .written(Written::Check(|ctx, out| {
            // Each file at the destination is complete or absent; no staging file is left.
            let failed = failures(out);
            assert!(!failed.is_empty());
            for f in out_files(ctx) {
                let src = ctx.path().join("src").join(&f);
                assert!(src.exists(), "stray file `{f}` at the destination");
                assert_eq!(
                    std::fs::read(&src).unwrap(),
                    std::fs::read(ctx.path().join("out").join(&f)).unwrap(),
                    "`{f}` is at the destination but incomplete"
                );
                assert!(!failed.iter().any(|(k, _)| *k == f), "`{f}` failed but exists");
            }
        })),
        // -- keys the destination cannot hold (part of the job runs: exit 1) -----------------------
        case(
            "source_keys_with_dot_segments_to_local",
            "S3 keys with `..` or `.` segments copied to local disk (`..` would escape it)",
            from_moto.clone(),
        )
        .servers()
        .setup(|ctx| {
            let id = &ctx.prefix;
            seed_moto(
                ctx,
                &[
                    ("good.txt", b"good"),
                    (&format!("a/../../../../../../../../../../tmp/{id}-dotdot"), b"escape"),
                    ("../up.txt", b"escape"),
                    ("x/./y", b"dot"),
                ],
            )
        })
        .exit(1)
        .expect(&[
            "`@PREFIX@/a/../../../../../../../../../../tmp/@PREFIX@-dotdot`: not copied",
            "`@PREFIX@/../up.txt`: not copied",
            "`@PREFIX@/x/./y`: not copied",
            "`.` or `..` segment",
        ])
        .written(Written::Check(|ctx, out| {
            let dotdot = format!("/tmp/{}-dotdot", ctx.prefix);
            assert!(!Path::new(&dotdot).exists(), "`{dotdot}` was written outside the destination");
            assert_no_stray_files(ctx);
            assert_eq!(out_files(ctx), ["good.txt"]);
            let failed = failures(out);
            assert_eq!(failed.len(), 3, "{failed:?}");
            for (k, reason) in &failed {
                assert!(reason.starts_with("not copied:"), "`{k}`: {reason}");
            }
        })),
        case(
            "source_keys_absolute_or_empty_segment_to_local",
            "S3 keys `PREFIX//tmp/x` (absolute once the prefix is cut) and `a//b` copied to local disk",
            from_moto.clone(),
        )
        .servers()
        .setup(|ctx| {
            let id = &ctx.prefix;
            seed_moto(
                ctx,
                &[
                    ("good.txt", b"good"),
                    (&format!("/tmp/{id}-absolute"), b"escape"),
                    ("a//b", b"empty segment"),
                ],
            )
        })
        .exit(1)
        .expect(&[
            "`@PREFIX@//tmp/@PREFIX@-absolute`: not copied",
            "`@PREFIX@/a//b`: not copied",
        ])
        .written(Written::Check(|ctx, out| {
            let abs = format!("/tmp/{}-absolute", ctx.prefix);
            assert!(!Path::new(&abs).exists(), "`{abs}` was written outside the destination");
            assert_no_stray_files(ctx);
            assert_eq!(out_files(ctx), ["good.txt"]);
            assert_eq!(failures(out).len(), 2);
        })),
        case(
            "directory_marker_to_local",
            "an S3 `dir/` marker object copied to local disk",
            from_moto.clone(),
        )
        .servers()
        .setup(|ctx| seed_moto(ctx, &[("good.txt", b"good"), ("photos/", b"")]))
        .exit(1)
        .expect(&["`@PREFIX@/photos/`: not copied", "directory marker"])
        .written(Written::Check(|ctx, out| {
            assert_eq!(out_files(ctx), ["good.txt"]);
            assert_eq!(failures(out).len(), 1);
        })),
        case(
            "key_too_long_for_local_disk",
            "an S3 key with a 300-byte segment copied to a filesystem that allows 255",
            from_moto.clone(),
        )
        .servers()
        .setup(|ctx| seed_moto(ctx, &[("good.txt", b"good"), (&"n".repeat(300), b"long")]))
        .exit(1)
        .expect(&["`@PREFIX@/nnnnnnnnnn", "File name too long"])
        // The key, never an internal staging name (issue 14: `…nnn#1: File name too long`).
        .forbid(&[".ferry-tmp", "#1"])
        .written(Written::Check(|ctx, out| {
            assert_eq!(out_files(ctx), ["good.txt"]);
            let long = "n".repeat(300);
            let key = format!("{}/{long}", ctx.prefix);
            let failed = &json(out)["jobs"][0]["failed"];
            assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
            assert_eq!(failed[0]["key"], key.as_str());
            assert_eq!(failed[0]["destination_key"], long.as_str());
            assert_eq!(
                failed[0]["reason"],
                format!("cannot write `{long}`: File name too long (os error 36)").as_str()
            );
            // Issue 14: `verify` names the object exactly as `run` did (source key, destination
            // key), on stderr too, so the two reports match without the job's prefixes.
            let verify = ferry_again(ctx, &["verify", "--json"]);
            assert_eq!(verify.status.code(), Some(1));
            let mism = &json(&verify)["jobs"][0]["mismatches"];
            assert_eq!(mism.as_array().unwrap().len(), 1, "{mism}");
            assert_eq!(mism[0]["key"], failed[0]["key"]);
            assert_eq!(mism[0]["destination_key"], failed[0]["destination_key"]);
            assert_eq!(mism[0]["reason"], "missing at the destination");
            let (run_err, verify_err) = (
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&verify.stderr),
            );
            assert!(run_err.contains(&format!("    `{key}`: cannot write")), "{run_err}");
            assert!(
                verify_err.contains(&format!("  DIFFERS `{key}`: missing at the destination")),
                "{verify_err}"
            );
        })),
        case(
            "file_and_directory_with_one_name",
            "S3 keys `a` and `a/b`: a filesystem cannot hold both",
            from_moto,
        )
        .servers()
        .setup(|ctx| seed_moto(ctx, &[("good.txt", b"good"), ("a", b"file a"), ("a/b", b"file a/b")]))
        .exit(1)
        // Whichever of the two is copied second fails (`Not a directory` or `Is a directory`).
        .expect(&["`@PREFIX@/a", "directory"])
        .written(Written::Check(|ctx, out| {
            let failed = failures(out);
            assert_eq!(failed.len(), 1, "{failed:?}");
            let (key, reason) = &failed[0];
            assert!(
                [format!("{}/a", ctx.prefix), format!("{}/a/b", ctx.prefix)].contains(key),
                "{key}"
            );
            assert!(reason.contains("directory"), "{reason}");
            let got = out_files(ctx);
            assert!(got.contains(&"good.txt".to_string()), "{got:?}");
            // Whichever of the two landed is complete.
            for (f, body) in [("a", &b"file a"[..]), ("a/b", &b"file a/b"[..])] {
                if got.contains(&f.to_string()) {
                    assert_eq!(std::fs::read(ctx.path().join("out").join(f)).unwrap(), body);
                }
            }
        })),
        // -- ferry's own files and keys (issue 14) ---------------------------------------------
        case(
            "own_files_private_under_umask_022",
            "under the usual umask 022 ferry's own files were world-readable; now the journal, lock, manifests, dump and \
             dump record are 0600 and the state folders 0700, while copied files keep their source's mode",
            local_plan("\n[[databases]]\nname = \"db\"\nengine = \"sqlite\"\npath = \"app.db\"\nto = \"dst:db/{name}.sqlite.zst\"\n"),
        )
        .args(&["run"])
        .setup(|ctx| {
            use std::os::unix::fs::PermissionsExt;
            // nextest runs each test in a process of its own: this umask is this case's.
            unsafe { libc::umask(0o022) };
            let c = rusqlite::Connection::open(ctx.path().join("app.db")).unwrap();
            c.execute_batch("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('row');").unwrap();
            drop(c);
            let p = ctx.path().join("src/a.txt");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        })
        .exit(0)
        .written(Written::Check(|ctx, _| {
            use std::os::unix::fs::PermissionsExt;
            let mode = |rel: &str| {
                let m = std::fs::metadata(ctx.path().join(rel))
                    .unwrap_or_else(|e| panic!("`{rel}`: {e}"))
                    .permissions()
                    .mode();
                m & 0o777
            };
            for f in [
                ".ferry/plan/journal.sqlite",
                ".ferry/plan/lock",
                ".ferry/plan/manifests/copy.jsonl",
                "out/.ferry/manifests/copy.jsonl",
                "out/db/db.sqlite.zst",
                "out/db/db.sqlite.zst.ferry.json",
            ] {
                assert_eq!(mode(f), 0o600, "`{f}` is {:o}", mode(f));
            }
            for side in ["-wal", "-shm"] {
                let f = format!(".ferry/plan/journal.sqlite{side}");
                if ctx.path().join(&f).exists() {
                    assert_eq!(mode(&f), 0o600, "`{f}` is {:o}", mode(&f));
                }
            }
            for d in [".ferry", ".ferry/plan", ".ferry/plan/manifests"] {
                assert_eq!(mode(d), 0o700, "`{d}/` is {:o}", mode(d));
            }
            // Copied objects keep their source's mode; the umask is what made the rest 0644.
            assert_eq!(mode("out/a.txt"), 0o640);
            assert_eq!(mode("src/b/c.txt"), 0o644, "the umask is 022");
            assert_eq!(mode("out/b/c.txt"), 0o644);
        })),
        case(
            "source_keys_under_ferry_manifests",
            "the source holds `.ferry/manifests/` keys (ferry once wrote into it); one would land on this job's own manifest",
            local_plan("delete-extraneous = true\n"),
        )
        .setup(|ctx| {
            write(ctx, "src/.ferry/manifests/old-plan.jsonl", b"{\"manifest\":\"ferry/1\",\"job\":\"old\"}\n");
            write(ctx, "src/.ferry/manifests/copy.jsonl", b"an older copy of this job's manifest\n");
            // Another plan's manifest at the destination: never extraneous, never deleted.
            write(ctx, "out/.ferry/manifests/other-plan.jsonl", b"theirs\n");
        })
        .exit(1)
        .expect(&[
            "`.ferry/manifests/copy.jsonl`: not copied: at the destination it would be `.ferry/manifests/copy.jsonl`, \
             this job's own manifest",
        ])
        .written(Written::Check(|ctx, out| {
            let read = |rel: &str| std::fs::read(ctx.path().join(rel)).unwrap_or_else(|e| panic!("`{rel}`: {e}"));
            assert_eq!(read("out/.ferry/manifests/old-plan.jsonl"), read("src/.ferry/manifests/old-plan.jsonl"));
            assert_eq!(read("out/.ferry/manifests/other-plan.jsonl"), b"theirs\n");
            let failed = failures(out);
            assert_eq!(failed.len(), 1, "{failed:?}");
            assert_eq!(failed[0].0, ".ferry/manifests/copy.jsonl");
            // ferry's own manifest is its own, and lists the copied manifest key like any object.
            let manifest = String::from_utf8(read("out/.ferry/manifests/copy.jsonl")).unwrap();
            let lines: Vec<serde_json::Value> =
                manifest.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(lines[0]["manifest"], "ferry/1");
            assert_eq!(lines[0]["job"], "copy");
            let keys: Vec<&str> = lines.iter().filter_map(|l| l["key"].as_str()).collect();
            assert_eq!(keys, [".ferry/manifests/old-plan.jsonl", "a.txt", "b/c.txt"]);
            let j = json(out);
            assert_eq!(j["jobs"][0]["extraneous"]["objects"], 0, "{j}");
            assert_eq!(j["jobs"][0]["deleted"]["objects"], 0, "{j}");
            // A second run finds the copied key unchanged and still names the one it cannot copy.
            let again = ferry_again(ctx, &["run", "--json"]);
            assert_eq!(again.status.code(), Some(1));
            let j = json(&again);
            assert_eq!(j["jobs"][0]["unchanged"]["objects"], 3, "{j}");
            assert_eq!(j["jobs"][0]["copied"]["objects"], 0, "{j}");
            assert_eq!(failures(&again), failed);
        })),
    ]
}

macro_rules! catalogue {
    ($($(#[$attr:meta])* $name:ident,)*) => {
        /// Every case with a test of its own.
        const NAMES: &[&str] = &[$(stringify!($name)),*];
        $(
            $(#[$attr])*
            #[test]
            fn $name() {
                run_case(stringify!($name));
            }
        )*
    };
}

catalogue! {
    plan_file_missing,
    plan_is_a_fifo,
    job_name_with_a_slash,
    part_size_too_large,
    malformed_toml,
    unknown_top_level_key,
    unknown_settings_key,
    unknown_provider_key,
    unknown_job_key,
    unknown_database_key,
    retention_rule_without_timestamp,
    wrong_type_settings,
    wrong_type_list,
    wrong_type_bool,
    unknown_provider_type,
    provider_without_type,
    unknown_preset,
    type_contradicts_preset,
    key_for_another_type,
    local_without_root,
    s3_without_bucket,
    azure_without_container,
    job_names_undefined_provider,
    job_without_from,
    job_from_empty,
    job_to_without_provider,
    prefix_not_ending_in_slash,
    prefix_starting_with_slash,
    overlap_same_provider_same_prefix,
    overlap_nested_prefix,
    overlap_two_names_one_bucket,
    overlap_endpoint_spelled_differently,
    overlap_local_root_spelled_differently,
    overlap_local_nested_roots,
    overlap_local_root_through_missing_folder,
    overlap_same_bucket_by_address_and_name,
    duplicate_job_names,
    duplicate_name_object_and_database,
    empty_job_name,
    glob_does_not_compile,
    bad_part_size_in_plan,
    bad_memory_limit_in_plan,
    bad_bandwidth_in_plan,
    zero_bandwidth_in_plan,
    sqlite_job_without_path,
    postgres_job_without_url_env,
    unknown_database_engine,
    database_url_variable_unset,
    database_url_not_a_url,
    postgres_unreachable,
    mysql_unreachable,
    postgres_database_missing,
    sqlite_source_missing,
    restore_unknown_database,
    restore_without_target,
    plain_http_without_allow_http,
    endpoint_without_scheme,
    unknown_sse,
    kms_key_without_sse_kms,
    unknown_storage_class,
    storage_class_on_azure,
    literal_secret_in_env_key,
    alphanumeric_secret_in_env_key,
    endpoint_with_user_info,
    database_url_secret_parameter_with_service,
    access_key_without_secret,
    unknown_job_flag,
    bad_part_size_flag,
    bad_concurrency_flag,
    unknown_flag,
    missing_plan_argument,
    oneliner_unknown_scheme,
    oneliner_az_without_account,
    oneliner_opt_not_a_bool,
    oneliner_secret_in_opt,
    state_dir_not_writable,
    credential_variable_unset,
    credential_variable_empty,
    azure_key_variable_unset,
    gcs_service_account_variable_unset,
    wrong_secret,
    wrong_access_key,
    unreachable_endpoint,
    nonexistent_bucket,
    check_connect_wrong_secret,
    check_connect_unreachable_azure,
    local_source_root_missing,
    local_source_root_is_a_file,
    local_destination_not_writable,
    local_destination_out_of_space,
    source_keys_with_dot_segments_to_local,
    source_keys_absolute_or_empty_segment_to_local,
    directory_marker_to_local,
    key_too_long_for_local_disk,
    file_and_directory_with_one_name,
    own_files_private_under_umask_022,
    source_keys_under_ferry_manifests,
}

#[test]
fn every_case_has_a_test_and_there_are_at_least_40() {
    let cases = cases();
    let names: Vec<_> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names, NAMES, "the catalogue! list and cases() disagree");
    println!("BAD-INPUT CASES: {}", names.len());
    assert!(names.len() >= 40);
}

// ---------------------------------------------------------------------------------------------
// docs/errors.md

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/errors.md")
}

fn doc_cell(text: &str) -> String {
    let t = text.trim();
    let t = if t.chars().count() > 1500 {
        format!("{}…", t.chars().take(1500).collect::<String>())
    } else {
        t.to_string()
    };
    t.replace('|', "\\|").replace('\n', "<br>")
}

const DOC_HEAD: &str = "# Errors: the bad-input catalogue

Every way of getting a plan, an argument, the environment or the data wrong that ferry's tests
know about, with the exit code and the message ferry prints (stderr; with `--json` the same
text is the `error` field of the document on stdout). Exit code 2 means nothing was written:
no destination directory, no journal, no object. Exit code 1 means part of the job ran: the
objects named were not copied, everything else was. Exit code 0 rows are inputs that once went
wrong and are now handled: the row says what ferry does with them. Each row is a test in
`tests/bad_input.rs`, which also checks that nothing was written; this file is generated from
the messages ferry really printed (`FERRY_BLESS=1 cargo nextest run --test bad_input errors_md`,
with the test servers up). Paths are shown as `<dir>`, the test's key prefix as `<prefix>`.

";

/// docs/errors.md has a row for every case, with its exit code. With
/// `FERRY_BLESS=1`, every case is run and the file is regenerated from the real messages.
#[test]
fn errors_md_lists_every_case() {
    let cases = cases();
    if std::env::var("FERRY_BLESS").is_ok_and(|v| v == "1") {
        if !servers_available("errors_md_lists_every_case (bless)") {
            panic!("regenerating docs/errors.md needs the test servers");
        }
        let mut doc = String::from(DOC_HEAD);
        doc.push_str("| case | what is wrong | exit | message |\n|---|---|---|---|\n");
        for c in &cases {
            let Some(r) = execute(c) else {
                panic!("case `{}` could not run here", c.name);
            };
            let mut msg = r.ctx.normalize(&String::from_utf8_lossy(&r.out.stderr));
            let got = r.out.status.code().unwrap_or(-1);
            if got == 1 {
                // The job summary says what ran; the rows are about what did not.
                if let Some(i) = msg.find("  failed:") {
                    msg = msg[i..].to_string();
                }
            }
            let (exit, msg) = match c.bug {
                None => {
                    assert_eq!(got, c.exit, "`{}`: not blessing a wrong exit code", c.name);
                    (got.to_string(), doc_cell(&msg))
                }
                Some(bug) => (
                    format!("{} (today {got}: bug)", c.exit),
                    format!("**bug, to be fixed:** {}. Today: {}", doc_cell(bug), doc_cell(&msg)),
                ),
            };
            doc.push_str(&format!("| `{}` | {} | {exit} | {msg} |\n", c.name, doc_cell(c.what),));
        }
        std::fs::write(doc_path(), doc).unwrap();
        println!("wrote {}", doc_path().display());
        return;
    }
    let doc = std::fs::read_to_string(doc_path()).expect("docs/errors.md exists");
    for c in &cases {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", c.name)))
            .unwrap_or_else(|| panic!("docs/errors.md has no row for `{}`", c.name));
        assert!(
            row.contains(&format!("| {} |", c.exit))
                || (c.bug.is_some() && row.contains(&format!("| {} (today", c.exit))),
            "docs/errors.md: `{}` should show exit {}",
            c.name,
            c.exit
        );
    }
}
