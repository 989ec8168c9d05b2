//! Issue 12, "nothing lost in silence", for symbolic links and FIFOs in local stores.
//!
//! Source side: a link to a file outside the root, to a folder outside the root, a link to
//! itself, a folder loop, a broken link and a FIFO. Nothing outside the root may be read
//! (inotify watches the outside tree) or copied; each link or FIFO is named in the run's JSON
//! with exit 1; the regular files still arrive byte-identical; ferry never hangs on the FIFO.
//!
//! Destination side: a planted folder link `dst/current -> <canary>` and a link back to the
//! source, each with and without `delete-extraneous`: nothing is written or deleted through a
//! link. The canary tree and the source tree have the same SHA-256s before and after every test.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::oracle::{assert_contract, describe, ferry, files, toml_str, write_file, Ran, Seen, Watch};

struct Fx {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    dst: PathBuf,
    /// Outside both roots: must never be read, written or deleted.
    canary: PathBuf,
    plan: PathBuf,
}

const JOB: &str = "links";

fn fixture(delete_extraneous: bool) -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    let (src, dst, canary) = (base.join("src"), base.join("dst"), base.join("canary"));
    write_file(&src, b"a.txt", b"regular file a\n");
    write_file(&src, b"keep/b.txt", b"regular file b\n");
    write_file(&src, b"keep/deep/c.txt", &common::data(100_000, 3));
    write_file(&canary, b"secret.txt", b"CANARY SECRET: must never be copied\n");
    write_file(&canary, b"dir/inner.txt", b"CANARY inner file\n");
    write_file(&canary, b"dir/sub/more.txt", b"CANARY more\n");
    std::fs::create_dir_all(&dst).unwrap();
    let plan = base.join("links.toml");
    std::fs::write(
        &plan,
        format!(
            "[providers.src]\ntype = \"local\"\nroot = {}\n\n[providers.dst]\ntype = \"local\"\nroot = {}\n\n\
             [[objects]]\nname = \"{JOB}\"\nfrom = \"src:\"\nto = \"dst:\"\ndelete-extraneous = {delete_extraneous}\n",
            toml_str(&src.display().to_string()),
            toml_str(&dst.display().to_string())
        ),
    )
    .unwrap();
    Fx {
        _tmp: tmp,
        src,
        dst,
        canary,
        plan,
    }
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Runs the plan (killed after 120 s: a FIFO must not hang ferry) and checks the contract for
/// the regular files, naming each entry in `special`; then the canary and source trees.
fn run_and_check(test: &str, fx: &Fx, special: &[&str], watch_src_reads: bool) -> Ran {
    let canary_before = describe(&fx.canary);
    let src_before = describe(&fx.src);
    let src_files = files(&fx.src, &[]);
    let canary_watch = Watch::tree(&fx.canary);
    let src_watch = Watch::tree(&fx.src);
    let ran = ferry(&["run", "--json"], &fx.plan, Duration::from_secs(120));
    let canary_events = canary_watch.events();
    let src_writes: Vec<String> = src_watch
        .events()
        .into_iter()
        .filter(|e| !e.starts_with("OPEN") && !e.starts_with("READ"))
        .collect();
    drop((canary_watch, src_watch));
    let dst_files = files(&fx.dst, &[".ferry"]);
    let special: Vec<Vec<u8>> = special.iter().map(|s| s.as_bytes().to_vec()).collect();
    let seen = Seen {
        job: JOB,
        from: "",
        to: "",
        src: &src_files,
        dst: &dst_files,
        special: &special,
    };
    // Tree checks first: touching the outside is the worse failure.
    let mut bad = Vec::new();
    // A source test forbids any access to the canary (reading it through a link is the bug);
    // a destination test forbids changes there.
    let canary_events: Vec<String> = canary_events
        .into_iter()
        .filter(|e| watch_src_reads || !(e.starts_with("OPEN") || e.starts_with("READ")))
        .collect();
    if !canary_events.is_empty() {
        bad.push(format!(
            "ferry touched the canary tree outside both roots: {:?}",
            &canary_events[..canary_events.len().min(12)]
        ));
    }
    if describe(&fx.canary) != canary_before {
        bad.push(format!(
            "the canary tree changed:\n  before {canary_before:?}\n  after  {:?}",
            describe(&fx.canary)
        ));
    }
    if !src_writes.is_empty() {
        bad.push(format!(
            "ferry wrote into the source tree: {:?}",
            &src_writes[..src_writes.len().min(12)]
        ));
    }
    if describe(&fx.src) != src_before {
        bad.push(format!(
            "the source tree changed:\n  before {src_before:?}\n  after  {:?}",
            describe(&fx.src)
        ));
    }
    let canary_text: Vec<Vec<u8>> = files(&fx.canary, &[]).into_values().collect();
    for (k, v) in &dst_files {
        if canary_text.contains(v) {
            bad.push(format!(
                "the destination holds `{}` with a canary file's content: read through a link",
                String::from_utf8_lossy(k)
            ));
        }
    }
    assert!(bad.is_empty(), "{test}:\n  {}\n{}", bad.join("\n  "), ran.summary());
    assert_contract(test, &ran, &[seen]);
    ran
}

// ---------------------------------------------------------------- source links and FIFOs

#[test]
fn source_link_to_file_outside_root_is_not_followed() {
    let fx = fixture(false);
    symlink(fx.canary.join("secret.txt"), fx.src.join("out_file")).unwrap();
    run_and_check(
        "source_link_to_file_outside_root_is_not_followed",
        &fx,
        &["out_file"],
        true,
    );
}

#[test]
fn source_link_to_folder_outside_root_is_not_followed() {
    let fx = fixture(false);
    symlink(fx.canary.join("dir"), fx.src.join("keep/out_dir")).unwrap();
    run_and_check(
        "source_link_to_folder_outside_root_is_not_followed",
        &fx,
        &["keep/out_dir"],
        true,
    );
}

#[test]
fn source_link_to_itself_is_reported() {
    let fx = fixture(false);
    symlink("self", fx.src.join("self")).unwrap();
    run_and_check("source_link_to_itself_is_reported", &fx, &["self"], true);
}

#[test]
fn source_folder_loop_is_reported() {
    let fx = fixture(false);
    // keep/deep/up -> .. (keep/), and keep/deep/root -> the source root itself.
    symlink("..", fx.src.join("keep/deep/up")).unwrap();
    symlink(&fx.src, fx.src.join("keep/deep/root")).unwrap();
    run_and_check(
        "source_folder_loop_is_reported",
        &fx,
        &["keep/deep/up", "keep/deep/root"],
        true,
    );
}

#[test]
fn source_broken_link_is_reported() {
    let fx = fixture(false);
    symlink(fx.canary.join("no-such-file"), fx.src.join("broken")).unwrap();
    run_and_check("source_broken_link_is_reported", &fx, &["broken"], true);
}

#[test]
fn source_fifo_is_reported_and_never_read() {
    let fx = fixture(false);
    mkfifo(&fx.src.join("keep/pipe"));
    run_and_check("source_fifo_is_reported_and_never_read", &fx, &["keep/pipe"], true);
}

// ---------------------------------------------------------------- links in the destination

/// The source has files under `current/`, one with the name of a canary file; the destination
/// has `current -> canary`.
fn dst_link_to_canary(test: &str, delete_extraneous: bool) {
    let fx = fixture(delete_extraneous);
    write_file(&fx.src, b"current/x.txt", b"source x, must not land in the canary\n");
    write_file(&fx.src, b"current/secret.txt", b"source version of secret.txt\n");
    symlink(&fx.canary, fx.dst.join("current")).unwrap();
    run_and_check(test, &fx, &[], false);
}

/// The source has a real folder `mirror/`; the destination has `mirror -> <source root>`.
fn dst_link_to_source(test: &str, delete_extraneous: bool) {
    let fx = fixture(delete_extraneous);
    write_file(&fx.src, b"mirror/y.txt", b"source y\n");
    symlink(&fx.src, fx.dst.join("mirror")).unwrap();
    run_and_check(test, &fx, &[], false);
}

#[test]
fn destination_link_to_canary_is_not_written_through() {
    dst_link_to_canary("destination_link_to_canary_is_not_written_through", false);
}

#[test]
fn destination_link_to_canary_with_delete_extraneous() {
    dst_link_to_canary("destination_link_to_canary_with_delete_extraneous", true);
}

#[test]
fn destination_link_to_source_is_not_written_through() {
    dst_link_to_source("destination_link_to_source_is_not_written_through", false);
}

#[test]
fn destination_link_to_source_with_delete_extraneous() {
    dst_link_to_source("destination_link_to_source_with_delete_extraneous", true);
}
