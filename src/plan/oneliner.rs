//! `ferry copy SRC DST` and `ferry sync SRC DST` as a plan: the command line is turned into the
//! TOML text of an equivalent plan (providers `src` and `dst`, one `[[objects]]` job), which is
//! then parsed by [`Plan::from_str`] like any plan file. The plan stays the one source of truth:
//! a one-liner can do nothing a plan cannot, every check a plan gets it gets, and
//! `--print-plan` shows exactly the text that runs.
//!
//! Values are written typed by their key (the provider keys that are booleans in
//! [`wire`](super::wire) are booleans; every other provider key is a string), quoted as TOML
//! basic strings. Secrets are never taken as values: `*-env` keys name variables, and the plan's
//! own checks refuse a value that looks like a secret.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::url::{self, Location};
use super::Plan;
use crate::error::Error;

/// The provider keys whose values are booleans (`tests` checks this against the wire struct).
const BOOL_KEYS: &[&str] = &["path-style", "allow-http", "use-azure-cli", "anonymous"];

/// `copy`, or `sync` (copy, then delete what the source does not have, within the mirror guards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Copy,
    Sync,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Copy => "copy",
            Mode::Sync => "sync",
        }
    }
}

/// One side as the command line gives it: a location and what a provider table holds.
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub location: String,
    pub preset: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub account: Option<String>,
    /// `KEY=VALUE`, any provider-table key.
    pub opts: Vec<String>,
}

/// The job's keys.
#[derive(Debug, Clone, Default)]
pub struct JobKeys {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// `size`, `checksum` or `deep`.
    pub verify: Option<String>,
    /// A count or `N%` (sync).
    pub max_delete: Option<String>,
    pub allow_empty_source: bool,
}

/// A whole one-liner.
#[derive(Debug, Clone)]
pub struct OneLiner {
    pub mode: Mode,
    pub from: Side,
    pub to: Side,
    pub job: JobKeys,
}

/// The plan a one-liner stands for.
#[derive(Debug)]
pub struct Generated {
    /// The TOML text (a comment header, then the plan) that `--print-plan` prints.
    pub text: String,
    /// `.ferry/<copy|sync>-<8 hex of the plan's hash>`, relative to the working directory.
    pub state_dir: PathBuf,
    pub plan: Plan,
}

impl OneLiner {
    /// Builds the plan's text and parses it; `cwd` resolves relative paths. Errors name the
    /// argument or flag (exit 2).
    pub fn build(&self, cwd: &Path) -> Result<Generated, Error> {
        let parse =
            |side: &Side, arg: &str| url::parse(&side.location, cwd).map_err(|e| bad_arg(arg, &side.location, &e));
        let (from, to) = (parse(&self.from, "SRC")?, parse(&self.to, "DST")?);
        let mut body = String::new();
        body += &provider_table("src", &self.from, &from, "SRC", "--from")?;
        body += &provider_table("dst", &self.to, &to, "DST", "--to")?;
        body += &self.job_table(&from, &to)?;
        let hash = Sha256::digest(body.as_bytes());
        let hex: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
        let mode = self.mode.as_str();
        let state_dir = Path::new(".ferry").join(format!("{mode}-{hex}"));
        let text = format!(
            "# The plan `ferry {mode}` runs (`--print-plan`). Check it with `ferry check FILE`, run it\n\
             # with `ferry run FILE`; the one-liner keeps its journal in {}/ (give\n\
             # `--state-dir {}` to `ferry run` to continue it).\n\n{body}",
            state_dir.display(),
            state_dir.display()
        );
        let plan = Plan::from_str(Path::new(&format!("(ferry {mode})")), &text).map_err(|e| {
            Error::usage(format!(
                "{e}\nnote: in the plan built from the command line, provider `src` is SRC with the --from-* \
                 flags and `dst` is DST with the --to-* flags"
            ))
        })?;
        Ok(Generated { text, state_dir, plan })
    }

    fn job_table(&self, from: &Location, to: &Location) -> Result<String, Error> {
        let (job, mode) = (&self.job, self.mode.as_str());
        let mut t = format!(
            "[[objects]]\nname = \"{mode}\"\nfrom = {}\nto = {}\n",
            toml_string(&format!("src:{}", from.prefix())),
            toml_string(&format!("dst:{}", to.prefix())),
        );
        let list = |v: &[String]| v.iter().map(|s| toml_string(s)).collect::<Vec<_>>().join(", ");
        if !job.include.is_empty() {
            t += &format!("include = [{}]\n", list(&job.include));
        }
        if !job.exclude.is_empty() {
            t += &format!("exclude = [{}]\n", list(&job.exclude));
        }
        if let Some(v) = &job.verify {
            t += &format!("verify = {}\n", toml_string(v));
        }
        if self.mode == Mode::Sync {
            t += "delete-extraneous = true\n";
            if let Some(m) = &job.max_delete {
                // A count is an integer, `N%` a string (docs/plan.md).
                let value = match m.parse::<u64>() {
                    Ok(n) => n.to_string(),
                    Err(_) => toml_string(m),
                };
                t += &format!("max-delete = {value}\n");
            }
            if job.allow_empty_source {
                t += "allow-empty-source = true\n";
            }
        } else if job.max_delete.is_some() || job.allow_empty_source {
            return Err(Error::usage(
                "--max-delete and --allow-empty-source guard the deletes of `ferry sync`; `ferry copy` deletes nothing",
            ));
        }
        Ok(t)
    }
}

fn bad_arg(arg: &str, value: &str, why: &str) -> Error {
    Error::usage(format!("{arg} `{value}`: {why}"))
}

/// `[providers.NAME]` for one side: the type and what the URL names, then the flags, then the
/// `--*-opt` keys in the order given.
fn provider_table(name: &str, side: &Side, location: &Location, arg: &str, flag: &str) -> Result<String, Error> {
    let mut keys: Vec<(String, String, String)> = Vec::new(); // (key, TOML value, where from)
    let mut set = |key: &str, value: String, from: String| -> Result<(), Error> {
        if let Some((_, _, first)) = keys.iter().find(|(k, _, _)| k == key) {
            return Err(Error::usage(format!(
                "{from}: `{key}` is already given by {first}; give it once"
            )));
        }
        keys.push((key.to_string(), value, from));
        Ok(())
    };
    set("type", toml_string(&location.store_type().to_string()), arg.into())?;
    if let Some(p) = &side.preset {
        set("preset", toml_string(p), format!("{flag}-preset"))?;
    }
    match location {
        Location::Local(root) => {
            let root = root
                .to_str()
                .ok_or_else(|| bad_arg(arg, &side.location, "the path is not UTF-8"))?;
            set("root", toml_string(root), arg.into())?;
        }
        Location::S3 { bucket, .. } | Location::Gcs { bucket, .. } => set("bucket", toml_string(bucket), arg.into())?,
        Location::Azure { account, container, .. } => {
            let account = match (account, &side.account) {
                (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b) => {
                    return Err(Error::usage(format!(
                        "{flag}-account `{b}` contradicts the account `{a}` in {arg} `{}`",
                        side.location
                    )))
                }
                (Some(a), _) | (None, Some(a)) => a,
                (None, None) => {
                    return Err(bad_arg(
                        arg,
                        &side.location,
                        &format!(
                            "an az:// URL does not name the storage account: give {flag}-account NAME \
                             (or write https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX)"
                        ),
                    ))
                }
            };
            set("account", toml_string(account), arg.into())?;
            set("container", toml_string(container), arg.into())?;
        }
    }
    for (key, value) in [
        ("endpoint", &side.endpoint),
        ("region", &side.region),
        ("profile", &side.profile),
    ] {
        if let Some(v) = value {
            set(key, toml_string(v), format!("{flag}-{key}"))?;
        }
    }
    if side.account.is_some() && !matches!(location, Location::Azure { .. }) {
        return Err(Error::usage(format!(
            "{flag}-account: only an Azure location (az://, https://ACCOUNT.blob.core.windows.net/) has an account"
        )));
    }
    for opt in &side.opts {
        let (key, value) = opt_key_value(opt, flag)?;
        set(key, value, format!("{flag}-opt {key}"))?;
    }
    // An http:// endpoint written on the command line is explicit: allow it, visibly.
    let endpoint = keys.iter().find(|(k, _, _)| k == "endpoint").map(|(_, v, _)| v.clone());
    let http = endpoint.is_some_and(|e| e.starts_with("\"http://"));
    if http && !keys.iter().any(|(k, _, _)| k == "allow-http") {
        keys.push(("allow-http".into(), "true".into(), String::new()));
    }
    let mut t = format!("[providers.{name}]\n");
    for (k, v, _) in keys {
        t += &format!("{k} = {v}\n");
    }
    Ok(t + "\n")
}

/// `KEY=VALUE` from `--from-opt`/`--to-opt`, the value typed by its key.
fn opt_key_value<'a>(opt: &'a str, flag: &str) -> Result<(&'a str, String), Error> {
    let Some((key, value)) = opt.split_once('=') else {
        return Err(Error::usage(format!(
            "{flag}-opt `{opt}`: expected KEY=VALUE, e.g. {flag}-opt path-style=true"
        )));
    };
    let key = key.trim();
    if matches!(key, "type" | "root" | "bucket" | "container") {
        return Err(Error::usage(format!(
            "{flag}-opt {key}: the location (SRC or DST) gives `{key}`"
        )));
    }
    if !key.chars().all(|c| c.is_ascii_lowercase() || c == '-') || key.is_empty() {
        return Err(Error::usage(format!(
            "{flag}-opt `{key}`: not a provider key (docs/plan.md, `[providers.NAME]`)"
        )));
    }
    if !BOOL_KEYS.contains(&key) {
        return Ok((key, toml_string(value)));
    }
    match value {
        "true" | "false" => Ok((key, value.to_string())),
        _ => Err(Error::usage(format!(
            "{flag}-opt {key}: `{value}` is not a boolean (true or false)"
        ))),
    }
}

/// A TOML basic string: `"`, `\` and every control character TOML forbids escaped.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ProviderKind, StoreType};

    fn side(location: &str) -> Side {
        Side {
            location: location.into(),
            ..Side::default()
        }
    }

    fn one(mode: Mode, from: Side, to: Side) -> OneLiner {
        OneLiner {
            mode,
            from,
            to,
            job: JobKeys::default(),
        }
    }

    fn err(o: &OneLiner) -> String {
        o.build(Path::new("/work")).unwrap_err().to_string()
    }

    #[test]
    fn a_copy_is_a_plan_with_two_providers_and_one_job() {
        let mut from = side("s3://media/photos");
        from.endpoint = Some("http://127.0.0.1:8333".into());
        from.region = Some("us-east-1".into());
        from.opts = vec![
            "path-style=true".into(),
            "access-key-id-env=K".into(),
            "secret-access-key-env=S".into(),
        ];
        let mut o = one(Mode::Copy, from, side("backup"));
        o.job.exclude = vec!["tmp/**".into()];
        o.job.verify = Some("deep".into());
        let g = o.build(Path::new("/work")).unwrap();
        let body = g.text.split_once("\n\n").unwrap().1;
        assert_eq!(
            body,
            "[providers.src]\ntype = \"s3\"\nbucket = \"media\"\nendpoint = \"http://127.0.0.1:8333\"\n\
             region = \"us-east-1\"\npath-style = true\naccess-key-id-env = \"K\"\nsecret-access-key-env = \"S\"\n\
             allow-http = true\n\n[providers.dst]\ntype = \"local\"\nroot = \"/work/backup\"\n\n\
             [[objects]]\nname = \"copy\"\nfrom = \"src:photos/\"\nto = \"dst:\"\nexclude = [\"tmp/**\"]\n\
             verify = \"deep\"\n"
        );
        let hex = format!("{:x}", Sha256::digest(body.as_bytes()));
        assert_eq!(g.state_dir, Path::new(".ferry").join(format!("copy-{}", &hex[..8])));
        let job = &g.plan.objects[0];
        assert!(!job.delete_extraneous);
        let ProviderKind::S3(s3) = &g.plan.providers["src"].kind else {
            panic!("not s3")
        };
        assert!(s3.path_style && s3.allow_http);
        assert_eq!(g.plan.providers["dst"].local_root(), Some(Path::new("/work/backup")));
        // The printed text is the plan: parsed again, the same.
        let again = Plan::from_str(Path::new("/elsewhere/p.toml"), &g.text).unwrap();
        assert_eq!(again.providers["dst"].local_root(), Some(Path::new("/work/backup")));
    }

    #[test]
    fn a_sync_mirrors_within_its_guards() {
        let mut o = one(Mode::Sync, side("/a"), side("gs://b/x"));
        o.job.max_delete = Some("10".into());
        o.job.allow_empty_source = true;
        let g = o.build(Path::new("/")).unwrap();
        assert!(g
            .text
            .contains("delete-extraneous = true\nmax-delete = 10\nallow-empty-source = true\n"));
        assert!(g.plan.objects[0].delete_extraneous);
        assert!(g.state_dir.to_str().unwrap().starts_with(".ferry/sync-"));
        o.job.max_delete = Some("5%".into());
        assert!(o.build(Path::new("/")).unwrap().text.contains("max-delete = \"5%\"\n"));
        let mut copy = one(Mode::Copy, side("/a"), side("/b"));
        copy.job.max_delete = Some("3".into());
        assert!(err(&copy).contains("`ferry copy` deletes nothing"));
    }

    #[test]
    fn azure_needs_its_account_once() {
        let e = err(&one(Mode::Copy, side("az://box/x"), side("/b")));
        assert!(
            e.starts_with("SRC `az://box/x`: an az:// URL does not name the storage account"),
            "{e}"
        );
        let mut to = side("az://box/x");
        to.account = Some("acct".into());
        let g = one(Mode::Copy, side("/a"), to).build(Path::new("/")).unwrap();
        let ProviderKind::Azure(a) = &g.plan.providers["dst"].kind else {
            panic!("not azure")
        };
        assert_eq!((a.account.as_deref(), a.container.as_str()), (Some("acct"), "box"));
        let mut to = side("https://one.blob.core.windows.net/box");
        to.account = Some("two".into());
        assert!(err(&one(Mode::Copy, side("/a"), to)).contains("--to-account `two` contradicts"));
        let mut from = side("s3://b");
        from.account = Some("acct".into());
        assert!(err(&one(Mode::Copy, from, side("/b"))).contains("--from-account: only an Azure location"));
    }

    #[test]
    fn bad_arguments_are_named() {
        assert!(err(&one(Mode::Copy, side("ftp://x"), side("/b"))).starts_with("SRC `ftp://x`: unknown scheme"));
        let opt = |o: &str| {
            let mut from = side("s3://b");
            from.opts = vec![o.into()];
            err(&one(Mode::Copy, from, side("/b")))
        };
        assert!(opt("path-style").contains("expected KEY=VALUE"));
        assert!(opt("path-style=yes").contains("not a boolean"));
        assert!(opt("bucket=other").contains("the location (SRC or DST) gives `bucket`"));
        assert!(opt("no-such-key=1").contains("unknown field `no-such-key`"));
        assert!(opt("account=x").contains("does not apply to type `s3`"));
        let mut from = side("s3://b");
        from.endpoint = Some("https://a".into());
        from.opts = vec!["endpoint=https://b".into()];
        assert!(err(&one(Mode::Copy, from, side("/b"))).contains("already given by --from-endpoint"));
        // A secret in place of a variable name: refused by the plan's own check, never echoed.
        let e = opt("secret-access-key-env=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        assert!(
            e.contains("`secret-access-key-env` must name an environment variable"),
            "{e}"
        );
        assert!(!e.contains("wJalrXUtnFEMI"), "{e}");
        assert!(e.contains("provider `src` is SRC"), "{e}");
    }

    #[test]
    fn strings_are_quoted_as_toml_reads_them() {
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "tab\tnl\ncr\r",
            "del\u{7f}ctl\u{1}",
            "ü €",
        ] {
            let v: toml::Table = toml::from_str(&format!("k = {}", toml_string(s))).unwrap();
            assert_eq!(v["k"].as_str(), Some(s));
        }
    }

    /// BOOL_KEYS is exactly the provider keys the wire struct reads as booleans.
    #[test]
    fn bool_keys_match_the_wire() {
        use crate::plan::wire::ProviderWire;
        let types = [
            StoreType::Local,
            StoreType::Memory,
            StoreType::S3,
            StoreType::Azure,
            StoreType::Gcs,
        ];
        for key in types.iter().flat_map(|t| super::super::providers::allowed_keys(*t)) {
            let as_bool = toml::from_str::<ProviderWire>(&format!("{key} = true")).is_ok();
            assert_eq!(as_bool, BOOL_KEYS.contains(key), "{key}");
        }
    }
}
