//! `ferry copy SRC DST` and `ferry sync SRC DST`: the flags, turned into the plan of one job by
//! the library (`plan::oneliner`), then run exactly as `ferry run` runs a plan file
//! (`super::execute`). `--print-plan` prints that plan instead of running it.

use std::path::PathBuf;

use crate::plan::oneliner::{JobKeys, Mode, OneLiner, Side};

use super::{settings, Cli, JobArgs, RunFlags, EXIT_OK};

pub const COPY_HELP: &str = "\
Locations: s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX (with --from-account or
--to-account), https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX, or a local directory
(a path, or file:///PATH). A prefix is a folder: s3://media/photos means the keys under photos/.
The one-liner is a plan with providers `src` and `dst` and one job `copy`; every provider key of
docs/plan.md can be set with --from-opt/--to-opt KEY=VALUE. Secrets never go on the command
line: the *-env keys name the environment variables that hold them.

Examples:
  ferry copy ./photos s3://media/photos --to-region eu-west-1
  ferry copy s3://old-bucket/ gs://new-bucket/ --to-opt service-account-env=GCS_SA_JSON
  ferry copy s3://media/ az://media/ --to-account acme --to-opt access-key-env=AZ_KEY
  ferry copy s3://media/ /srv/backup/media --from-preset wasabi --from-region eu-central-1 \\
      --from-opt access-key-id-env=WASABI_KEY --from-opt secret-access-key-env=WASABI_SECRET
  ferry copy s3://b/x ./out --from-endpoint http://127.0.0.1:8333 --from-opt path-style=true
  ferry copy ./photos s3://media/photos --print-plan > photos.toml  # a plan to review

The journal of a one-liner is in .ferry/copy-<8 hex of its plan's hash>/ in the current
directory: run the same command again and it resumes. Exit codes as for `ferry run`.";

pub const SYNC_HELP: &str = "\
SRC and DST as for `ferry copy` (ferry copy --help). Deletes happen only when no mirror guard
objects: a source that lists nothing (--allow-empty-source overrides), more deletes than
--max-delete (default 50% of DST), destination keys under a source entry that could not be read.

Examples:
  ferry sync ./site s3://www/ --to-preset aws --to-region eu-west-1
  ferry sync s3://media/ gs://media-mirror/ --max-delete 100
  ferry sync s3://media/ ./mirror --dry-run                     # what it would copy and delete
  ferry sync s3://media/ ./mirror --print-plan > mirror.toml    # the same as a plan

The journal is in .ferry/sync-<8 hex of its plan's hash>/ in the current directory.";

/// `--state-dir`'s help for the one-liners, whose default is not beside a plan file.
pub fn state_dir_help(a: clap::Arg) -> clap::Arg {
    a.help("Where the journal and local manifests live [default: .ferry/<copy|sync>-<8 hex of the plan's hash>/ in the current directory]")
}

/// One side's provider flags, `--from-*` or `--to-*`.
macro_rules! side_flags {
    ($name:ident, $p:literal, $arg:literal, $heading:literal) => {
        #[derive(clap::Args, Debug, Clone)]
        #[command(next_help_heading = $heading)]
        pub struct $name {
            #[arg(id = concat!($p, "-preset"), long = concat!($p, "-preset"), value_name = "NAME", help = concat!("Preset from the provider catalog for ", $arg, " (`ferry providers`), e.g. aws, wasabi, r2."))]
            preset: Option<String>,
            #[arg(id = concat!($p, "-endpoint"), long = concat!($p, "-endpoint"), value_name = "URL", help = concat!("Endpoint of ", $arg, "'s server, e.g. https://s3.example.com; an http:// endpoint sets allow-http = true."))]
            endpoint: Option<String>,
            #[arg(id = concat!($p, "-region"), long = concat!($p, "-region"), value_name = "REGION", help = concat!("Region of ", $arg, " (S3)."))]
            region: Option<String>,
            #[arg(id = concat!($p, "-profile"), long = concat!($p, "-profile"), value_name = "PROFILE", help = concat!("AWS profile for ", $arg, " (S3; ~/.aws/config)."))]
            profile: Option<String>,
            #[arg(id = concat!($p, "-account"), long = concat!($p, "-account"), value_name = "ACCOUNT", help = concat!("Storage account of ", $arg, " (Azure; az:// URLs need it)."))]
            account: Option<String>,
            #[arg(id = concat!($p, "-opt"), long = concat!($p, "-opt"), value_name = "KEY=VALUE", help = concat!("Any provider key for ", $arg, " (docs/plan.md), repeatable: path-style=true, access-key-id-env=VAR, ..."))]
            opt: Vec<String>,
        }

        impl $name {
            fn side(&self, location: &str) -> Side {
                Side {
                    location: location.to_string(),
                    preset: self.preset.clone(),
                    endpoint: self.endpoint.clone(),
                    region: self.region.clone(),
                    profile: self.profile.clone(),
                    account: self.account.clone(),
                    opts: self.opt.clone(),
                }
            }
        }
    };
}

side_flags!(FromFlags, "from", "SRC", "Source (SRC)");
side_flags!(ToFlags, "to", "DST", "Destination (DST)");

#[derive(clap::Args, Debug, Clone)]
pub struct OneLinerArgs {
    /// Where to read: a URL (s3://, gs://, az://, https://ACCOUNT.blob.core.windows.net/) or a local path.
    src: String,
    /// Where to write, likewise.
    dst: String,
    /// Print the equivalent plan (TOML) on stdout and exit, running nothing.
    #[arg(long, conflicts_with = "dry_run")]
    print_plan: bool,
    /// Compare and estimate, write nothing: what `ferry plan` does.
    #[arg(long)]
    dry_run: bool,
    /// Only keys matching this glob, relative to SRC (repeatable).
    #[arg(long, value_name = "GLOB", help_heading = "Job")]
    include: Vec<String>,
    /// Skip keys matching this glob (repeatable; exclude wins over include).
    #[arg(long, value_name = "GLOB", help_heading = "Job")]
    exclude: Vec<String>,
    /// Verify level: size, checksum (default), deep (re-read DST after copying).
    #[arg(long, value_parser = ["size", "checksum", "deep"], help_heading = "Job")]
    verify: Option<String>,
    #[command(flatten)]
    from: FromFlags,
    #[command(flatten)]
    to: ToFlags,
    #[command(flatten, next_help_heading = "Run")]
    flags: RunFlags,
}

/// What only `sync` has: the mirror guards' overrides.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Mirror guards")]
pub struct SyncGuards {
    /// The most objects one run deletes: a count, or N% of DST's objects [default: 50%].
    #[arg(long, value_name = "N|N%")]
    max_delete: Option<String>,
    /// Delete although SRC lists no object (else an empty source deletes nothing).
    #[arg(long)]
    allow_empty_source: bool,
}

/// Builds the plan, then prints it (`--print-plan`) or runs it like `ferry run` (`ferry plan`
/// with `--dry-run`). `guards`: `Some` for `sync`.
pub async fn run(cli: &Cli, args: &OneLinerArgs, guards: Option<&SyncGuards>) -> anyhow::Result<i32> {
    let one = OneLiner {
        mode: if guards.is_some() { Mode::Sync } else { Mode::Copy },
        from: args.from.side(&args.src),
        to: args.to.side(&args.dst),
        job: JobKeys {
            include: args.include.clone(),
            exclude: args.exclude.clone(),
            verify: args.verify.clone(),
            max_delete: guards.and_then(|g| g.max_delete.clone()),
            allow_empty_source: guards.is_some_and(|g| g.allow_empty_source),
        },
    };
    let cwd = std::env::current_dir().map_err(|e| anyhow::anyhow!("cannot read the working directory: {e}"))?;
    let generated = one.build(&cwd)?;
    if args.print_plan {
        print!("{}", generated.text);
        return Ok(EXIT_OK);
    }
    let mut flags = args.flags.clone();
    let state_dir = flags.state_dir.get_or_insert(generated.state_dir);
    // `ferry copy . s3://b/` from inside SRC would copy its own live journal; `ferry sync
    // s3://b/ .` would delete it as extraneous.
    let job = &generated.plan.objects[0];
    let holding = [&job.from, &job.to]
        .into_iter()
        .find(|loc| generated.plan.local_location_holds(loc, &cwd.join(&*state_dir)));
    if let Some(p) = holding {
        let p = &generated.plan.providers[&p.provider];
        let arg = if p.name == "src" {
            ("SRC", &args.src)
        } else {
            ("DST", &args.dst)
        };
        return Err(crate::run::Error::usage(format!(
            "the journal's place {}/ is inside {} `{}`: it would be {} with the data\n\
             hint: give --state-dir DIR outside it, or run ferry from another directory",
            state_dir.display(),
            arg.0,
            arg.1,
            if p.name == "src" {
                "copied"
            } else {
                "overwritten or deleted"
            }
        ))
        .into());
    }
    if cli.quiet == 0 {
        eprintln!(
            "journal: {}/ (the same command resumes; --print-plan shows the plan)",
            state_dir.display()
        );
    }
    let job_args = JobArgs {
        plan: PathBuf::from(&generated.plan.file),
        jobs: Vec::new(),
        flags,
    };
    let plan = settings::with_shard(generated.plan, &job_args.flags);
    super::execute(cli, &plan, &job_args, args.dry_run.then_some(None)).await
}
