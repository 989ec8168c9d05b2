//! A database job's key template (`db/{name}/{timestamp}.dump`): rendering a key and
//! recognising the job's own dumps in a listing. Pure string work on the grammar of
//! [`crate::template`] (which also tells at plan time whether two jobs' templates collide).

use super::{DumpError, RECORD_SUFFIX};
use crate::plan::DatabaseJob;
use crate::store::key_to_path;
pub(crate) use crate::template::{parse_timestamp, timestamp_now};
use crate::template::{tokenize, Token};

/// A job's destination key template with `{name}` filled in: literal text and `{timestamp}`s.
#[derive(Debug, Clone)]
pub(crate) struct KeyTemplate {
    pub(crate) raw: String,
    tokens: Vec<Token>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::record::record_key;
    use crate::dump::testing::job;
    use crate::template::{shapes, tokenize, Class};

    #[test]
    fn every_shape_is_a_key_the_template_matches() {
        let t = KeyTemplate {
            raw: String::new(),
            tokens: tokenize("a/{timestamp}-{timestamp}.z").unwrap(),
        };
        for shape in shapes(&t.tokens).unwrap() {
            let key: String = shape
                .iter()
                .map(|c| match c {
                    Class::Char(c) => *c,
                    Class::Digit => '7',
                })
                .collect();
            assert!(t.matches(&key).is_some(), "{key}");
        }
    }

    #[test]
    fn templates_render_match_and_list() {
        let t = KeyTemplate::new(&job("db/{name}/{timestamp}.dump")).unwrap();
        assert_eq!(t.list_prefix(), "db/main/");
        let k = t.render("20250131T235959.123Z");
        assert_eq!(k, "db/main/20250131T235959.123Z.dump");
        assert_eq!(t.matches(&k).as_deref(), Some("20250131235959123"));
        assert_eq!(
            t.matches("db/main/20250131T235959Z.dump").as_deref(),
            Some("20250131235959000")
        );
        assert_eq!(t.matches(&record_key(&k)), None);
        assert_eq!(t.matches("db/main/latest.dump"), None);
        assert_eq!(t.matches("db/other/20250131T235959.123Z.dump"), None);
        let now = timestamp_now();
        assert_eq!(parse_timestamp(&now).map(|p| p.0), Some(now.len()), "{now}");
        let flat = KeyTemplate::new(&job("{name}-{timestamp}.dump")).unwrap();
        assert_eq!(flat.list_prefix(), "");
        assert!(KeyTemplate::new(&job("db/{date}.dump")).is_err());
        assert!(KeyTemplate::new(&job("db//{timestamp}")).is_err());
        assert!(!KeyTemplate::new(&job("db/main.dump")).unwrap().has_timestamp());
    }
}
