//! The manifest: proof of what a job moved. One JSON document per line: a header, one line per
//! object (destination key, source key, size, SHA-256, source ETag), a summary. Written locally
//! under the state directory and uploaded beside the data at
//! `<destination provider>/.ferry/manifests/<job>.jsonl`, so an audit can compare without the
//! journal. Rows come from the journal in key order, streamed: memory does not grow with the
//! number of objects. Both copies are created mode 0600 (a local destination's through
//! [`Store::put_private`]). At a destination that encrypts, the uploaded copy is encrypted too:
//! it names every object and holds the plaintexts' SHA-256s.

use std::io::Write;
use std::path::{Path, PathBuf};

use object_store::{Attributes, PutMultipartOptions, PutPayload, WriteMultipart};
use serde_json::json;

use crate::checksum;
use crate::journal::Journal;
use crate::plan::ObjectJob;
use crate::store::{key_to_path, Store};
use crate::sync::JobReport;

/// Writes the job's manifest locally and at the destination; returns the local path.
pub async fn write(
    journal: &Journal,
    job: &ObjectJob,
    report: &JobReport,
    state_dir: &Path,
    dst: &Store,
) -> anyhow::Result<PathBuf> {
    let path = write_local(journal, job, report, state_dir)?;
    upload(&path, job, dst).await?;
    Ok(path)
}

/// Writes `<state_dir>/manifests/<job>.jsonl` from the journal's done rows: written beside, synced,
/// then renamed into place, so a manifest is either complete or absent.
fn write_local(journal: &Journal, job: &ObjectJob, report: &JobReport, state_dir: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let dir = state_dir.join("manifests");
    crate::journal::create_state_dir(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let path = dir.join(format!("{}.jsonl", job.state_stem()));
    let tmp = path.with_extension("jsonl.tmp");
    {
        let file =
            crate::journal::create_private_file(&tmp).with_context(|| format!("cannot write `{}`", tmp.display()))?;
        let mut w = std::io::BufWriter::new(file);
        let header = json!({
            "manifest": "ferry/1",
            "job": job.name,
            "from": job.from.to_string(),
            "to": job.to.to_string(),
            "algorithm": checksum::ALGORITHM,
            "shard": job.shard,
            "created": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        });
        writeln!(w, "{header}")?;
        let mut io_err = None;
        journal.for_each_done(&job.name, |r| {
            let line = json!({
                "key": r.dst_key,
                "source_key": r.key,
                "size": r.src_size,
                "sha256": r.sha256,
                "stored_sha256": r.stored_sha256,
                "source_etag": r.src_etag,
            });
            if let Err(e) = writeln!(w, "{line}") {
                io_err.get_or_insert(e);
            }
        })?;
        if let Some(e) = io_err {
            return Err(e.into());
        }
        writeln!(w, "{}", json!({ "summary": report }))?;
        w.flush()?;
        w.get_ref().sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Uploads the local manifest to the job's manifest key at the destination, private where the
/// store can say so: one PUT up to 64 MiB, streamed in parts above.
async fn upload(path: &Path, job: &ObjectJob, dst: &Store) -> anyhow::Result<()> {
    use anyhow::Context;
    let key = job.manifest_key();
    let remote = key_to_path(&key).expect("manifest keys are plain");
    let len = std::fs::metadata(path)?.len();
    const SINGLE: u64 = 64 << 20;
    if len <= SINGLE {
        let mut bytes = tokio::fs::read(path).await?;
        if let Some(seal) = &dst.seal {
            bytes = seal.seal_whole(&bytes)?;
        }
        dst.put_private(&remote, PutPayload::from(bytes))
            .await
            .with_context(|| format!("cannot upload manifest to `{}:{key}`", dst.name()))?;
        return Ok(());
    }
    let mut attributes = Attributes::new();
    dst.mark_private(&mut attributes);
    let opts = PutMultipartOptions {
        attributes,
        ..Default::default()
    };
    let upload = dst.inner.put_multipart_opts(&remote, opts).await?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, 16 << 20);
    let mut f = tokio::fs::File::open(path).await?;
    // Whole 64 KiB chunks, as an encrypted part must be.
    let mut buf = vec![0u8; 8 << 20];
    let keys = crate::crypt::ObjectSealer::fresh_keys()?;
    let mut offset = 0u64;
    loop {
        use tokio::io::AsyncReadExt;
        let n = f.read_exact(&mut buf[..(len - offset).min(8 << 20) as usize]).await?;
        if n == 0 {
            break;
        }
        w.wait_for_capacity(4).await?;
        match &dst.seal {
            Some(seal) => w.write(&seal.seal_part(&keys, offset, &buf[..n], offset + n as u64 >= len)?),
            None => w.write(&buf[..n]),
        }
        offset += n as u64;
    }
    w.finish()
        .await
        .with_context(|| format!("cannot upload manifest to `{}:{key}`", dst.name()))?;
    Ok(())
}
