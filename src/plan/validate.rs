//! Cross-field validation of the wire structs into the typed plan, each error naming its line
//! and column: settings, the `from`/`to` locations, object jobs (overlaps, globs, `max-delete`,
//! mirrors) and database jobs (sources, key templates that could collide).

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::overlap::db_key_space;
use super::secrets::env_name_problem;
use super::wire::{DatabaseJobWire, ObjectJobWire, SettingsWire};
use super::{
    is_job_name, DatabaseJob, DbEngine, Location, MaxDelete, ObjectJob, PlanError, ProviderKind, ProviderSpec,
    Retention, Settings, DEFAULT_MEMORY_LIMIT, DEFAULT_PART_SIZE,
};
use crate::filter::compile_glob;
use crate::units::{parse_rate, parse_size};

/// The plan text being validated: turns a byte span into a line and column.
pub(super) struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    /// Byte offsets where each line starts, so a line number costs a binary search: every job
    /// asks for its line, and counting newlines from the top made validation quadratic.
    line_starts: Vec<usize>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str) -> Ctx<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Ctx {
            file,
            text,
            line_starts,
        }
    }

    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text.get(start..offset).map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    pub(super) fn err(&self, span: Range<usize>, message: String, hint: Option<&str>) -> PlanError {
        let (line, column) = self.line_col(span.start);
        PlanError::Invalid {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
            hint: hint.map(str::to_string),
        }
    }
}

const JOB_NAME_HINT: &str =
    "a job name is letters, digits, `-`, `_` and `.` (not first), at most 64 characters: it names the manifest file";

/// `[settings]`, with defaults.
pub(super) fn settings(ctx: &Ctx, base_dir: &Path, w: SettingsWire) -> Result<Settings, PlanError> {
    let size = |v: &Option<Spanned<String>>, key: &str, default: u64| -> Result<u64, PlanError> {
        match v {
            None => Ok(default),
            Some(s) => parse_size(s.get_ref()).map_err(|e| {
                ctx.err(
                    s.span(),
                    format!("`settings.{key}`: {e}"),
                    Some("write a size such as \"16MiB\""),
                )
            }),
        }
    };
    let part_size = size(&w.part_size, "part-size", DEFAULT_PART_SIZE)?;
    let memory_limit = size(&w.memory_limit, "memory-limit", DEFAULT_MEMORY_LIMIT)?;
    let bandwidth = match &w.bandwidth {
        None => None,
        Some(b) => Some(
            parse_rate(b.get_ref())
                .and_then(|v| {
                    if v >= 1.0 {
                        Ok(v)
                    } else {
                        Err("must be at least 1 byte per second".into())
                    }
                })
                .map_err(|e| {
                    ctx.err(
                        b.span(),
                        format!("`settings.bandwidth`: {e}"),
                        Some("write a rate such as \"50MiB/s\" or \"400Mbit/s\""),
                    )
                })?,
        ),
    };
    let stem = ctx
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plan".into());
    let state_dir = match w.state_dir {
        Some(d) => base_dir.join(d),
        None => base_dir.join(".ferry").join(stem),
    };
    Ok(Settings {
        concurrency: w.concurrency.map(|c| c.max(1)),
        part_size,
        memory_limit,
        state_dir,
        server_side_copy: w.server_side_copy.unwrap_or(true),
        bandwidth,
        metrics_file: w.metrics_file.map(|f| base_dir.join(f)),
    })
}

/// `template`: the value is a database job's key template (`{name}`, `{timestamp}`), not a folder.
fn location(
    ctx: &Ctx,
    providers: &BTreeMap<String, ProviderSpec>,
    value: &Spanned<String>,
    key: &str,
    template: bool,
) -> Result<Location, PlanError> {
    let v = value.get_ref();
    let Some((provider, prefix)) = v.split_once(':') else {
        return Err(ctx.err(
            value.span(),
            format!("`{key}` = `{v}` is not `provider:prefix`"),
            Some("for example \"old:uploads/\" or \"new:\" for the whole bucket"),
        ));
    };
    if !providers.contains_key(provider) {
        let known: Vec<&str> = providers.keys().map(String::as_str).collect();
        return Err(ctx.err(
            value.span(),
            format!("`{key}` names provider `{provider}`, which is not defined"),
            Some(&format!(
                "defined providers: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )),
        ));
    }
    if let (true, ProviderKind::S3(s3)) = (key == "to", &providers[provider].kind) {
        if s3.sse_c_key_env.is_some() {
            return Err(ctx.err(
                value.span(),
                format!("`to` names provider `{provider}`, which has `sse-c-key-env`: an SSE-C key is for reading a source"),
                Some("define a second provider for the bucket without `sse-c-key-env` to write there (`sse` asks for server-side encryption)"),
            ));
        }
    }
    let templated = template && prefix.contains('{');
    if !templated && (!(prefix.is_empty() || prefix.ends_with('/')) || prefix.starts_with('/')) {
        return Err(ctx.err(
            value.span(),
            format!("`{key}` prefix `{prefix}` must be empty or end with `/`, and not start with `/`"),
            Some("prefixes are folders: \"uploads/\"; to copy some keys of a folder, use include/exclude"),
        ));
    }
    // Every store lists a prefix exactly as written; one that no key can start with (`a//`,
    // `./`, `../`, a control character) is a typo, not a folder.
    if !templated && !prefix.is_empty() {
        if let Err(e) = crate::keys::prefix_path(prefix) {
            return Err(ctx.err(
                value.span(),
                format!(
                    "`{key}` prefix `{}` is not a folder a key can be in: {e}",
                    prefix.escape_debug()
                ),
                Some("write the folder as keys spell it, e.g. \"photos/2020/\", without empty, `.` or `..` segments"),
            ));
        }
    }
    Ok(Location {
        provider: provider.to_string(),
        prefix: prefix.to_string(),
    })
}

pub(super) fn engine_name(e: DbEngine) -> &'static str {
    match e {
        DbEngine::Postgres => "postgres",
        DbEngine::Mysql => "mysql",
        DbEngine::Sqlite => "sqlite",
    }
}

/// A job's `name` (`kind`: `object` or `database`): not empty, and one that may name a file.
fn job_name(ctx: &Ctx, span: &Range<usize>, kind: &str, name: &str) -> Result<(), PlanError> {
    if name.is_empty() {
        return Err(ctx.err(span.clone(), format!("{kind} job has an empty `name`"), None));
    }
    if !is_job_name(name) {
        return Err(ctx.err(
            span.clone(),
            format!("{kind} job name `{}` is not allowed", name.escape_debug()),
            Some(JOB_NAME_HINT),
        ));
    }
    Ok(())
}

/// The `[[objects]]` jobs, in order; `names` collects the job names taken.
pub(super) fn object_jobs(
    ctx: &Ctx,
    providers: &BTreeMap<String, ProviderSpec>,
    wire: Vec<Spanned<ObjectJobWire>>,
    names: &mut HashSet<String>,
) -> Result<Vec<ObjectJob>, PlanError> {
    let mut objects: Vec<ObjectJob> = Vec::new();
    // The jobs that delete extraneous objects, by index (and names taken, in a set): with 50,000
    // jobs, scanning every earlier job for each was 15 s of a `check` (issue 14).
    let mut mirrors: Vec<usize> = Vec::new();
    for spanned in wire {
        let job = object_job(ctx, providers, spanned, names, &objects, &mirrors)?;
        if job.delete_extraneous {
            mirrors.push(objects.len());
        }
        objects.push(job);
    }
    Ok(objects)
}

/// One `[[objects]]` job, checked against the jobs before it (`mirrors` indexes `objects`).
fn object_job(
    ctx: &Ctx,
    providers: &BTreeMap<String, ProviderSpec>,
    spanned: Spanned<ObjectJobWire>,
    names: &mut HashSet<String>,
    objects: &[ObjectJob],
    mirrors: &[usize],
) -> Result<ObjectJob, PlanError> {
    let span = spanned.span();
    job_name(ctx, &span, "object", &spanned.get_ref().name)?;
    if !names.insert(spanned.get_ref().name.clone()) {
        return Err(ctx.err(
            span,
            format!("two object jobs are named `{}`", spanned.get_ref().name),
            None,
        ));
    }
    let from = location(ctx, providers, &spanned.get_ref().from, "from", false)?;
    let to = location(ctx, providers, &spanned.get_ref().to, "to", false)?;
    super::encrypt::object_job_ends(ctx, providers, &spanned, &from, &to)?;
    let account = super::accounts::account_map(ctx, providers, &spanned, &from, &to)?;
    let w = spanned.into_inner();
    let (src, dst) = (&providers[&from.provider], &providers[&to.provider]);
    // An account job's buckets are compared once they are known (`run::accounts`).
    if account.is_none() && src.overlaps(&from.prefix, dst, &to.prefix) {
        return Err(ctx.err(
            w.to.span(),
            format!(
                "job `{}`: destination `{}` overlaps source `{}`: it would copy onto itself",
                w.name,
                w.to.get_ref(),
                w.from.get_ref()
            ),
            Some("use a different bucket, or prefixes that do not contain one another"),
        ));
    }
    for (key, globs) in [("include", &w.include), ("exclude", &w.exclude)] {
        for g in globs {
            compile_glob(g)
                .map_err(|e| ctx.err(span.clone(), format!("job `{}`: `{key}` glob `{g}`: {e}", w.name), None))?;
        }
    }
    let max_delete = max_delete(ctx, &w)?;
    let keep_replaced = keep_replaced(ctx, &w, &to)?;
    if account.is_none() {
        mirror_clash(ctx, providers, &w, &to, objects, mirrors)?;
    }
    let (line, _) = ctx.line_col(span.start);
    Ok(ObjectJob {
        name: w.name,
        from,
        to,
        include: w.include,
        exclude: w.exclude,
        verify: w.verify,
        delete_extraneous: w.delete_extraneous,
        max_delete,
        allow_empty_source: w.allow_empty_source,
        line,
        shard: None,
        keep_replaced,
        keep_replaced_days: w.keep_replaced_days,
        account,
    })
}

/// A job's `keep-replaced` prefix: `ROOT{date}REST/`, ROOT a folder (not empty: the
/// destination's keys under it are the history, kept out of the job's comparison) and not the
/// folder the job writes to; `keep-replaced-days` only with it.
fn keep_replaced(ctx: &Ctx, w: &ObjectJobWire, to: &Location) -> Result<Option<String>, PlanError> {
    let Some(v) = &w.keep_replaced else {
        if w.keep_replaced_days.is_some() {
            return Err(ctx.err(
                w.to.span(),
                format!("job `{}`: `keep-replaced-days` needs `keep-replaced`", w.name),
                Some("keep-replaced = \"history/{date}/\" keeps what a run replaces; the days say how long"),
            ));
        }
        return Ok(None);
    };
    let t = v.get_ref();
    let hint = Some("for example keep-replaced = \"history/{date}/\" (a folder of the destination provider)");
    let root = t.split("{date}").next().unwrap_or("");
    let problem = if t.matches("{date}").count() != 1 {
        Some("must hold `{date}` once (each run's replaced objects go under its date)".to_string())
    } else if root.is_empty() || !root.ends_with('/') || !t.ends_with('/') || t.starts_with('/') {
        Some("must be a folder `ROOT/{date}/`, ROOT not empty".to_string())
    } else if to.prefix.starts_with(root) {
        Some(format!(
            "its folder `{root}` holds the job's destination `{}`",
            to.prefix
        ))
    } else {
        crate::keys::prefix_path(&t.replace("{date}", "2000-01-01"))
            .err()
            .map(|e| format!("is not a folder a key can be in: {e}"))
    };
    match problem {
        Some(p) => Err(ctx.err(v.span(), format!("job `{}`: `keep-replaced` = `{t}` {p}", w.name), hint)),
        None => Ok(Some(t.clone())),
    }
}

/// A job's `max-delete`: a count, or a percentage as a string (`"10%"`).
fn max_delete(ctx: &Ctx, w: &ObjectJobWire) -> Result<MaxDelete, PlanError> {
    let Some(v) = &w.max_delete else {
        return Ok(MaxDelete::default());
    };
    let parsed = match v.get_ref() {
        toml::Value::Integer(n) if *n >= 0 => Some(MaxDelete::Count(*n as u64)),
        toml::Value::String(t) => t
            .trim()
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<u64>().ok())
            .filter(|p| *p <= 100)
            .map(MaxDelete::Percent),
        _ => None,
    };
    parsed.ok_or_else(|| {
        ctx.err(
            v.span(),
            format!("job `{}`: `max-delete` must be a count or a percentage", w.name),
            Some("for example max-delete = 100 or max-delete = \"10%\" (the default is \"50%\")"),
        )
    })
}

/// A mirror deletes what its source lacks: another job writing under the same destination
/// prefix would see its copies deleted on every run. A mirror is compared with every earlier
/// job, any other job with the earlier mirrors only.
fn mirror_clash(
    ctx: &Ctx,
    providers: &BTreeMap<String, ProviderSpec>,
    w: &ObjectJobWire,
    to: &Location,
    objects: &[ObjectJob],
    mirrors: &[usize],
) -> Result<(), PlanError> {
    let dst = &providers[&to.provider];
    let overlapping = |j: &&ObjectJob| providers[&j.to.provider].overlaps(&j.to.prefix, dst, &to.prefix);
    let clash = if w.delete_extraneous {
        objects.iter().find(overlapping)
    } else {
        mirrors.iter().map(|&i| &objects[i]).find(overlapping)
    };
    match clash {
        None => Ok(()),
        Some(other) => Err(ctx.err(
            w.to.span(),
            format!(
                "job `{}`: destination `{}` overlaps job `{}`'s destination `{}`, and one of \
                 them deletes extraneous objects: each would delete the other's copies",
                w.name,
                w.to.get_ref(),
                other.name,
                other.to
            ),
            Some("give each mirrored job a destination prefix of its own"),
        )),
    }
}

/// The `[[databases]]` jobs, in order; their names share `names` with the object jobs.
pub(super) fn database_jobs(
    ctx: &Ctx,
    base_dir: &Path,
    providers: &BTreeMap<String, ProviderSpec>,
    wire: Vec<Spanned<DatabaseJobWire>>,
    names: &mut HashSet<String>,
) -> Result<Vec<DatabaseJob>, PlanError> {
    let mut databases: Vec<DatabaseJob> = Vec::new();
    // Where each database job's keys land, to refuse two jobs that could write one key.
    let mut key_spaces: Vec<String> = Vec::new();
    for spanned in wire {
        let span = spanned.span();
        let w = spanned.into_inner();
        job_name(ctx, &span, "database", &w.name)?;
        url_env_names(ctx, &span, &w)?;
        if !names.insert(w.name.clone()) {
            return Err(ctx.err(span, format!("two jobs are named `{}`", w.name), None));
        }
        database_source(ctx, &span, &w)?;
        let (to, space) = dump_keys(ctx, providers, &w, &databases, &key_spaces)?;
        key_spaces.push(space);
        let retention = retention(ctx, &w, &to)?;
        let (jobs, globals) = super::dbopts::parallel_and_globals(ctx, &w, &to)?;
        let (line, _) = ctx.line_col(span.start);
        databases.push(DatabaseJob {
            name: w.name,
            engine: w.engine,
            url_env: w.url_env,
            path: w.path.map(|p| base_dir.join(p)),
            to,
            compression: w.compression,
            restore_to_env: w.restore_to_env,
            restore_to_path: w.restore_to_path.map(|p| base_dir.join(p)),
            restore_replace: w.restore_replace,
            retention,
            jobs,
            globals,
            globals_passwords: w.globals_passwords.map(|g| *g.get_ref()).unwrap_or(false),
            line,
        });
    }
    Ok(databases)
}

/// The job's retention rules. The calendar rules date each dump by the `{timestamp}` in its key,
/// so a template without one (a fixed key: one dump, replaced each time) is refused at the
/// first such rule's line rather than silently keeping nothing apart.
fn retention(ctx: &Ctx, w: &DatabaseJobWire, to: &Location) -> Result<Retention, PlanError> {
    let rules = [
        ("keep-daily", &w.keep_daily),
        ("keep-weekly", &w.keep_weekly),
        ("keep-monthly", &w.keep_monthly),
    ];
    if !to.prefix.contains("{timestamp}") {
        if let Some((key, rule)) = rules.iter().find_map(|(k, r)| r.as_ref().map(|r| (k, r))) {
            return Err(ctx.err(
                rule.span(),
                format!(
                    "database `{}`: `{key}` needs `{{timestamp}}` in `to` (`{}`) to tell the day of a dump",
                    w.name, to.prefix
                ),
                Some("add {timestamp} to the key, e.g. to = \"backup:db/{name}/{timestamp}.dump\""),
            ));
        }
    }
    let value = |r: &Option<Spanned<usize>>| r.as_ref().map(|r| *r.get_ref());
    Ok(Retention {
        last: w.keep,
        daily: value(&w.keep_daily),
        weekly: value(&w.keep_weekly),
        monthly: value(&w.keep_monthly),
    })
}

/// `url-env` and `restore-to-env` name environment variables, never hold a URL.
fn url_env_names(ctx: &Ctx, span: &Range<usize>, w: &DatabaseJobWire) -> Result<(), PlanError> {
    for (key, var) in [("url-env", &w.url_env), ("restore-to-env", &w.restore_to_env)] {
        if let Some((v, why)) = var.as_deref().and_then(|v| Some((v, env_name_problem(v)?))) {
            return Err(ctx.err(
                span.clone(),
                format!(
                    "database `{}`: `{key}` must name an environment variable, got `{}`: {why}",
                    w.name,
                    crate::redact::mask(v)
                ),
                Some("put the connection URL in an environment variable and name it here"),
            ));
        }
    }
    Ok(())
}

/// The engine's source is given: a `path` for sqlite, a `url-env` for the servers.
fn database_source(ctx: &Ctx, span: &Range<usize>, w: &DatabaseJobWire) -> Result<(), PlanError> {
    match (w.engine, &w.url_env, &w.path) {
        (DbEngine::Sqlite, _, None) => Err(ctx.err(
            span.clone(),
            format!("database `{}`: sqlite needs `path`", w.name),
            None,
        )),
        (DbEngine::Postgres | DbEngine::Mysql, None, _) => Err(ctx.err(
            span.clone(),
            format!(
                "database `{}`: `url-env` is required for engine `{}`",
                w.name,
                engine_name(w.engine)
            ),
            Some("name an environment variable that holds the connection URL, e.g. url-env = \"DATABASE_URL\""),
        )),
        _ => Ok(()),
    }
}

/// The job's `to` as a key template (a folder gets `{name}-{timestamp}.dump`) and its key space,
/// refused when an earlier job could write one of its keys.
fn dump_keys(
    ctx: &Ctx,
    providers: &BTreeMap<String, ProviderSpec>,
    w: &DatabaseJobWire,
    databases: &[DatabaseJob],
    key_spaces: &[String],
) -> Result<(Location, String), PlanError> {
    let mut to = location(ctx, providers, &w.to, "to", true)?;
    if providers[&to.provider].is_account() {
        return Err(ctx.err(
            w.to.span(),
            format!(
                "database job `{}`: `to` names provider `{}`, which stands for a whole account (`\"*\"`)",
                w.name, to.provider
            ),
            Some("a dump goes into one bucket: define a provider for it with its `bucket`"),
        ));
    }
    if to.prefix.is_empty() || to.prefix.ends_with('/') {
        to.prefix.push_str("{name}-{timestamp}.dump");
    }
    let space = db_key_space(&providers[&to.provider], &to.prefix.replace("{name}", &w.name));
    if let Some(i) = key_spaces
        .iter()
        .position(|other| crate::template::keys_can_collide(other, &space))
    {
        let other = &databases[i];
        return Err(ctx.err(
            w.to.span(),
            format!(
                "database `{}`: `to` = `{}` can write the same keys as database `{}` (line {}): \
                 each job's retention and restore would take the other's dumps for its own",
                w.name,
                w.to.get_ref(),
                other.name,
                other.line
            ),
            Some("give each job keys of its own, e.g. to = \"backup:db/{name}/{timestamp}.dump\""),
        ));
    }
    Ok((to, space))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::testing::{parse, OK};

    #[test]
    fn valid_plan_parses() {
        let p = parse(OK).unwrap();
        assert_eq!(p.objects[0].to.prefix, "copy/");
        assert_eq!(p.providers["src"].local_root(), Some(Path::new("./in")));
        assert_eq!(p.settings.state_dir, Path::new("./.ferry/plan"));
    }

    #[test]
    fn misspelled_key_names_line_and_key() {
        let text = OK.replace("root = \"in\"", "roots = \"in\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("plan.toml:4:"), "{e}");
        assert!(e.contains("unknown field `roots`"), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let text = OK.replace("name = \"all\"", "name = 3");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("plan.toml:10:"), "{e}");
    }

    #[test]
    fn undefined_provider_is_named() {
        let text = OK.replace("to = \"dst:copy/\"", "to = \"nope:copy/\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("provider `nope`, which is not defined"), "{e}");
        assert!(e.contains("defined providers: dst, src"), "{e}");
    }

    /// Issue 12: prefixes list exactly as written; one no key can be in is refused at its line.
    #[test]
    fn prefixes_with_empty_or_dot_segments_refused() {
        for bad in ["a//", "a/./", "../", "x/../y/", "./"] {
            let text = OK.replace("to = \"dst:copy/\"", &format!("to = \"dst:{bad}\""));
            let e = parse(&text).unwrap_err().to_string();
            assert!(
                e.contains("is not a folder a key can be in") && e.starts_with("plan.toml:"),
                "{bad}: {e}"
            );
        }
        for good in ["C#/", "photos [2020]/", "100%/", "~old/", "a b/{c}/"] {
            let text = OK.replace("to = \"dst:copy/\"", &format!("to = \"dst:{good}\""));
            assert_eq!(parse(&text).unwrap().objects[0].to.prefix, good);
        }
    }

    #[test]
    fn overlapping_source_and_destination_refused() {
        let text = OK.replace("to = \"dst:copy/\"", "to = \"src:copy/\"");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("overlaps"), "{e}");
    }

    /// Issue 13: two database jobs that could write one key would delete and restore each
    /// other's dumps; refused at the second job's `to`, naming the first.
    #[test]
    fn database_jobs_that_can_write_one_key_refused() {
        let db = |name: &str, to: &str| {
            format!("\n[[databases]]\nname = \"{name}\"\nengine = \"sqlite\"\npath = \"x.db\"\nto = \"{to}\"\n")
        };
        let text = format!(
            "{OK}{}{}",
            db("a", "dst:db/{timestamp}.dump"),
            db("b", "dst:db/{timestamp}.dump")
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("plan.toml:24:6:"), "{e}");
        assert!(
            e.contains("database `b`") && e.contains("database `a` (line 14)"),
            "{e}"
        );
        let text = format!("{OK}{}{}", db("a", "dst:db/"), db("a-old", "dst:db/"));
        assert!(parse(&text).is_ok(), "`db/a-…` and `db/a-old-…` never meet");
    }

    /// Issue 18: calendar retention rules date a dump by its key's `{timestamp}`; without one
    /// they are refused at their own line, while `keep` stays accepted as before.
    #[test]
    fn calendar_retention_needs_a_timestamp() {
        let db = |to: &str, rules: &str| {
            format!("{OK}\n[[databases]]\nname = \"a\"\nengine = \"sqlite\"\npath = \"x.db\"\nto = \"{to}\"\n{rules}")
        };
        let e = parse(&db("dst:db/{name}.dump", "keep = 3\nkeep-weekly = 4\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("plan.toml:20:"), "{e}");
        assert!(e.contains("`keep-weekly` needs `{timestamp}`"), "{e}");
        assert!(parse(&db("dst:db/{name}.dump", "keep = 3\n")).is_ok());
        let p = parse(&db("dst:db/", "keep-daily = 7\nkeep-monthly = 6\n")).unwrap();
        let r = p.databases[0].retention;
        assert_eq!((r.last, r.daily, r.weekly, r.monthly), (None, Some(7), None, Some(6)));
    }
}
