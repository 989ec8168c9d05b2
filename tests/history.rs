//! History instead of a mirror (issue 18, `keep-replaced`): what a run would overwrite or
//! delete at the destination is kept under a dated folder first, and retention by age removes
//! only dated folders past it. The destination is read through the AWS SDK and the
//! filesystem, never through ferry; dates come from `date -u`, not from ferry's clock.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::oracle::{ferry, nanos};
use common::wire::{block_on, s3_get, s3_put, s3_sdk};
use common::{env, servers_available};

const T: Duration = Duration::from_secs(120);

fn date(ago: &str) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", ago, "+%F"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn contents(c: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, Vec<u8>> {
    let listed = block_on(c.list_objects_v2().bucket(bucket).send()).unwrap();
    listed
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .filter(|k| !k.starts_with(".ferry/"))
        .map(|k| {
            let body = s3_get(c, bucket, &k).unwrap();
            (k, body)
        })
        .collect()
}

#[test]
fn a_backup_keeps_what_it_replaces_and_prunes_only_old_history() {
    if !servers_available("a_backup_keeps_what_it_replaces_and_prunes_only_old_history") {
        return;
    }
    let s3 = s3_sdk("SEAWEED");
    let tag = nanos() % 1_000_000_000;
    let (src, dst) = (format!("hist-src-{tag}"), format!("hist-dst-{tag}"));
    for b in [&src, &dst] {
        block_on(s3.create_bucket().bucket(b).send()).unwrap();
    }
    let first: Vec<(&str, Vec<u8>)> = vec![
        ("keep.txt", b"stays the same".to_vec()),
        ("change.txt", b"the good version".to_vec()),
        ("gone.txt", b"deleted at the source later".to_vec()),
        ("dir/nested.bin", common::data(50_000, 7)),
    ];
    for (k, v) in &first {
        s3_put(&s3, &src, k, v).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            r#"
[providers.src]
type = "s3"
endpoint = "{e}"
bucket = "{src}"
path-style = true
allow-http = true
access-key-id-env = "K"
secret-access-key-env = "S"

[providers.dst]
type = "s3"
endpoint = "{e}"
bucket = "{dst}"
path-style = true
allow-http = true
access-key-id-env = "K"
secret-access-key-env = "S"

[[objects]]
name = "backup"
from = "src:"
to = "dst:"
delete-extraneous = true
max-delete = "100%"
keep-replaced = "history/{{date}}/"
keep-replaced-days = 30
"#,
            e = env("FERRY_TEST_SEAWEED_ENDPOINT"),
        ),
    )
    .unwrap();
    std::env::set_var("K", env("FERRY_TEST_SEAWEED_KEY"));
    std::env::set_var("S", env("FERRY_TEST_SEAWEED_SECRET"));
    let r = ferry(&["run", "--json"], &plan, T);
    assert_eq!(r.code, Some(0), "{}", r.summary());

    // Older history already at the destination: one folder past 30 days, one within, and a
    // file without a date that retention must not touch.
    let (today, recent) = (date("now"), date("5 days ago"));
    let old = format!("history/{}/old.txt", date("400 days ago"));
    let kept_recent = format!("history/{recent}/recent.txt");
    for k in [&old, &kept_recent, &"history/README".to_string()] {
        s3_put(&s3, &dst, k, b"earlier history").unwrap();
    }
    // Between the runs: one object overwritten (a bad deploy), one deleted.
    s3_put(&s3, &src, "change.txt", b"ENCRYPTED BY RANSOMWARE").unwrap();
    block_on(s3.delete_object().bucket(&src).key("gone.txt").send()).unwrap();

    // `plan` says what would go to the history and what retention would delete; changes nothing.
    let before = contents(&s3, &dst);
    let r = ferry(&["plan", "--json"], &plan, T);
    assert_eq!(r.code, Some(0), "{}", r.summary());
    let job = r.job("backup").unwrap();
    assert_eq!(job["kept_in_history"]["objects"], 2, "{job}");
    assert_eq!(job["history_pruned"]["objects"], 1, "{job}");
    assert!(
        r.stderr.contains("would be kept before being replaced"),
        "{}",
        r.summary()
    );
    assert_eq!(contents(&s3, &dst), before, "plan wrote nothing");

    let r = ferry(&["run", "--json"], &plan, T);
    assert_eq!(r.code, Some(0), "{}", r.summary());
    let got = contents(&s3, &dst);
    let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    want.insert("keep.txt".into(), b"stays the same".to_vec());
    want.insert("change.txt".into(), b"ENCRYPTED BY RANSOMWARE".to_vec());
    want.insert("dir/nested.bin".into(), common::data(50_000, 7));
    want.insert(format!("history/{today}/change.txt"), b"the good version".to_vec());
    want.insert(
        format!("history/{today}/gone.txt"),
        b"deleted at the source later".to_vec(),
    );
    want.insert(kept_recent.clone(), b"earlier history".to_vec());
    want.insert("history/README".into(), b"earlier history".to_vec());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the mirror is current, both old versions are in today's history, only the old folder went"
    );
    assert_eq!(got, want);

    // A third run: the history is not the job's, so the mirror neither compares nor deletes it.
    let r = ferry(&["run", "--json"], &plan, T);
    assert_eq!(r.code, Some(0), "{}", r.summary());
    let job = r.job("backup").unwrap();
    assert_eq!(job["extraneous"]["objects"], 0, "{job}");
    assert_eq!(job["deleted"]["objects"], 0, "{job}");
    assert_eq!(contents(&s3, &dst), want);
}

#[test]
fn a_source_key_under_the_history_is_named_and_a_history_without_date_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("history")).unwrap();
    std::fs::write(src.join("a.txt"), b"a").unwrap();
    std::fs::write(src.join("history/x.txt"), b"x").unwrap();
    let plan = dir.path().join("plan.toml");
    let text = |keep: &str| {
        format!(
            "[providers.s]\ntype = \"local\"\nroot = \"src\"\n\n[providers.d]\ntype = \"local\"\nroot = \"dst\"\n\n\
             [[objects]]\nname = \"j\"\nfrom = \"s:\"\nto = \"d:\"\nkeep-replaced = \"{keep}\"\n"
        )
    };
    std::fs::write(&plan, text("history/{date}/")).unwrap();
    let r = ferry(&["run", "--json"], &plan, T);
    assert_eq!(r.code, Some(1), "{}", r.summary());
    assert_eq!(r.failed("j"), vec!["history/x.txt".to_string()], "{}", r.summary());
    assert!(r.stderr.contains("keep-replaced history"), "{}", r.summary());
    assert_eq!(std::fs::read(dir.path().join("dst/a.txt")).unwrap(), b"a");
    assert!(!dir.path().join("dst/history").exists());

    std::fs::write(&plan, text("history/")).unwrap();
    let r = ferry(&["check"], &plan, T);
    assert_eq!(r.code, Some(2), "{}", r.summary());
    assert!(
        r.stderr.contains("plan.toml:") && r.stderr.contains("must hold `{date}` once"),
        "{}",
        r.summary()
    );
}
