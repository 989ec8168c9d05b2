//! Issue 13: damage that `verify --deep` finds is repaired by the next `run`. A destination
//! file corrupted in place keeping its size, inode and mtime looks unchanged to every listing
//! (and to the journal's done row); the verify finding is journaled, so `run` copies exactly
//! that object again, and a second deep verify matches.

mod common;

use std::time::Duration;

use common::oracle::{ferry, local_plan};

const T: Duration = Duration::from_secs(120);

#[test]
fn verify_findings_are_repaired_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        let p = dir.path().join(format!("src/f{i}.bin"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, common::data(100_000 + i, i as u64)).unwrap();
    }
    let plan = local_plan(dir.path(), "");
    assert_eq!(ferry(&["run", "--json"], &plan, T).code, Some(0));

    // Flip one byte in place; put the mtime back (same size, same inode, same mtime).
    let victim = dir.path().join("dst/f3.bin");
    let mtime = std::fs::metadata(&victim).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[5000] ^= 0xff;
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&victim).unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(&bytes).unwrap();
        f.set_modified(mtime).unwrap();
    }
    // Unnoticed by a plain run.
    let quiet = ferry(&["run", "--json"], &plan, T);
    assert_eq!(quiet.job("j").unwrap()["copied"]["objects"], 0, "{}", quiet.summary());

    let v = ferry(&["verify", "--deep", "--json"], &plan, T);
    assert_eq!(v.code, Some(1), "{}", v.summary());
    assert!(v.stderr.contains("finding(s) journaled"), "{}", v.summary());
    let ran = ferry(&["run", "--json"], &plan, T);
    assert_eq!(ran.code, Some(0), "{}", ran.summary());
    let j = ran.job("j").unwrap();
    assert_eq!(
        (j["copied"]["objects"].as_u64(), j["unchanged"]["objects"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        std::fs::read(dir.path().join("src/f3.bin")).unwrap()
    );
    assert_eq!(ferry(&["verify", "--deep"], &plan, T).code, Some(0));
}
