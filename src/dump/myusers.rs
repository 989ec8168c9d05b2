//! MariaDB/MySQL's part of `globals = true`: the server's accounts and their grants, as SQL that
//! recreates them. For each account that is not the server's own (`root`, `mariadb.sys`,
//! `mysql`, MySQL's `mysql.*` accounts; roles, whose host is empty, are left out too),
//! `SHOW CREATE USER` and `SHOW GRANTS`, with `CREATE USER` made `CREATE USER IF NOT EXISTS` so
//! that an account the target already has is kept (its grants are still added). Without
//! `globals-passwords`, every `IDENTIFIED ...` clause (password hashes, `USING` strings) is cut,
//! from `CREATE USER` and from MariaDB's first `GRANT`, which repeats it.

use std::collections::BTreeSet;

use super::database::Server;
use super::process::run_query;
use super::url::MysqlUrl;
use super::DumpError;

/// The accounts to dump or to find on a target, as `'user'@'host'` (SQL string literals).
const ACCOUNTS: &str = "SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.user \
    WHERE Host <> '' AND User NOT IN ('', 'root', 'mariadb.sys', 'mysql', 'mysql.sys', \
    'mysql.session', 'mysql.infoschema', 'PUBLIC') ORDER BY 1;\n";

/// The accounts `url`'s server has (see [`ACCOUNTS`]).
pub(super) async fn accounts(job: &str, url: &MysqlUrl) -> Result<Vec<String>, DumpError> {
    let out = run_query(job, Server::Mysql(url), ACCOUNTS.into()).await?;
    Ok(out.lines().map(unescape).filter(|l| !l.is_empty()).collect())
}

/// The SQL that recreates the server's accounts and grants (see the module's description).
pub(super) async fn take(job: &str, url: &MysqlUrl, passwords: bool) -> Result<Vec<u8>, DumpError> {
    let accounts = accounts(job, url).await?;
    let mut sql = String::from("-- accounts and grants, by ferry (globals = true)\n");
    if accounts.is_empty() {
        return Ok(sql.into_bytes());
    }
    let script: String = accounts
        .iter()
        .map(|a| format!("SHOW CREATE USER {a};\nSHOW GRANTS FOR {a};\n"))
        .collect();
    let out = run_query(job, Server::Mysql(url), script).await?;
    for line in out.lines().map(unescape).filter(|l| !l.is_empty()) {
        let line = match line.strip_prefix("CREATE USER ") {
            Some(rest) => format!("CREATE USER IF NOT EXISTS {rest}"),
            None => line,
        };
        let line = if passwords { line } else { without_identified(&line) };
        sql.push_str(&line);
        sql.push_str(";\n");
    }
    Ok(sql.into_bytes())
}

/// The accounts of `script` (the `CREATE USER IF NOT EXISTS` it holds) that the target already
/// has: kept as they are, their grants added.
pub(super) fn existing(script: &str, target: &BTreeSet<String>) -> Vec<String> {
    target
        .iter()
        .filter(|a| {
            let ticked = ticked(a);
            script.contains(&format!("CREATE USER IF NOT EXISTS {ticked}"))
        })
        .cloned()
        .collect()
}

/// `'user'@'host'` as `SHOW CREATE USER` spells it: `` `user`@`host` ``.
fn ticked(account: &str) -> String {
    account
        .split_once("'@'")
        .map(|(u, h)| {
            let (u, h) = (u.trim_start_matches('\''), h.trim_end_matches('\''));
            format!("`{}`@`{}`", u.replace('`', "``"), h.replace('`', "``"))
        })
        .unwrap_or_default()
}

/// A line of `--batch` output with its escapes undone (`\\`, `\t`, `\n`, `\0`).
fn unescape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

/// `stmt` without its `IDENTIFIED ...` clause: up to the next clause (`REQUIRE`, `WITH`,
/// `PASSWORD EXPIRE`, `ACCOUNT`, `DEFAULT ROLE`) or the end. A hash or `USING` string is a
/// quoted literal without spaces, so a keyword found after it is the next clause.
fn without_identified(stmt: &str) -> String {
    let Some(at) = stmt.find(" IDENTIFIED ") else {
        return stmt.to_string();
    };
    let rest = &stmt[at + 1..];
    let end = [" REQUIRE ", " WITH ", " PASSWORD EXPIRE", " ACCOUNT ", " DEFAULT ROLE "]
        .iter()
        .filter_map(|k| rest.find(k))
        .min()
        .unwrap_or(rest.len());
    format!("{}{}", &stmt[..at], &rest[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_cut_from_create_user_and_grant() {
        let cases = [
            (
                "CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED BY PASSWORD '*D821809F681A40A6E379B50D0463EFAE20BDD122'",
                "CREATE USER IF NOT EXISTS `app`@`%`",
            ),
            (
                "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*D8218' WITH MAX_QUERIES_PER_HOUR 9",
                "GRANT USAGE ON *.* TO `app`@`%` WITH MAX_QUERIES_PER_HOUR 9",
            ),
            (
                "CREATE USER `m`@`localhost` IDENTIFIED VIA mysql_native_password USING 'invalid' OR unix_socket ACCOUNT LOCK",
                "CREATE USER `m`@`localhost` ACCOUNT LOCK",
            ),
            ("GRANT SELECT ON `a\\_b`.* TO `app`@`%`", "GRANT SELECT ON `a\\_b`.* TO `app`@`%`"),
        ];
        for (stmt, want) in cases {
            assert_eq!(without_identified(stmt), want);
        }
        assert_eq!(
            unescape(r"GRANT SELECT ON `a\\_b`.* TO `x`@`%`"),
            r"GRANT SELECT ON `a\_b`.* TO `x`@`%`"
        );
        assert_eq!(ticked("'app'@'%'"), "`app`@`%`");
        let target: BTreeSet<String> = ["'app'@'%'".to_string(), "'other'@'%'".to_string()].into();
        let script = "CREATE USER IF NOT EXISTS `app`@`%`;\nGRANT USAGE ON *.* TO `app`@`%`;\n";
        assert_eq!(existing(script, &target), vec!["'app'@'%'".to_string()]);
    }
}
