//! The overlap guard: what physically identifies a store (its identity, with endpoints
//! compared as the servers they reach), whether two locations hold an object in common, and
//! where a local root resolves to (issue 14).

use std::path::{Path, PathBuf};

use super::{GcsSpec, LocalSpec, ProviderKind, ProviderSpec, S3Spec};

impl ProviderSpec {
    /// What physically identifies the store, so two provider names for one bucket are seen as one.
    pub fn identity(&self) -> String {
        self.identity_at(&normalize_endpoint(self.endpoint()))
    }

    /// [`identity`](Self::identity) with the endpoint part given.
    fn identity_at(&self, endpoint: &str) -> String {
        match &self.kind {
            ProviderKind::Local(_) => "local".into(),
            ProviderKind::Memory => format!("memory:{}", self.name),
            ProviderKind::Azure(a) => format!(
                "azure:{endpoint}:{}:{}",
                a.account.as_deref().unwrap_or("").to_ascii_lowercase(),
                a.container
            ),
            ProviderKind::S3(S3Spec { bucket, .. }) | ProviderKind::Gcs(GcsSpec { bucket, .. }) => {
                format!("{}:{endpoint}:{bucket}", self.store_type())
            }
        }
    }

    /// Whether `self:a` and `other:b` (folder prefixes) hold any object in common: one is inside
    /// the other. Identities are compared as resolved, not as spelled (issue 14): local roots as
    /// canonical paths (see [`resolve`]), so `./src`, `missing/../src` and a link to `src` are
    /// all `src`; remote stores by type, bucket and endpoint, where two endpoint spellings are
    /// one server when their scheme and port agree and their hosts resolve to a common address
    /// (`127.0.0.1` and `localhost`).
    pub fn overlaps(&self, a: &str, other: &ProviderSpec, b: &str) -> bool {
        let nested = |x: &str, y: &str| x.starts_with(y) || y.starts_with(x);
        if let (ProviderKind::Local(x), ProviderKind::Local(y)) = (&self.kind, &other.kind) {
            let full = |spec: &LocalSpec, prefix: &str| {
                let mut p = resolve(&spec.root).join(prefix).display().to_string();
                if !p.ends_with('/') {
                    p.push('/');
                }
                p
            };
            return nested(&full(x, a), &full(y, b));
        }
        // The prefixes first: the endpoints are resolved (a DNS lookup) only when they matter.
        nested(a, b) && self.same_store(other)
    }

    /// Whether two providers that stand for whole accounts (`bucket = "*"`) are one account of
    /// one service: bucket names there are one namespace.
    pub fn same_account(&self, other: &ProviderSpec) -> bool {
        self.is_account() && other.is_account() && self.same_store(other)
    }

    /// Whether two remote specs name one bucket (container) of one server.
    fn same_store(&self, other: &ProviderSpec) -> bool {
        self.identity() == other.identity()
            || (matches!(
                self.kind,
                ProviderKind::S3(_) | ProviderKind::Gcs(_) | ProviderKind::Azure(_)
            ) && self.identity_at("") == other.identity_at("")
                && same_server(self.endpoint(), other.endpoint()))
    }
}

/// Whether two endpoint URLs reach one server: same scheme and port, and host names that
/// resolve to at least one common address. A name that does not resolve is compared as spelled
/// (by the caller): a plan check must not fail because DNS is down. Two names that share an
/// address (a CDN in front of several accounts) are taken as one server: a refused plan is
/// cheaper than a bucket copied into itself.
fn same_server(a: Option<&str>, b: Option<&str>) -> bool {
    use std::net::ToSocketAddrs;
    let addrs = |e: &str| -> Option<(String, Vec<std::net::IpAddr>)> {
        let uri: http::Uri = e.trim().parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let port = uri.port_u16().or(match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        })?;
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let ips = (host, port).to_socket_addrs().ok()?.map(|s| s.ip()).collect();
        Some((format!("{scheme}:{port}"), ips))
    };
    match (a.and_then(addrs), b.and_then(addrs)) {
        (Some((sa, ia)), Some((sb, ib))) => sa == sb && ia.iter().any(|ip| ib.contains(ip)),
        _ => false,
    }
}

/// A database job's key template (`{name}` filled in) prefixed with what locates its store, so
/// that templates of one store can be compared and templates of different stores never meet:
/// the resolved directory for `local` (a root inside another root is seen), the store's identity
/// otherwise.
pub(super) fn db_key_space(spec: &ProviderSpec, filled: &str) -> String {
    match &spec.kind {
        ProviderKind::Local(local) => {
            let root = resolve(&local.root);
            format!("{}/{filled}", root.display().to_string().trim_end_matches('/'))
        }
        _ => format!("{}\u{0}{filled}", spec.identity()),
    }
}

/// Endpoints that name one server compare equal: case, a trailing `/`, a default port.
pub(crate) fn normalize_endpoint(e: Option<&str>) -> String {
    let e = e.unwrap_or("").trim_end_matches('/').to_ascii_lowercase();
    if let Some(rest) = e.strip_prefix("https://") {
        format!("https://{}", rest.strip_suffix(":443").unwrap_or(rest))
    } else if let Some(rest) = e.strip_prefix("http://") {
        format!("http://{}", rest.strip_suffix(":80").unwrap_or(rest))
    } else {
        e
    }
}

/// The directory a local root names once it exists: absolute, with every link that exists
/// followed and every `.` and `..` applied. Components are taken one at a time, as the kernel
/// does: a link is replaced by its canonical target (so a `..` after a link leaves the link's
/// target, not the link), and below the first missing component the rest is applied lexically,
/// which is what `create_dir_all` then makes of it (`missing/..` is the folder holding
/// `missing`). A missing component cannot be a link, so the lexical part is exact. One `lstat`
/// a component (plans with 100,000 roots are checked in linear time).
pub(crate) fn resolve(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::from("/");
    // Components at the end of `out` that do not exist; `out` is canonical without them.
    let mut missing = 0usize;
    for c in abs.components() {
        match c {
            Component::Prefix(_) | Component::CurDir => {}
            Component::RootDir => {
                out = PathBuf::from("/");
                missing = 0;
            }
            Component::ParentDir => {
                out.pop();
                missing = missing.saturating_sub(1);
            }
            Component::Normal(name) => {
                out.push(name);
                if missing > 0 {
                    missing += 1;
                    continue;
                }
                match std::fs::symlink_metadata(&out) {
                    Ok(m) if m.file_type().is_symlink() => match out.canonicalize() {
                        Ok(real) => out = real,
                        // A dangling link: taken as spelled (creating the root will fail on it).
                        Err(_) => missing = 1,
                    },
                    Ok(_) => {}
                    Err(_) => missing = 1,
                }
            }
        }
    }
    out
}

impl super::Plan {
    /// Whether `loc` is a local folder (root and prefix) that holds `dir`, resolved as the
    /// kernel will: a job listing it would list `dir` too. A state directory there would have
    /// its live journal copied as data, or deleted as extraneous by a mirror.
    pub fn local_location_holds(&self, loc: &super::Location, dir: &Path) -> bool {
        self.providers
            .get(&loc.provider)
            .and_then(ProviderSpec::local_root)
            .is_some_and(|root| resolve(dir).starts_with(resolve(&root.join(&loc.prefix))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_inside_a_local_root_is_found() {
        let text = "[providers.src]\ntype = \"local\"\nroot = \"/data/in\"\n[providers.dst]\ntype = \"memory\"\n\
                    [[objects]]\nname = \"j\"\nfrom = \"src:\"\nto = \"dst:\"\n";
        let plan = super::super::Plan::from_str(Path::new("/p.toml"), text).unwrap();
        let from = &plan.objects[0].from;
        let holds = |d: &str| plan.local_location_holds(from, Path::new(d));
        assert!(holds("/data/in/.ferry/copy-1"));
        assert!(holds("/data/in"));
        assert!(!holds("/data/in/../x/.ferry"));
        assert!(!holds("/data/inbox/.ferry"));
    }

    /// Issue 14: a root is resolved as the kernel will resolve it once `create_dir_all` made
    /// it, not as spelled: `missing/..` is the folder holding `missing`, and a `..` after a
    /// link leaves the link's target.
    #[test]
    fn roots_resolve_through_missing_folders_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("src/deep")).unwrap();
        std::os::unix::fs::symlink(base.join("src/deep"), base.join("link")).unwrap();
        assert_eq!(resolve(&base.join("missing/../src/a-copy")), base.join("src/a-copy"));
        assert_eq!(resolve(&base.join("a/b/../../src/./x")), base.join("src/x"));
        assert_eq!(resolve(&base.join("link/new")), base.join("src/deep/new"));
        // The link's target is src/deep, so its `..` is src, not `base`.
        assert_eq!(resolve(&base.join("link/../y")), base.join("src/y"));
        assert_eq!(resolve(&base.join("missing/../link/z")), base.join("src/deep/z"));
        assert_eq!(resolve(&base.join("src/../other")), base.join("other"));
    }

    #[test]
    fn endpoints_that_reach_one_address_are_one_server() {
        assert!(same_server(
            Some("http://127.0.0.1:5055"),
            Some("http://localhost:5055")
        ));
        assert!(same_server(Some("http://127.0.0.1"), Some("http://127.0.0.1:80")));
        assert!(!same_server(
            Some("http://127.0.0.1:5055"),
            Some("http://localhost:5056")
        ));
        assert!(!same_server(
            Some("http://127.0.0.1:5055"),
            Some("https://127.0.0.1:5055")
        ));
        assert!(!same_server(
            Some("http://127.0.0.1:5055"),
            Some("http://127.0.0.2:5055")
        ));
        assert!(!same_server(None, Some("http://127.0.0.1:5055")));
    }
}
