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

/// Issue 17: off a terminal (nohup, systemd, `kubectl logs`), one 300 MiB object at a bandwidth
/// cap prints a heartbeat at least once per interval while it streams, each line with a
/// timestamp, the job, the bytes moved, a rate and an ETA; bytes count as they stream, so the
/// lines move although no object finishes until the end. `-q` keeps them (a minute apart);
/// `-qq` is silent.
#[test]
fn heartbeats_off_a_terminal_show_rate_and_eta_during_one_large_object() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let big = vec![7u8; 300 << 20];
    std::fs::write(src.join("big.bin"), &big).unwrap();
    drop(big);
    let plan = local_plan(dir.path(), "");
    // About 5 s at 60 MiB/s: with a 1 s interval, at least 3 lines even on a loaded machine.
    let args = ["run", "--bandwidth", "60MiB/s", "--progress-interval", "1"];
    let ran = ferry(&args, &plan, Duration::from_secs(120));
    assert_eq!(ran.code, Some(0), "{}", ran.summary());
    let beats: Vec<&str> = ran.stderr.lines().filter(|l| l.contains(" progress: ")).collect();
    assert!(beats.len() >= 3, "expected a heartbeat a second:\n{}", ran.summary());
    let moving: Vec<&&str> = beats
        .iter()
        .filter(|l| l.contains("job `j`: 0/1 objects") && l.contains("/s, ETA ") && !l.contains("ETA unknown"))
        .collect();
    assert!(
        moving.len() >= 2,
        "lines while the one object streams must show bytes, rate and ETA:\n{}",
        ran.summary()
    );
    for l in &beats {
        // An RFC 3339 timestamp first: `2026-11-30T03:00:10Z progress: ...`.
        let at = l.split(' ').next().unwrap();
        assert!(at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T', "{l}");
    }
    // The same copy again from scratch, silenced.
    std::fs::remove_dir_all(dir.path().join("dst")).unwrap();
    std::fs::remove_dir_all(dir.path().join(".ferry")).unwrap();
    let quiet2 = ferry(&[&args[..], &["-qq"]].concat(), &plan, Duration::from_secs(120));
    assert_eq!(quiet2.code, Some(0), "{}", quiet2.summary());
    assert!(!quiet2.stderr.contains(" progress: "), "{}", quiet2.summary());
}
