//! Locations on the command line (`ferry copy SRC DST`): `s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix` (the account given apart),
//! `https://ACCOUNT.blob.core.windows.net/container/prefix`, and local paths (`file:///path`
//! too). Pure functions: what a location names, never whether it exists.
//!
//! A prefix is a folder, as in a plan's `provider:prefix`: `s3://b/photos` means the keys under
//! `photos/`, so the missing `/` is added. The prefix of an `s3://`, `gs://` or `az://` URL is
//! taken as written, like `aws s3` and `gcloud storage` do (`s3://b/100%/` is the folder
//! `100%/`); an `https://` URL is a URL and is percent-decoded.

use std::path::{Path, PathBuf};

use crate::catalog::StoreType;

/// Where one side of a one-liner reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory (absolute: relative paths are resolved against the working
    /// directory, so a plan printed from the one-liner means the same wherever it is saved).
    Local(PathBuf),
    S3 {
        bucket: String,
        prefix: String,
    },
    Gcs {
        bucket: String,
        prefix: String,
    },
    /// `account` is set by an `https://ACCOUNT.blob.core.windows.net/` URL, not by `az://`.
    Azure {
        account: Option<String>,
        container: String,
        prefix: String,
    },
}

impl Location {
    pub fn store_type(&self) -> StoreType {
        match self {
            Location::Local(_) => StoreType::Local,
            Location::S3 { .. } => StoreType::S3,
            Location::Gcs { .. } => StoreType::Gcs,
            Location::Azure { .. } => StoreType::Azure,
        }
    }

    /// The key prefix under the bucket or container (empty for a local directory).
    pub fn prefix(&self) -> &str {
        match self {
            Location::Local(_) => "",
            Location::S3 { prefix, .. } | Location::Gcs { prefix, .. } | Location::Azure { prefix, .. } => prefix,
        }
    }
}

/// The schemes a location may have, for messages.
pub const SCHEMES: &str =
    "s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX (with the account as a flag), \
https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX, file:///PATH or a plain path";

/// Parses one location; `cwd` resolves relative paths. The error says what is wrong with it
/// (the caller names the argument).
pub fn parse(text: &str, cwd: &Path) -> Result<Location, String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        if text.is_empty() {
            return Err("empty location".into());
        }
        return Ok(Location::Local(cwd.join(text)));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "s3" | "s3a" => bucket_and_prefix(rest).map(|(bucket, prefix)| Location::S3 { bucket, prefix }),
        "gs" => bucket_and_prefix(rest).map(|(bucket, prefix)| Location::Gcs { bucket, prefix }),
        "az" | "azure" => bucket_and_prefix(rest).map(|(container, prefix)| Location::Azure {
            account: None,
            container,
            prefix,
        }),
        "https" => azure_https(rest),
        "file" => match rest.split_once('/') {
            Some(("" | "localhost", path)) => Ok(Location::Local(PathBuf::from(format!("/{path}")))),
            _ => Err("a file:// URL names a local path: file:///PATH (no host)".into()),
        },
        "http" => Err(
            "plain http is not a location; for an S3-compatible server give s3://BUCKET/PREFIX \
                       and the server as --from-endpoint/--to-endpoint"
                .into(),
        ),
        other => Err(format!("unknown scheme `{other}://`; a location is one of: {SCHEMES}")),
    }
}

/// `BUCKET[/PREFIX]`: the bucket checked (no credentials in its place), the prefix a folder.
fn bucket_and_prefix(rest: &str) -> Result<(String, String), String> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("no bucket or container after the scheme".into());
    }
    if !bucket
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        // `user:secret@bucket` included: a secret never goes on the command line.
        return Err(format!(
            "`{}` is not a bucket or container name (letters, digits, `-`, `.`, `_`); \
             credentials never go in a URL: name their variables with --from-opt/--to-opt *-env=VAR",
            crate::redact::mask(bucket)
        ));
    }
    Ok((bucket.to_string(), folder(prefix)))
}

/// A prefix as a folder: empty, or ending with `/`.
fn folder(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    }
}

/// `ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX`, percent-decoded; no query (a SAS token is a
/// secret) and no user info.
fn azure_https(rest: &str) -> Result<Location, String> {
    const HINT: &str = "the https:// locations are Azure's https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX; \
                        for an S3-compatible server give s3://BUCKET/PREFIX and the server as --from-endpoint/--to-endpoint";
    if rest.contains('?') || rest.contains('#') {
        return Err(
            "a query or fragment in the URL (a SAS token is a secret): give the URL without it and \
                    name the variable holding the token with --from-opt/--to-opt sas-token-env=VAR"
                .into(),
        );
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.contains('@') {
        return Err("credentials in the URL (user info before `@`): never on the command line".into());
    }
    let Some(account) = host
        .to_ascii_lowercase()
        .strip_suffix(".blob.core.windows.net")
        .map(str::to_string)
        .filter(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric()))
    else {
        return Err(format!("unsupported https:// host `{host}`: {HINT}"));
    };
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| "the URL's path is not UTF-8 once percent-decoded".to_string())?;
    let (container, prefix) = bucket_and_prefix(&path)?;
    Ok(Location::Azure {
        account: Some(account),
        container,
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Location, String> {
        parse(s, Path::new("/work"))
    }

    fn s3(bucket: &str, prefix: &str) -> Location {
        Location::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn cloud_urls_name_a_bucket_and_a_folder() {
        assert_eq!(p("s3://media"), Ok(s3("media", "")));
        assert_eq!(p("s3://media/"), Ok(s3("media", "")));
        assert_eq!(p("s3://media/photos"), Ok(s3("media", "photos/")));
        assert_eq!(p("s3://media/photos/2024/"), Ok(s3("media", "photos/2024/")));
        assert_eq!(p("S3A://media/x"), Ok(s3("media", "x/")));
        // As written: no percent-decoding outside https.
        assert_eq!(p("s3://media/100%25"), Ok(s3("media", "100%25/")));
        assert_eq!(
            p("gs://b/x"),
            Ok(Location::Gcs {
                bucket: "b".into(),
                prefix: "x/".into()
            })
        );
        assert_eq!(
            p("az://box/a/b"),
            Ok(Location::Azure {
                account: None,
                container: "box".into(),
                prefix: "a/b/".into()
            })
        );
    }

    #[test]
    fn azure_https_urls_carry_the_account_and_are_decoded() {
        assert_eq!(
            p("https://Acme.blob.core.windows.net/box/my%20dir"),
            Ok(Location::Azure {
                account: Some("acme".into()),
                container: "box".into(),
                prefix: "my dir/".into()
            })
        );
        assert!(p("https://example.com/b/x")
            .unwrap_err()
            .contains("unsupported https:// host"));
        assert!(p("https://a.blob.core.windows.net/box?sv=2024&sig=abc")
            .unwrap_err()
            .contains("sas-token-env"));
        assert!(p("https://u:pw@a.blob.core.windows.net/box")
            .unwrap_err()
            .contains("credentials"));
    }

    #[test]
    fn paths_are_local_and_absolute() {
        assert_eq!(p("data/in"), Ok(Location::Local("/work/data/in".into())));
        assert_eq!(p("/srv/x/"), Ok(Location::Local("/srv/x/".into())));
        assert_eq!(p("file:///srv/x"), Ok(Location::Local("/srv/x".into())));
        assert_eq!(p("file://localhost/srv/x"), Ok(Location::Local("/srv/x".into())));
        assert!(p("file://host/srv").is_err());
        // No `://`: a path, even with a colon in it.
        assert_eq!(p("a:b"), Ok(Location::Local("/work/a:b".into())));
    }

    #[test]
    fn bad_locations_say_why() {
        assert!(p("ftp://x/y").unwrap_err().contains("unknown scheme `ftp://`"));
        assert!(p("s3://").unwrap_err().contains("no bucket"));
        assert!(p("s3:///x").unwrap_err().contains("no bucket"));
        assert!(p("http://127.0.0.1:8333/b").unwrap_err().contains("--from-endpoint"));
        assert_eq!(p(""), Err("empty location".into()));
        let e = p("s3://AKIAEXAMPLE:secretvalue@bucket/x").unwrap_err();
        assert!(e.contains("credentials never go in a URL"), "{e}");
        assert!(!e.contains("secretvalue"), "{e}");
    }
}
