//! Issue 17, must-show 1: `ferry copy SRC DST` and `ferry sync SRC DST` by URL between local
//! disk, SeaweedFS, moto, Azurite and fake-gcs-server, and `--print-plan` round-tripping into a
//! plan that `ferry check` accepts and that copies the same.
//!
//! Each server is reached only through the flags a user would give (`--from-endpoint`,
//! `--to-opt access-key-id-env=...`, ...). Sources are seeded and destinations read back through
//! the servers' own APIs or the filesystem (tests/common/oracle.rs `Side`, tests/common/wire.rs),
//! never through ferry. Every server side has a key prefix of its own, cleared when the test ends.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::oracle::{ferry_bin, files, Kind, Side};
use common::{data, env, servers_available};

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// What `ferry` did: exit code, stdout, stderr.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `ferry ARGS` with `dir` as its working directory (the one-liner's journal goes there).
fn ferry(dir: &Path, args: &[String]) -> Out {
    let out = Command::new(ferry_bin()).args(args).current_dir(dir).output().unwrap();
    let o = Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("ferry {args:?} -> {:?}\n{}", o.code, o.stderr);
    o
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The location of a side and the flags that reach it, `--from-*` (`side = "from"`) or `--to-*`.
/// The URL's prefix is written without its trailing `/` (a prefix is a folder: ferry adds it).
fn location(s: &Side, side: &str) -> Vec<String> {
    let flag = |name: &str, value: String| [format!("--{side}-{name}"), value];
    let prefix = s.base.trim_end_matches('/');
    let mut v = Vec::new();
    match s.kind {
        Kind::Local => v.push(s.root.display().to_string()),
        Kind::Seaweed | Kind::Moto => {
            let which = if s.kind == Kind::Seaweed { "SEAWEED" } else { "MOTO" };
            v.push(format!("s3://{}/{prefix}", s.bucket));
            if s.kind == Kind::Seaweed {
                v.extend(flag("preset", "seaweedfs".into()));
            }
            v.extend(flag("endpoint", env(&format!("FERRY_TEST_{which}_ENDPOINT"))));
            v.extend(flag("region", "us-east-1".into()));
            v.extend(flag("opt", "path-style=true".into()));
            v.extend(flag("opt", format!("access-key-id-env=FERRY_TEST_{which}_KEY")));
            v.extend(flag("opt", format!("secret-access-key-env=FERRY_TEST_{which}_SECRET")));
        }
        Kind::Azurite => {
            v.push(format!("az://{}/{prefix}", s.bucket));
            v.extend(flag("account", env("FERRY_TEST_AZURITE_ACCOUNT")));
            v.extend(flag("endpoint", env("FERRY_TEST_AZURITE_ENDPOINT")));
            v.extend(flag("opt", "access-key-env=FERRY_TEST_AZURITE_KEY".into()));
        }
        Kind::Gcs => {
            v.push(format!("gs://{}/{prefix}", s.bucket));
            v.extend(flag("endpoint", env("FERRY_TEST_GCS_ENDPOINT")));
            v.extend(flag("opt", "anonymous=true".into()));
        }
    }
    v
}

/// `ferry COMMAND SRC DST` with both sides' flags, then `extra`.
fn one_liner(command: &str, from: &Side, to: &Side, extra: &[&str]) -> Vec<String> {
    let (mut f, mut t) = (location(from, "from"), location(to, "to"));
    let mut args = vec![command.to_string(), f.remove(0), t.remove(0)];
    args.extend(f);
    args.extend(t);
    args.extend(strings(extra));
    args
}

/// Files with nested folders, a space and unicode, an empty one and one over a part size.
fn tree(seed: u64) -> Tree {
    ["a.txt", "dir/b.bin", "dir/sub/c d.txt", "ü/é.txt", "empty"]
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let len = if *k == "empty" { 0 } else { 100 + 997 * i };
            (k.as_bytes().to_vec(), data(len, seed + i as u64))
        })
        .collect()
}

/// Puts `t` in a side through its own API (or the filesystem).
fn seed(side: &Side, t: &Tree) {
    for (k, body) in t {
        side.seed(k, body).unwrap();
    }
}

/// A temporary working directory, when the servers are up.
fn start(test: &str) -> Option<tempfile::TempDir> {
    servers_available(test).then(|| tempfile::tempdir().unwrap())
}

/// `ferry ARGS` in `dir`, which must exit 0.
fn ok(dir: &Path, args: &[String]) -> Out {
    let out = ferry(dir, args);
    assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
    out
}

fn local_tree(root: &Path) -> Tree {
    files(root, &[".ferry"])
}

fn keys(t: &Tree) -> Vec<String> {
    t.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect()
}

/// local -> SERVER by one-liner, read back through the server's API; then SERVER -> local, read
/// back from the disk. A second run copies nothing (same journal, same plan hash).
fn local_there_and_back(test: &str, kind: Kind) {
    let Some(tmp) = start(test) else {
        return;
    };
    let src = Side::new(Kind::Local, tmp.path().join("src"), "ferry-a", test);
    let remote = Side::new(kind, tmp.path().join("unused"), "ferry-a", test);
    let back = Side::new(Kind::Local, tmp.path().join("back"), "ferry-a", test);
    let t = tree(7);
    seed(&src, &t);

    let out = ok(tmp.path(), &one_liner("copy", &src, &remote, &["--json"]));
    assert_eq!(keys(&remote.read_all("")), keys(&t));
    assert_eq!(remote.read_all(""), t, "{kind:?} holds other bytes than were copied");
    let doc: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(doc["exit_code"], 0, "{doc}");

    let again = ok(tmp.path(), &one_liner("copy", &src, &remote, &["--json"]));
    assert!(again.stderr.contains("unchanged:   5 objects"), "{}", again.stderr);

    ok(tmp.path(), &one_liner("copy", &remote, &back, &[]));
    assert_eq!(local_tree(&back.root), t);
    // Two one-liners, two journals, in the working directory.
    let journals = std::fs::read_dir(tmp.path().join(".ferry")).unwrap().count();
    assert_eq!(journals, 2);
}

#[test]
fn copy_local_and_seaweedfs() {
    local_there_and_back("ol_seaweed", Kind::Seaweed);
}

#[test]
fn copy_local_and_moto() {
    local_there_and_back("ol_moto", Kind::Moto);
}

#[test]
fn copy_local_and_azurite() {
    local_there_and_back("ol_azurite", Kind::Azurite);
}

#[test]
fn copy_local_and_fake_gcs() {
    local_there_and_back("ol_gcs", Kind::Gcs);
}

/// Remote to remote: SeaweedFS -> Azurite, moto -> fake-gcs-server, each seeded through the
/// source's API and read back through the destination's.
#[test]
fn copy_s3_to_azure_and_to_gcs() {
    let test = "ol_remote";
    let Some(tmp) = start(test) else {
        return;
    };
    for (from, to) in [(Kind::Seaweed, Kind::Azurite), (Kind::Moto, Kind::Gcs)] {
        let src = Side::new(from, tmp.path().join("x"), "ferry-a", test);
        let dst = Side::new(to, tmp.path().join("y"), "ferry-b", test);
        let t = tree(11);
        seed(&src, &t);
        let mut args = one_liner("copy", &src, &dst, &["--verify", "deep"]);
        if to == Kind::Azurite {
            // Azure's own URL form, the account in the host (the endpoint still Azurite's).
            let account = env("FERRY_TEST_AZURITE_ACCOUNT");
            args[2] = format!("https://{account}.blob.core.windows.net/{}/{}", dst.bucket, dst.base);
            let at = args.iter().position(|a| a == "--to-account").unwrap();
            args.drain(at..at + 2);
        }
        ok(tmp.path(), &args);
        assert_eq!(dst.read_all(""), t, "{from:?} -> {to:?}");
    }
}

/// `sync` deletes what the source no longer has; with an empty source the guard refuses every
/// delete (exit 1) and the destination keeps its objects.
#[test]
fn sync_deletes_extraneous_within_its_guards() {
    let test = "ol_sync";
    let Some(tmp) = start(test) else {
        return;
    };
    let src = Side::new(Kind::Local, tmp.path().join("src"), "ferry-a", test);
    let dst = Side::new(Kind::Moto, tmp.path().join("unused"), "ferry-b", test);
    let mut t = tree(3);
    seed(&src, &t);
    ok(tmp.path(), &one_liner("sync", &src, &dst, &[]));
    assert_eq!(dst.read_all(""), t);

    // One file gone from the source, one object only at the destination: both deleted
    // (2 of 6 objects, within the default max-delete of 50%).
    std::fs::remove_file(src.root.join("a.txt")).unwrap();
    t.remove(b"a.txt".as_slice());
    dst.seed(b"extra/only-here", b"x").unwrap();
    // --dry-run: what `ferry plan` says, nothing deleted.
    let dry = ok(tmp.path(), &one_liner("sync", &src, &dst, &["--json", "--dry-run"]));
    for key in ["a.txt", "extra/only-here"] {
        assert!(
            dry.stdout.contains(&format!("{}{key}", dst.base)),
            "{key}: {}",
            dry.stdout
        );
    }
    assert!(dst.read_all("").contains_key(b"a.txt".as_slice()));
    ok(tmp.path(), &one_liner("sync", &src, &dst, &["--json"]));
    assert_eq!(dst.read_all(""), t);

    // `copy` never deletes.
    dst.seed(b"extra/kept", b"y").unwrap();
    ok(tmp.path(), &one_liner("copy", &src, &dst, &[]));
    assert!(dst.read_all("").contains_key(b"extra/kept".as_slice()));
    dst.remove(b"extra/kept");

    // An empty source: the guard refuses every delete.
    std::fs::remove_dir_all(&src.root).unwrap();
    std::fs::create_dir(&src.root).unwrap();
    let out = ferry(tmp.path(), &one_liner("sync", &src, &dst, &["--json"]));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("deletes refused"), "{}", out.stderr);
    assert!(out.stdout.contains("\"guard\""), "{}", out.stdout);
    assert_eq!(dst.read_all(""), t, "the guard let a delete through");
}

/// `--print-plan` writes a plan: `ferry check` accepts it, and `ferry run` with it copies into a
/// fresh destination exactly what the one-liner copied into another.
#[test]
fn print_plan_round_trips() {
    let test = "ol_print";
    let Some(tmp) = start(test) else {
        return;
    };
    let src = Side::new(Kind::Seaweed, tmp.path().join("x"), "ferry-a", test);
    let t = tree(5);
    seed(&src, &t);
    let filters = ["--exclude", "dir/sub/**", "--verify", "size"];
    let by_one_liner = Side::new(Kind::Local, tmp.path().join("one"), "", test);
    ok(tmp.path(), &one_liner("copy", &src, &by_one_liner, &filters));

    let by_plan = Side::new(Kind::Local, tmp.path().join("plan"), "", test);
    let mut args = one_liner("copy", &src, &by_plan, &filters);
    args.push("--print-plan".into());
    let printed = ok(tmp.path(), &args);
    assert!(!by_plan.root.exists(), "--print-plan wrote something");
    assert!(printed.stdout.contains("allow-http = true"), "{}", printed.stdout);
    assert!(
        printed.stdout.contains("exclude = [\"dir/sub/**\"]"),
        "{}",
        printed.stdout
    );
    assert!(printed.stdout.contains("verify = \"size\""), "{}", printed.stdout);
    // Saved elsewhere, the plan means the same (its paths are absolute).
    std::fs::create_dir(tmp.path().join("plans")).unwrap();
    let file = tmp.path().join("plans/copy.toml");
    std::fs::write(&file, &printed.stdout).unwrap();
    let file = file.display().to_string();

    ok(tmp.path(), &strings(&["check", "--connect", &file]));
    ok(tmp.path(), &strings(&["run", &file]));

    let one = local_tree(&by_one_liner.root);
    let expected: Tree = t.into_iter().filter(|(k, _)| !k.starts_with(b"dir/sub/")).collect();
    assert_eq!(one, expected);
    assert_eq!(local_tree(&by_plan.root), one);
}

/// Bad arguments exit 2 naming the argument; a secret given in place of a variable name is
/// refused as the plan refuses it, and never printed.
#[test]
fn bad_arguments_exit_2_and_say_which() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bad = |args: &[&str], says: &str| {
        let out = ferry(dir, &strings(args));
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        out
    };
    bad(
        &["copy", "ftp://host/x", "out"],
        "SRC `ftp://host/x`: unknown scheme `ftp://`",
    );
    bad(
        &["copy", "in", "az://box/x"],
        "DST `az://box/x`: an az:// URL does not name the storage account: give --to-account NAME",
    );
    bad(&["sync", "in", "s3://"], "DST `s3://`: no bucket or container");
    bad(
        &["copy", "in", "s3://b/x", "--to-opt", "path-style=maybe"],
        "not a boolean",
    );
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let opt = format!("secret-access-key-env={secret}");
    let out = bad(
        &[
            "copy",
            "s3://b/x",
            "out",
            "--from-opt",
            "access-key-id-env=K",
            "--from-opt",
            &opt,
        ],
        "`secret-access-key-env` must name an environment variable",
    );
    assert!(!out.stderr.contains(secret) && !out.stdout.contains(secret));
    let out = bad(
        &[
            "copy",
            "s3://b/x",
            "out",
            "--from-opt",
            "access-key-id-env=K",
            "--from-opt",
            &opt,
            "--print-plan",
        ],
        "must name an environment variable",
    );
    assert!(out.stdout.is_empty() && !out.stderr.contains(secret));
    // Nothing was written, not even a journal.
    assert!(!dir.join(".ferry").exists() && !dir.join("out").exists());
}

/// The journal's default place is the working directory: from inside a local SRC it would be
/// copied with the data, from inside a local DST a sync would delete it as extraneous.
#[test]
fn a_journal_inside_a_local_root_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    seed(&Side::new(Kind::Local, src.clone(), "", "ol_inside"), &tree(1));
    std::fs::create_dir(&dst).unwrap();
    let refused = |dir: &Path, args: &[&str], says: &str| {
        let out = ferry(dir, &strings(args));
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("hint: give --state-dir DIR outside it"),
            "{}",
            out.stderr
        );
    };
    let d = dst.display().to_string();
    refused(
        &src,
        &["copy", ".", &d],
        "is inside SRC `.`: it would be copied with the data",
    );
    let s = src.display().to_string();
    refused(
        &dst,
        &["sync", &s, "."],
        "is inside DST `.`: it would be overwritten or deleted",
    );
    refused(
        tmp.path(),
        &["copy", "src", "dst", "--state-dir", "src/state"],
        "inside SRC `src`",
    );
    assert!(!src.join(".ferry").exists() && !src.join("state").exists() && !dst.join(".ferry").exists());
    // Given outside both, the same one-liner runs.
    let state = tmp.path().join("state").display().to_string();
    ok(&src, &strings(&["copy", ".", &d, "--state-dir", &state]));
    assert_eq!(local_tree(&dst), tree(1));
}

/// docs/plan.md shows a `--print-plan` output: it is what ferry prints for that command.
#[test]
fn plan_md_example_is_what_print_plan_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "copy",
        "s3://media/photos",
        "/srv/backup/photos",
        "--from-preset",
        "seaweedfs",
        "--from-endpoint",
        "http://127.0.0.1:8333",
        "--from-region",
        "us-east-1",
        "--from-opt",
        "access-key-id-env=SEAWEED_KEY",
        "--from-opt",
        "secret-access-key-env=SEAWEED_SECRET",
        "--exclude",
        "tmp/**",
        "--print-plan",
    ];
    let printed = ok(tmp.path(), &strings(&args)).stdout;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/plan.md")).unwrap();
    assert!(
        doc.contains(&printed),
        "docs/plan.md's example differs from:\n{printed}"
    );
    assert!(
        !tmp.path().join(".ferry").exists(),
        "--print-plan wrote a state directory"
    );
}
