//! Where a database lives: a job's connection URL, read from the environment variable the plan
//! names and taken apart ([`DbUrl`], and [`MysqlUrl`] for MySQL/MariaDB). The password and the other
//! secret parameters are registered for redaction as they are parsed and kept as [`Secret`]s;
//! those libpq reads from no variable go into a [`ServiceFile`]. How a URL becomes a tool's argv
//! and environment is `process`; which engine a job's database is, `database`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::DumpError;
use crate::plan::{DatabaseJob, DbEngine};
use crate::redact::{self, redact, Secret};

/// A database URL taken apart. The password and every other secret parameter are [`Secret`]s
/// (registered with `redact` when parsed) and never reach a child's argv, where `ps` shows them
/// to every user: the password travels in the child's environment (`PGPASSWORD`, `MYSQL_PWD`),
/// the secrets libpq reads from no variable (`sslpassword`, ...) in a [`ServiceFile`].
#[derive(Debug, Clone)]
pub(super) struct DbUrl {
    /// The URL as written minus its password and secret parameters: what messages and dump
    /// records may show, and (with [`DbUrl::conninfo`]) what libpq gets.
    pub(super) without_password: String,
    pub(super) user: Option<String>,
    pub(super) password: Option<Secret>,
    /// Secret query parameters other than the password (`sslpassword`, `oauth_client_secret`).
    pub(super) secret_params: Vec<(String, Secret)>,
    /// Where `secret_params` are written for libpq; set by [`postgres_from_env`] when there are any.
    pub(super) service_file: Option<std::sync::Arc<ServiceFile>>,
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    /// For MySQL/MariaDB always `None`: [`MysqlUrl::new`] moves it to where it cannot be missing.
    pub(super) database: Option<String>,
    pub(super) params: Vec<(String, String)>,
}

/// A MySQL/MariaDB URL, which always names its database: the tools take it as an argument.
#[derive(Debug, Clone)]
pub(super) struct MysqlUrl {
    /// The URL, its `database` taken out into [`MysqlUrl::database`] (so there is one).
    pub(super) url: DbUrl,
    pub(super) database: String,
}

impl MysqlUrl {
    /// `None` when the URL names no database.
    pub(super) fn new(mut url: DbUrl) -> Option<MysqlUrl> {
        let database = url.database.take()?;
        Some(MysqlUrl { url, database })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `scheme://[user[:password]@]host[:port][/database][?k=v&...]`. The password is
/// registered for redaction before anything else can fail, so no error can quote it.
pub(super) fn parse_db_url(engine: DbEngine, raw: &str) -> Result<DbUrl, String> {
    let raw = raw.trim();
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err("not a URL (expected `scheme://user:password@host:port/database`)".into());
    };
    // The last `@` ends the user info: an unencoded `/` or `?` in a password must not move it.
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let (user, mut password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pw)) => {
                redact::register(pw);
                (Some(user), Some(Secret::new(percent_decode(pw))))
            }
            None => (Some(u), None),
        },
        None => (None, None),
    };
    check_scheme(engine, scheme)?;
    let (before_query, query) = match hostpart.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (hostpart, None),
    };
    let (hostport, path) = match before_query.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (before_query, None),
    };
    let Query {
        params,
        secret_params,
        kept: kept_query,
    } = split_query(query.unwrap_or(""), &mut password);
    let (host, port) = split_host_port(hostport)?;
    let mut without_password = format!("{scheme}://");
    if let Some(u) = user {
        without_password.push_str(u);
        without_password.push('@');
    }
    without_password.push_str(hostport);
    if let Some(p) = path {
        without_password.push('/');
        without_password.push_str(p);
    }
    if !kept_query.is_empty() {
        without_password.push('?');
        without_password.push_str(&kept_query.join("&"));
    }
    Ok(DbUrl {
        without_password,
        user: user.filter(|u| !u.is_empty()).map(percent_decode),
        password: password.filter(|p| !p.expose().is_empty()),
        secret_params,
        service_file: None,
        host,
        port,
        database: path.map(percent_decode).filter(|d| !d.is_empty()),
        params,
    })
}

fn check_scheme(engine: DbEngine, scheme: &str) -> Result<(), String> {
    let schemes: &[&str] = match engine {
        DbEngine::Postgres => &["postgres", "postgresql"],
        DbEngine::Mysql => &["mysql", "mariadb"],
        DbEngine::Sqlite => &[],
    };
    let lower = scheme.to_ascii_lowercase();
    if !schemes.contains(&lower.as_str()) {
        return Err(format!(
            "scheme `{scheme}://` is not one of {}",
            schemes.join("://, ") + "://"
        ));
    }
    Ok(())
}

/// A URL's query taken apart.
struct Query<'a> {
    /// Decoded parameters that are no secret.
    params: Vec<(String, String)>,
    secret_params: Vec<(String, Secret)>,
    /// The `k=v` pairs kept in the URL as written.
    kept: Vec<&'a str>,
}

/// Sorts a query's pairs into plain and secret ones, registering every secret for redaction.
/// A `password=` pair sets `password` unless the user info already did.
fn split_query<'a>(query: &'a str, password: &mut Option<Secret>) -> Query<'a> {
    let mut params = Vec::new();
    let mut secret_params = Vec::new();
    let mut kept_query = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // libpq decodes a key as it decodes a value: `pass%77ord` is `password`.
        let key = percent_decode(k);
        if key == "password" {
            // libpq accepts `?password=`; it is moved to the environment like the other form.
            redact::register(v);
            if password.is_none() {
                *password = Some(Secret::new(percent_decode(v)));
            }
            continue;
        }
        if SECRET_PARAMS.contains(&key.as_str()) {
            redact::register(v);
            secret_params.push((key, Secret::new(percent_decode(v))));
            continue;
        }
        params.push((percent_decode(k), percent_decode(v)));
        kept_query.push(pair);
    }
    Query {
        params,
        secret_params,
        kept: kept_query,
    }
}

/// Query parameters that hold a secret, besides `password`: libpq's `sslpassword` (the client
/// key's passphrase) and `oauth_client_secret` (PostgreSQL 18). They are taken out of the URL;
/// https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS lists them.
const SECRET_PARAMS: &[&str] = &["sslpassword", "oauth_client_secret"];

/// The section ferry writes in its service file, and names with `service=` in the URL it gives.
const SERVICE_NAME: &str = "ferry";

/// A libpq connection service file (https://www.postgresql.org/docs/current/libpq-pgservice.html)
/// holding the secret parameters no environment variable carries, created with mode 0600 in the
/// temporary directory and removed when the last connection using it is dropped. Children find
/// it through `PGSERVICEFILE`; their argv only says `service=ferry`.
#[derive(Debug)]
pub(super) struct ServiceFile(pub(super) PathBuf);

impl ServiceFile {
    fn create(params: &[(String, Secret)]) -> io::Result<ServiceFile> {
        use std::os::unix::fs::OpenOptionsExt;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "ferry-pgservice-{}-{}-{nanos}.conf",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut text = format!("[{SERVICE_NAME}]\n");
        for (k, v) in params {
            text.push_str(&format!("{k}={}\n", v.expose()));
        }
        // create_new: never follow a link another user planted at that name.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let file = ServiceFile(path);
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        Ok(file)
    }
}

impl Drop for ServiceFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl DbUrl {
    /// Whether both URLs are written alike, or name the same host, port, database and
    /// parameters: the same database, without asking a server.
    pub(super) fn same_spelling(&self, other: &DbUrl) -> bool {
        self.without_password == other.without_password
            || (self.host == other.host
                && self.port == other.port
                && self.database == other.database
                && self.params == other.params)
    }

    /// The connection string a PostgreSQL tool gets in its argv: no secret, and `service=ferry`
    /// when the secrets wait in the service file.
    pub(super) fn conninfo(&self) -> String {
        match self.service_file {
            None => self.without_password.clone(),
            Some(_) => {
                let sep = if self.without_password.contains('?') { '&' } else { '?' };
                format!("{}{sep}service={SERVICE_NAME}", self.without_password)
            }
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(Option<String>, Option<u16>), String> {
    if hostport.is_empty() || hostport.contains(',') {
        // Empty: the client's default (a local socket). Several hosts: libpq's failover list,
        // passed through untouched in the URL.
        return Ok((None, None));
    }
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed `[` in an IPv6 host")?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("port `{p}` is not a number"))?),
        None => None,
    };
    Ok((Some(percent_decode(host)).filter(|h| !h.is_empty()), port))
}

/// The URL in `var` (named by the plan's `key`), and how to report it unusable.
fn read_env<'a>(
    job: &'a DatabaseJob,
    var: &'a str,
    key: &'static str,
) -> Result<(String, impl Fn(String, &'static str) -> DumpError + 'a), DumpError> {
    let raw = match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => {
            return Err(DumpError::MissingEnv {
                job: job.name.clone(),
                var: var.into(),
                key,
            })
        }
    };
    let bad = move |message: String, hint: &'static str| DumpError::BadUrl {
        job: job.name.clone(),
        var: var.into(),
        message: redact(&message),
        hint,
    };
    Ok((raw, bad))
}

/// A PostgreSQL URL from the environment, its secret parameters in a service file.
pub(super) fn postgres_from_env(job: &DatabaseJob, var: &str, key: &'static str) -> Result<DbUrl, DumpError> {
    let (raw, bad) = read_env(job, var, key)?;
    let mut u = parse_db_url(DbEngine::Postgres, &raw).map_err(|m| {
        bad(
            m,
            "postgres://user:password@host:5432/database (percent-encode special characters)",
        )
    })?;
    attach_service_file(job, &mut u, bad)?;
    Ok(u)
}

/// A MySQL/MariaDB URL from the environment.
pub(super) fn mysql_from_env(job: &DatabaseJob, var: &str, key: &'static str) -> Result<MysqlUrl, DumpError> {
    let (raw, bad) = read_env(job, var, key)?;
    let u = parse_db_url(DbEngine::Mysql, &raw).map_err(|m| {
        bad(
            m,
            "mysql://user:password@host:3306/database (percent-encode special characters)",
        )
    })?;
    check_mysql_url(u, bad)
}

/// PostgreSQL: the URL's secret parameters (if any) go into a [`ServiceFile`] of ferry's own.
fn attach_service_file(
    job: &DatabaseJob,
    u: &mut DbUrl,
    bad: impl Fn(String, &'static str) -> DumpError,
) -> Result<(), DumpError> {
    if let Some((k, _)) = u.secret_params.first() {
        if u.params.iter().any(|(p, _)| p == "service") {
            return Err(bad(
                format!("`{k}` cannot be combined with `service`: ferry passes `{k}` to the tools through a service file of its own"),
                "put the secret in your service file instead of the URL",
            ));
        }
        if u.secret_params.iter().any(|(_, v)| v.expose().contains(['\n', '\r'])) {
            return Err(bad(
                format!("the value of `{k}` holds a line break"),
                "a libpq parameter value is one line",
            ));
        }
        let file = ServiceFile::create(&u.secret_params).map_err(|e| DumpError::Io {
            job: job.name.clone(),
            what: format!(
                "cannot write the connection service file for `{k}` in `{}`",
                std::env::temp_dir().display()
            ),
            message: redact(&e.to_string()),
        })?;
        u.service_file = Some(std::sync::Arc::new(file));
    }
    Ok(())
}

/// MySQL/MariaDB: no PostgreSQL secret parameter, a database named, only known parameters.
fn check_mysql_url(u: DbUrl, bad: impl Fn(String, &'static str) -> DumpError) -> Result<MysqlUrl, DumpError> {
    if let Some((k, _)) = u.secret_params.first() {
        return Err(bad(
            format!("parameter `{k}` is PostgreSQL's, not MySQL's"),
            "known parameters: socket, ssl, ssl-ca, ssl-cert, ssl-key, ssl-verify-server-cert",
        ));
    }
    let Some(u) = MysqlUrl::new(u) else {
        return Err(bad(
            "it names no database".into(),
            "add the database: mysql://user@host:3306/DATABASE",
        ));
    };
    for (k, _) in &u.url.params {
        if !MYSQL_PARAMS.contains(&k.as_str()) {
            return Err(bad(
                format!("unknown parameter `{k}`"),
                "known parameters: socket, ssl, ssl-ca, ssl-cert, ssl-key, ssl-verify-server-cert",
            ));
        }
    }
    Ok(u)
}

/// URL query parameters understood for MySQL/MariaDB, each passed as `--NAME[=VALUE]`.
const MYSQL_PARAMS: &[&str] = &[
    "socket",
    "ssl",
    "ssl-ca",
    "ssl-cert",
    "ssl-key",
    "ssl-verify-server-cert",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::database::Server;
    use crate::dump::process::{dump_command, query_command, restore_command};
    use crate::dump::testing::{args_of, env_of, job};
    use crate::plan::Compression;

    #[test]
    fn urls_lose_their_password_to_a_secret() {
        let u = parse_db_url(
            DbEngine::Postgres,
            "postgres://app:p%40ss%2Fw0rd!@db.example:5433/main?sslmode=require",
        )
        .unwrap();
        assert_eq!(u.password.as_ref().unwrap().expose(), "p@ss/w0rd!");
        assert_eq!(
            u.without_password,
            "postgres://app@db.example:5433/main?sslmode=require"
        );
        assert_eq!(
            (u.host.as_deref(), u.port, u.database.as_deref()),
            (Some("db.example"), Some(5433), Some("main"))
        );
        // An unencoded `/` in a password does not move the host.
        let u = parse_db_url(DbEngine::Mysql, "mysql://root:a/b?c@[::1]:3306/shop").unwrap();
        assert_eq!(u.password.as_ref().unwrap().expose(), "a/b?c");
        assert_eq!(
            (u.host.as_deref(), u.port, u.database.as_deref()),
            (Some("::1"), Some(3306), Some("shop"))
        );
        // libpq's `?password=` form is moved out too.
        let u = parse_db_url(
            DbEngine::Postgres,
            "postgresql://u@h/d?password=QueryPw99&application_name=x",
        )
        .unwrap();
        assert_eq!(u.password.as_ref().unwrap().expose(), "QueryPw99");
        assert_eq!(u.without_password, "postgresql://u@h/d?application_name=x");
        assert!(format!("{u:?}").find("QueryPw99").is_none());
        assert!(parse_db_url(DbEngine::Postgres, "mysql://h/d").is_err());
        assert!(parse_db_url(DbEngine::Postgres, "host=h dbname=d").is_err());
        // A failed parse still registered the password before failing.
        let _ = parse_db_url(DbEngine::Postgres, "postgres://u:EarlyFail77@h:notaport/d");
        assert_eq!(redact("EarlyFail77"), "***");
    }

    /// Issue 14: `sslpassword` (and any secret parameter libpq reads from no variable) leaves the
    /// URL, goes into a 0600 service file named by `PGSERVICEFILE`, and the argv says only
    /// `service=ferry`; the file is gone with the last connection.
    #[test]
    fn secret_parameters_reach_libpq_through_a_service_file() {
        let job = job("db/{name}/{timestamp}.dump");
        let var = "FERRY_UNIT_SSLPASSWORD_URL";
        std::env::set_var(
            var,
            "postgres://app@127.0.0.1:5432/test?sslmode=prefer&sslpassword=Ssl%2FPass-7Hq2&pass%77ord=QPw-44x",
        );
        let u = postgres_from_env(&job, var, "url-env").unwrap();
        assert_eq!(u.without_password, "postgres://app@127.0.0.1:5432/test?sslmode=prefer");
        assert_eq!(u.password.as_ref().unwrap().expose(), "QPw-44x");
        let pg = Server::Postgres(&u);
        for (_, cmd) in [
            dump_command(pg, Compression::Zstd, None),
            restore_command(pg),
            query_command(pg),
        ] {
            let args = args_of(&cmd).join(" ");
            assert!(!args.contains("Ssl") && !args.contains("QPw-44x"), "{args}");
            assert!(
                args.contains("--dbname=postgres://app@127.0.0.1:5432/test?sslmode=prefer&service=ferry"),
                "{args}"
            );
            assert_eq!(env_of(&cmd, "PGPASSWORD").as_deref(), Some("QPw-44x"));
            let file = PathBuf::from(env_of(&cmd, "PGSERVICEFILE").unwrap());
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(
                std::fs::read_to_string(&file).unwrap(),
                "[ferry]\nsslpassword=Ssl/Pass-7Hq2\n"
            );
        }
        let file = u.service_file.as_ref().unwrap().0.clone();
        assert_eq!(redact(&format!("{u:?} Ssl%2FPass-7Hq2")).matches("Ssl").count(), 0);
        drop(u);
        assert!(!file.exists(), "the service file outlived its connection");
        // With the user's own `service=`, ferry's file cannot be named: refused, unprinted.
        std::env::set_var(var, "postgres://h/d?service=prod&sslpassword=Ssl-Other-8Kq");
        let e = postgres_from_env(&job, var, "url-env").unwrap_err().to_string();
        assert!(
            e.contains("`sslpassword` cannot be combined with `service`") && !e.contains("Other-8Kq"),
            "{e}"
        );
        std::env::remove_var(var);
    }
}
