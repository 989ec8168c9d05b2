//! Large objects as parts: the part size for an object and its destination's limits, the
//! memory budget every buffered part holds its share of until uploaded, a source read as parts
//! (ranged GETs in parallel, or a local file cut as it streams) and parts uploaded as tasks.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, FuturesUnordered};
use futures::StreamExt;
use object_store::{GetOptions, MultipartUpload, PutPayload};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::copy::{body_stream, CopyError};
use super::seal::PartSeal;
use super::Engine;
use crate::catalog::Limits;
use crate::checksum::StreamHasher;
use crate::store::{Listed, Store};

/// Parts of one multipart upload sent concurrently.
pub const PARTS_IN_FLIGHT: usize = 4;
/// Ranged reads of one large object in flight at once, ahead of the hasher.
pub const READS_IN_FLIGHT: usize = 4;
/// Granularity of the memory budget.
pub(super) const PERMIT_UNIT: u64 = 64 * 1024;

/// The part size for an object: the configured size, raised so the object fits in the
/// destination's maximum part count (S3: 10,000 parts of 5 MiB to 5 GiB), rounded up to MiB.
pub fn part_size(object_size: u64, configured: u64, limits: &Limits) -> Result<u64, String> {
    if object_size > limits.max_object_size {
        return Err(format!(
            "not copied: {object_size} bytes exceeds the destination's maximum object size of {} bytes",
            limits.max_object_size
        ));
    }
    const MIB: u64 = 1 << 20;
    let needed = object_size.div_ceil(limits.max_parts);
    let size = configured
        .max(needed)
        .max(limits.min_part_size)
        .div_ceil(MIB)
        .saturating_mul(MIB);
    Ok(size.min(limits.max_part_size))
}

impl Engine {
    /// The object as whole parts, in order, read by ranged GETs of which up to
    /// [`READS_IN_FLIGHT`] run at once, each in its own task. A part's share of the memory budget
    /// is taken, in part order, before its read starts and travels with its bytes until its
    /// upload ends, so every holder of budget can finish without needing more: reads never
    /// wait on one another for memory.
    pub(super) fn read_parts(
        &self,
        src: &Store,
        path: object_store::path::Path,
        item: &Listed,
        part: u64,
    ) -> PartStream {
        let n = item.size.div_ceil(part);
        let (store, read, size) = (src.inner.clone(), src.read_options(item), item.size);
        let (progress, bandwidth) = (self.progress.clone(), self.bandwidth.clone());
        let budget = (self.budget.clone(), self.budget_permits);
        futures::stream::iter(0..n)
            .then(move |i| {
                let budget = budget.clone();
                async move {
                    let (start, end) = (i * part, ((i + 1) * part).min(size));
                    (start..end, reserve(&budget.0, budget.1, end - start).await)
                }
            })
            .map(move |(range, permit)| {
                let (store, path, read) = (store.clone(), path.clone(), read.clone());
                let (progress, bandwidth) = (progress.clone(), bandwidth.clone());
                Task(tokio::spawn(async move {
                    let want = (range.end - range.start) as usize;
                    let opts = GetOptions {
                        range: Some(range.into()),
                        ..read
                    };
                    let mut body = body_stream(store.get_opts(&path, opts).await?);
                    let mut buf = bytes::BytesMut::with_capacity(want);
                    while let Some(chunk) = body.next().await {
                        let chunk = chunk?;
                        if buf.len() + chunk.len() > want {
                            return Err(CopyError::Transient(format!(
                                "a ranged read returned more than the {want} bytes asked for"
                            )));
                        }
                        progress.bytes(chunk.len() as u64);
                        if let Some(b) = &bandwidth {
                            b.pace(chunk.len()).await;
                        }
                        buf.extend_from_slice(&chunk);
                    }
                    if buf.len() != want {
                        return Err(CopyError::Transient(format!(
                            "a ranged read returned {} of the {want} bytes asked for (truncated)",
                            buf.len()
                        )));
                    }
                    Ok((vec![buf.freeze()], permit))
                }))
            })
            .buffered(READS_IN_FLIGHT)
            .boxed()
    }

    /// A local file's bytes as parts, read in order as one stream and cut at part boundaries
    /// without copying. A local disk gains nothing from parallel ranges, and its 1 MiB chunks,
    /// below the allocator's mmap threshold, are recycled instead of faulted in fresh (P3 in
    /// docs/benchmarks.md). Each part's budget is taken before its first byte is read.
    pub(super) fn stream_as_parts(
        &self,
        body: BoxStream<'static, object_store::Result<Bytes>>,
        part: u64,
    ) -> PartStream {
        let budget = (self.budget.clone(), self.budget_permits);
        let (progress, bandwidth) = (self.progress.clone(), self.bandwidth.clone());
        futures::stream::try_unfold((body, None::<Bytes>, false), move |(mut body, mut carry, mut done)| {
            let (budget, progress, bandwidth) = (budget.clone(), progress.clone(), bandwidth.clone());
            async move {
                if done && carry.is_none() {
                    return Ok(None);
                }
                let permit = reserve(&budget.0, budget.1, part).await;
                let (mut chunks, mut len) = (Vec::new(), 0u64);
                while len < part {
                    let mut chunk = match carry.take() {
                        Some(c) => c,
                        None => match body.next().await {
                            Some(c) => {
                                let c = c?;
                                progress.bytes(c.len() as u64);
                                if let Some(b) = &bandwidth {
                                    b.pace(c.len()).await;
                                }
                                c
                            }
                            None => {
                                done = true;
                                break;
                            }
                        },
                    };
                    if chunk.len() as u64 > part - len {
                        carry = Some(chunk.split_off((part - len) as usize));
                    }
                    len += chunk.len() as u64;
                    chunks.push(chunk);
                }
                if chunks.is_empty() {
                    return Ok(None);
                }
                Ok(Some(((chunks, permit), (body, carry, done))))
            }
        })
        .boxed()
    }

    pub(super) async fn stream_parts(
        &self,
        upload: &mut Box<dyn MultipartUpload>,
        mut parts: PartStream,
        hasher: &mut StreamHasher,
        mut sealing: Option<&mut PartSeal>,
    ) -> Result<(), CopyError> {
        let mut inflight = PartTasks::default();
        let mut number = 0;
        // Each part uploads in its own task: it progresses (and frees its share of the memory
        // budget) while this object waits for the next part, so objects waiting on one another
        // can never hold the whole budget with parts nobody drives.
        while let Some(next) = parts.next().await {
            let (data, permit) = next?;
            data.iter().for_each(|c| hasher.update(c));
            number += 1;
            let payload = match sealing.as_deref_mut() {
                Some(seal) => PutPayload::from(seal.seal(number, contiguous(data)).await?),
                None => PutPayload::from_iter(data),
            };
            let fut = upload.put_part(payload);
            inflight.0.push(tokio::spawn(async move {
                let r = fut.await;
                drop(permit);
                r
            }));
            if inflight.0.len() >= PARTS_IN_FLIGHT {
                joined(inflight.0.next().await.expect("non-empty"))??;
            }
        }
        while let Some(r) = inflight.0.next().await {
            joined(r)??;
        }
        Ok(())
    }
}

/// Whole parts of one object, in order, each as its chunks and with its share of the budget.
pub(super) type PartStream = BoxStream<'static, Result<(Vec<Bytes>, OwnedSemaphorePermit), CopyError>>;

/// A part as one buffer, as the SDK's request body needs it: free for a part read by range (one
/// chunk), one copy for a part assembled from a local file's chunks.
pub(super) fn contiguous(mut chunks: Vec<Bytes>) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().expect("one chunk");
    }
    let mut out = bytes::BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
    chunks.iter().for_each(|c| out.extend_from_slice(c));
    out.freeze()
}

pub(super) async fn reserve(budget: &Arc<Semaphore>, permits: u32, bytes: u64) -> OwnedSemaphorePermit {
    let n = bytes.div_ceil(PERMIT_UNIT).clamp(1, permits as u64) as u32;
    budget
        .clone()
        .acquire_many_owned(n)
        .await
        .expect("budget semaphore is never closed")
}

/// A spawned task as a future of its result; dropping it (a failed or cancelled copy) aborts
/// the task, so no read outlives the object it was for.
struct Task<T>(tokio::task::JoinHandle<Result<T, CopyError>>);

impl<T> std::future::Future for Task<T> {
    type Output = Result<T, CopyError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| joined(r).and_then(|r| r))
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Part uploads running as tasks; dropping the set (an error, a cancelled copy) stops them.
pub(super) struct PartTasks<T>(pub(super) FuturesUnordered<tokio::task::JoinHandle<T>>);

impl<T> Default for PartTasks<T> {
    fn default() -> Self {
        PartTasks(FuturesUnordered::new())
    }
}

impl<T> Drop for PartTasks<T> {
    fn drop(&mut self) {
        for h in self.0.iter() {
            h.abort();
        }
    }
}

pub(super) fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, CopyError> {
    r.map_err(|e| CopyError::Transient(format!("part upload task ended: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::default_limits;
    use crate::plan::StoreType;

    #[test]
    fn part_size_respects_limits() {
        let s3 = default_limits(StoreType::S3);
        assert_eq!(part_size(100, 16 << 20, &s3).unwrap(), 16 << 20);
        // 1 TiB in at most 10,000 parts needs parts above 100 MiB.
        let p = part_size(1 << 40, 16 << 20, &s3).unwrap();
        assert!(p * 10_000 >= 1 << 40 && p <= 5 << 30, "{p}");
        assert_eq!(part_size(1, 1 << 20, &s3).unwrap(), 5 << 20);
        assert!(part_size(6 << 40, 16 << 20, &s3).is_err());
    }
}
