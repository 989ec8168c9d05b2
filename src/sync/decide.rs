//! The copy decision (docs/plan.md, "New, changed, unchanged"): given a listed source object,
//! its destination counterpart, ferry's journal row for it and what the stores' ETags say as
//! MD5s, is it new, changed or unchanged? Pure: the caller looks everything up, so every rule is
//! unit-tested here, and `ferry plan` and `ferry run` decide alike.
//!
//! The evidence rules are shared with `verify`: the journal row of the very source version
//! ferry read ([`from_this_version`]), and two ETags that are the same MD5 ([`same_md5`]).

use crate::journal::{Record, State};
use crate::pairing::DstEntry;
use crate::store::{norm_etag, Listed};

/// How one listed object compares with the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    New,
    Changed,
    Unchanged,
}

/// The MD5s the two stores' listed ETags stand for ([`crate::store::Store::etag_md5`]):
/// none where a store's ETags are not MD5s (not an MD5-ETag provider, a multipart ETag, a store
/// shown this run to hold SSE-KMS or SSE-C objects).
#[derive(Debug, Clone, Copy, Default)]
pub struct Md5Etags<'a> {
    pub source: Option<&'a str>,
    pub destination: Option<&'a str>,
}

/// Unchanged means: same size, and either ferry's journal shows it wrote exactly this
/// destination object (same destination ETag) from exactly this source version (same source
/// ETag), or both sides publish the same MD5 ETag. The journal row need not carry a SHA-256 (a
/// server-side copy records none), unlike `verify`'s proof, which needs one.
///
/// `record` is only looked at when [`record_can_matter`]; the caller may leave it out otherwise.
pub(crate) fn decide(
    item: &Listed,
    existing: Option<&DstEntry>,
    record: Option<&Record>,
    md5: Md5Etags<'_>,
) -> Decision {
    let Some(d) = existing else {
        return Decision::New;
    };
    if d.size != item.size {
        return Decision::Changed;
    }
    if record.is_some_and(|r| from_this_version(r, item) && same_etag(&r.dst_etag, &d.etag)) {
        return Decision::Unchanged;
    }
    if same_md5(md5.source, md5.destination) {
        return Decision::Unchanged;
    }
    Decision::Changed
}

/// Whether [`decide`] needs the journal row: only for a destination object of the listed size
/// (so a run of new objects does not ask the journal about each).
pub(crate) fn record_can_matter(item: &Listed, existing: Option<&DstEntry>) -> bool {
    existing.is_some_and(|d| d.size == item.size)
}

/// The journal row is of a finished copy of exactly this source version (same size and ETag):
/// what it recorded (the destination ETag, the SHA-256) still speaks for the source.
pub fn from_this_version(r: &Record, item: &Listed) -> bool {
    r.state == State::Done && r.src_size == item.size && same_etag(&r.src_etag, &item.etag)
}

/// Both sides publish the same MD5 of their content (S3 single-part ETags).
pub fn same_md5(source: Option<&str>, destination: Option<&str>) -> bool {
    source.is_some() && source == destination
}

/// Both known and equal, quoting aside.
pub fn same_etag(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => norm_etag(a) == norm_etag(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "9e107d9d372bb6826bd81d3542a419d6";
    const OTHER_MD5: &str = "e4d909c290d0fb1ca068ffaddf22cbd0";

    fn item(size: u64, etag: &str) -> Listed {
        Listed {
            key: "p/k".into(),
            size,
            etag: Some(etag.into()),
            version: None,
            problem: None,
            class: None,
        }
    }

    fn dst(size: u64, etag: &str) -> DstEntry {
        DstEntry {
            size,
            etag: Some(etag.into()),
        }
    }

    /// A journal row: ferry copied `src_etag` (of `size` bytes) and the destination answered
    /// `dst_etag`.
    fn done(size: u64, src_etag: &str, dst_etag: &str) -> Record {
        Record {
            job: "j".into(),
            key: "p/k".into(),
            state: State::Done,
            src_size: size,
            src_etag: Some(src_etag.into()),
            dst_key: "q/k".into(),
            dst_etag: Some(dst_etag.into()),
            sha256: Some("ab".repeat(32)),
            stored_sha256: None,
            error: None,
            upload_id: None,
            part_size: None,
        }
    }

    const NO_MD5: Md5Etags<'static> = Md5Etags {
        source: None,
        destination: None,
    };

    #[test]
    fn absent_at_the_destination_is_new() {
        let r = done(3, "s", "d");
        assert_eq!(decide(&item(3, "s"), None, Some(&r), NO_MD5), Decision::New);
        assert!(!record_can_matter(&item(3, "s"), None));
    }

    #[test]
    fn another_size_is_changed_whatever_the_evidence() {
        let r = done(3, "s", "d");
        let both = Md5Etags {
            source: Some(MD5),
            destination: Some(MD5),
        };
        assert_eq!(
            decide(&item(3, "s"), Some(&dst(4, "d")), Some(&r), both),
            Decision::Changed
        );
        assert!(!record_can_matter(&item(3, "s"), Some(&dst(4, "d"))));
    }

    #[test]
    fn the_journal_proves_the_object_ferry_wrote_from_this_source_version() {
        let (i, d) = (item(3, "\"s\""), dst(3, "d"));
        assert!(record_can_matter(&i, Some(&d)));
        // Quoting aside, the same ETags on both sides.
        assert_eq!(
            decide(&i, Some(&d), Some(&done(3, "s", "\"d\"")), NO_MD5),
            Decision::Unchanged
        );
        // The source changed since (another ETag, or another size at the same ETag).
        assert_eq!(
            decide(&i, Some(&d), Some(&done(3, "t", "d")), NO_MD5),
            Decision::Changed
        );
        assert_eq!(
            decide(&i, Some(&d), Some(&done(4, "s", "d")), NO_MD5),
            Decision::Changed
        );
        // The destination object is not the one ferry got back.
        assert_eq!(
            decide(&i, Some(&d), Some(&done(3, "s", "e")), NO_MD5),
            Decision::Changed
        );
        // A row that is not a finished copy.
        for state in [State::Failed, State::InFlight, State::Deleted] {
            let r = Record {
                state,
                ..done(3, "s", "d")
            };
            assert_eq!(decide(&i, Some(&d), Some(&r), NO_MD5), Decision::Changed, "{state:?}");
        }
        // Unknown ETags prove nothing.
        let r = Record {
            src_etag: None,
            ..done(3, "s", "d")
        };
        let unknown = Listed {
            etag: None,
            ..i.clone()
        };
        assert_eq!(decide(&unknown, Some(&d), Some(&r), NO_MD5), Decision::Changed);
        // A server-side copy records no SHA-256; its row proves the object all the same.
        let r = Record {
            sha256: None,
            ..done(3, "s", "d")
        };
        assert_eq!(decide(&i, Some(&d), Some(&r), NO_MD5), Decision::Unchanged);
        // No row at all (another tool filled the destination, or no journal).
        assert_eq!(decide(&i, Some(&d), None, NO_MD5), Decision::Changed);
    }

    #[test]
    fn equal_md5_etags_prove_it_without_the_journal() {
        let (i, d) = (item(3, MD5), dst(3, MD5));
        let md5 = |source, destination| Md5Etags { source, destination };
        assert_eq!(
            decide(&i, Some(&d), None, md5(Some(MD5), Some(MD5))),
            Decision::Unchanged
        );
        assert_eq!(
            decide(&i, Some(&d), None, md5(Some(MD5), Some(OTHER_MD5))),
            Decision::Changed
        );
        // A store whose ETags are not MD5s (GCS, Azure, local; multipart; SSE-KMS or SSE-C shown
        // this run) gives none, and two absent MD5s are no proof.
        assert_eq!(decide(&i, Some(&d), None, md5(Some(MD5), None)), Decision::Changed);
        assert_eq!(decide(&i, Some(&d), None, md5(None, Some(MD5))), Decision::Changed);
        assert_eq!(decide(&i, Some(&d), None, NO_MD5), Decision::Changed);
    }

    #[test]
    fn etags_compare_without_quotes_and_only_when_known() {
        let s = |x: &str| Some(x.to_string());
        assert!(same_etag(&s("\"a\""), &s("a")));
        assert!(same_etag(&s("W/\"a\""), &s("a")));
        assert!(!same_etag(&s("a"), &s("b")));
        assert!(!same_etag(&None, &None));
        assert!(!same_etag(&s("a"), &None));
    }
}
