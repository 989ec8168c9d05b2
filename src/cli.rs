//! The command line: arguments (clap), settings resolved once (flag > plan > default), the
//! commands, human and JSON output, progress display (the only place that knows indicatif), and
//! exit codes. The library below it knows nothing of terminals.
//!
//! Exit codes: 0 everything done and verified; 1 some objects failed or did not verify (the rest
//! completed); 2 bad plan, arguments, credentials or unreachable provider (nothing was written).

/// `eprintln!` that never panics: std's panics when stderr is gone (a log shipper or a pager
/// that went away), which turned a finished run into exit 101. What cannot be printed is
/// dropped; the exit code and `--json` still tell.
macro_rules! eprintln {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` likewise, for `--json` read by a consumer that may stop reading.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::catalog;
use crate::journal::Journal;
use crate::plan::{Plan, VerifyLevel};
use crate::progress::Progress;
use crate::provider::Store;
use crate::redact::redact;
use crate::transfer::{Engine, JobReport, Options};
use crate::verify::{verify_job, VerifyReport};

/// Everything done (and verified).
pub const EXIT_OK: i32 = 0;
/// Some objects failed or did not verify; the rest completed.
pub const EXIT_PARTIAL: i32 = 1;
/// Bad plan, arguments, credentials or unreachable provider; nothing was written.
pub const EXIT_USAGE: i32 = 2;
/// Another run holds the plan's state directory: nothing was done; retry later.
pub const EXIT_BUSY: i32 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "ferry",
    version,
    about = "Move object buckets and database dumps between clouds: streamed, checksummed, resumable",
    long_about = "ferry reads a TOML migration plan (providers and jobs) and copies every object from \
source to destination, hashing each byte as it streams (SHA-256), recording progress in a journal so \
a killed run resumes, and writing a manifest beside the data.\n\n\
Typical session:\n  ferry check plan.toml --connect   # the plan is valid and every provider answers\n  \
ferry plan plan.toml              # dry run: what would move, how many bytes\n  \
ferry run plan.toml               # copy, verified and journaled; re-run to resume\n  \
ferry verify plan.toml --deep     # re-read the destination and compare checksums\n\n\
Exit codes: 0 all done and verified; 1 some objects failed or differ (the rest completed); \
2 bad plan, arguments, credentials or unreachable provider (nothing written).",
    after_help = "Plan reference: docs/plan.md. Examples: configs/."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Machine-readable JSON summary on stdout (human text stays on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress and no summary on stderr (errors are still shown).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// More detail: every retried and skipped object.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(clap::Args, Debug, Clone)]
pub struct JobArgs {
    /// The migration plan (TOML).
    pub plan: PathBuf,
    /// Only these jobs (repeatable); default: all.
    #[arg(long = "job", value_name = "NAME")]
    pub jobs: Vec<String>,
    /// Objects in flight at once [default: plan's settings.concurrency, else 16].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Multipart part size, e.g. 16MiB [default: plan's settings.part-size, else 16MiB].
    #[arg(long, value_parser = parse_size_arg)]
    pub part_size: Option<u64>,
    /// Cap on bytes buffered in memory across transfers [default: plan's settings.memory-limit, else 128MiB].
    #[arg(long, value_parser = parse_size_arg)]
    pub memory_limit: Option<u64>,
    /// Where the journal and local manifests live [default: .ferry/<plan name>/ beside the plan].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Take only shard K of N of every object job (a stable hash of each key), so N workers split
    /// the work with no overlap; each keeps its own journal. In a Kubernetes Indexed Job:
    /// --shard $(JOB_COMPLETION_INDEX)/N.
    #[arg(long, value_name = "K/N", value_parser = crate::filter::Shard::parse)]
    pub shard: Option<crate::filter::Shard>,
    /// `run`: read at most this many bytes per second from sources, across all transfers, e.g.
    /// 50MiB/s, 400Mbit/s [default: plan's settings.bandwidth, else no cap]. `plan`: estimate
    /// the time at this rate.
    #[arg(long, value_parser = parse_bandwidth_arg)]
    pub bandwidth: Option<f64>,
}

fn parse_bandwidth_arg(s: &str) -> Result<f64, String> {
    let b = crate::units::parse_rate(s)?;
    if b < 1.0 {
        return Err("must be at least 1 byte per second".into());
    }
    Ok(b)
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    crate::units::parse_size(s)
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the plan; with --connect, also reach every provider.
    Check {
        plan: PathBuf,
        /// Open every provider and make one listing request.
        #[arg(long)]
        connect: bool,
    },
    /// Dry run: compare source and destination and report what `run` would copy, the requests,
    /// the cost from the provider catalog's prices, and the time. Writes nothing (but --output).
    Plan {
        #[command(flatten)]
        args: JobArgs,
        /// Also write the JSON report to this file (an audit record).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Copy: every new or changed object, hashed, journaled, with a manifest per job.
    Run {
        #[command(flatten)]
        args: JobArgs,
    },
    /// Check the destination against the source (size and checksum; --deep re-reads everything).
    Verify {
        #[command(flatten)]
        args: JobArgs,
        /// Re-read every destination object and re-hash it.
        #[arg(long, conflicts_with = "size_only")]
        deep: bool,
        /// Compare sizes only.
        #[arg(long)]
        size_only: bool,
    },
    /// Restore a database job's dump (the newest by default) into its restore target, then
    /// compare source and restored database table by table.
    Restore {
        plan: PathBuf,
        /// The `[[databases]]` job.
        #[arg(long)]
        database: String,
        /// A dump key to restore instead of the newest.
        #[arg(long)]
        dump: Option<String>,
        /// Restore into a target that already has tables, replacing what the dump holds
        /// (the job's `restore-replace = true` says the same).
        #[arg(long)]
        replace: bool,
        /// Restore although the source cannot be reached to prove that the target is not the
        /// source (the source is gone); the restore is then not verified against it.
        #[arg(long)]
        source_unreachable_ok: bool,
    },
    /// The journal's view of each job: done, failed, in flight.
    Status {
        #[command(flatten)]
        args: JobArgs,
    },
    /// The provider catalog (presets usable as `preset = "NAME"`).
    Providers {
        #[command(subcommand)]
        action: Option<ProvidersAction>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProvidersAction {
    /// List every preset.
    List,
    /// Show one preset in full.
    Show { name: String },
}

/// Stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (systemd, Kubernetes), naming which.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    }
}

/// An error that maps to exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs the command line; returns the exit code. Errors are printed here, redacted.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_USAGE;
        }
    };
    match rt.block_on(dispatch(&cli)) {
        Ok(code) => code,
        Err(e) => {
            let code = if e.downcast_ref::<crate::journal::BusyError>().is_some() {
                EXIT_BUSY
            } else if e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<crate::plan::PlanError>().is_some()
                || e.downcast_ref::<crate::provider::ProviderError>().is_some()
                || e.downcast_ref::<crate::journal::JournalError>().is_some()
            {
                EXIT_USAGE
            } else {
                EXIT_PARTIAL
            };
            eprintln!("error: {}", redact(&format!("{e:#}")));
            if cli.json {
                println!(
                    "{}",
                    json!({ "ok": false, "exit_code": code, "error": redact(&format!("{e:#}")) })
                );
            }
            code
        }
    }
}

async fn dispatch(cli: &Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Check { plan, connect } => check(cli, plan, *connect).await,
        Command::Plan { args, output } => run(cli, args, Some(output.as_deref())).await,
        Command::Run { args } => run(cli, args, None).await,
        Command::Verify { args, deep, size_only } => {
            let level = match (deep, size_only) {
                (true, _) => Some(VerifyLevel::Deep),
                (_, true) => Some(VerifyLevel::Size),
                _ => None,
            };
            verify(cli, args, level).await
        }
        Command::Status { args } => status(cli, args).await,
        Command::Restore {
            plan,
            database,
            dump,
            replace,
            source_unreachable_ok,
        } => {
            let opts = crate::dump::RestoreOptions {
                key: dump.as_deref(),
                replace: *replace,
                source_unreachable_ok: *source_unreachable_ok,
            };
            restore(cli, plan, database, &opts).await
        }
        Command::Providers { action } => providers(cli, action.as_ref()),
    }
}

/// Settings resolved once: flag > plan > default.
fn options(plan: &Plan, args: &JobArgs) -> Options {
    Options {
        concurrency: args.concurrency.unwrap_or(plan.settings.concurrency).max(1),
        part_size: args.part_size.unwrap_or(plan.settings.part_size).max(1),
        memory_limit: args.memory_limit.unwrap_or(plan.settings.memory_limit),
        server_side_copy: plan.settings.server_side_copy,
        bandwidth: args.bandwidth.or(plan.settings.bandwidth),
    }
}

fn state_dir(plan: &Plan, args: &JobArgs) -> PathBuf {
    let base = args
        .state_dir
        .clone()
        .unwrap_or_else(|| plan.settings.state_dir.clone());
    match args.shard {
        Some(s) => base.join(s.label()),
        None => base,
    }
}

/// The jobs a command works on: all, or those named with --job.
struct Selected<'a> {
    objects: Vec<&'a crate::plan::ObjectJob>,
    databases: Vec<&'a crate::plan::DatabaseJob>,
}

impl Selected<'_> {
    /// Every provider location the jobs touch, with whether it is written to.
    fn locations(&self) -> Vec<(crate::plan::Location, bool)> {
        let mut v = Vec::new();
        for j in &self.objects {
            v.push((j.from.clone(), false));
            v.push((j.to.clone(), true));
        }
        for d in &self.databases {
            // Probe the folder a dump key template writes into.
            let fixed = d.to.prefix.split('{').next().unwrap_or("");
            let dir = fixed.rfind('/').map(|i| &fixed[..=i]).unwrap_or("");
            v.push((
                crate::plan::Location {
                    provider: d.to.provider.clone(),
                    prefix: dir.to_string(),
                },
                true,
            ));
        }
        v
    }
}

/// Loads the plan and applies `--shard` to its object jobs.
fn load_plan(args: &JobArgs) -> anyhow::Result<Plan> {
    let mut plan = Plan::load(&args.plan)?;
    for o in &mut plan.objects {
        o.shard = args.shard;
    }
    Ok(plan)
}

fn selected_jobs<'a>(plan: &'a Plan, args: &JobArgs) -> anyhow::Result<Selected<'a>> {
    for j in &args.jobs {
        if !plan.objects.iter().any(|o| &o.name == j) && !plan.databases.iter().any(|d| &d.name == j) {
            let names: Vec<_> = plan
                .objects
                .iter()
                .map(|o| o.name.as_str())
                .chain(plan.databases.iter().map(|d| d.name.as_str()))
                .collect();
            return Err(UsageError(format!(
                "no job named `{j}` in `{}` (jobs: {})",
                plan.file.display(),
                names.join(", ")
            ))
            .into());
        }
    }
    let wanted = |n: &String| args.jobs.is_empty() || args.jobs.contains(n);
    Ok(Selected {
        objects: plan.objects.iter().filter(|o| wanted(&o.name)).collect(),
        databases: plan.databases.iter().filter(|d| wanted(&d.name)).collect(),
    })
}

/// Opens every provider the selected jobs use and reaches each with one listing request, so
/// missing credentials or an unreachable endpoint stop the run before anything is written.
/// `create`: a local destination's root directory is created; otherwise a missing one stands in
/// as an empty store (a dry run writes nothing, not even a directory).
async fn open_stores(plan: &Plan, jobs: &Selected<'_>, create: bool) -> anyhow::Result<BTreeMap<String, Store>> {
    let mut stores = BTreeMap::new();
    let locations = jobs.locations();
    let destinations: Vec<&str> = locations
        .iter()
        .filter(|(_, w)| *w)
        .map(|(l, _)| l.provider.as_str())
        .collect();
    let mut names: Vec<&str> = locations.iter().map(|(l, _)| l.provider.as_str()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let spec = &plan.providers[name];
        let is_dst = destinations.contains(&name);
        let missing_local =
            spec.kind == crate::plan::StoreType::Local && spec.root.as_ref().is_some_and(|r| !r.exists());
        // A missing local destination stands in as empty until every provider has answered:
        // a run that stops on a bad credential must not have created a directory first.
        let store = if is_dst && missing_local {
            check_creatable(spec)?;
            Store::empty_stand_in(spec)
        } else {
            Store::open(spec, false)?
        };
        stores.insert(name.to_string(), store);
    }
    for (loc, _) in &locations {
        {
            let store = &stores[&loc.provider];
            store.probe(&loc.prefix).await.map(drop).map_err(|e| {
                let at = store
                    .spec
                    .endpoint
                    .as_deref()
                    .map(|e| format!(" at {e}"))
                    .map(|at| match &store.spec.bucket {
                        Some(b) => format!(" (bucket `{b}`{at})"),
                        None => at,
                    })
                    .unwrap_or_default();
                UsageError(redact(&format!(
                    "provider `{}` (plan line {}): cannot list `{}`{at}: {e}",
                    loc.provider, store.spec.line, loc
                )))
            })?;
        }
    }
    if create {
        create_local_destinations(plan, jobs, &mut stores)?;
    }
    Ok(stores)
}

/// A local destination root that does not exist yet must be creatable: its nearest existing
/// ancestor is a writable directory. Checked without creating anything.
fn check_creatable(spec: &crate::plan::ProviderSpec) -> anyhow::Result<()> {
    let root = spec.root.as_deref().expect("validated: local has root");
    let mut p = root;
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => return Ok(()),
        }
    }
    let meta = std::fs::metadata(p)?;
    if !meta.is_dir() {
        return Err(crate::provider::ProviderError {
            provider: spec.name.clone(),
            message: format!(
                "cannot create local root `{}`: `{}` is not a directory",
                root.display(),
                p.display()
            ),
            hint: None,
        }
        .into());
    }
    Ok(())
}

/// Creates the root directories of local destinations (after every check has passed).
fn create_local_destinations(
    plan: &Plan,
    jobs: &Selected<'_>,
    stores: &mut BTreeMap<String, Store>,
) -> anyhow::Result<()> {
    for (loc, written) in jobs.locations() {
        let spec = &plan.providers[&loc.provider];
        if written && spec.kind == crate::plan::StoreType::Local {
            stores.insert(loc.provider.clone(), Store::open(spec, true)?);
        }
    }
    Ok(())
}

async fn check(cli: &Cli, path: &Path, connect: bool) -> anyhow::Result<i32> {
    let plan = Plan::load(path)?;
    // Keys in the first listed page of each location that no run can copy as they are.
    let mut uncarriable: Vec<(String, crate::provider::Uncarriable)> = Vec::new();
    if connect {
        let all: Vec<_> = plan.objects.iter().collect();
        // Local destinations may not exist yet: probing those is meaningless, so skip them.
        let mut stores = BTreeMap::new();
        for (name, spec) in &plan.providers {
            stores.insert(
                name.clone(),
                // A check creates nothing: a local destination root that does not exist yet
                // must only be creatable, and stands in as an empty store.
                if spec.kind == crate::plan::StoreType::Local
                    && spec.root.as_ref().is_some_and(|r| !r.exists())
                    && all.iter().any(|j| &j.to.provider == name)
                {
                    check_creatable(spec)?;
                    Store::empty_stand_in(spec)
                } else {
                    Store::open(spec, false)?
                },
            );
        }
        let mut seen = BTreeSet::new();
        for job in &all {
            for loc in [&job.from, &job.to] {
                let odd = stores[&loc.provider].probe(&loc.prefix).await.map_err(|e| {
                    UsageError(redact(&format!(
                        "provider `{}`: cannot list `{loc}`: {e}",
                        loc.provider
                    )))
                })?;
                if seen.insert(loc.to_string()) {
                    uncarriable.extend(odd.into_iter().map(|u| (loc.to_string(), u)));
                }
            }
        }
    }
    if cli.json {
        println!(
            "{}",
            json!({
                "ok": true, "plan": plan.file, "connected": connect,
                "uncarriable": uncarriable.iter().map(|(loc, u)| json!({
                    "location": loc, "key": u.key, "reason": u.reason.to_string(),
                })).collect::<Vec<_>>(),
                "providers": plan.providers.keys().collect::<Vec<_>>(),
                "objects": plan.objects.iter().map(|j| &j.name).collect::<Vec<_>>(),
                "databases": plan.databases.iter().map(|j| &j.name).collect::<Vec<_>>(),
            })
        );
    }
    if !cli.quiet {
        report_uncarriable(&uncarriable);
        let answered = match uncarriable.len() {
            _ if !connect => String::new(),
            0 => "; every provider answered".into(),
            n => format!("; every provider answered, but {n} listed key(s) cannot be copied as they are (above)"),
        };
        eprintln!(
            "plan `{}` is valid: {} provider(s), {} object job(s), {} database job(s){answered}",
            plan.file.display(),
            plan.providers.len(),
            plan.objects.len(),
            plan.databases.len(),
        );
    }
    Ok(EXIT_OK)
}

/// Names, per location, the first few listed keys ferry cannot carry (issue 12): a run would
/// report each of them as failed and exit 1.
fn report_uncarriable(uncarriable: &[(String, crate::provider::Uncarriable)]) {
    const SHOWN: usize = 5;
    let mut by_location: BTreeMap<&str, Vec<&crate::provider::Uncarriable>> = BTreeMap::new();
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

/// `dry`: `Some(output file)` for `ferry plan`, `None` for `ferry run`.
async fn run(cli: &Cli, args: &JobArgs, dry: Option<Option<&Path>>) -> anyhow::Result<i32> {
    let dry_run = dry.is_some();
    let plan = load_plan(args)?;
    let jobs = selected_jobs(&plan, args)?;
    let opts = options(&plan, args);
    // Every database and provider is reached before anything is written.
    if !dry_run {
        for db in &jobs.databases {
            // The size query connects with the job's credentials: a wrong password or an
            // unreachable server stops here, exit 2, before any object or dump is written.
            crate::dump::estimate_size(db).await.map_err(|e| {
                UsageError(redact(&format!(
                    "database `{}` (plan line {}): cannot connect: {e}",
                    db.name, db.line
                )))
            })?;
        }
    }
    let mut stores = open_stores(&plan, &jobs, false).await?;
    // Then the journal (a state directory that cannot be written stops the run, exit 2), and
    // only then is a local destination directory created.
    let state = state_dir(&plan, args);
    // One run per state directory: a second would copy the same objects and abort the first
    // one's uploads as orphans.
    let _lock = if dry_run {
        None
    } else {
        Some(crate::journal::StateLock::acquire(&state).map_err(
            |e| match e.downcast::<crate::journal::BusyError>() {
                Ok(busy) => anyhow::Error::new(*busy),
                Err(e) => anyhow::Error::new(UsageError(e.to_string())),
            },
        )?)
    };
    let journal = open_journal(&state, dry_run)?;
    if !dry_run {
        create_local_destinations(&plan, &jobs, &mut stores)?;
    }
    let progress = Arc::new(CliProgress::new(cli.quiet, cli.verbose));
    let engine = Engine::new(opts.clone(), journal.clone(), progress.clone());

    let mut reports: Vec<JobReport> = Vec::new();
    let mut verifies: Vec<VerifyReport> = Vec::new();
    for job in &jobs.objects {
        let (src, dst) = (&stores[&job.from.provider], &stores[&job.to.provider]);
        let mut report = tokio::select! {
            r = engine.run_job(job, src, dst, dry_run) => r,
            signal = interrupted() => {
                // Uploads in flight stay open and journaled: the next run continues them.
                let _ = journal.flush();
                progress.finish();
                eprintln!("{signal}: stopped; progress is saved in `{}`: run the same command again to resume", journal.path().display());
                return Ok(EXIT_INTERRUPTED);
            }
        };
        if !dry_run && report.error.is_none() {
            match crate::manifest::write(&journal, job, &report, &state, dst).await {
                Ok(p) => report.manifest = Some(p.display().to_string()),
                Err(e) => report.error = Some(redact(&format!("manifest: {e:#}"))),
            }
            if job.verify == VerifyLevel::Deep {
                let v = verify_job(
                    job,
                    src,
                    dst,
                    VerifyLevel::Deep,
                    &journal,
                    progress.clone(),
                    opts.concurrency,
                )
                .await;
                verifies.push(v);
            }
        }
        reports.push(report);
    }
    // Database jobs: a dry run estimates their size; a run dumps them.
    let mut dumps: Vec<crate::dump::DumpReport> = Vec::new();
    let mut db_plans: Vec<serde_json::Value> = Vec::new();
    for db in &jobs.databases {
        if dry_run {
            let est = crate::dump::estimate_size(db).await;
            db_plans.push(json!({
                "job": db.name, "engine": db.engine, "to": db.to.to_string(),
                "estimated_bytes": est.as_ref().ok(),
                "error": est.as_ref().err().map(|e| redact(&e.to_string())),
            }));
            continue;
        }
        let store = &stores[&db.to.provider];
        let report = tokio::select! {
            r = crate::dump::dump(db, store, &*progress) => r,
            signal = interrupted() => {
                progress.finish();
                eprintln!("{signal}: stopped during dump `{}`; its upload was not completed", db.name);
                return Ok(EXIT_INTERRUPTED);
            }
        };
        dumps.push(report);
    }
    progress.finish();

    let ok = reports.iter().all(JobReport::ok)
        && verifies.iter().all(VerifyReport::ok)
        && dumps.iter().all(crate::dump::DumpReport::ok)
        && db_plans.iter().all(|d| d["error"].is_null());
    let code = if ok { EXIT_OK } else { EXIT_PARTIAL };
    let estimates: Vec<crate::estimate::Estimate> = match dry {
        Some(_) => jobs
            .objects
            .iter()
            .zip(&reports)
            .map(|(j, r)| {
                crate::estimate::estimate(
                    r,
                    &plan.providers[&j.from.provider],
                    &plan.providers[&j.to.provider],
                    opts.bandwidth,
                )
            })
            .collect(),
        None => Vec::new(),
    };
    if !cli.quiet {
        for (i, r) in reports.iter().enumerate() {
            print_job(r, dry_run);
            if let Some(e) = estimates.get(i) {
                print_estimate(e);
            }
        }
        for v in &verifies {
            print_verify(v);
        }
        for d in &db_plans {
            eprintln!(
                "database `{}` ({}): estimated dump size {}{}",
                d["job"].as_str().unwrap_or(""),
                d["engine"].as_str().unwrap_or(""),
                d["estimated_bytes"]
                    .as_u64()
                    .map(|b| HumanBytes(b).to_string())
                    .unwrap_or_else(|| "unknown".into()),
                d["error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default()
            );
        }
        for d in &dumps {
            print_dump(d);
        }
    }
    if cli.json {
        let out = json!({
            "databases": if dry_run { serde_json::to_value(&db_plans)? } else { serde_json::to_value(&dumps)? },
            "estimates": estimates,
            "command": if dry_run { "plan" } else { "run" },
            "plan": plan.file,
            "ok": ok,
            "exit_code": code,
            "jobs": reports,
            "verify": verifies,
            "totals": totals(&reports),
        });
        println!("{}", redact(&out.to_string()));
    }
    if let Some(Some(file)) = dry {
        let out = json!({
            "command": "plan",
            "plan": plan.file,
            "created": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            "ok": ok,
            "jobs": reports,
            "databases": db_plans,
            "estimates": estimates,
            "totals": totals(&reports),
        });
        std::fs::write(file, redact(&serde_json::to_string_pretty(&out)?))
            .map_err(|e| anyhow::anyhow!("cannot write report `{}`: {e}", file.display()))?;
    }
    Ok(code)
}

fn open_journal(state: &Path, read_only: bool) -> anyhow::Result<Journal> {
    let path = state.join("journal.sqlite");
    // A dry run, verify and status write nothing anywhere, not even a journal.
    let j = if read_only {
        Journal::open_read_only(&path)?
    } else {
        Journal::open(&path)?
    };
    Ok(j)
}

fn totals(reports: &[JobReport]) -> serde_json::Value {
    let sum = |f: &dyn Fn(&JobReport) -> crate::transfer::Counts| {
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

fn print_job(r: &JobReport, dry_run: bool) {
    let c = |x: crate::transfer::Counts| format!("{} objects, {}", x.objects, HumanBytes(x.bytes));
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
            c(crate::transfer::Counts {
                objects: r.new.objects + r.changed.objects,
                bytes: r.new.bytes + r.changed.bytes
            })
        );
        for (k, s) in r.largest.iter().take(3) {
            eprintln!("    largest:   `{k}` ({})", HumanBytes(*s));
        }
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

fn print_estimate(e: &crate::estimate::Estimate) {
    let money = |v: Option<f64>, cur: &Option<String>| match (v, cur) {
        (Some(v), Some(c)) => format!("{v:.2} {c}"),
        _ => "unknown".to_string(),
    };
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

fn print_dump(d: &crate::dump::DumpReport) {
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

fn print_restore(r: &crate::dump::RestoreReport) {
    use crate::dump::Reference;
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
        eprintln!("  source not compared (--source-unreachable-ok): {why}");
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
    if let Some(e) = &r.error {
        eprintln!("  error: {e}");
    }
}

fn print_verify(v: &VerifyReport) {
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

async fn verify(cli: &Cli, args: &JobArgs, level: Option<VerifyLevel>) -> anyhow::Result<i32> {
    let plan = load_plan(args)?;
    let jobs = selected_jobs(&plan, args)?;
    let opts = options(&plan, args);
    let stores = open_stores(&plan, &jobs, false).await?;
    let journal = open_journal(&state_dir(&plan, args), true)?;
    let progress = Arc::new(CliProgress::new(cli.quiet, cli.verbose));
    let mut reports = Vec::new();
    for job in &jobs.objects {
        let (src, dst) = (&stores[&job.from.provider], &stores[&job.to.provider]);
        let lvl = level.unwrap_or(job.verify);
        reports.push(verify_job(job, src, dst, lvl, &journal, progress.clone(), opts.concurrency).await);
    }
    // Database jobs with a restore target: the source and the restored copy, table by table.
    let mut restores = Vec::new();
    for db in &jobs.databases {
        if db.restore_to_env.is_some() || db.restore_to_path.is_some() {
            restores.push(crate::dump::verify_restored(db).await);
        } else if !cli.quiet {
            eprintln!(
                "database `{}`: no restore target (restore-to-env / restore-to-path): nothing to verify",
                db.name
            );
        }
    }
    progress.finish();
    record_verify_findings(cli, &plan, args, &jobs, &reports);
    let ok = reports.iter().all(VerifyReport::ok) && restores.iter().all(crate::dump::RestoreReport::ok);
    let code = if ok { EXIT_OK } else { EXIT_PARTIAL };
    if !cli.quiet {
        for v in &reports {
            print_verify(v);
        }
        for r in &restores {
            print_restore(r);
        }
    }
    if cli.json {
        println!(
            "{}",
            redact(
                &json!({ "command": "verify", "ok": ok, "exit_code": code, "jobs": reports, "databases": restores })
                    .to_string()
            )
        );
    }
    Ok(code)
}

/// What verify found wrong goes into the journal, so the next `run` re-copies exactly those
/// objects. Skipped (with a word) while a run holds the state directory.
fn record_verify_findings(cli: &Cli, plan: &Plan, args: &JobArgs, jobs: &Selected<'_>, reports: &[VerifyReport]) {
    if reports.iter().all(|r| r.mismatches.is_empty()) {
        return;
    }
    let state = state_dir(plan, args);
    let _lock = match crate::journal::StateLock::acquire(&state) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("note: findings not journaled ({e}); run verify again once the run has finished");
            return;
        }
    };
    let journal = match open_journal(&state, false) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("note: findings not journaled: {e}");
            return;
        }
    };
    for (job, report) in jobs.objects.iter().zip(reports) {
        match crate::verify::record_findings(&journal, job, report) {
            Ok(n) if n > 0 && !cli.quiet => {
                eprintln!(
                    "job `{}`: {n} finding(s) journaled: the next `ferry run` copies those objects again",
                    job.name
                )
            }
            Ok(_) => {}
            Err(e) => eprintln!("note: job `{}`: findings not journaled: {e}", job.name),
        }
    }
}

async fn restore(
    cli: &Cli,
    path: &Path,
    database: &str,
    opts: &crate::dump::RestoreOptions<'_>,
) -> anyhow::Result<i32> {
    let plan = Plan::load(path)?;
    let db = plan.databases.iter().find(|d| d.name == database).ok_or_else(|| {
        let names: Vec<_> = plan.databases.iter().map(|d| d.name.as_str()).collect();
        UsageError(format!(
            "no database job named `{database}` (database jobs: {})",
            names.join(", ")
        ))
    })?;
    if db.restore_to_env.is_none() && db.restore_to_path.is_none() {
        return Err(UsageError(format!(
            "database `{database}` has no restore target\nhint: set `restore-to-env` (postgres, mysql) or `restore-to-path` (sqlite)"
        ))
        .into());
    }
    let store = Store::open(&plan.providers[&db.to.provider], false)?;
    let report = crate::dump::restore(db, &store, opts).await;
    let ok = report.ok();
    // Refused before anything was written (a guard or the configuration): exit 2, like a bad plan.
    let code = match (ok, report.refused) {
        (true, _) => EXIT_OK,
        (false, true) => EXIT_USAGE,
        (false, false) => EXIT_PARTIAL,
    };
    if report.refused {
        // Nothing was restored, so no table report; like every exit-2 error, shown even with -q.
        eprintln!("error: {}", report.error.as_deref().unwrap_or("refused"));
    } else if !cli.quiet {
        print_restore(&report);
    }
    if cli.json {
        println!(
            "{}",
            redact(&json!({ "command": "restore", "ok": ok, "exit_code": code, "restore": report }).to_string())
        );
    }
    Ok(code)
}

async fn status(cli: &Cli, args: &JobArgs) -> anyhow::Result<i32> {
    let plan = load_plan(args)?;
    let jobs = selected_jobs(&plan, args)?;
    let journal = open_journal(&state_dir(&plan, args), true)?;
    let mut out = Vec::new();
    for job in jobs.objects {
        let c = journal.counts(&job.name)?;
        if !cli.quiet {
            eprintln!(
                "job `{}`: {} done ({}), {} failed, {} in flight, {} deleted by the mirror",
                job.name,
                c.done,
                HumanBytes(c.done_bytes),
                c.failed,
                c.in_flight,
                c.deleted
            );
        }
        out.push(json!({ "job": job.name, "journal": c }));
    }
    if cli.json {
        println!("{}", json!({ "command": "status", "jobs": out }));
    }
    Ok(EXIT_OK)
}

fn providers(cli: &Cli, action: Option<&ProvidersAction>) -> anyhow::Result<i32> {
    match action {
        None | Some(ProvidersAction::List) => {
            if cli.json {
                println!("{}", serde_json::to_string(catalog::all())?);
            } else {
                println!(
                    "{:<14} {:<6} {:<34} {:>12} {:>14}",
                    "NAME", "TYPE", "DISPLAY NAME", "EGRESS/GB", "STORAGE/GB-MO"
                );
                for p in catalog::all() {
                    println!(
                        "{:<14} {:<6} {:<34} {:>12} {:>14}",
                        p.name,
                        p.kind.to_string(),
                        p.display_name,
                        format!("{} {:.4}", p.prices.currency, p.prices.egress_internet_per_gb),
                        format!("{:.4}", p.prices.storage_per_gb_month)
                    );
                }
            }
        }
        Some(ProvidersAction::Show { name }) => {
            let p = catalog::find(name).ok_or_else(|| {
                UsageError(format!(
                    "no preset named `{name}`\nhint: known presets: {}",
                    catalog::names().join(", ")
                ))
            })?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(p)?);
            } else {
                print!("{}", catalog::describe(p));
            }
        }
    }
    Ok(EXIT_OK)
}

/// Progress on stderr: an indicatif bar on a terminal, a plain line every 10 s otherwise.
pub struct CliProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    verbose: u8,
    found_objects: AtomicU64,
    found_bytes: AtomicU64,
    done_objects: AtomicU64,
    bytes: AtomicU64,
    last_line: std::sync::Mutex<Instant>,
}

impl CliProgress {
    /// One line on stderr, above the progress bar, unless `--quiet`.
    fn say(&self, text: &str) {
        if self.quiet {
            return;
        }
        let text = redact(text);
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn new(quiet: bool, verbose: u8) -> CliProgress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(5));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        CliProgress {
            bar,
            quiet,
            verbose,
            found_objects: AtomicU64::new(0),
            found_bytes: AtomicU64::new(0),
            done_objects: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_line: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn update(&self) {
        let (d, f) = (
            self.done_objects.load(Ordering::Relaxed),
            self.found_objects.load(Ordering::Relaxed),
        );
        if let Some(b) = &self.bar {
            b.set_message(format!("{d}/{f} objects"));
            return;
        }
        if self.quiet {
            return;
        }
        let mut last = self.last_line.lock().expect("progress lock");
        if last.elapsed() >= Duration::from_secs(10) {
            *last = Instant::now();
            eprintln!(
                "progress: {d}/{f} objects, {} of {}",
                HumanBytes(self.bytes.load(Ordering::Relaxed)),
                HumanBytes(self.found_bytes.load(Ordering::Relaxed))
            );
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for CliProgress {
    fn job_started(&self, job: &str, what: &str) {
        if self.verbose > 0 && !self.quiet {
            self.message(&format!("{what} `{job}`..."));
        }
    }
    fn found(&self, objects: u64, bytes: u64) {
        self.found_objects.fetch_add(objects, Ordering::Relaxed);
        let total = self.found_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
        self.update();
    }
    fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn object_done(&self) {
        self.done_objects.fetch_add(1, Ordering::Relaxed);
        self.update();
    }
    fn skipped_bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_length(b.length().unwrap_or(0).saturating_sub(n));
        }
    }
    fn message(&self, text: &str) {
        // Failures are listed in the summary; live lines are for -v.
        if self.verbose > 0 {
            self.say(text);
        }
    }
    fn warn(&self, text: &str) {
        self.say(&format!("warning: {text}"));
    }
}
