//! The grammar of a database job's key template (`db/{name}/{timestamp}.dump`, `{name}` filled
//! in): literals and `{timestamp}`s, the timestamp format, and whether two templates can render
//! the same key. A leaf, so the plan can refuse colliding jobs at parse time; the dump's
//! job-bound `KeyTemplate` of `dump/template.rs` renders and recognises keys with it.

use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Lit(String),
    Timestamp,
}

/// Splits a template whose `{name}` is already filled in into literals and `{timestamp}`s.
pub(crate) fn tokenize(filled: &str) -> Result<Vec<Token>, String> {
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

// Collisions between two jobs' templates.

/// One character position of a key a template can render: a given character, or any digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Char(char),
    Digit,
}

impl Class {
    fn meets(self, other: Class) -> bool {
        match (self, other) {
            (Class::Char(a), Class::Char(b)) => a == b,
            (Class::Digit, Class::Digit) => true,
            (Class::Digit, Class::Char(c)) | (Class::Char(c), Class::Digit) => c.is_ascii_digit(),
        }
    }
}

/// More `{timestamp}`s than this in one template are not expanded (2^N shapes); such a template
/// is treated as colliding with every template of its store, which is safe and never real.
const MAX_TIMESTAMPS: usize = 6;

/// Every shape a template's keys can have: a `{timestamp}` is `DDDDDDDDTDDDDDD.DDDZ` or
/// `DDDDDDDDTDDDDDDZ` (what [`parse_timestamp`] accepts), so a template with N timestamps has
/// 2^N shapes of fixed length. None when there are too many to expand.
pub(crate) fn shapes(tokens: &[Token]) -> Option<Vec<Vec<Class>>> {
    let n = tokens.iter().filter(|t| **t == Token::Timestamp).count();
    if n > MAX_TIMESTAMPS {
        return None;
    }
    let ts = |millis: bool| {
        let mut v = vec![Class::Digit; 8];
        v.push(Class::Char('T'));
        v.extend([Class::Digit; 6]);
        if millis {
            v.push(Class::Char('.'));
            v.extend([Class::Digit; 3]);
        }
        v.push(Class::Char('Z'));
        v
    };
    let mut out: Vec<Vec<Class>> = vec![Vec::new()];
    for t in tokens {
        match t {
            Token::Lit(l) => {
                for s in &mut out {
                    s.extend(l.chars().map(Class::Char));
                }
            }
            Token::Timestamp => {
                out = out
                    .into_iter()
                    .flat_map(|s| {
                        [true, false].map(|millis| {
                            let mut s = s.clone();
                            s.extend(ts(millis));
                            s
                        })
                    })
                    .collect();
            }
        }
    }
    Some(out)
}

/// Whether two templates, `{name}` filled in and each prefixed with what identifies its store
/// (so keys of different stores never meet), can render one and the same key. Two jobs for
/// which this holds would take each other's dumps for their own: retention would delete them,
/// and `restore` would pick them. A template that does not parse is left to the dump to report.
pub(crate) fn keys_can_collide(a: &str, b: &str) -> bool {
    let (Ok(ta), Ok(tb)) = (tokenize(a), tokenize(b)) else {
        return false;
    };
    let (Some(sa), Some(sb)) = (shapes(&ta), shapes(&tb)) else {
        return true;
    };
    sa.iter().any(|x| {
        sb.iter()
            .any(|y| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.meets(*q)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collisions_between_templates() {
        let yes = [
            ("db/{timestamp}.dump", "db/{timestamp}.dump"),
            ("db/a.dump", "db/a.dump"),
            ("db/{timestamp}.dump", "db/20250101T000000Z.dump"),
            ("db/{timestamp}.dump", "db/20250101T000000.123Z.dump"),
            ("x/{timestamp}{timestamp}", "x/20250101T000000Z{timestamp}"),
            ("/srv/store/db/{timestamp}.dump", "/srv/store/db/{timestamp}.dump"),
        ];
        for (a, b) in yes {
            assert!(keys_can_collide(a, b), "{a} / {b}");
            assert!(keys_can_collide(b, a), "{b} / {a}");
        }
        let no = [
            ("db/app-{timestamp}.dump", "db/app-archive-{timestamp}.dump"),
            ("db/a/{timestamp}.dump", "db/b/{timestamp}.dump"),
            ("backups/{timestamp}.dump", "backups/pg/{timestamp}.dump"),
            ("db/{timestamp}.dump", "db/{timestamp}.dump.old"),
            ("db/{timestamp}.dump", "db/2025.dump"),
            ("db/a.dump", "db/b.dump"),
        ];
        for (a, b) in no {
            assert!(!keys_can_collide(a, b), "{a} / {b}");
            assert!(!keys_can_collide(b, a), "{b} / {a}");
        }
        // Unparseable templates are the dump's to report, not a collision.
        assert!(!keys_can_collide("db/{date}", "db/{date}"));
    }
}
