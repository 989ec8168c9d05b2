//! Listing pairing (rclone's `march`): a job's source and destination listings, read at once and
//! paired key by key into "a source object and its destination counterpart, if any" and "a
//! destination object no source object matches". Used by the copy engine (`sync`) and by
//! `verify`, so both see the very same pairs; it decides nothing about them and never imports
//! the engine.
//!
//! Where both sides list in byte order the two listings are merged as they stream (memory stays
//! flat); otherwise, or when a server turns out to list out of order, the destination is gathered
//! into a map while the source is read ahead. Filters and the manifest rules of issue 14 are
//! applied here, so neither user sees an excluded key or another job's manifest.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};

use crate::filter::Filter;
use crate::plan::{ObjectJob, MANIFEST_PREFIX};
use crate::redact::redact;
use crate::store::{Listed, Store};

/// Source entries read ahead while the destination is still being listed (about 150 bytes each).
const SOURCE_AHEAD: usize = 100_000;

/// Keys per LIST page (S3's ListObjectsV2 maximum; GCS and Azure page at 1,000 or 5,000).
pub const LIST_PAGE: u64 = 1000;

/// A destination object as listed.
#[derive(Debug, Clone)]
pub(crate) struct DstEntry {
    pub size: u64,
    pub etag: Option<String>,
}

impl From<Listed> for DstEntry {
    fn from(l: Listed) -> DstEntry {
        DstEntry {
            size: l.size,
            etag: l.etag,
        }
    }
}

/// A source object with its destination counterpart, if any; or a destination object that no
/// source object matches. Only keys the job's filters keep (an excluded key is not extraneous).
pub(crate) enum Paired {
    Source(Listed, Option<DstEntry>),
    Extraneous(String, DstEntry),
}

pub(crate) type PairedStream = BoxStream<'static, Result<Paired, ListingError>>;

/// Why a paired listing stopped part-way.
#[derive(Debug, Clone)]
pub(crate) struct ListingError {
    pub message: String,
    /// A side listed a key out of byte order: pairing again without the merge copes.
    pub out_of_order: bool,
}

impl From<String> for ListingError {
    fn from(message: String) -> ListingError {
        ListingError {
            message,
            out_of_order: false,
        }
    }
}

/// The pairs up to the first listing error, which is left in `error`.
pub(crate) fn until_error(paired: PairedStream, error: &mut Option<ListingError>) -> impl Stream<Item = Paired> + '_ {
    paired.scan(error, |error, r| {
        std::future::ready(match r {
            Ok(p) => Some(p),
            Err(e) => {
                **error = Some(e);
                None
            }
        })
    })
}

type RelStream = BoxStream<'static, object_store::Result<(String, Listed)>>;

/// Lists both sides of a job at once and pairs their keys.
///
/// Where both sides list in byte order (S3, GCS, memory), the two listings are merged as they
/// stream: memory stays flat however many objects either side holds, and a key listed out of
/// order stops the job with an error rather than be misjudged. Otherwise (a local directory, an
/// Azure container) the destination is gathered into a map (about 100 bytes an object) while
/// the source is read ahead, up to [`SOURCE_AHEAD`] entries. Either way the two listings run
/// concurrently, so a no-op run costs about one listing, not two in a row.
///
/// Manifests (issue 14): the job's own manifest at the destination is not listed (ferry
/// rewrites it at the end of every run), and a source key that would land on it is reported
/// as not copied. Any other key under [`crate::plan::MANIFEST_PREFIX`] is paired like any key, so a bucket
/// ferry once wrote into is evacuated whole; but one only the destination holds is never
/// extraneous, neither reported nor deleted: it may be another job's or another plan's manifest.
pub(crate) async fn paired_listings(
    job: &ObjectJob,
    src: &Store,
    dst: &Store,
    filter: Arc<Filter>,
    merge: bool,
) -> Result<PairedStream, String> {
    let from = job.from.to_string();
    let to = job.to.to_string();
    let own_manifest = job.manifest_key();
    let to_prefix = job.to.prefix.clone();
    let source = prefetch(source_listing(job, src, filter.clone()));
    // The job's `keep-replaced` history is not part of what it copies (`sync::history`).
    let history = job.history_root().map(str::to_string);
    let destination = relative(dst.list(&job.to.prefix), &job.to.prefix, filter, false).try_filter(move |(_, item)| {
        let theirs = history.as_deref().is_some_and(|h| item.key.starts_with(h));
        std::future::ready(item.key != own_manifest && !theirs)
    });
    let destination = prefetch(destination.boxed());
    // Left only at the destination, a key under the manifests' folder is kept out of the report.
    let not_a_manifest = move |p: &Paired| {
        let keep = match p {
            Paired::Extraneous(rel, _) => !format!("{to_prefix}{rel}").starts_with(MANIFEST_PREFIX),
            Paired::Source(..) => true,
        };
        std::future::ready(keep)
    };
    let paired = if merge && src.caps.sorted_listing && dst.caps.sorted_listing {
        merge_sorted(source, destination, from, to)
    } else {
        paired_by_map(source, destination, from, to).await?
    };
    Ok(paired.try_filter(not_a_manifest).boxed())
}

/// The job's source listing, relative to its prefix and filtered; a key that would land on the
/// job's own manifest is kept with a problem, to be reported as not copied.
fn source_listing(job: &ObjectJob, src: &Store, filter: Arc<Filter>) -> RelStream {
    let own_manifest = job.manifest_key();
    let to_prefix = job.to.prefix.clone();
    let history = job.history_root().map(str::to_string);
    relative(src.list(&job.from.prefix), &job.from.prefix, filter, true)
        .map_ok(move |(rel, mut item)| {
            if let Some(h) = history
                .as_deref()
                .filter(|h| format!("{to_prefix}{rel}").starts_with(*h))
            {
                item.problem.get_or_insert_with(|| {
                    format!("at the destination it would be under `{h}`, this job's keep-replaced history")
                });
            }
            if format!("{to_prefix}{rel}") == own_manifest {
                item.problem.get_or_insert_with(|| {
                    format!(
                        "at the destination it would be `{own_manifest}`, this job's own manifest, which ferry \
                         rewrites after every run; give the job another name to copy it"
                    )
                });
            }
            (rel, item)
        })
        .boxed()
}

/// Pairs listings in any order: the destination is gathered into a map while the source is read
/// ahead (up to [`SOURCE_AHEAD`] entries); then each source entry takes its counterpart out of
/// the map, and what is left once the source is done is extraneous.
async fn paired_by_map(
    mut source: RelStream,
    mut destination: RelStream,
    from: String,
    to: String,
) -> Result<PairedStream, String> {
    let mut ahead = Vec::new();
    let mut source_done = false;
    let gather = async {
        let mut map = HashMap::new();
        while let Some((rel, item)) = destination.try_next().await? {
            map.insert(rel, DstEntry::from(item));
        }
        Ok::<_, object_store::Error>(map)
    };
    tokio::pin!(gather);
    let listed = loop {
        tokio::select! {
            biased;
            m = &mut gather => break m,
            item = source.next(), if !source_done && ahead.len() < SOURCE_AHEAD => match item {
                Some(item) => ahead.push(item),
                None => source_done = true,
            },
        }
    };
    let map = listed.map_err(|e| redact(&format!("cannot list destination `{to}`: {e}")))?;
    let map = Arc::new(std::sync::Mutex::new(map));
    let rest = if source_done {
        futures::stream::empty().boxed()
    } else {
        source
    };
    let sources = {
        let map = map.clone();
        futures::stream::iter(ahead).chain(rest).map(move |r| match r {
            Ok((rel, item)) => Ok(Paired::Source(item, map.lock().expect("map lock").remove(&rel))),
            Err(e) => Err(redact(&format!("listing `{from}` failed part-way: {e}")).into()),
        })
    };
    // What is left in the map once the source is done has no source counterpart.
    let extraneous = futures::stream::once(async move {
        let left = std::mem::take(&mut *map.lock().expect("map lock"));
        futures::stream::iter(left.into_iter().map(|(rel, d)| Ok(Paired::Extraneous(rel, d))))
    })
    .flatten();
    Ok(sources.chain(extraneous).boxed())
}

/// Entries with a `problem` are kept for a source (to be reported)
/// and dropped for a destination: a link or FIFO there is neither extraneous nor ever deleted.
fn relative(
    listing: BoxStream<'static, object_store::Result<Listed>>,
    prefix: &str,
    filter: Arc<Filter>,
    keep_problems: bool,
) -> RelStream {
    let prefix = prefix.to_string();
    listing
        .try_filter_map(move |item| {
            let rel = item
                .key
                .strip_prefix(&prefix)
                .filter(|_| keep_problems || item.problem.is_none())
                .filter(|rel| filter.matches(rel))
                .map(str::to_string);
            std::future::ready(Ok(rel.map(|rel| (rel, item))))
        })
        .boxed()
}

/// Runs a listing in its own task, a few pages ahead of its consumer, so two listings proceed
/// at once even while they are consumed in turns. The task ends with the returned stream.
fn prefetch(listing: RelStream) -> RelStream {
    let (tx, rx) = tokio::sync::mpsc::channel(2 * LIST_PAGE as usize);
    // A JoinSet aborts its tasks when dropped: the prefetch ends with the stream that owns it.
    let mut task = tokio::task::JoinSet::new();
    task.spawn(async move {
        let mut listing = listing;
        while let Some(x) = listing.next().await {
            if tx.send(x).await.is_err() {
                break;
            }
        }
    });
    futures::stream::unfold((rx, task), |(mut rx, task)| async move {
        rx.recv().await.map(|x| (x, (rx, task)))
    })
    .boxed()
}

/// One side of a merge: its listing, the next entry, and the key consumed before it, to check
/// the order.
struct Side {
    listing: RelStream,
    head: Option<(String, Listed)>,
    done: bool,
    last: Option<String>,
    what: String,
}

impl Side {
    async fn fill(&mut self) -> Result<(), ListingError> {
        if self.head.is_some() || self.done {
            return Ok(());
        }
        match self.listing.next().await {
            None => self.done = true,
            Some(Err(e)) => return Err(redact(&format!("listing {} failed part-way: {e}", self.what)).into()),
            // Reported, not paired: it takes no part in the order.
            Some(Ok((rel, item))) if item.problem.is_some() => self.head = Some((rel, item)),
            Some(Ok((rel, item))) => {
                if let Some(last) = self.last.as_deref().filter(|last| rel.as_str() <= *last) {
                    return Err(ListingError {
                        message: format!(
                            "{} listed `{rel}` after `{last}`: not in byte order, which ferry relies on \
                             to compare this provider's listings as they stream; nothing was deleted",
                            self.what
                        ),
                        out_of_order: true,
                    });
                }
                self.head = Some((rel, item));
            }
        }
        Ok(())
    }
}

/// Merges two listings sorted by key into pairs, holding one entry of each.
fn merge_sorted(source: RelStream, destination: RelStream, from: String, to: String) -> PairedStream {
    let side = |listing, what| Side {
        listing,
        head: None,
        done: false,
        last: None,
        what,
    };
    let start = (
        side(source, format!("`{from}`")),
        side(destination, format!("destination `{to}`")),
    );
    futures::stream::unfold(Some(start), |state| async move {
        let (mut s, mut d) = state?;
        if let Err(e) = s.fill().await {
            return Some((Err(e), None));
        }
        if s.head.as_ref().is_some_and(|(_, item)| item.problem.is_some()) {
            let (_, item) = s.head.take().expect("checked");
            return Some((Ok(Paired::Source(item, None)), Some((s, d))));
        }
        if let Err(e) = d.fill().await {
            return Some((Err(e), None));
        }
        // A consumed key becomes its side's `last`; the next one listed must sort after it.
        let out = match (s.head.take(), d.head.take()) {
            (None, None) => return None,
            (Some((sr, item)), None) => {
                s.last = Some(sr);
                Paired::Source(item, None)
            }
            (None, Some((dr, e))) => {
                d.last = Some(dr.clone());
                Paired::Extraneous(dr, e.into())
            }
            (Some((sr, item)), Some((dr, e))) => match sr.cmp(&dr) {
                std::cmp::Ordering::Less => {
                    s.last = Some(sr);
                    d.head = Some((dr, e));
                    Paired::Source(item, None)
                }
                std::cmp::Ordering::Equal => {
                    s.last = Some(sr);
                    d.last = Some(dr);
                    Paired::Source(item, Some(e.into()))
                }
                std::cmp::Ordering::Greater => {
                    d.last = Some(dr.clone());
                    s.head = Some((sr, item));
                    Paired::Extraneous(dr, e.into())
                }
            },
        };
        Some((Ok(out), Some((s, d))))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel_stream(keys: &[&str]) -> RelStream {
        let items: Vec<_> = keys
            .iter()
            .map(|k| {
                Ok((
                    k.to_string(),
                    Listed {
                        key: format!("p/{k}"),
                        size: k.len() as u64,
                        etag: None,
                        version: None,
                        problem: None,
                        class: None,
                    },
                ))
            })
            .collect();
        futures::stream::iter(items).boxed()
    }

    /// (source key or "-", destination key or "-") per pair, in order.
    async fn merged(src: &[&str], dst: &[&str]) -> Result<Vec<(String, String)>, String> {
        let pairs: Vec<_> = merge_sorted(rel_stream(src), rel_stream(dst), "a:p/".into(), "b:p/".into())
            .collect()
            .await;
        pairs
            .into_iter()
            .map(|p| {
                p.map(|p| match p {
                    Paired::Source(item, d) => (item.key, d.map_or("-".into(), |d| format!("size {}", d.size))),
                    Paired::Extraneous(rel, _) => ("-".into(), rel),
                })
                .map_err(|e| e.message)
            })
            .collect()
    }

    #[tokio::test]
    async fn sorted_listings_merge_into_pairs() {
        // Byte order: `é` (0xC3 0xA9) sorts after `z`.
        let got = merged(&["a", "b/x", "b/y", "d", "é"], &["a", "b/y", "c", "z", "é"])
            .await
            .unwrap();
        let want: Vec<(String, String)> = [
            ("p/a", "size 1"),
            ("p/b/x", "-"),
            ("p/b/y", "size 3"),
            ("-", "c"),
            ("p/d", "-"),
            ("-", "z"),
            ("p/é", "size 2"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
        assert_eq!(merged(&[], &["x"]).await.unwrap(), vec![("-".into(), "x".into())]);
        assert_eq!(merged(&["x"], &[]).await.unwrap(), vec![("p/x".into(), "-".into())]);
    }

    #[tokio::test]
    async fn a_listing_out_of_byte_order_stops_the_merge() {
        let e = merged(&["a", "c"], &["b", "a"]).await.unwrap_err();
        assert!(
            e.contains("destination `b:p/` listed `a` after `b`: not in byte order"),
            "{e}"
        );
        let e = merged(&["b", "b"], &[]).await.unwrap_err();
        assert!(e.contains("`a:p/` listed `b` after `b`"), "{e}");
    }
}
