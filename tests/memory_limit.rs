//! Issue 14: `memory-limit` holds whatever the part size. An object up to one part is held
//! whole before its PUT, so `part-size = "1GiB"` made a 300 MB file sit in memory under
//! `memory-limit = "16MiB"` (307 MB peak). The peak is measured for the ferry process alone,
//! from `wait4`'s rusage of that one child.

mod common;

use std::process::{Command, Stdio};

use common::oracle::{ferry_bin, local_plan};

/// Runs ferry and returns (exit code, peak RSS in KiB) of that process alone.
fn run_measured(args: &[&str], plan: &std::path::Path) -> (i32, i64) {
    let child = Command::new(ferry_bin())
        .args(args)
        .arg(plan)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet reaped; both pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    std::mem::forget(child);
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

#[test]
fn memory_limit_holds_when_the_part_size_exceeds_the_object() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    // Written 1 MB at a time: the child starts from this process's address space (vfork), and
    // its maxrss inherits this process's high-water mark; the test must never hold much.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(dir.path().join("src/big.bin")).unwrap();
        for i in 0..300 {
            f.write_all(&common::data(1_000_000, i)).unwrap();
        }
    }
    let plan = local_plan(
        dir.path(),
        "[settings]\nmemory-limit = \"16MiB\"\npart-size = \"1GiB\"\n",
    );
    let (code, peak_kib) = run_measured(&["run", "--quiet"], &plan);
    assert_eq!(code, 0);
    let same = Command::new("cmp")
        .arg(dir.path().join("src/big.bin"))
        .arg(dir.path().join("dst/big.bin"))
        .status()
        .unwrap();
    assert!(same.success(), "the copy differs");
    eprintln!("peak RSS of ferry: {} MiB", peak_kib / 1024);
    assert!(peak_kib < 64 * 1024, "peak RSS {} MiB, over 64 MiB", peak_kib / 1024);
}
