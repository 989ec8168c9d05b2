//! Issue 13: one run per state directory. A second `ferry run` on the same plan while the first
//! is copying exits 3 ("busy") naming the first one's pid, and copies nothing; once the first
//! is gone (even killed with SIGKILL), the next run takes the lock over.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::oracle::{ferry, ferry_bin, local_plan};

#[test]
fn a_second_run_on_one_state_directory_exits_busy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/big.bin"), common::data(16 << 20, 7)).unwrap();
    let plan = local_plan(dir.path(), "");
    // Paced to about 8 s, so the second run meets it mid-copy.
    let mut first = Command::new(ferry_bin())
        .args(["run", "--quiet", "--bandwidth", "2MiB/s"])
        .arg(&plan)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = dir.path().join(".ferry/p/lock");
    let start = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|s| s.contains("pid")) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = ferry(&["run", "--json"], &plan, Duration::from_secs(60));
    assert_eq!(second.code, Some(3), "{}", second.summary());
    assert!(
        second.stderr.contains(&format!("ferry pid {}", first.id())) && second.stderr.contains("retry"),
        "{}",
        second.summary()
    );
    assert_eq!(second.json.as_ref().unwrap()["exit_code"], 3);
    // SIGKILL the holder: the kernel drops its lock, and the next run proceeds.
    first.kill().unwrap();
    first.wait().unwrap();
    let third = ferry(&["run", "--json"], &plan, Duration::from_secs(120));
    assert_eq!(third.code, Some(0), "{}", third.summary());
    assert_eq!(
        std::fs::read(dir.path().join("dst/big.bin")).unwrap(),
        std::fs::read(dir.path().join("src/big.bin")).unwrap()
    );
}
