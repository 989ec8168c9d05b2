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

/// A point in time for `ferry restore --at`, UTC, millisecond precision. Written
/// `2026-11-29T03:00Z`, `2026-11-29T03:00:00Z`, `2026-11-29T03:00:00.250Z`, a key's own
/// `20261129T030000Z`, or a plain date `2026-11-29`, which means the end of that day
/// (23:59:59.999): "the dump of the 29th" is the last one taken that day. Only UTC (`Z`):
/// dump keys are in UTC, and an offset would be one more thing to get wrong at 3 a.m.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpTime {
    /// `YYYYMMDDHHMMSSmmm`, comparable with what [`parse_timestamp`] gives a key.
    sort: String,
}

impl DumpTime {
    /// The sortable digits, as [`parse_timestamp`] gives them for a key.
    pub(crate) fn sort(&self) -> &str {
        &self.sort
    }
}

impl std::fmt::Display for DumpTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&shown(&self.sort))
    }
}

/// Sortable timestamp digits (`YYYYMMDDHHMMSSmmm`) as RFC 3339: `2026-11-29T03:00:00.000Z`.
pub(crate) fn shown(sort: &str) -> String {
    match (
        sort.get(0..4),
        sort.get(4..6),
        sort.get(6..8),
        sort.get(8..10),
        sort.get(10..12),
        sort.get(12..14),
        sort.get(14..17),
    ) {
        (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s), Some(ms)) => {
            format!("{y}-{mo}-{d}T{h}:{mi}:{s}.{ms}Z")
        }
        _ => sort.to_string(),
    }
}

impl std::str::FromStr for DumpTime {
    type Err = String;

    fn from_str(s: &str) -> Result<DumpTime, String> {
        let bad = |why: &str| {
            format!(
                "`{s}` is not a time ({why}): give `2026-11-29T03:00Z`, `2026-11-29T03:00:00Z` or a date \
                 `2026-11-29` (its end), in UTC"
            )
        };
        let num = |t: &str, len: usize| {
            (t.len() == len && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse::<u32>().expect("ASCII digits"))
        };
        let (y, mo, d, h, mi, sec, ms) = if let Some((_, sort)) = parse_timestamp(s).filter(|(l, _)| *l == s.len()) {
            let n = |r: std::ops::Range<usize>| num(&sort[r.clone()], r.len()).expect("digits");
            (n(0..4), n(4..6), n(6..8), n(8..10), n(10..12), n(12..14), n(14..17))
        } else {
            let (date, time) = match s.split_once('T') {
                Some((date, time)) => (date, Some(time)),
                None => (s, None),
            };
            let mut ymd = date.split('-');
            let (Some(y), Some(mo), Some(d), None) = (
                ymd.next().and_then(|t| num(t, 4)),
                ymd.next().and_then(|t| num(t, 2)),
                ymd.next().and_then(|t| num(t, 2)),
                ymd.next(),
            ) else {
                return Err(bad("the date is not YYYY-MM-DD"));
            };
            match time {
                None => (y, mo, d, 23, 59, 59, 999),
                Some(time) => {
                    let Some(time) = time.strip_suffix('Z').or_else(|| time.strip_suffix('z')) else {
                        return Err(bad("a time must end in `Z`, UTC"));
                    };
                    let (hms, ms) = match time.split_once('.') {
                        Some((hms, frac)) => (hms, num(frac, 3).ok_or_else(|| bad("milliseconds are 3 digits"))?),
                        None => (time, 0),
                    };
                    let parts: Vec<Option<u32>> = hms.split(':').map(|t| num(t, 2)).collect();
                    match parts[..] {
                        [Some(h), Some(mi)] if !time.contains('.') => (y, mo, d, h, mi, 0, ms),
                        [Some(h), Some(mi), Some(sec)] => (y, mo, d, h, mi, sec, ms),
                        _ => return Err(bad("the time is not HH:MM or HH:MM:SS")),
                    }
                }
            }
        };
        let real = chrono::NaiveDate::from_ymd_opt(y as i32, mo, d).and_then(|d| d.and_hms_milli_opt(h, mi, sec, ms));
        if real.is_none() {
            return Err(bad("no such date or time"));
        }
        Ok(DumpTime {
            sort: format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{sec:02}{ms:03}"),
        })
    }
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

    /// Issue 18: the spellings `restore --at` takes, and those it refuses.
    #[test]
    fn dump_times() {
        let t = |s: &str| s.parse::<DumpTime>().map(|t| t.sort);
        assert_eq!(t("2026-11-29T03:00Z").unwrap(), "20261129030000000");
        assert_eq!(t("2026-11-29T03:00:00Z").unwrap(), "20261129030000000");
        assert_eq!(t("2026-11-29T03:00:07.250Z").unwrap(), "20261129030007250");
        assert_eq!(t("2026-11-29").unwrap(), "20261129235959999", "a date is its end");
        assert_eq!(t("20261129T030000Z").unwrap(), "20261129030000000");
        assert_eq!(t("20261129T030000.123Z").unwrap(), "20261129030000123");
        for bad in [
            "2026-11-29T03:00",
            "2026-11-29T03:00+01:00",
            "2026-02-30",
            "2026-11-29T24:00Z",
            "2026-11-29T03:00.5Z",
            "26-11-29",
            "2026-11-29-01",
            "yesterday",
            "",
        ] {
            let e = t(bad).unwrap_err();
            assert!(e.contains("is not a time") && e.contains("UTC"), "{bad}: {e}");
        }
        let at: DumpTime = "2026-11-29T03:00Z".parse().unwrap();
        assert_eq!(at.to_string(), "2026-11-29T03:00:00.000Z");
    }

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
