//! Issue 14: keys are escaped in human output. A key with ESC or a newline, printed raw, would
//! recolour the operator's terminal or forge a line in the log a monitor reads; the JSON keeps
//! the key exact.

mod common;

use std::time::Duration;

use common::oracle::{ferry, local_plan};

#[test]
fn control_characters_in_keys_are_escaped_on_stderr_and_exact_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("esc\x1b[31mred.txt"), "x").unwrap();
    std::fs::write(src.join("nl\nfake: line"), "y").unwrap();
    std::fs::write(src.join("plain.txt"), "z").unwrap();
    let plan = local_plan(dir.path(), "");
    for args in [
        &["run", "-v", "--json"][..],
        &["plan", "--json"][..],
        &["verify", "--json"][..],
    ] {
        let ran = ferry(args, &plan, Duration::from_secs(60));
        assert_eq!(ran.code, Some(1), "{args:?}\n{}", ran.summary());
        assert!(
            !ran.stderr.contains('\x1b'),
            "{args:?}: a raw ESC reached stderr\n{}",
            ran.summary()
        );
        assert!(
            !ran.stderr.lines().any(|l| l.starts_with("fake: line")),
            "{args:?}: a key forged a line\n{}",
            ran.summary()
        );
        assert!(
            ran.stderr.contains("esc\\u{1b}[31mred.txt"),
            "{args:?}\n{}",
            ran.summary()
        );
        if args[0] != "verify" {
            let failed = ran.failed("j");
            assert!(
                failed.iter().any(|k| k == "esc\x1b[31mred.txt"),
                "JSON keeps keys exact: {failed:?}"
            );
            assert!(failed.iter().any(|k| k == "nl\nfake: line"), "{failed:?}");
        }
    }
}

/// Issue 14: a closed stderr (a log shipper that went away) does not turn a finished run into a
/// panic (exit 101): the run's own exit code stands.
#[test]
fn a_closed_stderr_does_not_panic() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..50 {
        std::fs::write(src.join(format!("f{i}")), "x").unwrap();
    }
    let plan = local_plan(dir.path(), "");
    for args in [&["run", "-v"][..], &["verify", "-v"][..], &["check", "--connect"][..]] {
        let mut child = Command::new(common::oracle::ferry_bin())
            .args(args)
            .arg(&plan)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Both readers gone before ferry writes a line.
        drop(child.stderr.take());
        drop(child.stdout.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?} with a closed stderr");
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("dst")).unwrap().count(),
        51,
        "copied, plus .ferry/"
    );
}
