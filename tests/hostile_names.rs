//! Issue 12, "nothing lost in silence": hostile object names on every pair of stores.
//!
//! One generator of names (tests/common/names.rs: `#`, `%`, globs, quotes, `\`, spaces, NFC and
//! NFD forms of one word, a 255-byte name, a 40-deep path, newline, ESC, bytes that are not
//! UTF-8) is copied by four jobs whose own prefixes are hostile (`C#/`, `photos [2020]/`,
//! `100%/`, `~old/`), each job into the next prefix; two more jobs between plain prefixes
//! split the printable UTF-8 names from the rest (control characters, bytes not UTF-8). The oracle reads both ends directly
//! (std::fs, the AWS SDK, signed REST for Azurite, fake-gcs-server's JSON API), never through
//! ferry. Every source object must arrive byte-identical or be named in `failed` with exit 1;
//! `source == copied + unchanged + failed` per job; nothing may appear at the destination under
//! a name the source does not have (a silent rename). A second run must keep the contract too.
//!
//! Where a server cannot hold a name at all (Azurite turns `\` into `/` and breaks its own
//! listing on ESC), the source side is what the server really holds after seeding, read back;
//! a destination that cannot hold a name must see that object in `failed`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::names::{hostile, Allow, PREFIXES};
use common::oracle::{assert_contract, ferry, show, toml_str, Kind, Seen, Side};

struct Case {
    _tmp: tempfile::TempDir,
    plan: std::path::PathBuf,
    src: Side,
    dst: Side,
    jobs: Vec<Job>,
}

/// One `[[objects]]` entry and the names seeded under its source prefix.
struct Job {
    name: String,
    from: &'static str,
    to: &'static str,
    names: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Jobs 0..4 copy `PREFIXES[i]` to `PREFIXES[i + 1]` with every name; `hostile-plain` copies
/// the printable UTF-8 names between two plain prefixes and `hostile-odd` the names with
/// control characters or bytes that are not UTF-8 (beside one plain file), so each kind of
/// trouble shows on its own even where another hides a whole listing.
fn jobs(allow: Allow) -> Vec<Job> {
    let all = hostile(allow);
    let odd = |n: &[u8]| std::str::from_utf8(n).map_or(true, |s| s.chars().any(char::is_control));
    let plain: Vec<_> = all.iter().filter(|(n, _)| !odd(n)).cloned().collect();
    let mut odd: Vec<_> = all.iter().filter(|(n, _)| odd(n)).cloned().collect();
    odd.push((b"ok.txt".to_vec(), b"a plain name beside the odd ones\n".to_vec()));
    let mut out: Vec<Job> = (0..PREFIXES.len())
        .map(|i| Job {
            name: format!("hostile-{i}"),
            from: PREFIXES[i],
            to: PREFIXES[(i + 1) % PREFIXES.len()],
            names: all.clone(),
        })
        .collect();
    out.push(Job {
        name: "hostile-plain".into(),
        from: "plain/",
        to: "plain-copy/",
        names: plain,
    });
    out.push(Job {
        name: "hostile-odd".into(),
        from: "odd/",
        to: "odd-copy/",
        names: odd,
    });
    out
}

fn case(test: &str, src: Kind, dst: Kind) -> Option<Case> {
    let tmp = tempfile::tempdir().unwrap();
    let allow = Allow {
        non_utf8: src == Kind::Local,
        esc: src != Kind::Azurite,
    };
    let src = Side::new(src, tmp.path().join("src"), "ferry-a", test);
    let dst = Side::new(dst, tmp.path().join("dst"), "ferry-b", test);
    if (src.needs_server() || dst.needs_server()) && !common::servers_available(test) {
        return None;
    }
    std::fs::create_dir_all(&src.root).unwrap();
    let jobs = jobs(allow);
    let mut text = String::from("[settings]\npart-size = \"5MiB\"\nconcurrency = 8\n\n");
    text += &src.provider("src");
    text += &dst.provider("dst");
    for j in &jobs {
        text += &format!(
            "[[objects]]\nname = \"{}\"\nfrom = {}\nto = {}\n\n",
            j.name,
            toml_str(&format!("src:{}{}", src.base, j.from)),
            toml_str(&format!("dst:{}{}", dst.base, j.to))
        );
    }
    let plan = tmp.path().join("hostile.toml");
    std::fs::write(&plan, &text).unwrap();
    Some(Case {
        _tmp: tmp,
        plan,
        src,
        dst,
        jobs,
    })
}

/// Seeds the source directly and returns, per job, what the source really holds.
fn seed(c: &Case) -> Vec<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut refused = Vec::new();
    for j in &c.jobs {
        for (n, body) in &j.names {
            let key = [j.from.as_bytes(), n].concat();
            if let Err(e) = c.src.seed(&key, body) {
                refused.push(format!("{}: {e:.120}", show(&key)));
            }
        }
    }
    let held: Vec<_> = c.jobs.iter().map(|j| c.src.read_all(j.from)).collect();
    // What the source server changed or refused is reported, then taken as the truth.
    for (j, h) in c.jobs.iter().zip(&held) {
        let intended: BTreeMap<&Vec<u8>, &Vec<u8>> = j.names.iter().map(|(k, v)| (k, v)).collect();
        for k in intended.keys().filter(|k| !h.contains_key(**k)) {
            eprintln!(
                "note: {:?} source does not hold `{}{}` as written",
                c.src.kind,
                j.from,
                show(k)
            );
        }
        for k in h.keys().filter(|k| !intended.contains_key(k)) {
            eprintln!("note: {:?} source holds `{}{}` instead", c.src.kind, j.from, show(k));
        }
    }
    for r in &refused {
        eprintln!("note: {:?} source refused {r}", c.src.kind);
    }
    for (j, h) in c.jobs.iter().zip(&held) {
        assert!(
            h.len() + 4 >= j.names.len(),
            "the source holds too few objects under `{}` to test anything: {} of {}",
            j.from,
            h.len(),
            j.names.len()
        );
    }
    held
}

fn check_run(c: &Case, what: &str, src: &[BTreeMap<Vec<u8>, Vec<u8>>]) {
    let ran = ferry(&["run", "--json"], &c.plan, Duration::from_secs(600));
    let dst: Vec<_> = c.jobs.iter().map(|j| c.dst.read_all(j.to)).collect();
    let from: Vec<String> = c.jobs.iter().map(|j| format!("{}{}", c.src.base, j.from)).collect();
    let to: Vec<String> = c.jobs.iter().map(|j| format!("{}{}", c.dst.base, j.to)).collect();
    let seen: Vec<Seen> = (0..c.jobs.len())
        .map(|i| Seen {
            job: &c.jobs[i].name,
            from: &from[i],
            to: &to[i],
            src: &src[i],
            dst: &dst[i],
            special: &[],
        })
        .collect();
    assert_contract(what, &ran, &seen);
}

fn hostile_case(test: &str, src: Kind, dst: Kind) {
    let Some(c) = case(test, src, dst) else { return };
    let held = seed(&c);
    check_run(&c, &format!("{test}: first run"), &held);
    check_run(&c, &format!("{test}: second run"), &held);
    // The source is never written.
    for (j, h) in c.jobs.iter().zip(&held) {
        assert!(
            &c.src.read_all(j.from) == h,
            "{test}: the source under `{}` changed",
            j.from
        );
    }
}

#[test]
fn hostile_names_local_to_local() {
    hostile_case("hostile_names_local_to_local", Kind::Local, Kind::Local);
}

#[test]
fn hostile_names_local_to_seaweed() {
    hostile_case("hostile_names_local_to_seaweed", Kind::Local, Kind::Seaweed);
}

#[test]
fn hostile_names_local_to_moto() {
    hostile_case("hostile_names_local_to_moto", Kind::Local, Kind::Moto);
}

#[test]
fn hostile_names_seaweed_to_local() {
    hostile_case("hostile_names_seaweed_to_local", Kind::Seaweed, Kind::Local);
}

#[test]
fn hostile_names_moto_to_local() {
    hostile_case("hostile_names_moto_to_local", Kind::Moto, Kind::Local);
}

#[test]
fn hostile_names_local_to_gcs() {
    hostile_case("hostile_names_local_to_gcs", Kind::Local, Kind::Gcs);
}

#[test]
fn hostile_names_local_to_azurite() {
    hostile_case("hostile_names_local_to_azurite", Kind::Local, Kind::Azurite);
}

#[test]
fn hostile_names_azurite_to_local() {
    hostile_case("hostile_names_azurite_to_local", Kind::Azurite, Kind::Local);
}

#[test]
fn hostile_names_gcs_to_local() {
    hostile_case("hostile_names_gcs_to_local", Kind::Gcs, Kind::Local);
}
