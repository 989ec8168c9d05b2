//! A database job's key template (`db/{name}/{timestamp}.dump`): rendering a key and
//! recognising the job's own dumps in a listing. Pure string work: no store, no clock beyond
//! [`timestamp_now`].

use std::time::SystemTime;

use super::{DumpError, RECORD_SUFFIX};
use crate::plan::DatabaseJob;
use crate::provider::key_to_path;

/// A job's destination key template with `{name}` filled in: literal text and `{timestamp}`s.
#[derive(Debug, Clone)]
pub(crate) struct KeyTemplate {
    pub(crate) raw: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(String),
    Timestamp,
}

/// Splits a template whose `{name}` is already filled in into literals and `{timestamp}`s.
fn tokenize(filled: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = filled;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or_else(|| "unclosed `{`".to_string())?;
        let name = &rest[open + 1..close];
        if name != "timestamp" {
            return Err(format!("unknown placeholder `{{{name}}}`"));
        }
        if open > 0 {
            tokens.push(Token::Lit(rest[..open].to_string()));
        }
        tokens.push(Token::Timestamp);
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        tokens.push(Token::Lit(rest.to_string()));
    }
    Ok(tokens)
}

impl KeyTemplate {
    pub(crate) fn new(job: &DatabaseJob) -> Result<KeyTemplate, DumpError> {
        let raw = job.to.prefix.clone();
        let err = |message: String| DumpError::Template {
            job: job.name.clone(),
            template: raw.clone(),
            message,
        };
        let filled = raw.replace("{name}", &job.name);
        let tokens = tokenize(&filled).map_err(err)?;
        if filled.ends_with(RECORD_SUFFIX) {
            return Err(err(format!(
                "keys ending in `{RECORD_SUFFIX}` are reserved for dump records"
            )));
        }
        let t = KeyTemplate {
            raw: raw.clone(),
            tokens,
        };
        key_to_path(&t.render("20000101T000000.000Z")).map_err(|e| err(e.to_string()))?;
        Ok(t)
    }

    pub(crate) fn has_timestamp(&self) -> bool {
        self.tokens.contains(&Token::Timestamp)
    }

    pub(crate) fn render(&self, ts: &str) -> String {
        self.tokens
            .iter()
            .map(|t| match t {
                Token::Lit(l) => l.as_str(),
                Token::Timestamp => ts,
            })
            .collect()
    }

    /// The folder to list: the literal text before the first `{timestamp}`, up to its last `/`.
    pub(crate) fn list_prefix(&self) -> String {
        let head = match self.tokens.first() {
            Some(Token::Lit(l)) => l.clone(),
            _ => String::new(),
        };
        match head.rfind('/') {
            Some(i) => head[..=i].to_string(),
            None => String::new(),
        }
    }

    /// If `key` is a dump of this template: its timestamp in a sortable form (digits only).
    pub(crate) fn matches(&self, key: &str) -> Option<String> {
        let mut rest = key;
        let mut sort = None;
        for t in &self.tokens {
            match t {
                Token::Lit(l) => rest = rest.strip_prefix(l.as_str())?,
                Token::Timestamp => {
                    let (len, s) = parse_timestamp(rest)?;
                    sort.get_or_insert(s);
                    rest = &rest[len..];
                }
            }
        }
        rest.is_empty().then(|| sort.unwrap_or_default())
    }
}

/// The `{timestamp}` value for now: `20250131T235959.123Z` (UTC, milliseconds: two dumps in one
/// second get distinct keys; no `:` so the key is a valid file name everywhere).
pub(crate) fn timestamp_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

/// Parses a timestamp at the start of `s` (`YYYYMMDDTHHMMSS[.mmm]Z`): its length and a sortable
/// digits-only form.
pub(crate) fn parse_timestamp(s: &str) -> Option<(usize, String)> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    if !(digits(0..8) && b.get(8) == Some(&b'T') && digits(9..15)) {
        return None;
    }
    let (ms, len) = if b.get(15) == Some(&b'.') && digits(16..19) && b.get(19) == Some(&b'Z') {
        (&s[16..19], 20)
    } else if b.get(15) == Some(&b'Z') {
        ("000", 16)
    } else {
        return None;
    };
    Some((len, format!("{}{}{ms}", &s[..8], &s[9..15])))
}
