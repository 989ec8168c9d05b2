//! The shape of `src/` (issue 15), checked from the source text so that CI keeps it:
//!
//! - the import graph between top-level modules (`crate::plan`, `crate::dump::…` in `use` lines
//!   and inline paths alike; `#[cfg(test)]` blocks left out) has no cycle — the layers are
//!   printed, leaves first;
//! - no file is over 700 lines and no function over 80, except those in the "Size exceptions"
//!   table of docs/architecture.md, each with its reason and a cap it may not grow past (an entry
//!   that no longer needs its exception fails too, so the table shrinks as files are split);
//! - `src/cli/` names no engine module: the command line calls `run` (and reads `plan`,
//!   `catalog`, reports and the leaves), never the engine below it.
//!
//! No dependency: a small lexer blanks comments, strings and char literals before anything is
//! matched, so a doc comment that mentions `crate::x` or a `"{"` in a string changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 700;
const MAX_FN_LINES: usize = 80;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `src/`, as (path relative to the crate root, text).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root()).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The text with comments, string and char literals replaced by spaces (newlines kept, so line
/// numbers hold).
fn blank(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let clear = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |n| i + n);
                clear(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                clear(&mut out, i, j);
                i = j;
            }
            b'r' if matches!(b.get(i + 1), Some(b'#') | Some(b'"'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                let start = i + 2 + hashes;
                let end = b[start..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |n| start + n + close.len());
                clear(&mut out, i, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                clear(&mut out, i, (j + 1).min(b.len()));
                i = j + 1;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{1F600}', '{') or a lifetime ('a).
                let end = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..].iter().position(|&c| c == b'\'').map(|n| i + 2 + n + 1)
                } else if b.get(i + 2) == Some(&b'\'') {
                    Some(i + 3)
                } else {
                    std::str::from_utf8(&b[i + 1..])
                        .ok()
                        .and_then(|s| s.chars().next())
                        .filter(|c| !c.is_ascii())
                        .map(|c| i + 1 + c.len_utf8() + 1)
                        .filter(|&e| b.get(e - 1) == Some(&b'\''))
                };
                match end {
                    Some(e) => {
                        clear(&mut out, i, e);
                        i = e;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).unwrap()
}

/// The index of the `}` that closes the `{` at `open`.
fn matching(text: &[u8], open: usize) -> usize {
    let mut depth = 0;
    for (j, &c) in text.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// The blanked text without `#[cfg(test)]` items (the test modules' imports are not the
/// architecture).
fn without_tests(blanked: &str) -> String {
    let mut out = blanked.as_bytes().to_vec();
    let mut from = 0;
    while let Some(n) = blanked[from..].find("#[cfg(test)]") {
        let at = from + n;
        let Some(open) = blanked[at..].find(['{', ';']).map(|k| at + k) else {
            break;
        };
        let end = if out[open] == b'{' { matching(&out, open) } else { open };
        let last = end.min(out.len() - 1);
        for c in &mut out[at..=last] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end.min(blanked.len());
    }
    String::from_utf8(out).unwrap()
}

/// The doc comments (`///`, `//!`) of a file outside its `#[cfg(test)]` part, as text.
fn doc_comments(src: &str) -> String {
    let code = src.split("#[cfg(test)]").next().unwrap_or(src);
    code.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("///") || l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let n = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (n > 0).then(|| &s[..n])
}

/// The top-level modules a file's code names through `crate::`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(n) = rest.find("crate::") {
        let after = &rest[n + "crate::".len()..];
        let trimmed = after.trim_start();
        if let Some(group) = trimmed.strip_prefix('{') {
            // `crate::{a, b::{c, d}, e}`: the first identifier of each top-level item.
            let close = matching(trimmed.as_bytes(), 0);
            let inner = &group[..close.saturating_sub(1)];
            let (mut depth, mut start) = (0, 0);
            for (j, c) in inner.char_indices().chain(std::iter::once((inner.len(), ','))) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if let Some(id) = ident_at(&inner[start..j]) {
                            out.insert(id.to_string());
                        }
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else if let Some(id) = ident_at(after) {
            out.insert(id.to_string());
        }
        rest = after;
    }
    out
}

/// `src/dump/guard.rs` -> `dump`; `src/lib.rs` and `src/main.rs` -> None (the crate roots).
fn module_of(path: &str) -> Option<String> {
    let rel = path.strip_prefix("src/").unwrap();
    let first = rel.split('/').next().unwrap().trim_end_matches(".rs");
    (!matches!(first, "lib" | "main")).then(|| first.to_string())
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in sources() {
        let Some(m) = module_of(&path) else { continue };
        let mut deps = imports(&without_tests(&blank(&text)));
        // An intra-doc link (`[x](crate::m)`) is a reference rustdoc resolves: it counts.
        deps.extend(imports(&doc_comments(&text)));
        let entry = g.entry(m.clone()).or_default();
        entry.extend(deps.into_iter().filter(|d| *d != m));
    }
    g
}

/// Leaves first: each layer depends only on the layers before it. Err: the modules left over,
/// all on or above a cycle, with one cycle spelled out.
fn layers(g: &BTreeMap<String, BTreeSet<String>>) -> Result<Vec<Vec<String>>, String> {
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    loop {
        let layer: Vec<String> = g
            .iter()
            .filter(|(m, deps)| {
                !placed.contains(m.as_str()) && deps.iter().all(|d| placed.contains(d.as_str()) || !g.contains_key(d))
            })
            .map(|(m, _)| m.clone())
            .collect();
        if layer.is_empty() {
            break;
        }
        for m in &layer {
            placed.insert(g.get_key_value(m).unwrap().0);
        }
        out.push(layer);
    }
    let left: Vec<&String> = g.keys().filter(|m| !placed.contains(m.as_str())).collect();
    if left.is_empty() {
        return Ok(out);
    }
    // Walk unplaced dependencies from any unplaced module until one repeats.
    let mut path: Vec<&str> = vec![left[0]];
    loop {
        let cur = *path.last().unwrap();
        let next = g[cur]
            .iter()
            .find(|d| g.contains_key(*d) && !placed.contains(d.as_str()))
            .unwrap();
        if let Some(i) = path.iter().position(|p| p == next) {
            let mut cycle: Vec<&str> = path[i..].to_vec();
            cycle.push(next);
            return Err(format!(
                "import cycle: {}\n(modules on or above a cycle: {left:?})",
                cycle.join(" -> ")
            ));
        }
        path.push(next);
    }
}

#[test]
fn module_imports_have_no_cycle() {
    let g = graph();
    for (m, deps) in &g {
        eprintln!("{m} -> {deps:?}");
    }
    let layers = layers(&g).unwrap_or_else(|e| panic!("{e}"));
    for (i, l) in layers.iter().enumerate() {
        eprintln!("layer {i}: {}", l.join(", "));
    }
    // docs/architecture.md shows the same layers.
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let documented: Vec<Vec<String>> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| layer | modules |"))
        .skip(2)
        .take_while(|l| l.starts_with("| "))
        .map(|l| {
            let modules = l.split('|').nth(2).unwrap_or("");
            modules
                .split(',')
                .map(|m| m.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        documented, layers,
        "docs/architecture.md's layer table is not the layers of src/ (printed above)"
    );
}

/// The engine: what the command line must reach only through `run` (docs/architecture.md,
/// "Where things live").
const ENGINE: &[&str] = &[
    "checksum", "dump", "estimate", "journal", "manifest", "pairing", "store", "sync", "throttle", "verify",
];

#[test]
fn cli_imports_no_engine_module() {
    let mut problems = Vec::new();
    for (path, text) in sources()
        .into_iter()
        .filter(|(p, _)| p.starts_with("src/cli/") || p == "src/cli.rs")
    {
        // Test code included: the command line's tests drive it as a user would.
        for m in imports(&blank(&text)) {
            if ENGINE.contains(&m.as_str()) {
                problems.push(format!(
                    "{path} names `crate::{m}`: the command line reaches the engine only through `run`"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `fn` items: (name, first line, line count), from the blanked text.
fn functions(blanked: &str) -> Vec<(String, usize, usize)> {
    let b = blanked.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(n) = blanked[from..].find("fn ") {
        let at = from + n;
        from = at + 3;
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
            continue;
        }
        let Some(name) = ident_at(&blanked[at + 3..]) else {
            continue;
        };
        // The body opens at the first `{` before any `;` (a declaration without a body).
        let Some(k) = blanked[at..].find(['{', ';']) else { break };
        if b[at + k] == b';' {
            continue;
        }
        let close = matching(b, at + k);
        let first = blanked[..at].matches('\n').count() + 1;
        let last = blanked[..close].matches('\n').count() + 1;
        out.push((name.to_string(), first, last - first + 1));
    }
    out
}

/// The "Size exceptions" table of docs/architecture.md: `| what | cap | reason |`, where `what`
/// is `src/x.rs` (a file) or `src/x.rs::name` (a function).
fn exceptions() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let section = doc
        .split("## Size exceptions")
        .nth(1)
        .map(|s| s.split("\n## ").next().unwrap())
        .unwrap_or("");
    let mut out = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `src/")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let what = cells[1].trim_matches('`').to_string();
        let cap: usize = cells[2].parse().unwrap_or_else(|_| {
            panic!(
                "docs/architecture.md size exception `{what}`: cap `{}` is not a number",
                cells[2]
            )
        });
        assert!(!cells[3].is_empty(), "size exception `{what}` gives no reason");
        out.insert(what, cap);
    }
    out
}

#[test]
fn files_and_functions_stay_small() {
    let allowed = exceptions();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    let mut check = |what: String, lines: usize, limit: usize| match allowed.get(&what) {
        Some(&cap) => {
            used.insert(what.clone());
            if lines > cap {
                problems.push(format!("{what}: {lines} lines, over its exception's cap of {cap}"));
            }
            if lines <= limit {
                problems.push(format!(
                    "{what}: {lines} lines, within the limit of {limit}: remove its size exception"
                ));
            }
        }
        None if lines > limit => problems.push(format!("{what}: {lines} lines, over the limit of {limit}")),
        None => {}
    };
    for (path, text) in sources() {
        check(path.clone(), text.lines().count(), MAX_FILE_LINES);
        for (name, _, lines) in functions(&without_tests(&blank(&text))) {
            check(format!("{path}::{name}"), lines, MAX_FN_LINES);
        }
    }
    for what in allowed.keys().filter(|w| !used.contains(*w)) {
        problems.push(format!("size exception `{what}` names nothing in src/"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_lexer_blanks_what_it_must() {
    let src =
        "let a = \"crate::x {\"; // crate::y {\nlet b = '{'; let c: &'a str = r#\"}\"#; /* crate::z */ crate::w::v;\n";
    let b = blank(src);
    assert_eq!(b.lines().count(), 2);
    assert_eq!(imports(&b), BTreeSet::from(["w".to_string()]));
    assert!(!b.contains('{') && !b.contains('}'), "{b}");
    assert_eq!(
        imports("use crate::{checksum::{self, StreamHasher}, journal::Journal};\nfn f() { crate::plan::X; }"),
        BTreeSet::from(["checksum".to_string(), "journal".to_string(), "plan".to_string()])
    );
    assert_eq!(
        imports(&doc_comments(
            "//! see [`K`](crate::dump) and `crate::`\nfn f() {} // crate::x\n"
        )),
        BTreeSet::from(["dump".to_string()])
    );
    let f = functions(&blank(
        "fn a() {\n    if x { y }\n}\ntrait T { fn b(&self); }\nfn c() {}\n",
    ));
    assert_eq!(f, vec![("a".to_string(), 1, 3), ("c".to_string(), 5, 1)]);
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
        ("c".to_string(), BTreeSet::new()),
    ]
    .into();
    assert!(layers(&g).unwrap_err().contains("a -> b -> a"));
}

/// Names of the crates in one `[table]` of Cargo.toml (`name = ...` lines up to the next table).
fn cargo_table(manifest: &str, table: &str) -> BTreeSet<String> {
    let header = format!("[{table}]");
    let mut inside = false;
    let mut names = BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == header;
        } else if inside && !line.starts_with('#') {
            if let Some((name, _)) = line.split_once('=') {
                names.insert(name.trim().to_string());
            }
        }
    }
    names
}

/// The README's two commands share one build: `cargo run` builds without dev-dependencies,
/// `tests/run` with them, so a crate listed in both tables (to add a test-only feature) is
/// compiled twice, with everything above it: tokio with `test-util` cost 5 minutes on 2 cores.
#[test]
fn dev_dependencies_add_no_feature_to_a_normal_dependency() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let normal = cargo_table(&manifest, "dependencies");
    let dev = cargo_table(&manifest, "dev-dependencies");
    assert!(normal.contains("tokio"), "the Cargo.toml reader finds no dependency");
    let both: Vec<_> = normal.intersection(&dev).collect();
    assert!(
        both.is_empty(),
        "{both:?} in both [dependencies] and [dev-dependencies]: `cargo run` and `tests/run` \
         would build them (and all above them) twice; put the feature in [dependencies]"
    );
}
