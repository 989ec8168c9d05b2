//! Writing a file: bytes go to a temporary beside the target, renamed over it when complete
//! (so no partial file carries a final name), as one PUT or as a multipart upload.

use super::*;

/// A file being written under a temporary name.
pub(super) struct Temp {
    pub(super) store: LocalStore,
    pub(super) dir: Arc<OwnedFd>,
    pub(super) tmp: CString,
    pub(super) name: CString,
    pub(super) key: String,
    pub(super) file: Arc<File>,
    pub(super) done: bool,
}

impl Temp {
    /// Applies mode and mtime, renames the temporary over the final name, and returns its ETag.
    pub(super) fn finish(&mut self, attributes: &Attributes) -> Result<PutResult, object_store::Error> {
        let key = self.key.clone();
        let attr = |name: &str| {
            attributes
                .get(&Attribute::Metadata(name.to_string().into()))
                .map(|v: &AttributeValue| v.as_ref().to_string())
        };
        // Permission bits only (no set-id bits), never wider than the source's.
        let mode = attr(ATTR_MODE)
            .and_then(|m| u32::from_str_radix(&m, 8).ok())
            .map(|m| m & 0o777)
            .unwrap_or(0o644);
        rustix::fs::fchmod(&*self.file, Mode::from_raw_mode(mode)).map_err(|e| os_error(&key, "write", e.into()))?;
        if let Some((s, ns)) = attr(ATTR_MTIME).and_then(|t| {
            let (s, ns) = t.split_once('.')?;
            Some((s.parse::<i64>().ok()?, ns.parse::<i64>().ok()?))
        }) {
            let t = Timespec { tv_sec: s, tv_nsec: ns };
            let times = Timestamps {
                last_access: t,
                last_modification: t,
            };
            rustix::fs::futimens(&*self.file, &times).map_err(|e| os_error(&key, "write", e.into()))?;
        }
        let st = rustix::fs::fstat(&*self.file).map_err(|e| os_error(&key, "write", e.into()))?;
        rustix::fs::renameat(&*self.dir, &self.tmp, &*self.dir, &self.name).map_err(|e| match e {
            rustix::io::Errno::ISDIR | rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST => {
                generic(format!("cannot write `{key}`: a directory of that name is in the way"))
            }
            e => os_error(&key, "write", e.into()),
        })?;
        self.done = true;
        self.store.shared.dirty.store(true, Ordering::Release);
        Ok(PutResult {
            e_tag: Some(etag(&st)),
            version: None,
            extensions: Default::default(),
        })
    }

    pub(super) fn discard(&mut self) {
        if !self.done {
            self.done = true;
            let _ = rustix::fs::unlinkat(&*self.dir, &self.tmp, AtFlags::empty());
        }
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        self.discard();
    }
}

/// A large file written part by part at its offsets into one temporary.
pub(super) struct Upload {
    pub(super) temp: Option<Temp>,
    pub(super) offset: u64,
    pub(super) attributes: Attributes,
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload").field("offset", &self.offset).finish()
    }
}

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let at = self.offset;
        self.offset += data.content_length() as u64;
        let Some(temp) = &self.temp else {
            return Box::pin(async { Err(generic("upload already finished".into())) });
        };
        let (file, key) = (temp.file.clone(), temp.key.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut pos = at;
                for chunk in data.iter() {
                    file.write_all_at(chunk, pos).map_err(|e| os_error(&key, "write", e))?;
                    pos += chunk.len() as u64;
                }
                Ok(())
            })
            .await
            .map_err(join)?
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let mut temp = self
            .temp
            .take()
            .ok_or_else(|| generic("upload already finished".into()))?;
        let attributes = self.attributes.clone();
        tokio::task::spawn_blocking(move || temp.finish(&attributes))
            .await
            .map_err(join)?
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        if let Some(mut temp) = self.temp.take() {
            tokio::task::spawn_blocking(move || temp.discard())
                .await
                .map_err(join)?;
        }
        Ok(())
    }
}
