//! Issue 17: logs through `tracing`. `--log-file` gets ferry's own events and, with `-v`,
//! object_store's (its retry of a 503 the fault proxy injected, which nothing showed before
//! there was a subscriber); `--log-format json` writes one JSON object per line; without `-v`
//! the libraries' info events stay out; a log file that cannot be opened is named (exit 2).
//! The keys ferry read never appear. The log is read from the filesystem.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::oracle::{ferry_bin, nanos, toml_str};
use common::proxy::Proxy;
use common::{env, servers_available};

fn plan(dir: &Path, endpoint: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    for i in 0..6 {
        std::fs::write(dir.join(format!("src/f{i}.txt")), format!("file {i}")).unwrap();
    }
    let plan = dir.join("p.toml");
    std::fs::write(
        &plan,
        format!(
            "[providers.src]\ntype = \"local\"\nroot = {}\n\n[providers.dst]\ntype = \"s3\"\nbucket = \"ferry-b\"\n\
             endpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nallow-http = true\npath-style = true\n\
             access-key-id-env = \"FERRY_TEST_SEAWEED_KEY\"\nsecret-access-key-env = \"FERRY_TEST_SEAWEED_SECRET\"\n\n\
             [[objects]]\nname = \"logged\"\nfrom = \"src:\"\nto = \"dst:logs-{}/\"\n",
            toml_str(&dir.join("src").display().to_string()),
            nanos()
        ),
    )
    .unwrap();
    plan
}

/// `ferry run PLAN ARGS`; its exit code and the log file's text.
fn run(plan: &Path, log: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(ferry_bin())
        .arg("run")
        .arg(plan)
        .arg("--log-file")
        .arg(log)
        .args(args)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), std::fs::read_to_string(log).unwrap_or_default())
}

#[test]
fn the_log_file_holds_ferrys_and_the_libraries_events() {
    if !servers_available("the_log_file_holds_ferrys_and_the_libraries_events") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upstream = env("FERRY_TEST_SEAWEED_ENDPOINT");
    let faults = ["--rate", "1", "--kinds", "503", "--methods", "PUT", "--max-faults", "2"];
    let proxy = Proxy::start(upstream.trim_start_matches("http://"), &faults);
    let plan = plan(dir.path(), &proxy.endpoint());

    let log = dir.path().join("text.log");
    let (code, text) = run(&plan, &log, &["-v"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(proxy.stats()["faulted"], 2, "{}", proxy.stats());
    assert!(text.contains("copy `logged` started"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("object_store") && l.contains("Encountered server error with status 503")),
        "object_store's retry is not in the log:\n{text}"
    );
    assert!(
        !text.contains(&env("FERRY_TEST_SEAWEED_SECRET")),
        "the secret was logged"
    );

    // JSON, one object per line, each with its level, target and message.
    let log = dir.path().join("json.log");
    let (code, text) = run(&plan, &log, &["-vv", "--log-format", "json"]);
    assert_eq!(code, Some(0), "{text}");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(events.len() >= 2, "{text}");
    for e in &events {
        assert!(
            e["level"].is_string() && e["target"].is_string() && e["fields"].is_object(),
            "{e}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| e["target"].as_str().unwrap().starts_with("ferry")),
        "{text}"
    );
    assert!(
        !text.contains(&env("FERRY_TEST_SEAWEED_SECRET")),
        "the secret was logged"
    );

    // The default level: ferry's info events, not the libraries' (a new proxy: faults again).
    let proxy = Proxy::start(upstream.trim_start_matches("http://"), &faults);
    let plan = plan_again(dir.path(), &proxy.endpoint());
    let log = dir.path().join("quiet.log");
    let (code, text) = run(&plan, &log, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("copy `logged` started"), "{text}");
    assert!(!text.contains("object_store"), "{text}");
}

/// The plan again, to a fresh prefix behind another endpoint.
fn plan_again(dir: &Path, endpoint: &str) -> PathBuf {
    let again = dir.join("again");
    std::fs::create_dir_all(&again).unwrap();
    plan(&again, endpoint)
}

#[test]
fn a_log_file_that_cannot_be_opened_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("no/such/dir/ferry.log");
    let out = Command::new(ferry_bin())
        .args(["providers", "--log-file"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("cannot open the log file `{}`", bad.display())),
        "{err}"
    );
}
