//! Issue 7: `--shard K/N` splits a job so N workers, running at once, each take a disjoint share
//! with their own journal, and together copy the whole job.

use std::collections::BTreeSet;
use std::process::Command;

#[test]
fn four_shards_cover_the_job_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mut all = BTreeSet::new();
    for i in 0..2000 {
        let rel = format!("d{:02}/f{i:04}.txt", i % 23);
        let p = src.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("object {i}")).unwrap();
        all.insert(rel);
    }
    let plan = dir.path().join("p.toml");
    std::fs::write(
        &plan,
        "[providers.src]\ntype = \"local\"\nroot = \"src\"\n\n[providers.dst]\ntype = \"local\"\nroot = \"dst\"\n\n\
         [[objects]]\nname = \"j\"\nfrom = \"src:\"\nto = \"dst:\"\n",
    )
    .unwrap();
    // Four workers at once, as an Indexed Job would run them.
    let children: Vec<_> = (0..4)
        .map(|k| {
            Command::new(env!("CARGO_BIN_EXE_ferry"))
                .args(["run", "--quiet", "--json", "--shard", &format!("{k}/4")])
                .arg(&plan)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for (k, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "shard {k}");
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let copied = j["totals"]["copied"]["objects"].as_u64().unwrap();
        // Each worker's manifest, in its own state directory, lists exactly its share.
        let label = format!("shard-{k}-of-4");
        let manifest = dir.path().join(format!(".ferry/p/{label}/manifests/j.{label}.jsonl"));
        let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let keys: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["source_key"].as_str().map(str::to_string))
            .collect();
        assert_eq!(keys.len() as u64, copied, "shard {k}");
        eprintln!("shard {k}/4: {copied} objects");
        assert!(copied > 300 && copied < 700, "shard {k} is unbalanced: {copied}");
        for key in keys {
            assert!(seen.insert(key.clone()), "`{key}` was copied by two shards");
        }
        total += copied;
    }
    assert_eq!(total, 2000);
    assert_eq!(seen, all, "the shards' union is not the whole job");
    for rel in &all {
        assert_eq!(
            std::fs::read(src.join(rel)).unwrap(),
            std::fs::read(dir.path().join("dst").join(rel)).unwrap()
        );
    }
}
