//! Keeping secrets out of every byte ferry writes.
//!
//! Every credential value ferry reads (from the environment, a credentials file, a database URL)
//! is registered here the moment it is read; every human line, JSON document, journal row and
//! error message passes through [`redact`] before it leaves the process. Registration is
//! global because errors from libraries (object_store, child processes) may quote a secret back.

use std::fmt;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers a secret so that [`redact`] removes it from any text. Very short values are not
/// registered: masking every `a` in the output would hide more than it protects.
pub fn register(secret: &str) {
    if secret.len() < 4 {
        return;
    }
    let mut s = SECRETS.write().expect("secret registry poisoned");
    if !s.iter().any(|x| x == secret) {
        s.push(secret.to_string());
        // Longest first, so a secret containing another is removed whole.
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }
}

/// Replaces every registered secret, and any `user:password@` in a URL, with `***`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for s in SECRETS.read().expect("secret registry poisoned").iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    redact_url_passwords(&out)
}

/// `scheme://user:password@host` becomes `scheme://user:***@host`.
fn redact_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '`' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon + 1]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Shows that a value was given without showing it.
pub fn mask(value: &str) -> String {
    format!("<{} characters, hidden>", value.chars().count())
}

/// A credential value: usable, but never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps and registers a secret value.
    pub fn new(value: String) -> Secret {
        register(&value);
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secret_and_url_password_are_removed() {
        register("s3cr3t-value-123");
        let t = redact("auth failed for s3cr3t-value-123 at postgres://app:hunter22@db:5432/x");
        assert_eq!(t, "auth failed for *** at postgres://app:***@db:5432/x");
        assert_eq!(format!("{:?}", Secret::new("abcdefgh".into())), "Secret(***)");
    }
}
