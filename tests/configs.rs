//! Every shipped example plan parses: none can rot unnoticed.

use ferry::plan::Plan;

#[test]
fn every_shipped_config_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let plan = Plan::load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !plan.objects.is_empty() || !plan.databases.is_empty(),
                "{}: no jobs",
                p.display()
            );
            n += 1;
        }
    }
    assert!(
        n >= 4,
        "expected the demo, evacuation, backup and audit plans, found {n}"
    );
}
