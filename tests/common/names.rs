//! The one generator of hostile object names (issue 12): characters URL parsers, glob
//! matchers, shells and object_store's path type treat specially, Unicode forms, length and
//! depth limits, and bytes that are not UTF-8.

/// Job prefixes built from the same characters: each job of a hostile-name test copies one of
/// these folders to the next.
pub const PREFIXES: [&str; 4] = ["C#/", "photos [2020]/", "100%/", "~old/"];

/// What a store can hold, so one generator serves every backend.
#[derive(Debug, Clone, Copy)]
pub struct Allow {
    /// File names that are not UTF-8 (local sources only: object keys are UTF-8).
    pub non_utf8: bool,
    /// Control characters (newline, ESC). Azurite answers 500 to any listing that would
    /// include an ESC, so Azure sources are seeded without them.
    pub esc: bool,
}

/// Hostile keys (relative to a job's prefix, as bytes) with distinct contents.
pub fn hostile(allow: Allow) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names: Vec<Vec<u8>> = [
        "issue#42",
        "track#1",
        "invoice#2024",
        "music/track#1.mp3",
        "invoices#2024/summary.pdf",
        "pct%41.txt",
        "100%",
        "dir%2F/inner.txt",
        "%2e%2e/up.txt",
        "br[ack]et.txt",
        "[folder]/x.txt",
        "{curly}.txt",
        "caret^.txt",
        "pipe|.txt",
        "~tilde.txt",
        "star*.txt",
        "q?mark.txt",
        "dq\"uote.txt",
        "<lt.txt",
        "gt>.txt",
        "back\\slash.txt",
        "with space.txt",
        " leading space.txt",
        "trailing space ",
        "folder with space/file.txt",
        "+plus+.txt",
        "a&b=c;d.txt",
        "caf\u{e9}.txt",
        "cafe\u{301}.txt",
        "new\nline.txt",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    if allow.esc {
        names.push(b"esc\x1b[31mred.txt".to_vec());
    }
    // 255 bytes: NAME_MAX on Linux file systems.
    let mut long = "L".repeat(251).into_bytes();
    long.extend_from_slice(b".txt");
    names.push(long);
    let deep: Vec<String> = (0..40).map(|i| format!("d{i:02}")).collect();
    names.push(format!("{}/leaf.txt", deep.join("/")).into_bytes());
    if allow.non_utf8 {
        names.push(b"bad\xff.txt".to_vec());
        names.push(b"dir\xfe\xfd/inner.txt".to_vec());
        names.push(b"latin1-caf\xe9.txt".to_vec());
    }
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = names
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let body = format!("object {i}: {}\n", super::oracle::lossy(&n)).repeat(i % 7 + 1);
            (n, body.into_bytes())
        })
        .collect();
    // One object above the 5 MiB part size, so the multipart path meets a hostile name too.
    out.push((b"big #1 [x] 100%.bin".to_vec(), super::data(6 << 20, 12)));
    out
}
