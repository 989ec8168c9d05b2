//! Issue 13: a journal that cannot be written mid-run fails the run (exit != 0) and says why.
//! The state directory sits on a small tmpfs that fills while the run journals thousands of
//! objects; before, the background flush dropped its errors and the run could exit 0 with done
//! rows lost.

mod common;

use std::process::Command;
use std::time::Duration;

use common::oracle::{ferry, local_plan};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_journal_that_fills_its_disk_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96k", "tmpfs"])
        .arg(&state)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        // Root is needed to mount; CI and the development machines run as root.
        assert!(std::env::var("CI").is_err(), "cannot mount a tmpfs in CI");
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _m = Mount(state.clone());
    for i in 0..3000 {
        let p = dir
            .path()
            .join(format!("src/d{}/file-with-a-longish-name-{i:05}.txt", i % 30));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{i}")).unwrap();
    }
    let plan = local_plan(dir.path(), "");
    let state_arg = state.display().to_string();
    let ran = ferry(
        &["run", "--json", "--state-dir", &state_arg],
        &plan,
        Duration::from_secs(180),
    );
    assert_ne!(
        ran.code,
        Some(0),
        "a run whose journal could not be written exited 0\n{}",
        ran.summary()
    );
    let text = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        text.contains("full") || text.contains("No space left"),
        "the reason is named\n{}",
        ran.summary()
    );
}
