//! Which keys a job takes: its include/exclude globs and its shard, matched against keys
//! relative to the job's `from` prefix. A leaf: the plan validates globs with it, the engine and
//! verify filter listings with it.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Compiles one include/exclude glob: `*` stays within a path segment, `**` crosses them.
pub fn compile_glob(glob: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(glob).literal_separator(true).build()
}

/// Include/exclude filters and shard of a job.
pub struct Filter {
    include: Option<GlobSet>,
    exclude: GlobSet,
    shard: Option<Shard>,
}

impl Filter {
    /// Globs that do not compile were refused with the plan (see [`compile_glob`]).
    pub fn new(include: &[String], exclude: &[String], shard: Option<Shard>) -> Result<Filter, globset::Error> {
        let set = |globs: &[String]| {
            let mut b = GlobSetBuilder::new();
            for g in globs {
                b.add(compile_glob(g)?);
            }
            b.build()
        };
        Ok(Filter {
            include: if include.is_empty() { None } else { Some(set(include)?) },
            exclude: set(exclude)?,
            shard,
        })
    }

    pub fn matches(&self, rel_key: &str) -> bool {
        self.include.as_ref().is_none_or(|i| i.is_match(rel_key))
            && !self.exclude.is_match(rel_key)
            && self.shard.is_none_or(|s| s.owns(rel_key))
    }
}

/// Shard `index` of `count`: the keys whose stable hash modulo `count` is `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Parses `K/N` with 0 <= K < N.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not K/N (e.g. 0/4)"))?;
        let index: u64 = k
            .trim()
            .parse()
            .map_err(|_| format!("shard index `{k}` is not a number"))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("shard count `{n}` is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("shard `{s}`: need 0 <= K < N"));
        }
        Ok(Shard { index, count })
    }

    /// Whether a key (relative to the job's prefix) belongs to this shard. FNV-1a: stable across
    /// versions, platforms and processes, unlike std's randomly seeded hasher.
    pub fn owns(&self, rel_key: &str) -> bool {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in rel_key.as_bytes() {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h % self.count == self.index
    }

    /// A name for per-shard state (journal, manifests): `shard-K-of-N`.
    pub fn label(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_keep_star_within_a_segment() {
        let globs = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let f = Filter::new(&globs(&["*.txt", "docs/**"]), &globs(&["docs/tmp/**"]), None).unwrap();
        assert!(f.matches("a.txt"));
        assert!(!f.matches("sub/a.txt"));
        assert!(f.matches("docs/x/y.bin"));
        assert!(!f.matches("docs/tmp/y.bin"));
    }
}
