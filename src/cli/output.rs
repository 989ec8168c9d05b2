//! What a command prints: the human summaries on stderr and the JSON documents on stdout.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::progress::HumanBytes;
use crate::plan::Plan;
use crate::run::accounts::AccountReport;
use crate::run::{
    Counts, DatabaseEstimate, DumpReport, Estimate, Interrupted, JobReport, Reference, RestoreReport, RunReport,
    Uncarriable, VerifyReport, VerifyRun,
};

/// `check --json`.
pub(super) fn check_document(plan: &Plan, connect: bool, uncarriable: &[(String, Uncarriable)]) -> Value {
    json!({
        "ok": true, "plan": plan.file, "connected": connect,
        "uncarriable": uncarriable.iter().map(|(loc, u)| json!({
            "location": loc, "key": u.key, "reason": u.reason.to_string(),
        })).collect::<Vec<_>>(),
        "providers": plan.providers.keys().collect::<Vec<_>>(),
        "objects": plan.objects.iter().map(|j| &j.name).collect::<Vec<_>>(),
        "databases": plan.databases.iter().map(|j| &j.name).collect::<Vec<_>>(),
    })
}

/// `run --json` and `plan --json`; `signal`: the run was stopped by it, and the document holds
/// what finished before.
pub(super) fn run_document(plan: &Path, r: &RunReport, code: i32, signal: Option<&str>) -> Value {
    let databases = if r.dry_run {
        json!(r.database_estimates)
    } else {
        json!(r.dumps)
    };
    let mut out = json!({
        "databases": databases,
        "estimates": r.estimates,
        "command": if r.dry_run { "plan" } else { "run" },
        "plan": plan,
        "ok": r.ok(),
        "exit_code": code,
        "jobs": r.jobs,
        "verify": r.verifies,
        "totals": totals(&r.jobs),
        "accounts": r.accounts,
    });
    if !r.restores.is_empty() {
        out["restores"] = json!(r.restores);
    }
    if let Some(signal) = signal {
        out["interrupted"] = json!(true);
        out["signal"] = json!(signal);
        out["stopped"] = json!(r.interrupted);
    }
    out
}

/// `plan --output FILE`: the dry run as an audit record.
pub(super) fn plan_document(plan: &Path, r: &RunReport) -> Value {
    json!({
        "command": "plan",
        "plan": plan,
        "created": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "ok": r.ok(),
        "jobs": r.jobs,
        "databases": r.database_estimates,
        "estimates": r.estimates,
        "totals": totals(&r.jobs),
        "accounts": r.accounts,
    })
}

/// Whole-account jobs: the buckets each chose and where each goes, before the jobs run.
pub(super) fn print_accounts(accounts: &[AccountReport], dry_run: bool) {
    for a in accounts {
        eprintln!(
            "account job `{}`: {} of {} bucket(s) listed at `{}` chosen, to `{}`",
            a.job,
            a.buckets.len(),
            a.listed,
            a.from,
            a.to
        );
        for b in &a.buckets {
            let create = match (b.create, dry_run) {
                (false, _) => "",
                (true, true) => " (bucket to create)",
                (true, false) => " (bucket created)",
            };
            eprintln!("  {} -> {}{create}  [job `{}`]", b.source, b.to, b.job);
        }
        // An account of hundreds of buckets would bury the chosen ones: the first few skipped
        // are named here, all of them in `--json`.
        for (bucket, why) in a.skipped.iter().take(10) {
            eprintln!("  {bucket}: skipped, {why}");
        }
        if a.skipped.len() > 10 {
            eprintln!("  ... and {} more skipped (all in --json)", a.skipped.len() - 10);
        }
    }
}

/// `verify --json`.
pub(super) fn verify_document(v: &VerifyRun, code: i32, signal: Option<&str>) -> Value {
    let mut out =
        json!({ "command": "verify", "ok": v.ok(), "exit_code": code, "jobs": v.jobs, "databases": v.databases });
    if let Some(signal) = signal {
        out["interrupted"] = json!(true);
        out["signal"] = json!(signal);
    }
    out
}

/// The line a stopped run ends with.
pub(super) fn print_interrupted(signal: &str, stop: &Interrupted, journal: &Path) {
    match stop {
        Interrupted::Objects => eprintln!(
            "{signal}: stopped; progress is saved in `{}`: run the same command again to resume",
            journal.display()
        ),
        Interrupted::Dump(db) => eprintln!("{signal}: stopped during dump `{db}`; its upload was not completed"),
        Interrupted::BeforeDump(db) => {
            eprintln!("{signal}: stopped before dump `{db}`; the dumps before it are complete")
        }
    }
}

/// The human summary of a run or a dry run.
pub(super) fn print_run(r: &RunReport) {
    for (i, j) in r.jobs.iter().enumerate() {
        print_job(j, r.dry_run);
        if let Some(e) = r.estimates.get(i) {
            print_estimate(e);
        }
    }
    r.verifies.iter().for_each(print_verify);
    r.database_estimates.iter().for_each(print_database_estimate);
    r.dumps.iter().for_each(print_dump);
    for restore in &r.restores {
        match (restore.refused, &restore.error) {
            (true, Some(e)) => eprintln!("database `{}`: not dumped, the restore was refused: {e}", restore.job),
            _ => print_restore(restore),
        }
    }
}

fn print_database_estimate(d: &DatabaseEstimate) {
    eprintln!(
        "database `{}` ({}): estimated dump size {}{}",
        d.job,
        json!(d.engine).as_str().unwrap_or(""),
        d.estimated_bytes
            .map(|b| HumanBytes(b).to_string())
            .unwrap_or_else(|| "unknown".into()),
        d.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
    );
}

/// Names, per location, the first few listed keys ferry cannot carry (issue 12): a run would
/// report each of them as failed and exit 1.
pub(super) fn report_uncarriable(uncarriable: &[(String, Uncarriable)]) {
    const SHOWN: usize = 5;
    let mut by_location: BTreeMap<&str, Vec<&Uncarriable>> = BTreeMap::new();
    for (loc, u) in uncarriable {
        by_location.entry(loc).or_default().push(u);
    }
    for (loc, keys) in by_location {
        eprintln!(
            "warning: `{loc}` holds {} key(s) in its first listed page that ferry cannot copy as they are; \
             a run reports each as failed:",
            keys.len()
        );
        for u in keys.iter().take(SHOWN) {
            eprintln!("    `{}`: {}", crate::keys::shown(&u.key), u.reason);
        }
        if keys.len() > SHOWN {
            eprintln!("    ... and {} more (see --json)", keys.len() - SHOWN);
        }
    }
    if !uncarriable.is_empty() {
        eprintln!(
            "hint: exclude them in the job (`exclude = [\"**/*/\"]` for folder markers) or copy them by other means"
        );
    }
}

fn totals(reports: &[JobReport]) -> Value {
    let sum = |f: &dyn Fn(&JobReport) -> Counts| {
        reports
            .iter()
            .map(f)
            .fold((0u64, 0u64), |(o, b), c| (o + c.objects, b + c.bytes))
    };
    let (co, cb) = sum(&|r| r.copied);
    let (no, nb) = sum(&|r| r.new);
    let (ho, hb) = sum(&|r| r.changed);
    let (uo, ub) = sum(&|r| r.unchanged);
    json!({
        "copied": { "objects": co, "bytes": cb },
        "new": { "objects": no, "bytes": nb },
        "changed": { "objects": ho, "bytes": hb },
        "unchanged": { "objects": uo, "bytes": ub },
        "failed": reports.iter().map(|r| r.failed.len()).sum::<usize>(),
    })
}

/// A dry run's biggest objects to copy, then the source objects `run` will not read until they
/// are restored, by class (issue 16).
fn print_largest_and_archived(r: &JobReport) {
    for (k, s) in r.largest.iter().take(3) {
        eprintln!("    largest:   `{k}` ({})", HumanBytes(*s));
    }
    for (class, n) in &r.archived {
        eprintln!(
            "  archived:    {} objects, {} bytes are archived ({class}): restore them first (12–48 h); `run` copies only those already restored",
            n.objects, n.bytes
        );
    }
}

/// A versioned source's history, which ferry does not copy (issue 16).
fn print_versions_left(r: &JobReport) {
    let Some(v) = &r.versions_left else { return };
    if v.noncurrent.objects + v.delete_markers > 0 {
        eprintln!(
            "  versions:    {} noncurrent versions ({}) and {} delete markers at the source stay behind: only current objects are copied",
            v.noncurrent.objects,
            HumanBytes(v.noncurrent.bytes),
            v.delete_markers
        );
    }
    if let Some(e) = &v.error {
        eprintln!("  versions:    the source is versioned, but its old versions could not be counted: {e}");
    }
}

/// What a job kept under its `keep-replaced` history, and what retention deleted there.
fn print_history(r: &JobReport, dry_run: bool) {
    let would = if dry_run { "would be " } else { "" };
    for (n, what) in [
        (r.kept_in_history, "kept before being replaced (keep-replaced)"),
        (r.history_pruned, "deleted, older than keep-replaced-days"),
    ] {
        if !n.is_zero() {
            eprintln!(
                "  history:     {} objects, {} {would}{what}",
                n.objects,
                HumanBytes(n.bytes)
            );
        }
    }
}

fn print_job(r: &JobReport, dry_run: bool) {
    let c = |x: Counts| format!("{} objects, {}", x.objects, HumanBytes(x.bytes));
    eprintln!("job `{}`: {} -> {}", r.job, r.from, r.to);
    eprintln!("  source:      {}", c(r.source));
    eprintln!("  new:         {}", c(r.new));
    eprintln!("  changed:     {}", c(r.changed));
    eprintln!("  unchanged:   {}", c(r.unchanged));
    eprintln!(
        "  extraneous:  {}{}",
        c(r.extraneous),
        if r.deleted.objects > 0 {
            format!(" ({} deleted)", r.deleted.objects)
        } else {
            String::new()
        }
    );
    if dry_run {
        eprintln!(
            "  would copy:  {}",
            c(Counts {
                objects: r.new.objects + r.changed.objects,
                bytes: r.new.bytes + r.changed.bytes
            })
        );
        print_largest_and_archived(r);
        if !r.would_delete.is_empty() {
            eprintln!("  would delete: {} objects (delete-extraneous)", r.would_delete.len());
            for k in r.would_delete.iter().take(10) {
                eprintln!("    `{}`", crate::keys::shown(k));
            }
            if r.would_delete.len() > 10 {
                eprintln!("    … and {} more (all of them in --json)", r.would_delete.len() - 10);
            }
        }
    } else {
        let rate = if r.seconds > 0.0 {
            r.copied.bytes as f64 / r.seconds
        } else {
            0.0
        };
        eprintln!(
            "  copied:      {} in {:.1}s ({}/s)",
            c(r.copied),
            r.seconds,
            HumanBytes(rate as u64)
        );
        if let Some(m) = &r.manifest {
            eprintln!("  manifest:    {m}");
        }
    }
    print_versions_left(r);
    print_history(r, dry_run);
    if let Some(t) = &r.throttling {
        for (side, st) in [("source", t.source), ("destination", t.destination)] {
            if st.throttled > 0 {
                eprintln!(
                    "  throttled:   the {side} answered 429/503 {} times; requests at once lowered to {}, {} at the end",
                    st.throttled,
                    st.lowest.map_or("-".into(), |l| l.to_string()),
                    st.limit.map_or("-".into(), |l| l.to_string()),
                );
            }
        }
    }
    if let Some(g) = &r.guard {
        eprintln!("  deletes refused: {}", g.replace('\n', "\n    "));
    }
    if !r.failed.is_empty() {
        eprintln!("  failed:      {} objects", r.failed.len());
        for f in r.failed.iter().take(20) {
            eprintln!("    {}: {}", f.shown_key(), crate::keys::shown(&f.reason));
        }
        if r.failed.len() > 20 {
            eprintln!("    ... and {} more (see --json)", r.failed.len() - 20);
        }
    }
    if let Some(e) = &r.error {
        eprintln!("  error:       {e}");
    }
}

fn print_estimate(e: &Estimate) {
    let money = |v: Option<f64>, cur: &Option<String>| match (v, cur) {
        (Some(v), Some(c)) => format!("{v:.2} {c}"),
        _ => "unknown".to_string(),
    };
    if let Some(w) = &e.destination_not_reached {
        eprintln!("  warning: {w}");
    }
    eprintln!("  estimate:    {} to move", HumanBytes(e.transfer_bytes));
    eprintln!("    egress:               {}", money(e.egress, &e.source_currency));
    eprintln!(
        "    source requests:      {}",
        money(e.source_requests, &e.source_currency)
    );
    eprintln!(
        "    destination requests: {}",
        money(e.destination_requests, &e.destination_currency)
    );
    eprintln!(
        "    destination storage:  {} per month",
        money(e.destination_storage_month, &e.destination_currency)
    );
    if let Some(t) = e.total {
        eprintln!("    total:                {}", money(Some(t), &e.source_currency));
    }
    match (e.seconds, e.bandwidth_bytes_per_second) {
        (Some(s), Some(b)) => eprintln!(
            "    time at {}/s:  {}",
            HumanBytes(b as u64),
            humantime::format_duration(Duration::from_secs(s.ceil() as u64))
        ),
        _ => eprintln!("    time:                 give --bandwidth (e.g. 1Gbit/s) to estimate"),
    }
    for p in &e.prices_used {
        eprintln!("    prices: {p}");
    }
}

fn print_dump(d: &DumpReport) {
    match (&d.key, &d.error) {
        (Some(k), None) => eprintln!(
            "database `{}`: dumped {} ({} stored) to `{k}` in {:.1}s, sha256 {}{}",
            d.job,
            HumanBytes(d.bytes_raw),
            HumanBytes(d.bytes_stored),
            d.seconds,
            d.sha256.as_deref().unwrap_or("?"),
            if d.deleted_old.is_empty() {
                String::new()
            } else {
                format!("; retention removed {}", d.deleted_old.len())
            }
        ),
        (_, Some(e)) => eprintln!("database `{}`: FAILED: {e}", d.job),
        (None, None) => eprintln!("database `{}`: nothing written", d.job),
    }
}

pub(super) fn print_restore(r: &RestoreReport) {
    eprintln!("database `{}` from `{}`:", r.job, r.key);
    if !r.verified_against.is_empty() {
        let names: Vec<&str> = r
            .verified_against
            .iter()
            .map(|v| match v {
                Reference::DumpRecord => "the counts and checksums recorded with the dump",
                Reference::Source => "the source database",
            })
            .collect();
        eprintln!("  verified against {}", names.join(" and "));
    }
    if let Some(why) = &r.source_not_compared {
        eprintln!("  source not compared: {why}");
    }
    for t in &r.tables {
        eprintln!(
            "  {:<40} rows {:>10} / {:<10} {}",
            t.table,
            t.source_rows
                .or(t.recorded_rows)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            t.restored_rows.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            if t.matches { "match" } else { "DIFFERS" }
        );
    }
    if let Some(secs) = r.verify_seconds {
        eprintln!(
            "  restored and verified in {:.1} s (the verification {secs:.1} s)",
            r.seconds
        );
    }
    if let Some(e) = &r.error {
        eprintln!("  error: {e}");
    }
}

pub(super) fn print_verify(v: &VerifyReport) {
    eprintln!(
        "verify `{}` ({:?}): {} checked, {} match, {} differ, {} extraneous, {} re-read",
        v.job,
        v.level.unwrap_or_default(),
        v.checked.objects,
        v.matched.objects,
        v.mismatches.len(),
        v.extraneous.objects,
        HumanBytes(v.bytes_read)
    );
    for m in &v.mismatches {
        eprintln!("  DIFFERS {}: {}", m.shown_key(), crate::keys::shown(&m.reason));
    }
    if let Some(e) = &v.error {
        eprintln!("  error: {e}");
    }
}
