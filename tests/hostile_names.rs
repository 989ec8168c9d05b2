//! Issue 12, "nothing lost in silence": hostile object names on every pair of stores.
//!
//! One generator of names (tests/common/names.rs: `#`, `%`, globs, quotes, `\`, spaces, NFC and
//! NFD forms of one word, a 255-byte name, a 40-deep path, newline, ESC, bytes that are not
//! UTF-8) is copied by four jobs whose own prefixes are hostile (`C#/`, `photos [2020]/`,
//! `100%/`, `~old/`), each job into the next prefix. The oracle reads both ends directly
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
}

/// Job `i` copies `PREFIXES[i]` to `PREFIXES[i + 1]`.
fn job(i: usize) -> (String, &'static str, &'static str) {
    (format!("hostile-{i}"), PREFIXES[i], PREFIXES[(i + 1) % PREFIXES.len()])
}

fn case(test: &str, src: Kind, dst: Kind) -> Option<Case> {
    let tmp = tempfile::tempdir().unwrap();
    let src = Side::new(src, tmp.path().join("src"), "ferry-a", test);
    let dst = Side::new(dst, tmp.path().join("dst"), "ferry-b", test);
    if (src.needs_server() || dst.needs_server()) && !common::servers_available(test) {
        return None;
    }
    std::fs::create_dir_all(&src.root).unwrap();
    let mut text = String::from("[settings]\npart-size = \"5MiB\"\nconcurrency = 8\n\n");
    text += &src.provider("src");
    text += &dst.provider("dst");
    for i in 0..PREFIXES.len() {
        let (name, from, to) = job(i);
        text += &format!(
            "[[objects]]\nname = \"{name}\"\nfrom = {}\nto = {}\n\n",
            toml_str(&format!("src:{}{from}", src.base)),
            toml_str(&format!("dst:{}{to}", dst.base))
        );
    }
    let plan = tmp.path().join("hostile.toml");
    std::fs::write(&plan, &text).unwrap();
    Some(Case {
        _tmp: tmp,
        plan,
        src,
        dst,
    })
}

/// Seeds the source directly and returns, per job, what the source really holds.
fn seed(c: &Case, allow: Allow) -> Vec<BTreeMap<Vec<u8>, Vec<u8>>> {
    let names = hostile(allow);
    let mut refused = Vec::new();
    for p in PREFIXES {
        for (n, body) in &names {
            let key = [p.as_bytes(), n].concat();
            if let Err(e) = c.src.seed(&key, body) {
                refused.push(format!("{}: {e:.120}", show(&key)));
            }
        }
    }
    let held: Vec<_> = PREFIXES.iter().map(|p| c.src.read_all(p)).collect();
    // What the source server changed or refused is reported, then taken as the truth.
    let intended: BTreeMap<Vec<u8>, Vec<u8>> = names.into_iter().collect();
    for (p, h) in PREFIXES.iter().zip(&held) {
        for k in intended.keys().filter(|k| !h.contains_key(*k)) {
            eprintln!(
                "note: {:?} source does not hold `{p}{}` as written",
                c.src.kind,
                show(k)
            );
        }
        for k in h.keys().filter(|k| !intended.contains_key(*k)) {
            eprintln!("note: {:?} source holds `{p}{}` instead", c.src.kind, show(k));
        }
    }
    for r in &refused {
        eprintln!("note: {:?} source refused {r}", c.src.kind);
    }
    assert!(
        held.iter().all(|h| h.len() >= 20),
        "the source holds too few objects to test anything: {:?}",
        held.iter().map(|h| h.len()).collect::<Vec<_>>()
    );
    held
}

fn check_run(c: &Case, what: &str, src: &[BTreeMap<Vec<u8>, Vec<u8>>]) {
    let ran = ferry(&["run", "--json"], &c.plan, Duration::from_secs(600));
    let names: Vec<_> = (0..PREFIXES.len()).map(job).collect();
    let dst: Vec<_> = names.iter().map(|(_, _, to)| c.dst.read_all(to)).collect();
    let from: Vec<String> = names.iter().map(|(_, f, _)| format!("{}{f}", c.src.base)).collect();
    let to: Vec<String> = names.iter().map(|(_, _, t)| format!("{}{t}", c.dst.base)).collect();
    let seen: Vec<Seen> = (0..names.len())
        .map(|i| Seen {
            job: &names[i].0,
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
    let allow = Allow {
        non_utf8: src == Kind::Local,
        esc: src != Kind::Azurite,
    };
    let held = seed(&c, allow);
    check_run(&c, &format!("{test}: first run"), &held);
    check_run(&c, &format!("{test}: second run"), &held);
    // The source is never written.
    for (p, h) in PREFIXES.iter().zip(&held) {
        assert!(&c.src.read_all(p) == h, "{test}: the source under `{p}` changed");
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
