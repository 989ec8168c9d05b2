//! Settings resolved once, in one place: flag > plan > default (the plan's `[settings]` already
//! holds the defaults for keys it does not set).

use std::path::{Path, PathBuf};

use crate::plan::{Plan, VerifyLevel};
use crate::run::{Error, Options, Request};

use super::{JobArgs, RunFlags};

/// Loads a plan. Its errors become the library's [`Error`] here, so they keep their exit code
/// (2) through the command line's `anyhow`.
pub fn load(path: &Path) -> Result<Plan, Error> {
    Ok(Plan::load(path)?)
}

/// Loads the plan and applies `--shard` to its object jobs.
pub fn load_plan(args: &JobArgs) -> Result<Plan, Error> {
    Ok(with_shard(load(&args.plan)?, &args.flags))
}

/// `--shard` applied to a plan's object jobs.
pub fn with_shard(mut plan: Plan, flags: &RunFlags) -> Plan {
    for o in &mut plan.objects {
        o.shard = flags.shard;
    }
    plan
}

/// The engine's options: flag > plan > default.
pub fn options(plan: &Plan, args: &JobArgs) -> Options {
    let args = &args.flags;
    Options {
        concurrency: args.concurrency.or(plan.settings.concurrency).map(|c| c.max(1)),
        part_size: args.part_size.unwrap_or(plan.settings.part_size).max(1),
        memory_limit: args.memory_limit.unwrap_or(plan.settings.memory_limit),
        server_side_copy: plan.settings.server_side_copy,
        bandwidth: args.bandwidth.or(plan.settings.bandwidth),
    }
}

/// The state directory: flag > plan > default, then one subdirectory per shard (each worker
/// keeps its own journal).
pub fn state_dir(plan: &Plan, args: &JobArgs) -> PathBuf {
    let args = &args.flags;
    let base = args
        .state_dir
        .clone()
        .unwrap_or_else(|| plan.settings.state_dir.clone());
    match args.shard {
        Some(s) => base.join(s.label()),
        None => base,
    }
}

/// What a command asks the library to run.
pub fn request(plan: &Plan, args: &JobArgs, dry_run: bool) -> Request {
    Request {
        jobs: args.jobs.clone(),
        options: options(plan, args),
        state_dir: state_dir(plan, args),
        dry_run,
        restore: None,
    }
}

/// The metrics file of `run`: flag > plan; none: no file.
pub fn metrics_file(plan: Option<&Plan>, flag: Option<&Path>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf)
        .or_else(|| plan?.settings.metrics_file.clone())
}

/// The `plan` label of the metrics: the plan file's stem, as the state directory names it.
pub fn plan_label(plan: &Path) -> String {
    plan.file_stem()
        .map_or_else(|| "plan".into(), |s| s.to_string_lossy().into_owned())
}

/// `verify`'s level: `--deep`, `--size-only`, else each job's own (None).
pub fn verify_level(deep: bool, size_only: bool) -> Option<VerifyLevel> {
    match (deep, size_only) {
        (true, _) => Some(VerifyLevel::Deep),
        (_, true) => Some(VerifyLevel::Size),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BARE: &str = "[providers.src]\ntype = \"local\"\nroot = \"in\"\n\n[providers.dst]\ntype = \"memory\"\n\n\
                        [[objects]]\nname = \"all\"\nfrom = \"src:\"\nto = \"dst:\"\n";

    fn plan(settings: &str) -> Plan {
        Plan::from_str(Path::new("/plans/p.toml"), &format!("{settings}\n{BARE}")).unwrap()
    }

    fn args(flags: &[&str]) -> JobArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            args: JobArgs,
        }
        let mut argv = vec!["t", "p.toml"];
        argv.extend_from_slice(flags);
        T::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn defaults_when_neither_flag_nor_plan_says() {
        let p = plan("");
        let o = options(&p, &args(&[]));
        assert_eq!(o.concurrency, None, "by the stores: Options::concurrency_for");
        assert_eq!(o.part_size, 16 << 20);
        assert_eq!(o.memory_limit, 128 << 20);
        assert_eq!(o.bandwidth, None);
        assert!(o.server_side_copy);
        assert_eq!(state_dir(&p, &args(&[])), PathBuf::from("/plans/.ferry/p"));
    }

    #[test]
    fn the_plan_beats_the_default_and_a_flag_beats_the_plan() {
        let p = plan(
            "[settings]\nconcurrency = 4\npart-size = \"8MiB\"\nmemory-limit = \"64MiB\"\n\
             bandwidth = \"10MiB/s\"\nstate-dir = \"/var/ferry\"\nserver-side-copy = false\n",
        );
        let o = options(&p, &args(&[]));
        assert_eq!(
            (o.concurrency, o.part_size, o.memory_limit),
            (Some(4), 8 << 20, 64 << 20)
        );
        assert_eq!(o.bandwidth, Some(10.0 * 1024.0 * 1024.0));
        assert!(!o.server_side_copy);
        assert_eq!(state_dir(&p, &args(&[])), PathBuf::from("/var/ferry"));

        let flags = args(&[
            "--concurrency",
            "2",
            "--part-size",
            "32MiB",
            "--memory-limit",
            "1GiB",
            "--bandwidth",
            "1MiB/s",
            "--state-dir",
            "/tmp/s",
        ]);
        let o = options(&p, &flags);
        assert_eq!(
            (o.concurrency, o.part_size, o.memory_limit),
            (Some(2), 32 << 20, 1 << 30)
        );
        assert_eq!(o.bandwidth, Some(1024.0 * 1024.0));
        assert_eq!(state_dir(&p, &flags), PathBuf::from("/tmp/s"));
    }

    #[test]
    fn zero_concurrency_means_one_and_a_shard_gets_its_own_state() {
        let p = plan("");
        assert_eq!(options(&p, &args(&["--concurrency", "0"])).concurrency, Some(1));
        let a = args(&["--shard", "1/4", "--state-dir", "/tmp/s", "--job", "all"]);
        let r = request(&p, &a, true);
        assert_eq!(r.state_dir, PathBuf::from("/tmp/s/shard-1-of-4"));
        assert_eq!(r.jobs, ["all"]);
        assert!(r.dry_run);
    }

    #[test]
    fn verify_flags_pick_the_level() {
        assert_eq!(verify_level(true, false), Some(VerifyLevel::Deep));
        assert_eq!(verify_level(false, true), Some(VerifyLevel::Size));
        assert_eq!(verify_level(false, false), None);
    }
}
