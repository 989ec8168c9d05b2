//! The library's error, and what it means for whoever runs ferry: the exit code.
//!
//! Each module keeps its own typed error, which says what went wrong where (`PlanError` a line
//! and column, `ProviderError` a provider, `JournalError` a file). Each converts into [`Error`]
//! in its own module (`impl From<PlanError> for Error`), choosing its [`Kind`] there, next to
//! the code that knows what the failure means. The library's entry points (`run`) return
//! `Result<_, Error>`, so a new error type reaching them does not compile until someone has
//! said which kind it is: it cannot silently become exit 1, as it could when the exit code was
//! found by downcasting an `anyhow::Error` against a list of types.
//!
//! A leaf: it names no other module, so every module can convert into it.

use std::error::Error as StdError;
use std::fmt;

/// Everything done (and verified).
pub const EXIT_OK: i32 = 0;
/// Some objects failed or did not verify; the rest completed.
pub const EXIT_PARTIAL: i32 = 1;
/// Bad plan, arguments, credentials or unreachable provider; nothing was written.
pub const EXIT_USAGE: i32 = 2;
/// Not available now: a provider or database could not be reached, or another run holds the
/// plan's state directory. Nothing was done; retry later.
pub const EXIT_UNAVAILABLE: i32 = 3;
/// Stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// What an error asks of whoever runs ferry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Something failed part-way; what finished is reported. Exit 1.
    Failed,
    /// Fix the plan, an argument, a credential, a provider's table or the state directory:
    /// nothing was written. Exit 2. Also a provider that answered "no" (401, 403, 404, ...).
    Usage,
    /// Not available now: nothing was written; retry later. Exit 3. A provider or database that
    /// did not answer (DNS, refused connection, timeout) or answered only 5xx, 429 or 408
    /// until ferry gave up; or another run holding the state directory. A 03:00 network blip
    /// must not page someone to fix a plan, and a scheduler's retry policy can tell the two.
    Unavailable,
}

impl Kind {
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Failed => EXIT_PARTIAL,
            Kind::Usage => EXIT_USAGE,
            Kind::Unavailable => EXIT_UNAVAILABLE,
        }
    }
}

type Source = Box<dyn StdError + Send + Sync>;

/// An error of a [`Kind`]: either a module's typed error passed through unchanged (its text
/// and its source chain are what the user reads), or a message with an optional cause.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    message: Option<String>,
    source: Option<Source>,
}

impl Error {
    /// A module's error, shown as it is.
    pub fn new(kind: Kind, error: impl Into<Source>) -> Self {
        Error {
            kind,
            message: None,
            source: Some(error.into()),
        }
    }

    /// A message, shown first, then `cause` after a colon (`{:#}`, as anyhow prints a chain).
    pub fn with_cause(kind: Kind, message: impl Into<String>, cause: impl Into<Source>) -> Self {
        Error {
            kind,
            message: Some(message.into()),
            source: Some(cause.into()),
        }
    }

    /// A message of a kind.
    pub fn of(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: Some(message.into()),
            source: None,
        }
    }

    /// A bad plan, argument, credential, provider or state directory (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Error {
            kind: Kind::Usage,
            message: Some(message.into()),
            source: None,
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.message, &self.source) {
            (Some(m), _) => f.write_str(m),
            (None, Some(s)) => s.fmt(f),
            (None, None) => f.write_str("error"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match (&self.message, &self.source) {
            // The message is shown; its cause comes next in the chain.
            (Some(_), Some(s)) => Some(s.as_ref()),
            // A wrapped error is shown as itself; its own cause comes next.
            (None, Some(s)) => s.source(),
            (_, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read plan `p.toml`")]
    struct Read(#[source] std::io::Error);

    #[test]
    fn a_wrapped_error_reads_as_itself_with_its_chain_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(Error::new(Kind::Usage, Read(io)));
        assert_eq!(format!("{e:#}"), "cannot read plan `p.toml`: No such file");
    }

    #[test]
    fn a_message_comes_before_its_cause() {
        let e = anyhow::Error::new(Error::with_cause(Kind::Failed, "cannot upload manifest", "HTTP 500"));
        assert_eq!(format!("{e:#}"), "cannot upload manifest: HTTP 500");
        assert_eq!(Error::usage("x").exit_code(), 2);
    }

    #[test]
    fn every_kind_has_its_own_exit_code() {
        let codes: Vec<i32> = [Kind::Failed, Kind::Usage, Kind::Unavailable]
            .into_iter()
            .map(Kind::exit_code)
            .collect();
        assert_eq!(codes, [EXIT_PARTIAL, EXIT_USAGE, EXIT_UNAVAILABLE]);
    }
}
