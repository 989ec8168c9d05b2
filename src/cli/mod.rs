//! The command line: arguments (clap) and the commands, here; settings resolved once (flag >
//! plan > default) in `settings`; human and JSON output in `output`; progress display in
//! `progress` (the only place that knows indicatif); the Prometheus textfile of
//! `--metrics-file` in `metrics`. Every command calls `crate::run`, never the
//! engine below it (tests/layout.rs); one signal task fires the run's cancellation token. The
//! library below it knows nothing of terminals.
//!
//! Exit codes: 0 everything done and verified; 1 some objects failed or did not verify (the rest
//! completed); 2 bad plan, arguments, credentials or unreachable provider (nothing was written);
//! 3 another run holds the state directory; 130 stopped by SIGINT or SIGTERM.

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

mod listing;
mod logs;
mod metrics;
mod oneliner;
mod output;
mod progress;
mod settings;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::plan::VerifyLevel;
use crate::redact::redact;
use crate::run::{CancellationToken, Finding, Migration, MoveOptions, RestoreOptions};
use crate::template::DumpTime;
use metrics::Metrics;
use progress::CliProgress;

pub use crate::run::{Error, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_UNAVAILABLE, EXIT_USAGE};

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
Without a plan file: `ferry copy SRC DST` and `ferry sync SRC DST` by URL or path (s3://, gs://, \
az://, ./dir) build the plan of one job and run it the same way; --print-plan shows it \
(ferry copy --help).\n\n\
Exit codes: 0 all done and verified; 1 some objects failed or differ (the rest completed); \
2 bad plan, arguments or credentials (nothing written; fix it); 3 a provider, database or the \
state lock not available now (nothing written; retry later); 130 interrupted.",
    after_help = "Plan reference: docs/plan.md. Examples: configs/."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Machine-readable JSON summary on stdout (human text stays on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bar and no summary on stderr; off a terminal a heartbeat line at most once a
    /// minute. Twice (-qq): nothing but errors.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// Off a terminal, a progress line (time, job, objects and bytes done, rate, ETA) every
    /// this many seconds, whether or not an object finished.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 10)]
    pub progress_interval: u64,
    /// More detail: every retried and skipped object. Twice (-vv): also object_store's and
    /// the AWS SDK's own events (retries, credentials, connections), on stderr or in --log-file.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Append a log to this file: ferry's events at info (-v: debug), the libraries' at warn
    /// (-v: info; -vv: everything at debug). RUST_LOG sets the filter instead. Secrets redacted.
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// The log's format: text lines, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = logs::LogFormat::Text)]
    pub log_format: logs::LogFormat,
}

#[derive(clap::Args, Debug, Clone)]
pub struct JobArgs {
    /// The migration plan (TOML).
    pub plan: PathBuf,
    /// Only these jobs (repeatable); default: all.
    #[arg(long = "job", value_name = "NAME")]
    pub jobs: Vec<String>,
    #[command(flatten)]
    pub flags: RunFlags,
}

/// The engine's flags, shared by the plan commands and the one-liners.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunFlags {
    /// The most objects in flight at once [default: plan's settings.concurrency, else adaptive from 64 up to 256 with a remote store, 16 between local folders].
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
        /// Compare and estimate, write nothing: the same as `ferry plan` (which also takes
        /// --output).
        #[arg(long)]
        dry_run: bool,
        /// Write a Prometheus textfile here (node_exporter's textfile collector), atomically,
        /// every --progress-interval and at the end: per job the last success time, duration,
        /// objects and bytes copied and failures; the run's exit code [default: plan's
        /// settings.metrics-file, else none].
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
        /// Also restore each database job that has a restore target, in the same pass: the
        /// dump streams into the store and into `pg_restore`/`mariadb`/the SQLite file at once,
        /// then the target is verified table by table (an evacuation's one-pass move). The
        /// restore guards apply: the target must not be the source, and must be empty unless
        /// --replace.
        #[arg(long, conflicts_with = "dry_run")]
        restore: bool,
        /// With --restore: restore into a target that already has tables, replacing what the
        /// dump holds (the job's `restore-replace = true` says the same).
        #[arg(long, requires = "restore")]
        replace: bool,
    },
    /// Copy SRC to DST by URL or path, like `rclone copy`: the plan of one job, built from the
    /// command line and run as `ferry run` runs a plan (--print-plan shows it).
    #[command(after_help = oneliner::COPY_HELP, mut_arg("state_dir", oneliner::state_dir_help))]
    Copy {
        #[command(flatten)]
        args: oneliner::OneLinerArgs,
    },
    /// Make DST a mirror of SRC: `copy`, then delete from DST what SRC does not have, within the
    /// mirror guards (an empty source, --max-delete, unreadable source entries).
    #[command(after_help = oneliner::SYNC_HELP, mut_arg("state_dir", oneliner::state_dir_help))]
    Sync {
        #[command(flatten)]
        args: oneliner::OneLinerArgs,
        #[command(flatten)]
        guards: oneliner::SyncGuards,
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
        /// Restore the newest dump taken at or before TIME (UTC, by the timestamp in its key):
        /// `2026-11-29T03:00Z`, `2026-11-29T03:00:00Z`, or a date `2026-11-29` for the end of
        /// that day.
        #[arg(long, value_name = "TIME", conflicts_with = "dump")]
        at: Option<DumpTime>,
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
    /// A completion script for SHELL on stdout, e.g. `ferry completions bash >
    /// /etc/bash_completion.d/ferry`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on stdout: `ferry man > /usr/local/share/man/man1/ferry.1`.
    Man,
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
    if let Err(e) = logs::init(cli.log_file.as_ref(), cli.log_format, cli.verbose) {
        eprintln!("error: {e}");
        return EXIT_USAGE;
    }
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
            let code = crate::run::exit_code(&e);
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

/// The one signal task: the first SIGINT (Ctrl-C) or SIGTERM (systemd, Kubernetes) fires the
/// token every long step of a command observes; a second one ends the process at once.
struct Signals {
    token: CancellationToken,
    which: Arc<OnceLock<&'static str>>,
}

impl Signals {
    fn listen() -> Signals {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        async fn recv(s: &mut Option<Signal>) {
            match s {
                Some(s) => drop(s.recv().await),
                None => std::future::pending().await,
            }
        }
        // Registered here, before any work starts, so no signal falls between two listeners.
        let mut int = signal(SignalKind::interrupt()).ok();
        let mut term = signal(SignalKind::terminate()).ok();
        let (token, which) = (CancellationToken::new(), Arc::new(OnceLock::new()));
        let (t, w) = (token.clone(), which.clone());
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = recv(&mut int) => "interrupted",
                _ = recv(&mut term) => "terminated",
            };
            let _ = w.set(name);
            t.cancel();
            tokio::select! {
                _ = recv(&mut int) => {},
                _ = recv(&mut term) => {},
            }
            std::process::exit(EXIT_INTERRUPTED);
        });
        Signals { token, which }
    }

    /// "interrupted" (SIGINT) or "terminated" (SIGTERM).
    fn name(&self) -> &'static str {
        self.which.get().copied().unwrap_or("interrupted")
    }

    /// Runs a command that holds no state worth saving; a signal drops it where it stands.
    async fn stop(&self, command: impl std::future::Future<Output = anyhow::Result<i32>>) -> anyhow::Result<i32> {
        match self.token.run_until_cancelled(command).await {
            Some(r) => r,
            None => {
                eprintln!("{}: stopped", self.name());
                Ok(EXIT_INTERRUPTED)
            }
        }
    }
}

async fn dispatch(cli: &Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Check { plan, connect } => Signals::listen().stop(check(cli, plan, *connect)).await,
        Command::Plan { args, output } => run(cli, args, Some(output.as_deref()), None, None).await,
        Command::Run {
            args,
            dry_run,
            metrics_file,
            restore,
            replace,
        } => {
            let restore = restore.then_some(MoveOptions { replace: *replace });
            run(cli, args, dry_run.then_some(None), metrics_file.as_deref(), restore).await
        }
        Command::Copy { args } => oneliner::run(cli, args, None).await,
        Command::Sync { args, guards } => oneliner::run(cli, args, Some(guards)).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "ferry",
                &mut std::io::stdout(),
            );
            Ok(EXIT_OK)
        }
        Command::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut std::io::stdout())?;
            Ok(EXIT_OK)
        }
        Command::Verify { args, deep, size_only } => verify(cli, args, settings::verify_level(*deep, *size_only)).await,
        Command::Status { args } => listing::status(cli, args),
        Command::Restore {
            plan,
            database,
            dump,
            at,
            replace,
            source_unreachable_ok,
        } => {
            let opts = RestoreOptions {
                key: dump.as_deref(),
                at: at.as_ref(),
                replace: *replace,
                source_unreachable_ok: *source_unreachable_ok,
            };
            Signals::listen().stop(restore(cli, plan, database, &opts)).await
        }
        Command::Providers { action } => listing::providers(cli, action.as_ref()),
    }
}

async fn check(cli: &Cli, path: &Path, connect: bool) -> anyhow::Result<i32> {
    let plan = settings::load(path)?;
    // Keys in the first listed page of each location that no run can copy as they are.
    let uncarriable = if connect {
        crate::run::check(&plan).await?
    } else {
        Vec::new()
    };
    if cli.json {
        println!("{}", output::check_document(&plan, connect, &uncarriable));
    }
    if cli.quiet == 0 {
        output::report_uncarriable(&uncarriable);
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

/// `dry`: `Some(output file)` for `ferry plan`, `None` for `ferry run`. `metrics_flag`:
/// `--metrics-file` (else the plan's `metrics-file`); a dry run writes no metrics, having done
/// nothing a monitor should see.
async fn run(
    cli: &Cli,
    args: &JobArgs,
    dry: Option<Option<&Path>>,
    metrics_flag: Option<&Path>,
    restore: Option<MoveOptions>,
) -> anyhow::Result<i32> {
    let signals = Signals::listen();
    let plan = settings::load_plan(args);
    let file = match dry {
        Some(_) => None,
        None => settings::metrics_file(plan.as_ref().ok(), metrics_flag),
    };
    let Some(file) = file else {
        return Ok(run_plan(cli, args, dry, &plan?, &signals, None, restore).await?.1);
    };
    let metrics = Arc::new(Mutex::new(Metrics::start(&file, &settings::plan_label(&args.plan))));
    metrics::lock(&metrics).save();
    // Whatever ends the run (a bad plan and an unreachable provider too) is in the file.
    let outcome = match plan {
        Ok(plan) => run_plan(cli, args, dry, &plan, &signals, Some(&metrics), restore).await,
        Err(e) => Err(e.into()),
    };
    let code = outcome.as_ref().map_or_else(crate::run::exit_code, |(_, code)| *code);
    let report = outcome.as_ref().ok().and_then(|(r, _)| r.as_ref());
    let mut m = metrics::lock(&metrics);
    m.finish(report, code);
    m.save();
    outcome.map(|(_, code)| code)
}

/// Runs a plan the one-liners (`oneliner`) built instead of reading it, `ferry run`'s way.
async fn execute(
    cli: &Cli,
    plan: &crate::plan::Plan,
    args: &JobArgs,
    dry: Option<Option<&Path>>,
) -> anyhow::Result<i32> {
    let signals = Signals::listen();
    Ok(run_plan(cli, args, dry, plan, &signals, None, None).await?.1)
}

/// Runs a loaded plan: its report (None if stopped before it began) and exit code.
async fn run_plan(
    cli: &Cli,
    args: &JobArgs,
    dry: Option<Option<&Path>>,
    plan: &crate::plan::Plan,
    signals: &Signals,
    metrics: Option<&Arc<Mutex<Metrics>>>,
    restore: Option<MoveOptions>,
) -> anyhow::Result<(Option<crate::run::RunReport>, i32)> {
    let mut request = settings::request(plan, args, dry.is_some());
    request.restore = restore;
    // Whole accounts become one job per bucket first: their buckets are listed here.
    let Some(expanded) = signals
        .token
        .run_until_cancelled(crate::run::accounts::expand(plan, &request.jobs))
        .await
    else {
        eprintln!("{}: stopped before the run began", signals.name());
        return Ok((None, EXIT_INTERRUPTED));
    };
    let expanded = expanded?;
    request.jobs = expanded.jobs;
    let plan = &expanded.plan;
    // Every database and provider is reached before anything is written (run::steps).
    let Some(migration) = signals
        .token
        .run_until_cancelled(Migration::prepare(plan, request))
        .await
    else {
        eprintln!("{}: stopped before the run began", signals.name());
        return Ok((None, EXIT_INTERRUPTED));
    };
    let migration = migration?;
    if cli.quiet == 0 {
        output::print_accounts(&expanded.accounts, dry.is_some());
    }
    let interval = Duration::from_secs(cli.progress_interval);
    let progress = Arc::new(CliProgress::new(cli.quiet, cli.verbose, interval));
    let ticker = metrics.map(|m| tokio::spawn(metrics::tick(m.clone(), progress.clone(), interval)));
    let mut report = migration.run(progress.clone(), &signals.token).await;
    report.accounts = expanded.accounts;
    progress.finish();
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(m) = metrics {
        let (objects, bytes) = progress.done();
        metrics::lock(m).progress(objects, bytes);
    }
    if let Some(stop) = &report.interrupted {
        output::print_interrupted(signals.name(), stop, &report.journal);
        if cli.json {
            let doc = output::run_document(&plan.file, &report, EXIT_INTERRUPTED, Some(signals.name()));
            println!("{}", redact(&doc.to_string()));
        }
        return Ok((Some(report), EXIT_INTERRUPTED));
    }
    // A restore guard refused (`--restore`): nothing was dumped or written, exit 2 as `restore`.
    let refused = report.restores.iter().any(|r| r.refused);
    let code = match (report.ok(), refused) {
        (true, _) => EXIT_OK,
        (false, true) => EXIT_USAGE,
        (false, false) => EXIT_PARTIAL,
    };
    if cli.quiet == 0 {
        output::print_run(&report);
    }
    if cli.json {
        println!(
            "{}",
            redact(&output::run_document(&plan.file, &report, code, None).to_string())
        );
    }
    if let Some(Some(file)) = dry {
        let doc = output::plan_document(&plan.file, &report);
        std::fs::write(file, redact(&serde_json::to_string_pretty(&doc)?))
            .map_err(|e| anyhow::anyhow!("cannot write report `{}`: {e}", file.display()))?;
    }
    Ok((Some(report), code))
}

async fn verify(cli: &Cli, args: &JobArgs, level: Option<VerifyLevel>) -> anyhow::Result<i32> {
    let signals = Signals::listen();
    let plan = settings::load_plan(args)?;
    let mut request = settings::request(&plan, args, false);
    let Some(expanded) = signals
        .token
        .run_until_cancelled(crate::run::accounts::expand(&plan, &request.jobs))
        .await
    else {
        eprintln!("{}: stopped during verify; nothing was changed", signals.name());
        return Ok(EXIT_INTERRUPTED);
    };
    let expanded = expanded?;
    request.jobs = expanded.jobs;
    let plan = expanded.plan;
    let progress = Arc::new(CliProgress::new(
        cli.quiet,
        cli.verbose,
        Duration::from_secs(cli.progress_interval),
    ));
    let v = crate::run::verify(&plan, &request, level, progress.clone(), &signals.token).await;
    progress.finish();
    let v = v?;
    let code = match (v.interrupted, v.ok()) {
        (true, _) => EXIT_INTERRUPTED,
        (false, true) => EXIT_OK,
        (false, false) => EXIT_PARTIAL,
    };
    if cli.quiet == 0 {
        for db in &v.no_restore_target {
            eprintln!("database `{db}`: no restore target (restore-to-env / restore-to-path): nothing to verify");
        }
    }
    for f in &v.findings {
        match f {
            Finding::Journaled { job, count } if cli.quiet == 0 => {
                eprintln!("job `{job}`: {count} finding(s) journaled: the next `ferry run` copies those objects again")
            }
            Finding::Journaled { .. } => {}
            Finding::NotJournaled(note) => eprintln!("note: {note}"),
        }
    }
    if v.interrupted {
        eprintln!("{}: stopped during verify; nothing was changed", signals.name());
    } else if cli.quiet == 0 {
        v.jobs.iter().for_each(output::print_verify);
        v.databases.iter().for_each(output::print_restore);
    }
    if cli.json {
        let signal = v.interrupted.then(|| signals.name());
        println!("{}", redact(&output::verify_document(&v, code, signal).to_string()));
    }
    Ok(code)
}

async fn restore(cli: &Cli, path: &Path, database: &str, opts: &RestoreOptions<'_>) -> anyhow::Result<i32> {
    let plan = settings::load(path)?;
    let report = crate::run::restore(&plan, database, opts).await?;
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
    } else if cli.quiet == 0 {
        output::print_restore(&report);
    }
    if cli.json {
        println!(
            "{}",
            redact(&json!({ "command": "restore", "ok": ok, "exit_code": code, "restore": report }).to_string())
        );
    }
    Ok(code)
}
