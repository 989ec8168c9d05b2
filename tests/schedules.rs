//! Issue 17: the schedule recipes in docs/operations.md are tested, not just written. Each is
//! read out of the document as a user would copy it:
//!
//! - the systemd service and timer go to a folder of their own (ExecStart pointed at the built
//!   binary, since `systemd-analyze verify` checks that the command exists) and must pass
//!   `systemd-analyze verify` without a word about them (it only warns, exit 0, on an unknown
//!   `Type=`);
//! - the cron line must have five valid time fields, a user and a command whose ferry
//!   invocation the command line accepts;
//! - the Kubernetes manifests are parsed by PyYAML (the tests' Python, installed by
//!   tests/servers/up.sh): the ferry container's `args` must be accepted by the command line, every
//!   volume mount must name a volume, a `podFailurePolicy` must name the container, fail the job
//!   only on exit 2 (exit 1 and 3 are worth a retry) and come with `restartPolicy: Never`.
//!
//! The command line is the crate's own clap definition (`ferry::cli::Cli::try_parse_from`),
//! so a flag renamed or removed fails here. Every recipe must also write the metrics file.

use std::path::Path;
use std::process::Command;

use clap::Parser;
use ferry::cli::Cli;

mod common;

fn operations_md() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md")).unwrap()
}

/// The fenced blocks of `lang` in `md`, each with the last non-blank line before it (its caption).
fn fenced(md: &str, lang: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut caption = "";
    let mut lines = md.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("```{lang}") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            out.push((caption.to_string(), body.join("\n") + "\n"));
        } else if !line.trim().is_empty() {
            caption = line;
        }
    }
    out
}

/// `ferry ARGS` through the crate's own command line; the error, if it refuses them.
fn accepted(args: &[String]) -> Result<Cli, String> {
    let argv = std::iter::once("ferry".to_string()).chain(args.iter().cloned());
    Cli::try_parse_from(argv).map_err(|e| format!("`ferry {}` is refused: {e}", args.join(" ")))
}

/// The ferry arguments of a shell command line: the words after the first word naming the
/// `ferry` binary, up to the first redirection or shell operator.
fn ferry_args(command: &str) -> Vec<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.ends_with("/ferry") || *w == "ferry")
        .unwrap_or_else(|| panic!("no ferry command in {command}"));
    words[at + 1..]
        .iter()
        .take_while(|w| {
            !w.starts_with('>') && !w.starts_with("2>") && !["|", "||", "&&", ";"].contains(w) && !w.ends_with('\'')
        })
        .map(|w| w.to_string())
        .collect()
}

fn assert_runs_with_metrics(what: &str, args: &[String]) {
    let cli = accepted(args).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        matches!(cli.command, ferry::cli::Command::Run { .. }),
        "{what}: not a `run`: {args:?}"
    );
    let metrics = args.iter().position(|a| a == "--metrics-file");
    assert!(
        metrics.is_some_and(|i| args.get(i + 1).is_some_and(|f| f.ends_with(".prom"))),
        "{what}: no --metrics-file FILE.prom: {args:?}"
    );
}

#[test]
fn the_systemd_unit_and_timer_pass_systemd_analyze_verify() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!(
            "SKIPPED the_systemd_unit_and_timer_pass_systemd_analyze_verify: /usr/bin/systemd-analyze is missing"
        );
        return;
    }
    let blocks = fenced(&operations_md(), "ini");
    let unit = |suffix: &str| {
        blocks
            .iter()
            .find(|(caption, _)| caption.contains(&format!("ferry-nightly.{suffix}`")))
            .unwrap_or_else(|| panic!("no ```ini block captioned ferry-nightly.{suffix}"))
            .1
            .clone()
    };
    let (service, timer) = (unit("service"), unit("timer"));
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the service has an ExecStart");
    assert_runs_with_metrics("systemd ExecStart", &ferry_args(exec));
    assert!(exec.starts_with("/usr/local/bin/ferry "), "{exec}");

    let dir = tempfile::tempdir().unwrap();
    let built = env!("CARGO_BIN_EXE_ferry");
    std::fs::write(
        dir.path().join("ferry-nightly.service"),
        service.replace("ExecStart=/usr/local/bin/ferry ", &format!("ExecStart={built} ")),
    )
    .unwrap();
    std::fs::write(dir.path().join("ferry-nightly.timer"), &timer).unwrap();
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(dir.path().join("ferry-nightly.service"))
        .arg(dir.path().join("ferry-nightly.timer"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("systemd-analyze verify -> {:?}\n{said}", out.status.code());
    assert!(out.status.success(), "{said}");
    let about_ours: Vec<&str> = said.lines().filter(|l| l.contains("ferry-nightly")).collect();
    assert!(about_ours.is_empty(), "systemd-analyze warned: {about_ours:#?}");
}

/// A cron time field: `*`, numbers in `lo..=hi`, ranges, lists and `/step`s of them.
fn cron_field_ok(field: &str, lo: u32, hi: u32) -> bool {
    let num = |s: &str| s.parse::<u32>().ok().filter(|n| (lo..=hi).contains(n));
    field.split(',').all(|item| {
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (item, None),
        };
        let base_ok = base == "*"
            || match base.split_once('-') {
                Some((a, b)) => num(a).zip(num(b)).is_some_and(|(a, b)| a <= b),
                None => num(base).is_some(),
            };
        base_ok && step.is_none_or(|s| s.parse::<u32>().is_ok_and(|n| n > 0))
    })
}

#[test]
fn the_cron_line_is_valid_and_its_ferry_arguments_are_accepted() {
    assert!(cron_field_ok("*/15", 0, 59) && cron_field_ok("1-5,7", 0, 7));
    assert!(!cron_field_ok("60", 0, 59) && !cron_field_ok("3-1", 0, 23) && !cron_field_ok("*/0", 0, 59));

    let blocks = fenced(&operations_md(), "cron");
    let lines: Vec<String> = blocks
        .iter()
        .flat_map(|(_, body)| body.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    assert_eq!(lines.len(), 1, "one cron line: {lines:?}");
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    assert!(fields.len() > 6, "5 time fields, a user and a command: {}", lines[0]);
    let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    for (field, (lo, hi)) in fields.iter().zip(ranges) {
        assert!(
            cron_field_ok(field, lo, hi),
            "cron field `{field}` is not within {lo}-{hi}"
        );
    }
    let user = fields[5];
    assert!(
        user.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && user.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)),
        "user field `{user}`"
    );
    // /etc/cron.d passes the rest of the line to sh, where `%` would be a newline.
    let command = fields[6..].join(" ");
    assert!(!command.contains('%'), "{command}");
    assert_runs_with_metrics("cron", &ferry_args(&command));
}

/// The YAML documents of every ```yaml block, as JSON, parsed by PyYAML.
fn yaml_documents(blocks: &[(String, String)]) -> Option<Vec<serde_json::Value>> {
    let python = common::python_with(
        "yaml",
        "the_kubernetes_manifests_parse_and_their_ferry_arguments_are_accepted",
    )?;
    let mut docs = Vec::new();
    for (_, body) in blocks {
        let out = Command::new(&python)
            .args([
                "-c",
                "import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.argv[1])), sys.stdout)",
                body,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "PyYAML refused:\n{body}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        docs.extend(parsed);
    }
    Some(docs)
}

#[test]
fn the_kubernetes_manifests_parse_and_their_ferry_arguments_are_accepted() {
    let Some(docs) = yaml_documents(&fenced(&operations_md(), "yaml")) else {
        return;
    };
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(docs.len(), kinds.len(), "every document has a kind");
    assert!(kinds.contains(&"CronJob") && kinds.contains(&"Job"), "{kinds:?}");
    let mut checked = 0;
    for doc in &docs {
        let name = doc["metadata"]["name"].as_str().unwrap_or("?");
        assert!(doc["apiVersion"].is_string(), "{name}: no apiVersion");
        let job = match doc["kind"].as_str() {
            Some("CronJob") => &doc["spec"]["jobTemplate"]["spec"],
            Some("Job") => &doc["spec"],
            _ => continue,
        };
        let pod = &job["template"]["spec"];
        let containers = pod["containers"].as_array().unwrap();
        let volumes: Vec<&str> = pod["volumes"]
            .as_array()
            .map(|v| v.iter().filter_map(|v| v["name"].as_str()).collect())
            .unwrap_or_default();
        for c in containers {
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let v = m["name"].as_str().unwrap();
                assert!(
                    volumes.contains(&v),
                    "{name}: mount `{v}` names no volume ({volumes:?})"
                );
            }
        }
        let ferry = containers
            .iter()
            .find(|c| c["name"] == "ferry")
            .unwrap_or_else(|| panic!("{name}: no container named ferry"));
        // An Indexed Job's index, as Kubernetes would expand it.
        let args: Vec<String> = ferry["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().replace("$(JOB_COMPLETION_INDEX)", "0"))
            .collect();
        if doc["kind"] == "CronJob" {
            assert_runs_with_metrics(name, &args);
        } else {
            accepted(&args).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        if let Some(rules) = job["podFailurePolicy"]["rules"].as_array() {
            assert_eq!(
                pod["restartPolicy"], "Never",
                "{name}: podFailurePolicy needs restartPolicy Never"
            );
            for rule in rules {
                let on = &rule["onExitCodes"];
                assert_eq!(on["containerName"], "ferry", "{name}");
                if rule["action"] == "FailJob" {
                    // Only "fix the plan" stops the retries: 1 (some objects failed) and
                    // 3 (not available now) are what a retry is for.
                    assert_eq!(on["operator"], "In", "{name}");
                    assert_eq!(on["values"], serde_json::json!([2]), "{name}");
                }
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 2, "the CronJob and the Indexed Job");
}
