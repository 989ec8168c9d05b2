//! Retention rules and point-in-time restores of database dumps (issue 18), end to end through
//! the `ferry` binary with SQLite (no server needed) and a `local` store.
//!
//! - 120 nightly dumps (with records in the real format) are laid into the store, then a real
//!   `ferry run` dumps once more with `keep-daily = 7, keep-weekly = 4, keep-monthly = 6`. The
//!   folder is then read with `std::fs` and compared with an oracle that groups the dumps by
//!   period and takes the newest of each of the newest N periods (the implementation walks
//!   them instead).
//! - `ferry restore --at` picks the newest dump at or before a time among real dumps re-dated
//!   to three nights; the restored SQLite file is read with rusqlite.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use sha2::{Digest, Sha256};

mod common;
use common::sqlite::{make_sqlite, sqlite_rows};

const RECORD_SUFFIX: &str = ".ferry.json";

fn ferry(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    eprintln!(
        "ferry {args:?} -> {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write_plan(dir: &Path, job_extra: &str) -> PathBuf {
    let plan = dir.join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            r#"[providers.dst]
type = "local"
root = "store"

[[databases]]
name = "app"
engine = "sqlite"
path = "app.db"
to = "dst:db/{{name}}/{{timestamp}}.db.zst"
{job_extra}
"#
        ),
    )
    .unwrap();
    plan
}

/// The key timestamp of `t`, as ferry writes it: `20261129T030000.000Z`.
fn stamp(t: NaiveDateTime) -> String {
    t.format("%Y%m%dT%H%M%S%.3fZ").to_string()
}

/// The time in a dump's file name (`20261129T030000.000Z.db.zst`), parsed here, not by ferry.
fn time_in(name: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(&name[..20], "%Y%m%dT%H%M%S%.3fZ").unwrap()
}

/// Today, UTC, from the system clock (no chrono clock feature needed).
fn today() -> NaiveDate {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 86_400;
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(days)
}

/// Writes a dump object and its record, in the record's documented format
/// (docs/databases.md, "The record"), as a real dump of job `app` would have them.
fn lay_dump(root: &Path, key: &str, body: &[u8]) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, body).unwrap();
    let record = serde_json::json!({
        "format": 1,
        "job": "app",
        "engine": "sqlite",
        "key": key,
        "compression": "zstd",
        "sha256": format!("{:x}", Sha256::digest(body)),
        "bytes-stored": body.len(),
        "bytes-raw": body.len() * 3,
        "created": "2026-01-01T00:00:00.000Z",
        "tool": "sqlite 3 online backup API",
        "source": "app.db",
        "tables": {}
    });
    let bytes = serde_json::to_vec_pretty(&record).unwrap();
    // The fake records are ones ferry itself reads: the real format, not a look-alike.
    serde_json::from_slice::<ferry::dump::DumpRecord>(&bytes).expect("a record in ferry's format");
    std::fs::write(format!("{}{RECORD_SUFFIX}", path.display()), bytes).unwrap();
}

/// The files in one folder, by name (not recursive).
fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The oracle: for each rule, the dumps grouped by period, and of the newest `n` periods the
/// newest dump of each; the union of the rules. (ferry walks the dumps one by one instead.)
fn expected_kept(times: &[NaiveDateTime], daily: usize, weekly: usize, monthly: usize) -> BTreeSet<NaiveDateTime> {
    type Period = fn(&NaiveDateTime) -> (i32, u32);
    let rules: [(usize, Period); 3] = [
        (daily, |t| (t.year(), t.ordinal())),
        (weekly, |t| (t.iso_week().year(), t.iso_week().week())),
        (monthly, |t| (t.year(), t.month())),
    ];
    let mut kept = BTreeSet::new();
    for (n, period) in rules {
        let mut newest: BTreeMap<(i32, u32), NaiveDateTime> = BTreeMap::new();
        for t in times {
            let e = newest.entry(period(t)).or_insert(*t);
            *e = (*e).max(*t);
        }
        kept.extend(newest.values().rev().take(n).copied());
    }
    kept
}

/// Issue 18, the must-show: 120 nightly dumps (03:00 UTC, ending yesterday), then a real run
/// with `keep-daily = 7, keep-weekly = 4, keep-monthly = 6`: exactly the oracle's dumps remain,
/// with their records, plus the new dump; nothing else in the store is touched.
#[test]
fn one_hundred_twenty_nights_then_a_run_keeps_exactly_the_expected_dumps() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    make_sqlite(&dir.path().join("app.db"), &[(1, "one"), (2, "two")]);
    let plan = write_plan(dir.path(), "keep-daily = 7\nkeep-weekly = 4\nkeep-monthly = 6");

    let first = today() - chrono::Days::new(120);
    let nights: Vec<NaiveDateTime> = (0..120)
        .map(|i| (first + chrono::Days::new(i)).and_hms_opt(3, 0, 0).unwrap())
        .collect();
    for (i, t) in nights.iter().enumerate() {
        lay_dump(
            &root,
            &format!("db/app/{}.db.zst", stamp(*t)),
            format!("night {i}").as_bytes(),
        );
    }
    // Neighbours retention must not touch: another file, another job's dump beside this job's.
    let bystanders = ["db/app/README.txt", "db/app-old/20200101T030000.000Z.db.zst"];
    for b in bystanders {
        std::fs::create_dir_all(root.join(b).parent().unwrap()).unwrap();
        std::fs::write(root.join(b), b"not a dump of this job").unwrap();
    }
    assert_eq!(names_in(&root.join("db/app")).len(), 241);

    let out = ferry(dir.path(), &["run", "--json", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dump = &doc["databases"][0];
    let new_key = dump["key"].as_str().unwrap().to_string();
    let new_name = new_key.strip_prefix("db/app/").unwrap().to_string();
    let new_time = time_in(&new_name);
    assert!(new_time > nights[119], "{new_key}");

    let mut all = nights.clone();
    all.push(new_time);
    let kept = expected_kept(&all, 7, 4, 6);
    assert!(kept.contains(&new_time));
    let mut expected: BTreeSet<String> = BTreeSet::from(["README.txt".to_string()]);
    for t in &kept {
        let name = format!("{}.db.zst", stamp(*t));
        expected.insert(format!("{name}{RECORD_SUFFIX}"));
        expected.insert(name);
    }
    let remaining = names_in(&root.join("db/app"));
    assert_eq!(
        remaining, expected,
        "exactly the oracle's dumps and their records remain"
    );
    assert_eq!(
        names_in(&root.join("db/app-old")),
        BTreeSet::from(["20200101T030000.000Z.db.zst".to_string()])
    );
    let deleted = dump["deleted_old"].as_array().unwrap();
    assert_eq!(deleted.len(), 121 - kept.len(), "the report lists every deleted dump");
    for k in deleted {
        assert!(!remaining.contains(k.as_str().unwrap().strip_prefix("db/app/").unwrap()));
    }
    // The kept nights themselves, for the record (the dates move with the day the test runs).
    let dates: Vec<String> = kept.iter().rev().map(|t| t.format("%Y-%m-%d %a").to_string()).collect();
    eprintln!("kept {} of 121 (the new dump first): {}", kept.len(), dates.join(", "));
    // Whatever the day, the rules cannot keep more than 7 + 4 + 6, and the 7 newest days stay.
    assert!(kept.len() <= 17);
    for t in &all[all.len() - 7..] {
        assert!(kept.contains(t), "{t} is one of the newest 7 days");
    }
}

/// A real dump of `rows`, moved to the key of `night` (its record's `key` with it; the bytes and
/// their SHA-256 are the real dump's).
fn dump_as(dir: &Path, plan: &Path, rows: &[(i64, &str)], night: NaiveDateTime) -> String {
    make_sqlite(&dir.join("app.db"), rows);
    let out = ferry(dir, &["run", "--json", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let real = doc["databases"][0]["key"].as_str().unwrap().to_string();
    let key = format!("db/app/{}.db.zst", stamp(night));
    let root = dir.join("store");
    std::fs::rename(root.join(&real), root.join(&key)).unwrap();
    let rec_path = root.join(format!("{real}{RECORD_SUFFIX}"));
    let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec_path).unwrap()).unwrap();
    record["key"] = key.clone().into();
    std::fs::write(
        root.join(format!("{key}{RECORD_SUFFIX}")),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    std::fs::remove_file(rec_path).unwrap();
    key
}

/// Issue 18: `restore --at TIME` restores the newest dump at or before TIME (a date meaning the
/// end of that day), says which dumps exist when none is that old, and conflicts with `--dump`.
#[test]
fn restore_at_picks_the_newest_dump_at_or_before_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plan = write_plan(d, "restore-to-path = \"restored.db\"");
    let p = plan.to_str().unwrap();
    let night = |day: u32| {
        NaiveDate::from_ymd_opt(2026, 11, day)
            .unwrap()
            .and_hms_opt(3, 0, 0)
            .unwrap()
    };
    let k27 = dump_as(d, &plan, &[(1, "27th")], night(27));
    let k28 = dump_as(d, &plan, &[(1, "28th"), (2, "x")], night(28));
    let k29 = dump_as(d, &plan, &[(1, "29th"), (2, "y"), (3, "z")], night(29));
    let restored = d.join("restored.db");
    let rows = |v: &[(i64, &str)]| v.iter().map(|(i, s)| (*i, s.to_string())).collect::<Vec<_>>();

    let cases = [
        ("2026-11-28T12:00Z", &k28, rows(&[(1, "28th"), (2, "x")])),
        ("2026-11-27", &k27, rows(&[(1, "27th")])),
        ("2026-11-28T02:59:59.999Z", &k27, rows(&[(1, "27th")])),
        ("2026-11-29T03:00:00Z", &k29, rows(&[(1, "29th"), (2, "y"), (3, "z")])),
        ("2026-11-28T03:00Z", &k28, rows(&[(1, "28th"), (2, "x")])),
        ("20261127T030000Z", &k27, rows(&[(1, "27th")])),
    ];
    for (at, key, want) in cases {
        let out = ferry(
            d,
            &["restore", p, "--database", "app", "--at", at, "--replace", "--json"],
        );
        assert_eq!(out.status.code(), Some(0), "--at {at}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["restore"]["key"], key.as_str(), "--at {at}");
        assert_eq!(
            doc["restore"]["verified_against"],
            serde_json::json!(["dump-record"]),
            "--at {at}"
        );
        assert_eq!(
            sqlite_rows(&restored),
            want,
            "--at {at}: the restored file holds that night's rows"
        );
    }

    // Before the oldest dump: refused (exit 2), naming the time and the oldest dump; the target
    // keeps what it held.
    let before = std::fs::read(&restored).unwrap();
    let out = ferry(
        d,
        &[
            "restore",
            p,
            "--database",
            "app",
            "--at",
            "2026-11-26T23:00Z",
            "--replace",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no complete dump at or before 2026-11-26T23:00:00.000Z")
            && err.contains(&format!("the oldest is `{k27}`, from 2026-11-27T03:00:00.000Z")),
        "{err}"
    );
    assert_eq!(std::fs::read(&restored).unwrap(), before);

    // Without --at: the newest, verified against the live source too (it holds the 29th's rows).
    let out = ferry(d, &["restore", p, "--database", "app", "--replace", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["restore"]["key"], k29.as_str());

    // Not a time, and --at with --dump: usage errors (exit 2) before anything is read.
    for bad in [
        vec!["--at", "2026-11-31"],
        vec!["--at", "2026-11-29T03:00"],
        vec!["--at", "2026-11-29T03:00Z", "--dump", k28.as_str()],
    ] {
        let mut args = vec!["restore", p, "--database", "app"];
        args.extend(&bad);
        let out = ferry(d, &args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is not a time") || err.contains("cannot be used with"),
            "{bad:?}: {err}"
        );
    }
}
