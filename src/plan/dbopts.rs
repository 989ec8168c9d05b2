//! A database job's options that make a dump more than one object: `jobs` (a PostgreSQL
//! directory-format dump, `dump/directory`) and `globals` (the server's roles beside the dump,
//! `dump/globals`), checked across fields with the line of the key at fault.

use super::validate::{engine_name, Ctx};
use super::wire::DatabaseJobWire;
use super::{DbEngine, Location, PlanError};

/// Most parallel workers `jobs` may ask for: each is a server connection and a process.
const MAX_DUMP_JOBS: i64 = 64;

/// The job's `jobs` (1..=64, PostgreSQL only) and `globals` (not SQLite). Both write more than
/// one object a dump, so both need `{timestamp}` in `to` (a fixed key could not replace them
/// all at once).
pub(super) fn parallel_and_globals(ctx: &Ctx, w: &DatabaseJobWire, to: &Location) -> Result<(u32, bool), PlanError> {
    let fixed = !to.prefix.contains("{timestamp}");
    let ts_hint = Some("add {timestamp} to the key, e.g. to = \"backup:db/{name}/{timestamp}.dump\"");
    let jobs = match &w.jobs {
        None => 1,
        Some(j) => {
            let n = *j.get_ref();
            let problem = if !(1..=MAX_DUMP_JOBS).contains(&n) {
                Some((format!("must be 1 to {MAX_DUMP_JOBS}, got {n}"), None))
            } else if n > 1 && w.engine != DbEngine::Postgres {
                Some((
                    format!(
                        "is for PostgreSQL only (parallel `pg_dump -Fd`), and the engine is `{}`",
                        engine_name(w.engine)
                    ),
                    Some("remove `jobs`, or set jobs = 1"),
                ))
            } else if n > 1 && fixed {
                Some((
                    format!(
                        "> 1 needs `{{timestamp}}` in `to` (`{}`): a directory dump is many objects",
                        to.prefix
                    ),
                    ts_hint,
                ))
            } else {
                None
            };
            if let Some((p, hint)) = problem {
                return Err(ctx.err(j.span(), format!("database `{}`: `jobs` {p}", w.name), hint));
            }
            n as u32
        }
    };
    let globals = w.globals.as_ref().is_some_and(|g| *g.get_ref());
    if let Some(g) = w.globals.as_ref().filter(|_| globals) {
        let problem = match w.engine {
            DbEngine::Sqlite => Some("SQLite has no users or roles to dump".to_string()),
            DbEngine::Postgres | DbEngine::Mysql if fixed => Some(format!(
                "needs `{{timestamp}}` in `to` (`{}`): the globals are an object beside the dump",
                to.prefix
            )),
            DbEngine::Postgres | DbEngine::Mysql => None,
        };
        if let Some(p) = problem {
            return Err(ctx.err(g.span(), format!("database `{}`: `globals = true`: {p}", w.name), None));
        }
    }
    if let Some(p) = w.globals_passwords.as_ref().filter(|p| *p.get_ref() && !globals) {
        return Err(ctx.err(
            p.span(),
            format!("database `{}`: `globals-passwords` needs `globals = true`", w.name),
            None,
        ));
    }
    Ok((jobs, globals))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{parse, OK};

    fn db(engine: &str, to: &str, extra: &str) -> String {
        let source = if engine == "sqlite" {
            "path = \"x.db\""
        } else {
            "url-env = \"DB\""
        };
        format!("{OK}\n[[databases]]\nname = \"a\"\nengine = \"{engine}\"\n{source}\nto = \"{to}\"\n{extra}")
    }

    /// Issue 18: `jobs` and `globals` are refused at their own line where they cannot work.
    #[test]
    fn jobs_and_globals_refused_where_they_cannot_work() {
        let cases = [
            ("postgres", "dst:db/", "jobs = 0\n", "`jobs` must be 1 to 64, got 0"),
            ("postgres", "dst:db/", "jobs = 65\n", "`jobs` must be 1 to 64, got 65"),
            ("mysql", "dst:db/", "jobs = 4\n", "`jobs` is for PostgreSQL only"),
            ("sqlite", "dst:db/", "jobs = 2\n", "`jobs` is for PostgreSQL only"),
            (
                "postgres",
                "dst:db/{name}.dump",
                "jobs = 4\n",
                "needs `{timestamp}` in `to`",
            ),
            ("sqlite", "dst:db/", "globals = true\n", "SQLite has no users or roles"),
            ("mysql", "dst:db/{name}.dump", "globals = true\n", "needs `{timestamp}`"),
            (
                "postgres",
                "dst:db/{name}.dump",
                "globals = true\n",
                "needs `{timestamp}`",
            ),
            (
                "postgres",
                "dst:db/",
                "globals-passwords = true\n",
                "needs `globals = true`",
            ),
        ];
        for (engine, to, extra, want) in cases {
            let e = parse(&db(engine, to, extra)).unwrap_err().to_string();
            assert!(e.starts_with("plan.toml:19:"), "{extra}: {e}");
            assert!(e.contains(want) && e.contains("database `a`"), "{extra}: {e}");
        }
        let p = parse(&db(
            "postgres",
            "dst:db/",
            "jobs = 4\nglobals = true\nglobals-passwords = true\n",
        ))
        .unwrap();
        let j = &p.databases[0];
        assert_eq!((j.jobs, j.globals, j.globals_passwords), (4, true, true));
        let p = parse(&db("mysql", "dst:db/", "jobs = 1\nglobals = false\n")).unwrap();
        assert_eq!((p.databases[0].jobs, p.databases[0].globals), (1, false));
        let p = parse(&db("mysql", "dst:db/", "globals = true\n")).unwrap();
        assert!(p.databases[0].globals);
    }
}
