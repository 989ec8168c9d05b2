//! The commands that only read and print: `status` (the journal's view of each job) and
//! `providers` (the catalog).

use serde_json::json;

use super::{progress, settings, Cli, Error, JobArgs, ProvidersAction, EXIT_OK};
use crate::catalog;

pub(super) fn status(cli: &Cli, args: &JobArgs) -> anyhow::Result<i32> {
    let plan = settings::load_plan(args)?;
    let jobs = crate::run::status(&plan, &settings::request(&plan, args, true))?;
    let mut out = Vec::new();
    for (job, c) in jobs {
        if cli.quiet == 0 {
            eprintln!(
                "job `{job}`: {} done ({}), {} failed, {} in flight, {} deleted by the mirror",
                c.done,
                progress::HumanBytes(c.done_bytes),
                c.failed,
                c.in_flight,
                c.deleted
            );
        }
        out.push(json!({ "job": job, "journal": c }));
    }
    if cli.json {
        println!("{}", json!({ "command": "status", "jobs": out }));
    }
    Ok(EXIT_OK)
}

pub(super) fn providers(cli: &Cli, action: Option<&ProvidersAction>) -> anyhow::Result<i32> {
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
                        format!("{} {:.4}", p.prices.currency, p.prices.egress_internet_per_gb()),
                        format!("{:.4}", p.prices.storage_per_gb_month())
                    );
                }
            }
        }
        Some(ProvidersAction::Show { name }) => {
            let p = catalog::find(name).ok_or_else(|| {
                Error::usage(format!(
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
