//! Generated documentation stays in step with its source.
//! `FERRY_BLESS=1 cargo test --test docs` rewrites the files.

#[test]
fn providers_md_matches_the_catalog() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/providers.md");
    let want = ferry::catalog::markdown();
    if std::env::var("FERRY_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/providers.md is stale: run `FERRY_BLESS=1 cargo test --test docs` and commit it"
    );
}
