//! The conformance checks, written once and run for every backend and pair (see main.rs).
//! Each check seeds real objects at the source, runs ferry's engine, and asserts on what the
//! destination really holds: keys byte for byte, content, SHA-256, and what verify says.

use std::collections::BTreeMap;

use ferry::checksum::{metadata_key, StreamHasher};
use ferry::plan::VerifyLevel;
use ferry::store::key_to_path;
use ferry::sync::JobReport;
use futures::StreamExt;
use object_store::{Attribute, Attributes, GetOptions, ObjectStoreExt};

use super::harness::{data, Backend, Pair, PART};

fn sha256(b: &[u8]) -> String {
    let mut h = StreamHasher::new(false);
    h.update(b);
    h.finish().sha256
}

fn describe(r: &JobReport) -> String {
    format!("error: {:?}\nfailed: {:#?}", r.error, r.failed)
}

/// Seeds objects concurrently (2,000 sequential PUTs would dominate the suite's time).
async fn seed(p: &Pair, objects: &[(String, Vec<u8>)]) {
    futures::stream::iter(objects)
        .for_each_concurrent(16, |(k, v)| p.put_src(k, v, Attributes::new()))
        .await;
}

/// Asserts that the destination holds exactly `want` (relative keys), byte for byte.
async fn assert_destination(p: &Pair, want: &BTreeMap<String, Vec<u8>>) {
    let got = p.dst_contents().await;
    let got_keys: Vec<_> = got.keys().collect();
    let want_keys: Vec<_> = want.keys().collect();
    assert_eq!(got_keys, want_keys, "destination keys differ");
    for (k, v) in want {
        let g = &got[k];
        assert_eq!(g.len(), v.len(), "size of `{k}`");
        assert_eq!(sha256(g), sha256(v), "content of `{k}`");
    }
}

/// Seeds `objects`, runs the job, and asserts: everything copied, the destination equals the
/// source byte for byte, the journal's checksum is the content's SHA-256, deep verify passes.
async fn roundtrip(p: &Pair, objects: &[(String, Vec<u8>)]) -> JobReport {
    seed(p, objects).await;
    let r = p.run().await;
    assert!(r.ok(), "{}", describe(&r));
    let bytes: u64 = objects.iter().map(|(_, v)| v.len() as u64).sum();
    assert_eq!((r.copied.objects, r.copied.bytes), (objects.len() as u64, bytes));
    let want: BTreeMap<_, _> = objects.iter().cloned().collect();
    assert_destination(p, &want).await;
    for (k, v) in objects {
        let rec = p.journal.get("t", &p.src_key(k)).unwrap().expect("journal row");
        // A server-side copy reads no byte, so ferry has no checksum of its own to record.
        let want = (!p.server_side()).then(|| sha256(v));
        assert_eq!(rec.sha256.as_deref(), want.as_deref(), "journal checksum of `{k}`");
    }
    let v = p.verify(VerifyLevel::Deep).await;
    assert!(v.ok(), "deep verify: {:#?}", v.mismatches);
    assert_eq!(v.matched.objects, objects.len() as u64);
    r
}

fn one(key: &str, body: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    vec![(key.to_string(), body)]
}

pub async fn empty_object(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    roundtrip(&p, &one("empty", vec![])).await;
}

pub async fn one_byte(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    roundtrip(&p, &one("one", vec![0x42])).await;
}

pub async fn exactly_one_part(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    roundtrip(&p, &one("part.bin", data(PART, 1))).await;
}

pub async fn part_size_plus_minus_one(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    roundtrip(
        &p,
        &[
            ("minus.bin".to_string(), data(PART - 1, 2)),
            ("plus.bin".to_string(), data(PART + 1, 3)),
        ],
    )
    .await;
}

pub async fn multipart_100mib(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    roundtrip(&p, &one("large/100mib.bin", data(100 << 20, 4))).await;
}

pub async fn many_small_objects(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    let objects: Vec<_> = (0..2000)
        .map(|i| (format!("n/{:02}/{i:04}.txt", i % 37), data(i % 300, i as u64)))
        .collect();
    roundtrip(&p, &objects).await;
}

/// Empty, one byte, and the sizes around a part boundary, in one job.
pub async fn mixed_sizes(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    let objects = vec![
        ("empty".to_string(), vec![]),
        ("one".to_string(), vec![1]),
        ("minus".to_string(), data(PART - 1, 5)),
        ("exact".to_string(), data(PART, 6)),
        ("plus".to_string(), data(PART + 1, 7)),
    ];
    roundtrip(&p, &objects).await;
}

/// Keys that break naive tools. Every one must arrive byte for byte.
pub fn hostile_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "with space.txt",
        "  leading and trailing spaces  ",
        "unicode/ünïcødé ✓ 日本語.txt",
        "caf\u{e9}.txt",   // NFC é
        "cafe\u{301}.txt", // NFD e + combining acute: a different key
        "plus+sign.txt",
        "100%.txt",
        "%41%2F.txt",
        "hash#tag",
        "question?mark",
        "amp&eq=semi;colon:at@bang!dollar$quote'paren(s)star*",
        "brackets[1]{2}^|~`.txt",
        "Case.txt",
        "case.txt",
        "CASE.txt",
        "d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/d13/d14/d15/d16/d17/d18/d19/d20/leaf.txt",
        "dots.../...x/.hidden",
        "emoji 🚀.bin",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A 1,000-byte key in segments a filesystem accepts (255 bytes a name).
    let seg = "k".repeat(199);
    let mut long = format!("{seg}/{seg}/{seg}/{seg}/");
    long.push_str(&"z".repeat(1000 - long.len()));
    assert_eq!(long.len(), 1000);
    keys.push(long);
    keys
}

pub async fn hostile_keys_roundtrip(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    // Keep full keys within S3's and Azure's 1,024-byte limit: the 1,000-byte key is relative
    // to short test prefixes, so shorten it by the longer prefix.
    let room = 1024 - p.job.from.prefix.len().max(p.job.to.prefix.len());
    let objects: Vec<(String, Vec<u8>)> = hostile_keys()
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let k = if k.len() > room { k[..room].to_string() } else { k };
            (k, data(10 + i, 100 + i as u64))
        })
        .collect();
    if s.caps().raw_markers {
        // A directory marker object_store cannot name: reported as not copied, never renamed.
        p.put_src_raw("photos/", b"").await;
        seed(&p, &objects).await;
        let r = p.run().await;
        assert_eq!(r.failed.len(), 1, "{}", describe(&r));
        assert_eq!(r.failed[0].key, Some(p.src_key("photos/")));
        assert!(
            r.failed[0].reason.contains("directory marker"),
            "{}",
            r.failed[0].reason
        );
        assert_eq!(r.copied.objects, objects.len() as u64);
        assert_destination(&p, &objects.iter().cloned().collect()).await;
    } else {
        roundtrip(&p, &objects).await;
    }
}

pub async fn prefix_mapping(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    assert!(p.job.from.prefix.ends_with("/x/") && p.job.to.prefix.ends_with("/y/z/"));
    roundtrip(
        &p,
        &[("a.txt".into(), b"a".to_vec()), ("sub/b.txt".into(), b"bb".to_vec())],
    )
    .await;
    // Nothing landed outside the destination prefix.
    let root = p.job.to.prefix.trim_end_matches("y/z/").to_string();
    let mut all: Vec<_> = p.dst.list(&root).map(|r| r.unwrap().key).collect().await;
    all.sort();
    assert_eq!(all, vec![p.dst_key("a.txt"), p.dst_key("sub/b.txt")]);
}

pub async fn include_exclude(t: &str, s: Backend, d: Backend) {
    let extra = "include = [\"**/*.txt\", \"keep/**\"]\nexclude = [\"**/tmp/**\"]\n";
    let Some(p) = Pair::with_job(t, s, d, extra).await else {
        return;
    };
    let all = [
        ("a.txt", true),
        ("b.bin", false),
        ("keep/c.bin", true),
        ("d/tmp/e.txt", false),
        ("d/f.txt", true),
    ];
    let objects: Vec<(String, Vec<u8>)> = all
        .iter()
        .map(|(k, _)| (k.to_string(), k.as_bytes().to_vec()))
        .collect();
    seed(&p, &objects).await;
    let r = p.run().await;
    assert!(r.ok(), "{}", describe(&r));
    let want: BTreeMap<_, _> = objects
        .iter()
        .zip(all.iter())
        .filter(|(_, (_, keep))| *keep)
        .map(|(o, _)| o.clone())
        .collect();
    assert_eq!(r.copied.objects, want.len() as u64);
    assert_destination(&p, &want).await;
}

pub async fn rerun_moves_nothing(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    let objects = vec![("a".to_string(), data(1000, 8)), ("b/c".to_string(), data(PART + 3, 9))];
    roundtrip(&p, &objects).await;
    let planned = p.plan().await;
    assert_eq!(
        (planned.new.objects, planned.changed.objects, planned.unchanged.objects),
        (0, 0, 2)
    );
    let again = p.run().await;
    assert!(again.ok(), "{}", describe(&again));
    assert_eq!(again.copied.objects, 0);
    assert_eq!(again.unchanged.objects, 2);
}

pub async fn changed_object_resent(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    let objects = vec![("keep".to_string(), data(500, 10)), ("edit".to_string(), data(500, 11))];
    roundtrip(&p, &objects).await;
    // Same size, different bytes: only a checksum-aware diff notices.
    p.put_src("edit", &data(500, 12), Attributes::new()).await;
    let r = p.run().await;
    assert!(r.ok(), "{}", describe(&r));
    assert_eq!((r.changed.objects, r.copied.objects, r.unchanged.objects), (1, 1, 1));
    let want: BTreeMap<_, _> = [("keep".to_string(), data(500, 10)), ("edit".to_string(), data(500, 12))].into();
    assert_destination(&p, &want).await;
}

pub async fn corruption_found_by_verify(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    let objects = vec![
        ("good".to_string(), data(4000, 13)),
        ("bad".to_string(), data(4000, 14)),
    ];
    roundtrip(&p, &objects).await;
    let mut corrupt = data(4000, 14);
    corrupt[1234] ^= 0x01;
    // The damage keeps ferry's checksum metadata: only the bytes (or the server's MD5 of them)
    // can show it, with the copying run's journal or without it (a fresh pod).
    p.put_dst_keeping_metadata("bad", &corrupt).await;
    for level in [VerifyLevel::Checksum, VerifyLevel::Deep] {
        for (journal, v) in [
            ("journal", p.verify(level).await),
            ("no journal", p.verify_without_journal(level).await),
        ] {
            let keys: Vec<_> = v
                .mismatches
                .iter()
                .map(|m| (m.key.clone(), m.destination_key.clone()))
                .collect();
            assert_eq!(
                keys,
                vec![(Some(p.src_key("bad")), p.dst_key("bad"))],
                "{level:?}, {journal}: {:#?}",
                v.mismatches
            );
            assert_eq!(v.matched.objects, 1, "{level:?}, {journal}: the good object matches");
        }
    }
}

pub async fn metadata_preserved(t: &str, s: Backend, d: Backend) {
    let Some(p) = Pair::new(t, s, d).await else {
        return;
    };
    let body = data(2048, 15);
    let mut attrs = Attributes::new();
    if s.caps().metadata {
        attrs.insert(Attribute::ContentType, "text/x-ferry-test".into());
        attrs.insert(Attribute::Metadata("owner".into()), "ops-team".into());
    }
    p.put_src("doc.txt", &body, attrs).await;
    let r = p.run().await;
    assert!(r.ok(), "{}", describe(&r));
    let path = key_to_path(&p.dst_key("doc.txt")).unwrap();
    let got = p
        .dst
        .inner
        .get_opts(
            &path,
            GetOptions {
                head: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    if s.caps().metadata && d.caps().metadata {
        let a = &got.attributes;
        assert_eq!(
            a.get(&Attribute::ContentType).map(|v| v.to_string()).as_deref(),
            Some("text/x-ferry-test")
        );
        assert_eq!(
            a.get(&Attribute::Metadata("owner".into()))
                .map(|v| v.to_string())
                .as_deref(),
            Some("ops-team")
        );
    }
    if d.caps().metadata {
        let stored = got
            .attributes
            .get(&Attribute::Metadata(metadata_key(p.dst.spec.store_type()).into()))
            .map(|v| v.to_string());
        if !p.server_side() {
            assert_eq!(stored, Some(sha256(&body)), "ferry's checksum is kept with the object");
        }
    }
    let _ = p.dst.inner.get(&path).await.unwrap();
}
