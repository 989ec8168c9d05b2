//! Issue 13, "destructive paths are safe": the guards on a mirror's deletes
//! (`delete-extraneous = true`). Each scenario seeds a backup through ferry, then breaks the
//! source the way a night can break it, and reads the destination directly (std::fs, never
//! ferry's store) to show what survived.
//!
//! - a typo in `from` (the source lists empty): nothing deleted, exit 1, the guard named;
//! - a wrong but listable bucket (moto, a prefix that holds other objects): over `max-delete`,
//!   nothing deleted;
//! - a source folder that cannot be read, or a subtree behind a link whose target vanished:
//!   its backups are kept;
//! - within `max-delete`: exactly the right keys deleted, the journal says so and the manifest
//!   no longer lists them;
//! - `plan` lists every key it would delete;
//! - two jobs writing one destination prefix, one of them mirroring: refused at plan time.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::oracle::{ferry, files, toml_str, Ran};

const T: Duration = Duration::from_secs(120);

fn plan(dir: &Path, from: &str, extra: &str) -> std::path::PathBuf {
    let p = dir.join("mirror.toml");
    std::fs::write(
        &p,
        format!(
            "[providers.src]\ntype = \"local\"\nroot = {}\n\n[providers.dst]\ntype = \"local\"\nroot = {}\n\n\
             [[objects]]\nname = \"backup\"\nfrom = {}\nto = \"dst:data/\"\ndelete-extraneous = true\n{extra}",
            toml_str(&dir.join("src").display().to_string()),
            toml_str(&dir.join("dst").display().to_string()),
            toml_str(&format!("src:{from}")),
        ),
    )
    .unwrap();
    p
}

/// 50 files under `src/data/`, five of them in `photos/`, mirrored once.
fn seeded() -> (tempfile::TempDir, BTreeMap<Vec<u8>, Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..50 {
        let key = if i < 5 {
            format!("photos/p{i}.jpg")
        } else {
            format!("f{i:02}.txt")
        };
        let p = dir.path().join("src/data").join(&key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("backup {i}\n").repeat(i + 1)).unwrap();
    }
    let ran = ferry(&["run", "--json"], &plan(dir.path(), "data/", ""), T);
    assert_eq!(ran.code, Some(0), "seeding the backup\n{}", ran.summary());
    let backup = files(&dir.path().join("dst/data"), &[]);
    assert_eq!(backup.len(), 50);
    (dir, backup)
}

fn job(ran: &Ran) -> &serde_json::Value {
    ran.job("backup")
        .unwrap_or_else(|| panic!("no job in the JSON\n{}", ran.summary()))
}

fn deleted(ran: &Ran) -> u64 {
    job(ran)["deleted"]["objects"].as_u64().unwrap()
}

#[test]
fn a_typo_in_from_deletes_nothing() {
    let (dir, backup) = seeded();
    let p = plan(dir.path(), "date/", "");
    let dry = ferry(&["plan", "--json"], &p, T);
    assert_eq!(dry.code, Some(1), "plan must warn\n{}", dry.summary());
    assert!(job(&dry)["guard"].as_str().unwrap().contains("listed no object"));
    let ran = ferry(&["run", "--json"], &p, T);
    assert_eq!(ran.code, Some(1), "{}", ran.summary());
    let guard = job(&ran)["guard"].as_str().unwrap_or_default().to_string();
    assert!(
        guard.contains("listed no object") && guard.contains("allow-empty-source"),
        "{guard}"
    );
    assert!(ran.stderr.contains("deletes refused"), "{}", ran.summary());
    assert_eq!(deleted(&ran), 0);
    assert_eq!(
        files(&dir.path().join("dst/data"), &[]),
        backup,
        "the backup must be intact"
    );
    // Told so, the empty source is mirrored.
    let p = plan(
        dir.path(),
        "date/",
        "allow-empty-source = true\nmax-delete = \"100%\"\n",
    );
    let ran = ferry(&["run", "--json"], &p, T);
    assert_eq!((ran.code, deleted(&ran)), (Some(0), 50), "{}", ran.summary());
    assert!(files(&dir.path().join("dst/data"), &[]).is_empty());
}

#[test]
fn max_delete_stops_a_mass_delete_and_allows_a_small_one() {
    let (dir, backup) = seeded();
    let src = dir.path().join("src/data");
    // 30 of 50 gone: over the default 50%.
    for i in 20..50 {
        std::fs::remove_file(src.join(format!("f{i:02}.txt"))).unwrap();
    }
    let p = plan(dir.path(), "data/", "");
    let ran = ferry(&["run", "--json"], &p, T);
    assert_eq!(ran.code, Some(1), "{}", ran.summary());
    let guard = job(&ran)["guard"].as_str().unwrap_or_default().to_string();
    assert!(
        guard.contains("would delete 30 of the destination's 50") && guard.contains("max-delete"),
        "{guard}"
    );
    assert_eq!(files(&dir.path().join("dst/data"), &[]), backup);

    // A count allows exactly that many.
    let p = plan(dir.path(), "data/", "max-delete = 29\n");
    assert_eq!(ferry(&["run", "--json"], &p, T).code, Some(1));
    assert_eq!(files(&dir.path().join("dst/data"), &[]).len(), 50);
    let p = plan(dir.path(), "data/", "max-delete = 30\n");
    let dry = ferry(&["plan", "--json"], &p, T);
    let would: Vec<&str> = job(&dry)["would_delete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let want: Vec<String> = (20..50).map(|i| format!("data/f{i:02}.txt")).collect();
    assert_eq!(would, want, "plan lists every key it would delete");
    assert!(dry.stderr.contains("would delete: 30 objects"), "{}", dry.summary());
    let ran = ferry(&["run", "--json"], &p, T);
    assert_eq!((ran.code, deleted(&ran)), (Some(0), 30), "{}", ran.summary());
    let left = files(&dir.path().join("dst/data"), &[]);
    assert_eq!(left.len(), 20);
    for (k, v) in &left {
        assert_eq!(Some(v), backup.get(k));
        assert_eq!(
            std::fs::read(src.join(String::from_utf8_lossy(k).as_ref())).unwrap(),
            *v
        );
    }
    // The manifest lists what exists, and `status` counts the deletes.
    let manifest = std::fs::read_to_string(dir.path().join("dst/.ferry/manifests/backup.jsonl")).unwrap();
    assert!(
        manifest.contains("data/f19.txt") && !manifest.contains("data/f20.txt"),
        "{manifest}"
    );
    let status = ferry(&["status", "--json"], &p, T);
    assert!(status.stdout.contains("\"deleted\":30"), "{}", status.stdout);
}

#[test]
fn an_unreadable_source_folder_keeps_its_backups() {
    let (dir, backup) = seeded();
    let photos = dir.path().join("src/data/photos");
    // A mount that went away behind a link: the folder is replaced by a link to nothing.
    std::fs::rename(&photos, dir.path().join("photos-elsewhere")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("mnt/gone"), &photos).unwrap();
    let ran = ferry(
        &["run", "--json"],
        &plan(dir.path(), "data/", "max-delete = \"100%\"\n"),
        T,
    );
    assert_eq!(ran.code, Some(1), "the link is reported\n{}", ran.summary());
    assert!(
        ran.failed("backup").iter().any(|k| k == "data/photos"),
        "{}",
        ran.summary()
    );
    assert_eq!(deleted(&ran), 0, "{}", ran.summary());
    assert_eq!(files(&dir.path().join("dst/data"), &[]), backup);
}

#[test]
fn overlapping_mirrored_destinations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src/a")).unwrap();
    let p = plan(
        dir.path(),
        "data/",
        "\n[[objects]]\nname = \"other\"\nfrom = \"src:a/\"\nto = \"dst:data/a/\"\n",
    );
    let ran = ferry(&["check"], &p, T);
    assert_eq!(ran.code, Some(2), "{}", ran.summary());
    assert!(
        ran.stderr.contains("overlaps job `backup`'s destination") && ran.stderr.contains("mirror.toml"),
        "{}",
        ran.summary()
    );
}

#[test]
fn a_bad_max_delete_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), "data/", "max-delete = \"lots\"\n");
    let ran = ferry(&["check"], &p, T);
    assert_eq!(ran.code, Some(2), "{}", ran.summary());
    assert!(
        ran.stderr.contains("max-delete") && ran.stderr.contains("mirror.toml:14:"),
        "{}",
        ran.summary()
    );
}

#[test]
fn a_wrong_but_listable_bucket_deletes_nothing() {
    let test = "a_wrong_but_listable_bucket_deletes_nothing";
    if !common::servers_available(test) {
        return;
    }
    use common::wire;
    let s3 = wire::s3_sdk("MOTO");
    let base = format!("{test}-{}-{}/", std::process::id(), common::oracle::nanos());
    for i in 0..10 {
        wire::s3_put(&s3, "ferry-a", &format!("{base}k{i}"), format!("right {i}").as_bytes()).unwrap();
    }
    // The wrong bucket holds other objects under the same prefix: it lists fine, and not empty.
    for i in 0..3 {
        wire::s3_put(&s3, "ferry-b", &format!("{base}other{i}"), b"other").unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let write = |bucket: &str| {
        let p = dir.path().join("s3.toml");
        std::fs::write(
            &p,
            format!(
                "[providers.src]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
                 allow-http = true\npath-style = true\naccess-key-id-env = \"FERRY_TEST_MOTO_KEY\"\n\
                 secret-access-key-env = \"FERRY_TEST_MOTO_SECRET\"\n\n[providers.dst]\ntype = \"local\"\nroot = {}\n\n\
                 [[objects]]\nname = \"backup\"\nfrom = \"src:{base}\"\nto = \"dst:data/\"\ndelete-extraneous = true\n",
                common::env("FERRY_TEST_MOTO_ENDPOINT"),
                toml_str(&dir.path().join("dst").display().to_string())
            ),
        )
        .unwrap();
        p
    };
    let ran = ferry(&["run", "--json"], &write("ferry-a"), T);
    assert_eq!(ran.code, Some(0), "{}", ran.summary());
    let backup = files(&dir.path().join("dst/data"), &[]);
    assert_eq!(backup.len(), 10);
    let ran = ferry(&["run", "--json"], &write("ferry-b"), T);
    assert_eq!(ran.code, Some(1), "{}", ran.summary());
    assert!(
        job(&ran)["guard"].as_str().unwrap_or_default().contains("max-delete"),
        "{}",
        ran.summary()
    );
    let after = files(&dir.path().join("dst/data"), &[]);
    for (k, v) in &backup {
        assert_eq!(
            after.get(k),
            Some(v),
            "backup `{}` must survive",
            String::from_utf8_lossy(k)
        );
    }
    for k in (0..10)
        .map(|i| format!("{base}k{i}"))
        .chain((0..3).map(|i| format!("{base}other{i}")))
    {
        wire::s3_delete(&s3, if k.contains("other") { "ferry-b" } else { "ferry-a" }, &k);
    }
}

/// A state directory inside a folder a job lists is refused before anything runs (exit 2): a
/// plan saved at the top of the destination it mirrors into would have its own live journal
/// listed as extraneous and deleted, and a copy from such a folder would copy it. Outside the
/// listed prefix it is fine. Read from the filesystem.
#[test]
fn a_state_directory_inside_a_listed_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/a.txt"), "new").unwrap();
    let dst = dir.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(dst.join("old.txt"), "kept").unwrap();
    let write = |to: &str| {
        let p = dst.join("p.toml");
        std::fs::write(
            &p,
            format!(
                "[providers.src]\ntype = \"local\"\nroot = {}\n\n[providers.dst]\ntype = \"local\"\nroot = \".\"\n\n\
                 [[objects]]\nname = \"mirror\"\nfrom = \"src:\"\nto = \"dst:{to}\"\ndelete-extraneous = true\n",
                toml_str(&dir.path().join("src").display().to_string()),
            ),
        )
        .unwrap();
        p
    };
    // The state directory `.ferry/p/` beside the plan, at the top of the mirrored folder.
    let ran = ferry(&["run"], &write(""), T);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("is inside `dst:`, which job `mirror` lists")
            && ran.stderr.contains("deleted as extraneous by a mirror"),
        "{}",
        ran.stderr
    );
    assert_eq!(std::fs::read_to_string(dst.join("old.txt")).unwrap(), "kept");
    assert!(!dst.join("a.txt").exists());
    // Mirrored into `data/`: the state directory is not listed, and the run goes on.
    let ran = ferry(&["run"], &write("data/"), T);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(std::fs::read_to_string(dst.join("data/a.txt")).unwrap(), "new");
    assert!(dst.join(".ferry/p").is_dir() && dst.join("old.txt").exists());
}
