//! Table row counts and content checksums, per engine: how each table of a database is listed
//! and summed (`psql`, `mariadb`, or SQLite in-process), in which snapshot ([`ReadAt`]), and how a
//! restore target's tables compare with the source's and with a dump's record. The checksum is
//! order-independent: each row's canonical text is hashed with MD5 and the halves of those
//! hashes summed over the table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path as FsPath;
use std::process::Stdio;
use std::time::Duration;

use md5::{Digest as _, Md5};
use serde::Serialize;

use super::database::{Database, Server};
use super::process::{query_command, run_query, spawn_error, tool_result};
use super::url::{DbUrl, MysqlUrl};
use super::{DumpError, TableCheck};
use crate::redact::redact;

/// Row count and content checksum of one table, as compared after a restore and as kept in a
/// dump's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TableSum {
    pub rows: u64,
    pub checksum: String,
}

/// The restored tables against each reference given: every table any side has, matching when
/// the target has it and every reference holds the same rows and checksum.
pub(super) fn compare_tables(
    restored: &BTreeMap<String, TableSum>,
    source: Option<&BTreeMap<String, TableSum>>,
    recorded: Option<&BTreeMap<String, TableSum>>,
) -> Vec<TableCheck> {
    let names: BTreeSet<&String> = restored
        .keys()
        .chain(source.into_iter().flat_map(|m| m.keys()))
        .chain(recorded.into_iter().flat_map(|m| m.keys()))
        .collect();
    names
        .into_iter()
        .map(|name| {
            let (a, b, r) = (
                source.and_then(|m| m.get(name)),
                restored.get(name),
                recorded.and_then(|m| m.get(name)),
            );
            let agrees = |reference: Option<&BTreeMap<String, TableSum>>| reference.is_none_or(|m| m.get(name) == b);
            TableCheck {
                table: name.clone(),
                source_rows: a.map(|x| x.rows),
                restored_rows: b.map(|x| x.rows),
                source_checksum: a.map(|x| x.checksum.clone()),
                restored_checksum: b.map(|x| x.checksum.clone()),
                recorded_rows: r.map(|x| x.rows),
                recorded_checksum: r.map(|x| x.checksum.clone()),
                matches: b.is_some() && agrees(source) && agrees(recorded),
            }
        })
        .collect()
}

/// Which state of the database the checksum queries read.
#[derive(Debug, Clone, Copy)]
pub(super) enum ReadAt<'a> {
    /// Whatever is committed when each query runs.
    Now,
    /// PostgreSQL: the snapshot a held transaction exported (`pg_export_snapshot()`), the one
    /// `pg_dump --snapshot` dumps. MySQL/MariaDB: a consistent-snapshot transaction of its own,
    /// begun as the dump's is (a server cannot share one between sessions).
    Dump(Option<&'a str>),
}

impl ReadAt<'_> {
    /// The statements a checksum script starts with.
    fn prelude(self, server: Server) -> String {
        match (self, server) {
            (ReadAt::Now, _) => String::new(),
            (ReadAt::Dump(Some(id)), Server::Postgres(_)) => format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSET TRANSACTION SNAPSHOT '{}';\n",
                id.replace('\'', "''")
            ),
            (ReadAt::Dump(None), Server::Postgres(_)) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n".into(),
            (ReadAt::Dump(_), Server::Mysql(_)) => "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ;\n\
                 START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY;\n"
                .into(),
        }
    }
}

/// Every table's row count and checksum. The checksum is order-independent: each row's canonical
/// text is hashed with MD5, and the two 64-bit halves of those hashes are summed exactly over the
/// table (a sum, so neither physical order nor a sort matters; exact, so duplicate rows count).
pub(super) async fn table_sums(
    job: &str,
    db: &Database,
    at: ReadAt<'_>,
) -> Result<BTreeMap<String, TableSum>, DumpError> {
    match db {
        Database::Postgres(u) => pg_sums(job, u, &at.prelude(Server::Postgres(u))).await,
        Database::Mysql(u) => my_sums(job, u, &at.prelude(Server::Mysql(u))).await,
        // No snapshot to ask for: a dump's sums read the consistent copy it uploads.
        Database::Sqlite(path) => {
            let p = path.clone();
            tokio::task::spawn_blocking(move || sqlite_sums(&p))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                .map_err(|message| DumpError::Sqlite {
                    job: job.into(),
                    path: path.clone(),
                    message: redact(&message),
                })
        }
    }
}

pub(super) fn unhex(s: &str) -> Option<String> {
    let b = s.trim().as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = b
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The pairs of hex-encoded names a listing query printed (`hex \t hex` lines), decoded.
fn hex_pairs(job: &str, what: &str, list: &str) -> Result<Vec<(String, String)>, DumpError> {
    let mut pairs = Vec::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let pair = line
            .split_once('\t')
            .and_then(|(a, b)| Some((unhex(a)?, unhex(b)?)))
            .ok_or_else(|| DumpError::Io {
                job: job.into(),
                what: what.into(),
                message: format!("unexpected line `{}`", redact(line)),
            })?;
        pairs.push(pair);
    }
    Ok(pairs)
}

fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn my_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Parses `index \t rows \t sum_hi \t sum_lo` lines into the named tables.
fn parse_sums(job: &str, tool: &str, out: &str, names: &[String]) -> Result<BTreeMap<String, TableSum>, DumpError> {
    let bad = |line: &str| DumpError::Io {
        job: job.into(),
        what: format!("reading the checksum output of `{tool}`"),
        message: format!("unexpected line `{}`", redact(line)),
    };
    let mut map = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').map(str::trim).collect();
        let [i, rows, hi, lo] = f[..] else {
            return Err(bad(line));
        };
        let name = i
            .parse::<usize>()
            .ok()
            .and_then(|i| names.get(i))
            .ok_or_else(|| bad(line))?;
        let rows = rows.parse::<u64>().map_err(|_| bad(line))?;
        map.insert(
            name.clone(),
            TableSum {
                rows,
                checksum: format!("{hi}:{lo}"),
            },
        );
    }
    if map.len() != names.len() {
        return Err(DumpError::Io {
            job: job.into(),
            what: format!("reading the checksum output of `{tool}`"),
            message: format!("expected {} tables, got {}", names.len(), map.len()),
        });
    }
    Ok(map)
}

/// PostgreSQL: every ordinary table (partitions included, partitioned parents excluded: they hold
/// no rows) outside the system schemas. A row's canonical text is `ROW(t.*)::text` under fixed
/// session settings ([`PG_CHECKSUM_OPTIONS`](super::process::PG_CHECKSUM_OPTIONS)).
async fn pg_sums(job: &str, url: &DbUrl, prelude: &str) -> Result<BTreeMap<String, TableSum>, DumpError> {
    let conn = Server::Postgres(url);
    let list = run_query(
        job,
        conn,
        format!(
            "{prelude}SELECT encode(convert_to(n.nspname, 'UTF8'), 'hex'), encode(convert_to(c.relname, 'UTF8'), 'hex') \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
             ORDER BY 1, 2;\n"
        ),
    )
    .await?;
    let tables = hex_pairs(job, "listing tables with `psql`", &list)?;
    if tables.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut script = prelude.to_string();
    let mut names = Vec::new();
    for (i, (s, t)) in tables.iter().enumerate() {
        script.push_str(&format!(
            "SELECT {i}, count(*), coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint), 0), \
             coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint), 0) \
             FROM (SELECT md5(ROW(r.*)::text) AS h FROM {}.{} AS r) AS x;\n",
            pg_ident(s),
            pg_ident(t)
        ));
        names.push(format!("{s}.{t}"));
    }
    let out = run_query(job, conn, script).await?;
    parse_sums(job, "psql", &out, &names)
}

/// MySQL/MariaDB: every base table of the URL's database. A row's canonical text is
/// `CONCAT_WS(',', QUOTE(c1), QUOTE(c2), ...)` in column order (QUOTE keeps NULL apart from
/// 'NULL' and escapes separators), with the session time zone at UTC.
async fn my_sums(job: &str, url: &MysqlUrl, prelude: &str) -> Result<BTreeMap<String, TableSum>, DumpError> {
    let (script, names) = my_script(&my_tables(job, url).await?);
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    // The transaction begins after the time zone is set: neither statement may end the other.
    let out = run_query(
        job,
        Server::Mysql(url),
        format!("SET SESSION time_zone = '+00:00';\n{prelude}{script}"),
    )
    .await?;
    parse_sums(job, "mariadb", &out, &names)
}

/// Each base table of the URL's database and its columns, in order.
async fn my_tables(job: &str, url: &MysqlUrl) -> Result<BTreeMap<String, Vec<String>>, DumpError> {
    let list = run_query(
        job,
        Server::Mysql(url),
        "SELECT HEX(c.TABLE_NAME), HEX(c.COLUMN_NAME) FROM information_schema.COLUMNS c \
         JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' \
         ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION;\n"
            .into(),
    )
    .await?;
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (t, c) in hex_pairs(job, "listing tables", &list)? {
        tables.entry(t).or_default().push(c);
    }
    Ok(tables)
}

/// The queries that sum `tables`, one result row each, and the tables' names in that order.
fn my_script(tables: &BTreeMap<String, Vec<String>>) -> (String, Vec<String>) {
    let mut script = String::new();
    let mut names = Vec::new();
    for (i, (t, cols)) in tables.iter().enumerate() {
        let row: Vec<String> = cols.iter().map(|c| format!("QUOTE({})", my_ident(c))).collect();
        script.push_str(&format!(
            "SELECT {i}, COUNT(*), COALESCE(SUM(CAST(CONV(SUBSTRING(h, 1, 16), 16, 10) AS UNSIGNED)), 0), \
             COALESCE(SUM(CAST(CONV(SUBSTRING(h, 17, 16), 16, 10) AS UNSIGNED)), 0) \
             FROM (SELECT MD5(CONCAT_WS(',', {})) AS h FROM {}) AS x;\n",
            row.join(", "),
            my_ident(t)
        ));
        names.push(t.clone());
    }
    (script, names)
}

/// MySQL/MariaDB checksums whose consistent snapshot begins now, with the dump's, and whose
/// queries run later ([`HeldSums::finish`]): a one-pass move (`tee`) sums after its restore,
/// so that the sums take no CPU from it, without widening the gap between the two snapshots.
pub(super) struct HeldSums {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    tool: &'static str,
    job: String,
    script: String,
    names: Vec<String>,
}

impl HeldSums {
    pub(super) async fn begin(job: &str, url: &MysqlUrl) -> Result<HeldSums, DumpError> {
        use tokio::io::AsyncWriteExt;
        let (script, names) = my_script(&my_tables(job, url).await?);
        let (tool, mut cmd) = query_command(Server::Mysql(url));
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| spawn_error(job, tool, e))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let prelude = format!(
            "SET SESSION time_zone = '+00:00';\n{}",
            ReadAt::Dump(None).prelude(Server::Mysql(url))
        );
        let written = async {
            stdin.write_all(prelude.as_bytes()).await?;
            stdin.flush().await
        };
        written.await.map_err(|e| DumpError::Io {
            job: job.into(),
            what: format!("starting the checksums' transaction with `{tool}`"),
            message: e.to_string(),
        })?;
        Ok(HeldSums {
            child,
            stdin,
            tool,
            job: job.into(),
            script,
            names,
        })
    }

    /// Runs the sums in the held snapshot and ends the session.
    pub(super) async fn finish(self) -> Result<BTreeMap<String, TableSum>, DumpError> {
        use tokio::io::AsyncWriteExt;
        let HeldSums {
            child,
            mut stdin,
            tool,
            job,
            script,
            names,
        } = self;
        let write = async move {
            let r = stdin.write_all(format!("{script}COMMIT;\n").as_bytes()).await;
            drop(stdin);
            r
        };
        let (written, out) = tokio::join!(write, child.wait_with_output());
        let io = |e: std::io::Error| DumpError::Io {
            job: job.clone(),
            what: format!("summing the tables with `{tool}`"),
            message: e.to_string(),
        };
        let out = out.map_err(io)?;
        tool_result(
            &job,
            tool,
            Ok(out.status),
            redact(String::from_utf8_lossy(&out.stderr).trim()),
        )?;
        written.map_err(io)?;
        parse_sums(&job, tool, &String::from_utf8_lossy(&out.stdout), &names)
    }
}

/// SQLite: every ordinary table (not `sqlite_*`, not virtual tables, whose shadow tables are
/// checked instead). A row's canonical form is each value's type tag and bytes: `N`, `I` + i64,
/// `R` + f64 bits, `T`/`B` + length + bytes.
fn sqlite_sums(path: &FsPath) -> Result<BTreeMap<String, TableSum>, String> {
    use rusqlite::types::ValueRef;
    use rusqlite::{Connection, OpenFlags};
    if !path.is_file() {
        return Err("no such file".into());
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let names: Vec<String> = {
        let mut stmt = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
            )
            .map_err(|e| e.to_string())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())?
    };
    let mut map = BTreeMap::new();
    for name in names {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {}", pg_ident(&name)))
            .map_err(|e| format!("table `{name}`: {e}"))?;
        let ncols = stmt.column_count();
        let mut rows = stmt.query([]).map_err(|e| format!("table `{name}`: {e}"))?;
        let (mut count, mut hi, mut lo) = (0u64, 0u128, 0u128);
        while let Some(row) = rows.next().map_err(|e| format!("table `{name}`: {e}"))? {
            let mut h = Md5::new();
            for i in 0..ncols {
                match row.get_ref(i).map_err(|e| e.to_string())? {
                    ValueRef::Null => h.update(b"N"),
                    ValueRef::Integer(v) => {
                        h.update(b"I");
                        h.update(v.to_le_bytes());
                    }
                    ValueRef::Real(v) => {
                        h.update(b"R");
                        h.update(v.to_bits().to_le_bytes());
                    }
                    ValueRef::Text(t) => {
                        h.update(b"T");
                        h.update((t.len() as u64).to_le_bytes());
                        h.update(t);
                    }
                    ValueRef::Blob(b) => {
                        h.update(b"B");
                        h.update((b.len() as u64).to_le_bytes());
                        h.update(b);
                    }
                }
            }
            let d = h.finalize();
            hi += u64::from_be_bytes(d[..8].try_into().expect("16-byte digest")) as u128;
            lo += u64::from_be_bytes(d[8..].try_into().expect("16-byte digest")) as u128;
            count += 1;
        }
        map.insert(
            name,
            TableSum {
                rows: count,
                checksum: format!("{hi}:{lo}"),
            },
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_checksum_ignores_row_order_but_not_content() {
        let dir = std::env::temp_dir().join(format!("ferry-dump-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let make = |name: &str, rows: &[(i64, Option<&str>)]| {
            let p = dir.join(name);
            let _ = std::fs::remove_file(&p);
            let c = rusqlite::Connection::open(&p).unwrap();
            c.execute("CREATE TABLE t(a INTEGER, b TEXT)", []).unwrap();
            for (a, b) in rows {
                c.execute("INSERT INTO t VALUES (?1, ?2)", rusqlite::params![a, b])
                    .unwrap();
            }
            sqlite_sums(&p).unwrap()
        };
        let a = make("a.db", &[(1, Some("x")), (2, None), (2, None)]);
        let b = make("b.db", &[(2, None), (1, Some("x")), (2, None)]);
        let c = make("c.db", &[(1, Some("x")), (2, None), (2, Some(""))]);
        let d = make("d.db", &[(1, Some("x")), (2, None)]);
        assert_eq!(a, b);
        assert_ne!(a["t"].checksum, c["t"].checksum, "NULL and '' differ");
        assert_ne!(a["t"].rows, d["t"].rows);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
