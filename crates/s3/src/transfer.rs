//! Transfers: uploads from a file (one `PUT`, or multipart with parts in parallel, resumable)
//! or from a stream, and downloads to a file (parallel ranges, resumable, checked against the
//! object's SHA-256 before the file appears).

use std::fs::File as StdFile;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use infermux_core::{Error, ErrorKind, Idempotency, RequestContext};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::{MAX_PART_SIZE, MAX_PARTS};
use crate::error::{S3Error, sdk_error};
use crate::key::check_key;
use crate::kit::{
    ObjectInfo, S3Kit, SHA256_META, Uploaded, crc32c_b64, erase, ranged_error, unquote,
};

/// Called with the number of bytes each finished piece of a transfer moved (a part, a range,
/// a whole small object): a progress bar adds them up.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// What a finished download wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Downloaded {
    /// The file written.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its SHA-256 (hex), equal to the object's when the object carries one.
    pub sha256: String,
    /// Ranges fetched in this run (ranges already on disk from an interrupted run are not
    /// fetched again).
    pub ranges_fetched: u32,
    /// Ranges found on disk from an interrupted run.
    pub ranges_resumed: u32,
    /// Whether the file was checked against the object: its stored SHA-256, or the MD5 a
    /// plain ETag names. `false` when the object carries neither (a multipart object another
    /// tool stored, an SSE-KMS or SSE-C one, a stream the kit uploaded in parts): the file
    /// is then as the ranges arrived, each checked by its `If-Match` only.
    pub verified: bool,
}

/// The identity of a local file while it is uploaded: a write to it changes one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Result<Stamp, S3Error> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| S3Error::io(path, e))?;
    if !m.is_file() {
        return Err(S3Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    Ok(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode: m.ino(),
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, S3Error> + Send + 'static,
) -> Result<T, S3Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        S3Error::Call(Error::new(
            ErrorKind::Storage,
            format!("a file task failed: {e}"),
        ))
    })?
}

/// SHA-256 (hex) of a whole file, on the blocking pool.
pub async fn sha256_file(path: &Path) -> Result<String, S3Error> {
    let p = path.to_path_buf();
    blocking(move || {
        let mut f = StdFile::open(&p).map_err(|e| S3Error::io(&p, e))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|e| S3Error::io(&p, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(hex::encode(h.finalize()))
    })
    .await
}

fn read_part(path: &Path, offset: u64, len: usize) -> Result<Bytes, S3Error> {
    use std::io::Seek;
    let mut f = StdFile::open(path).map_err(|e| S3Error::io(path, e))?;
    f.seek(std::io::SeekFrom::Start(offset))
        .map_err(|e| S3Error::io(path, e))?;
    // read into spare capacity: no zero-filling of a buffer about to be overwritten
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64)
        .read_to_end(&mut buf)
        .map_err(|e| S3Error::io(path, e))?;
    if buf.len() != len {
        // the file got shorter since it was measured
        return Err(S3Error::SourceChanged {
            path: path.to_path_buf(),
        });
    }
    Ok(Bytes::from(buf))
}

struct Upload<'a> {
    bucket: &'a str,
    key: &'a str,
    /// The file's SHA-256, stored with the object.
    sha256: &'a str,
    path: &'a Path,
    stamp: Stamp,
    part_size: u64,
    parts: u32,
    progress: Option<&'a Progress>,
}

impl S3Kit {
    /// Uploads a file: one `PUT` below the multipart threshold, else a multipart upload with
    /// `concurrency` parts of `part_size` in flight. The file's SHA-256 is stored with the
    /// object; a file that changes during the upload is [`S3Error::SourceChanged`] and leaves
    /// no object. A multipart upload that fails on its endpoint is aborted and started again
    /// on another endpoint while the deadline and the endpoints last.
    pub async fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
    ) -> Result<Uploaded, S3Error> {
        erase(async move { self.upload_file_with(bucket, key, path, None).await }).await
    }

    /// [`S3Kit::upload_file`] reporting progress.
    pub async fn upload_file_with(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        progress: Option<&Progress>,
    ) -> Result<Uploaded, S3Error> {
        erase(async move {
            check_key(key)?;
            let before = stamp(path)?;
            let transfer = self.transfer();
            let ctx = self.ctx();
            if before.len < transfer.multipart_threshold {
                let p = path.to_path_buf();
                let body =
                    blocking(move || std::fs::read(&p).map_err(|e| S3Error::io(&p, e))).await?;
                if stamp(path)? != before || body.len() as u64 != before.len {
                    return Err(S3Error::SourceChanged {
                        path: path.to_path_buf(),
                    });
                }
                let body = Bytes::from(body);
                let sha = hex::encode(sha2::Sha256::digest(&body));
                let n = body.len() as u64;
                let out = Box::pin(self.put_in(&ctx, bucket, key, body, sha)).await?;
                if let Some(p) = progress {
                    p(n);
                }
                return Ok(out);
            }
            let sha = sha256_file(path).await?;
            let part_size = transfer.part_size_for(before.len);
            let up = Upload {
                bucket,
                key,
                sha256: &sha,
                path,
                stamp: before,
                part_size,
                parts: u32::try_from(before.len.div_ceil(part_size)).unwrap_or(u32::MAX),
                progress,
            };
            let mut last = None;
            for _ in 0..self.inner.endpoints.len() {
                let (upload_id, ep) = Box::pin(self.create_upload(&ctx, bucket, key, &sha)).await?;
                let guard = AbortOnDrop::new(self, ep, bucket, key, &upload_id);
                // boxed: the parts' futures are large
                let result = Box::pin(self.upload_parts(&ctx, &up, ep, &upload_id, &[])).await;
                match result {
                    Ok((etag, parts_reused)) => {
                        guard.disarm();
                        return Ok(Uploaded {
                            key: key.to_owned(),
                            size: before.len,
                            sha256: sha.clone(),
                            etag,
                            parts: up.parts,
                            parts_reused,
                            endpoint: self.endpoint_name(ep).to_owned(),
                        });
                    }
                    Err(e) => {
                        let aborted = self.abort_on(ep, bucket, key, &upload_id).await.is_ok();
                        // aborted here, or its id reported: dropped before this, the guard aborts
                        guard.disarm();
                        // the endpoint failed (not the request): start again where the pool sends us
                        let retry_elsewhere = match &e {
                            S3Error::Call(c) => {
                                (c.kind().is_transient()
                                    || matches!(
                                        c.kind(),
                                        ErrorKind::CircuitOpen | ErrorKind::QueueFull
                                    ))
                                    && !ctx_expired(&ctx)
                            }
                            _ => false,
                        };
                        let e = match e {
                            S3Error::Call(source) => S3Error::UploadFailed {
                                key: key.to_owned(),
                                endpoint: self.endpoint_name(ep).to_owned(),
                                upload_id: (!aborted).then(|| upload_id.clone()),
                                sha256: sha.clone(),
                                source,
                            },
                            other => {
                                if !aborted {
                                    left_behind(self.endpoint_name(ep), bucket, key, &upload_id);
                                }
                                return Err(other);
                            }
                        };
                        tracing::warn!(
                            target: "infermux::s3",
                            endpoint = self.endpoint_name(ep),
                            aborted,
                            "multipart upload failed: {e}"
                        );
                        // its id goes with the error, but a retry elsewhere that succeeds drops
                        // the error: the id is logged now, while it is known
                        if !aborted && retry_elsewhere {
                            left_behind(self.endpoint_name(ep), bucket, key, &upload_id);
                        }
                        if !retry_elsewhere {
                            return Err(e);
                        }
                        last = Some(e);
                    }
                }
            }
            Err(last.unwrap_or_else(|| S3Error::Config("no endpoint".into())))
        })
        .await
    }

    async fn create_upload(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        sha: &str,
    ) -> Result<(String, usize), S3Error> {
        self.run(
            "s3.create_multipart_upload",
            Idempotency::NonIdempotent,
            ctx,
            |ep| {
                let mut req = ep
                    .client
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32C);
                if !sha.is_empty() {
                    req = req.metadata(SHA256_META, sha);
                }
                async move {
                    let out = req
                        .send()
                        .await
                        .map_err(|e| sdk_error("CreateMultipartUpload", e))?;
                    out.upload_id().map(str::to_owned).ok_or_else(|| {
                        Error::new(ErrorKind::Decode, "CreateMultipartUpload: no upload id")
                    })
                }
            },
        )
        .await
        .map_err(|e| S3Error::from_call(e, bucket, None))
    }

    /// Uploads the parts not in `done` (a resumed upload's parts on the server, with their
    /// sizes; the file is known to be the one they came from) on endpoint `ep` and completes
    /// the upload.
    async fn upload_parts(
        &self,
        ctx: &RequestContext,
        up: &Upload<'_>,
        ep: usize,
        upload_id: &str,
        done: &[(CompletedPart, i64)],
    ) -> Result<(Option<String>, u32), S3Error> {
        // (grown parts go fewer at once: the memory in flight stays within its bound)
        let concurrency = self.transfer().concurrency_for(up.part_size);
        let reused = std::sync::atomic::AtomicU32::new(0);
        let reused = &reused;
        let have: std::collections::HashMap<i32, &(CompletedPart, i64)> = done
            .iter()
            .filter_map(|p| Some((p.0.part_number()?, p)))
            .collect();
        let todo: Vec<u32> = (1..=up.parts).collect();
        let completed: Vec<CompletedPart> = stream::iter(todo)
            .map(|n| {
                let have = have.get(&(n as i32)).copied().cloned();
                async move {
                    let offset = u64::from(n - 1) * up.part_size;
                    let len = up.part_size.min(up.stamp.len - offset) as usize;
                    let path = up.path.to_path_buf();
                    let (body, crc) = blocking(move || {
                        let b = read_part(&path, offset, len)?;
                        let c = crc32c_b64(&b);
                        Ok((b, c))
                    })
                    .await?;
                    // a part on the server is kept when its CRC32C, else its ETag (the part's
                    // MD5), else — a server that lists neither — its size is the file's
                    let same = |(p, size): &(CompletedPart, i64)| match (
                        p.checksum_crc32_c(),
                        p.e_tag(),
                    ) {
                        (Some(c), _) => c == crc,
                        (None, Some(t)) => unquote(t) == hex::encode(md5::Md5::digest(&body)),
                        (None, None) => *size == len as i64,
                    };
                    if let Some(p) = have
                        && same(&p)
                    {
                        let p = p.0;
                        reused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return Ok(p);
                    }
                    let part = self
                        .send_part(ctx, ep, (up.bucket, up.key, upload_id), n, body, crc)
                        .await?;
                    if let Some(p) = up.progress {
                        p(len as u64);
                    }
                    Ok::<_, S3Error>(part)
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        // the file must be what was hashed: any write since changes its length, time or inode
        if stamp(up.path)? != up.stamp {
            return Err(S3Error::SourceChanged {
                path: up.path.to_path_buf(),
            });
        }
        let etag = self
            .complete(
                ctx,
                ep,
                (up.bucket, up.key, upload_id),
                completed,
                Some(up.sha256),
            )
            .await?;
        Ok((etag, reused.load(std::sync::atomic::Ordering::Relaxed)))
    }

    /// Sends part `n` of an upload (`bucket`, `key`, upload id) on endpoint `ep`, its CRC32C
    /// in the signed headers (checked by the server; the body is not hashed again for the
    /// signature); returns its record for the completion.
    async fn send_part(
        &self,
        ctx: &RequestContext,
        ep: usize,
        (bucket, key, upload_id): (&str, &str, &str),
        n: u32,
        body: Bytes,
        crc: String,
    ) -> Result<CompletedPart, S3Error> {
        let len = body.len() as i64;
        let etag = self
            .run_on(ep, "s3.upload_part", Idempotency::Idempotent, ctx, |e| {
                let req = e
                    .client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(n as i32)
                    .content_length(len)
                    .checksum_crc32_c(crc.clone())
                    .body(ByteStream::from(body.clone()));
                async move {
                    let out = req
                        .customize()
                        .disable_payload_signing()
                        .send()
                        .await
                        .map_err(|e| sdk_error("UploadPart", e))?;
                    Ok(out.e_tag().map(str::to_owned))
                }
            })
            .await
            .map_err(S3Error::Call)?;
        Ok(CompletedPart::builder()
            .part_number(n as i32)
            .set_e_tag(etag)
            .checksum_crc32_c(crc)
            .build())
    }

    /// Completes an upload on endpoint `ep` with its `parts` (in any order); the object's ETag.
    ///
    /// A retry answered `NoSuchUpload` may follow an attempt that completed the upload and
    /// whose answer was lost (S3 says the upload "might have been aborted or completed"):
    /// when the object now carries `sha256` (the file's, stored at the upload's creation),
    /// the upload completed.
    async fn complete(
        &self,
        ctx: &RequestContext,
        ep: usize,
        (bucket, key, upload_id): (&str, &str, &str),
        mut parts: Vec<CompletedPart>,
        sha256: Option<&str>,
    ) -> Result<Option<String>, S3Error> {
        parts.sort_by_key(|p| p.part_number());
        let body = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let mut attempts = 0u32;
        self.run_on(
            ep,
            "s3.complete_multipart_upload",
            Idempotency::Idempotent,
            ctx,
            |e| {
                attempts += 1;
                let retried = attempts > 1;
                let req = e
                    .client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .multipart_upload(body.clone());
                let head = e.client.head_object().bucket(bucket).key(key);
                async move {
                    let err = match req.send().await {
                        Ok(out) => return Ok(out.e_tag().map(unquote)),
                        Err(err) => sdk_error("CompleteMultipartUpload", err),
                    };
                    if let Some(sha) = sha256.filter(|_| retried)
                        && err.provider_code() == Some("NoSuchUpload")
                        && let Ok(h) = head.send().await
                        && h.metadata()
                            .and_then(|m| m.get(SHA256_META))
                            .map(String::as_str)
                            == Some(sha)
                    {
                        // completed by an earlier attempt whose answer was lost
                        return Ok(h.e_tag().map(unquote));
                    }
                    Err(err)
                }
            },
        )
        .await
        .map_err(S3Error::Call)
    }

    /// Waits for the aborts of multipart uploads whose futures were dropped before they
    /// completed or failed (a caller that gave up, a Ctrl-C): each such upload is aborted on
    /// the runtime, so that its parts do not stay on the server under an id nobody knows (a
    /// part the server was still receiving when the abort landed may outlive it on some
    /// servers: a bucket lifecycle rule for incomplete uploads clears those). A program about
    /// to end calls this first: the runtime's end would cut them short.
    ///
    /// ```no_run
    /// // `shutdown`: notified on Ctrl-C (`tokio::signal::ctrl_c`), say
    /// # async fn f(kit: infermux_s3::S3Kit, shutdown: tokio::sync::Notify) {
    /// tokio::select! {
    ///     r = kit.upload_file("models", "m.gguf", "m.gguf".as_ref()) => { r.unwrap(); }
    ///     _ = shutdown.notified() => kit.wait_for_aborts().await,
    /// }
    /// # }
    /// ```
    pub async fn wait_for_aborts(&self) {
        loop {
            let pending: Vec<_> =
                std::mem::take(&mut *self.inner.aborts.lock().unwrap_or_else(|e| e.into_inner()));
            if pending.is_empty() {
                return;
            }
            for h in pending {
                let _ = h.await;
            }
        }
    }

    /// Aborts an upload on endpoint `ep`; when that endpoint cannot be reached, through any
    /// endpoint the pool picks (nodes of one store share their uploads). `Ok(true)` when an
    /// upload was aborted, `Ok(false)` when none was found.
    pub(crate) async fn abort_on(
        &self,
        ep: usize,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<bool, S3Error> {
        let ctx = RequestContext::new().with_timeout(std::time::Duration::from_secs(10));
        let attempt = |e: &crate::kit::Endpoint| {
            let req = e
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id);
            async move {
                match req.send().await {
                    Ok(_) => Ok(true),
                    Err(e) => {
                        let e = sdk_error("AbortMultipartUpload", e);
                        // already gone (completed or aborted elsewhere)
                        if e.kind() == ErrorKind::NotFound {
                            Ok(false)
                        } else {
                            Err(e)
                        }
                    }
                }
            }
        };
        match self
            .run_on(
                ep,
                "s3.abort_multipart_upload",
                Idempotency::Idempotent,
                &ctx,
                attempt,
            )
            .await
        {
            Ok(done) => Ok(done),
            Err(first) if first.kind() != ErrorKind::NotFound => {
                match self
                    .run(
                        "s3.abort_multipart_upload",
                        Idempotency::Idempotent,
                        &ctx,
                        attempt,
                    )
                    .await
                {
                    Ok((true, _)) => Ok(true),
                    _ => Err(S3Error::from_call(first, bucket, None)),
                }
            }
            Err(e) => Err(S3Error::from_call(e, bucket, None)),
        }
    }

    /// Aborts a multipart upload on the endpoint named `endpoint` (no object appears; its
    /// parts are freed).
    pub async fn abort_upload(
        &self,
        endpoint: &str,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), S3Error> {
        erase(async move {
            let ep = self.endpoint_index(endpoint)?;
            self.abort_on(ep, bucket, key, upload_id).await.map(|_| ())
        })
        .await
    }

    /// Resumes an interrupted multipart upload of `path` (the upload id and SHA-256 an
    /// [`S3Error::UploadFailed`] named): the file must still have that SHA-256
    /// ([`S3Error::SourceChanged`] otherwise); parts already on the server whose CRC32C (or
    /// ETag, the part's MD5) matches the file's are kept — and, on servers that list parts
    /// with neither, those of the right size, since the file is the one they were sent from
    /// and the server checked each one's CRC32C on receipt — the others are uploaded, then the
    /// upload is completed. Uses the configured part size, which must be the one the upload
    /// started with.
    pub async fn resume_upload(
        &self,
        endpoint: &str,
        bucket: &str,
        key: &str,
        path: &Path,
        upload_id: &str,
        sha256: &str,
    ) -> Result<Uploaded, S3Error> {
        erase(async move {
            check_key(key)?;
            let ep = self.endpoint_index(endpoint)?;
            let before = stamp(path)?;
            let ctx = self.ctx();
            let mut done = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let (page, next) = self
                    .run_on(ep, "s3.list_parts", Idempotency::Idempotent, &ctx, |e| {
                        let mut req = e
                            .client
                            .list_parts()
                            .bucket(bucket)
                            .key(key)
                            .upload_id(upload_id);
                        if let Some(m) = &marker {
                            req = req.part_number_marker(m);
                        }
                        let asked = marker.clone();
                        async move {
                            let out = req.send().await.map_err(|e| sdk_error("ListParts", e))?;
                            let parts: Vec<(CompletedPart, i64)> = out
                                .parts()
                                .iter()
                                .map(|p| {
                                    (
                                        CompletedPart::builder()
                                            .set_part_number(p.part_number())
                                            .set_e_tag(p.e_tag().map(str::to_owned))
                                            .set_checksum_crc32_c(
                                                p.checksum_crc32_c().map(str::to_owned),
                                            )
                                            .build(),
                                        p.size().unwrap_or(-1),
                                    )
                                })
                                .collect();
                            // (as a listing: going on needs a new marker)
                            let next = match (out.is_truncated(), out.next_part_number_marker()) {
                                (Some(true), Some(m)) if asked.as_deref() != Some(m) => {
                                    Some(m.to_owned())
                                }
                                (Some(true), _) => {
                                    return Err(Error::new(
                                        ErrorKind::Decode,
                                        "ListParts says the list goes on but gives no new \
                                         part number marker",
                                    ));
                                }
                                _ => None,
                            };
                            Ok((parts, next))
                        }
                    })
                    .await
                    .map_err(|e| S3Error::from_call(e, bucket, Some(key)))?;
                done.extend(page);
                match next {
                    Some(m) => marker = Some(m),
                    None => break,
                }
            }
            let sha = sha256_file(path).await?;
            if sha != sha256 {
                return Err(S3Error::SourceChanged {
                    path: path.to_path_buf(),
                });
            }
            let part_size = self.transfer().part_size_for(before.len);
            let up = Upload {
                bucket,
                key,
                sha256: &sha,
                path,
                stamp: before,
                part_size,
                parts: u32::try_from(before.len.div_ceil(part_size)).unwrap_or(u32::MAX),
                progress: None,
            };
            let (etag, parts_reused) =
                Box::pin(self.upload_parts(&ctx, &up, ep, upload_id, &done)).await?;
            Ok(Uploaded {
                key: key.to_owned(),
                size: before.len,
                sha256: sha.clone(),
                etag,
                parts: up.parts,
                parts_reused,
                endpoint: endpoint.to_owned(),
            })
        })
        .await
    }

    pub(crate) fn endpoint_index(&self, name: &str) -> Result<usize, S3Error> {
        self.inner
            .endpoints
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| S3Error::Config(format!("no endpoint named `{name}`")))
    }

    /// Uploads what `reader` yields, in parts of `part_size` (one `PUT` when it ends before
    /// the multipart threshold). The SHA-256 is computed as the bytes pass and returned; the
    /// object carries it only when it fits one `PUT` (a multipart upload must name its
    /// metadata before its first part). A failed upload is aborted.
    pub async fn upload_stream<R: AsyncRead + Unpin + Send>(
        &self,
        bucket: &str,
        key: &str,
        mut reader: R,
    ) -> Result<Uploaded, S3Error> {
        erase(async move {
            check_key(key)?;
            let transfer = self.transfer();
            let ctx = self.ctx();
            let mut hasher = sha2::Sha256::new();
            // bytes in flight (sending, and the next part being read) stay within
            // part_size × concurrency, or two parts once grown parts are larger than half of
            // that (one sending while the next is read)
            let budget = transfer
                .part_size
                .saturating_mul(transfer.concurrency as u64);
            let first = read_chunk(&mut reader, transfer.multipart_threshold as usize).await?;
            if (first.len() as u64) < transfer.multipart_threshold {
                let sha = hex::encode(sha2::Sha256::digest(&first));
                return Box::pin(self.put_in(&ctx, bucket, key, Bytes::from(first), sha)).await;
            }
            let (upload_id, ep) = self.create_upload(&ctx, bucket, key, "").await?;
            let guard = AbortOnDrop::new(self, ep, bucket, key, &upload_id);
            let (ctx_ref, upload_ref) = (&ctx, upload_id.as_str());
            let result: Result<(u64, u32, Option<String>), S3Error> = async {
                let mut pending = Bytes::from(first);
                let mut parts = Vec::new();
                let mut inflight = futures_util::stream::FuturesUnordered::new();
                let mut n = 0u32;
                let mut total = 0u64;
                let mut in_flight = 0u64;
                let mut eof = false;
                loop {
                    let part_size = stream_part_size(transfer.part_size, n + 1) as usize;
                    while pending.len() < part_size && !eof {
                        let more = read_chunk(&mut reader, part_size - pending.len()).await?;
                        if more.is_empty() {
                            eof = true;
                        } else {
                            let mut v = Vec::with_capacity(pending.len() + more.len());
                            v.extend_from_slice(&pending);
                            v.extend_from_slice(&more);
                            pending = Bytes::from(v);
                        }
                    }
                    if pending.is_empty() {
                        break;
                    }
                    let take = pending.len().min(part_size);
                    let body = pending.split_to(take);
                    hasher.update(&body);
                    let len = body.len() as u64;
                    total += len;
                    n += 1;
                    if u64::from(n) > MAX_PARTS {
                        return Err(S3Error::Config(format!(
                            "the stream is longer than {MAX_PARTS} parts can carry"
                        )));
                    }
                    let number = n;
                    in_flight += len;
                    inflight.push(async move {
                        let crc = crc32c_b64(&body);
                        self.send_part(ctx_ref, ep, (bucket, key, upload_ref), number, body, crc)
                            .await
                            .map(|part| (part, len))
                    });
                    let next = stream_part_size(transfer.part_size, n + 1);
                    let bound = budget.max(next.saturating_mul(2));
                    while (inflight.len() >= transfer.concurrency
                        || in_flight.saturating_add(next) > bound)
                        && let Some(done) = inflight.next().await
                    {
                        let (part, len) = done?;
                        in_flight -= len;
                        parts.push(part);
                    }
                }
                while let Some(done) = inflight.next().await {
                    parts.push(done?.0);
                }
                let etag = self
                    .complete(ctx_ref, ep, (bucket, key, upload_ref), parts, None)
                    .await?;
                Ok((total, n, etag))
            }
            .await;
            match result {
                Ok((size, parts, etag)) => {
                    guard.disarm();
                    Ok(Uploaded {
                        key: key.to_owned(),
                        size,
                        sha256: hex::encode(hasher.finalize()),
                        etag,
                        parts,
                        parts_reused: 0,
                        endpoint: self.endpoint_name(ep).to_owned(),
                    })
                }
                Err(e) => {
                    let aborted = self.abort_on(ep, bucket, key, &upload_id).await.is_ok();
                    guard.disarm();
                    Err(match e {
                        S3Error::Call(source) => S3Error::UploadFailed {
                            key: key.to_owned(),
                            endpoint: self.endpoint_name(ep).to_owned(),
                            upload_id: (!aborted).then_some(upload_id),
                            sha256: String::new(),
                            source,
                        },
                        other => {
                            if !aborted {
                                left_behind(self.endpoint_name(ep), bucket, key, &upload_id);
                            }
                            other
                        }
                    })
                }
            }
        })
        .await
    }

    /// Downloads an object to `path`: ranges of `part_size`, `concurrency` at once, each
    /// read with `If-Match` on the object's ETag (a changed object is
    /// [`S3Error::ObjectChanged`]) and each retried on another endpoint when one fails. Bytes
    /// go to `PATH.infermux-partial`; the ranges finished are listed beside it, so a later
    /// call resumes. The file appears at `path` only once its SHA-256 (or, for objects
    /// stored by others, the MD5 a plain ETag names) equals the object's.
    pub async fn download_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
    ) -> Result<Downloaded, S3Error> {
        erase(async move { self.download_file_with(bucket, key, path, None).await }).await
    }

    /// [`S3Kit::download_file`] reporting progress.
    pub async fn download_file_with(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        progress: Option<&Progress>,
    ) -> Result<Downloaded, S3Error> {
        erase(async move {
            check_key(key)?;
            let ctx = self.ctx();
            let (info, _) = Box::pin(self.head_in(&ctx, bucket, key)).await?;
            Box::pin(self.download_known(&ctx, bucket, &info, path, progress)).await
        })
        .await
    }

    pub(crate) async fn download_known(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        info: &ObjectInfo,
        path: &Path,
        progress: Option<&Progress>,
    ) -> Result<Downloaded, S3Error> {
        let key = info.key.as_str();
        if tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir()) {
            // refused before any byte moves (the rename at the end would fail)
            return Err(S3Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "the destination is a directory: name the file to write",
                ),
            ));
        }
        let transfer = self.transfer();
        let partial = sidecar(path, "infermux-partial");
        let journal = sidecar(path, "infermux-parts");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| S3Error::io(dir, e))?;
        }
        let range = transfer.part_size;
        let ranges = info.size.div_ceil(range).max(1);
        let header = format!(
            "{} {} {}",
            info.etag.as_deref().unwrap_or("-"),
            info.size,
            range
        );
        let done = resume_state(&partial, &journal, &header).await?;
        let resumed = done.len() as u32;
        {
            let (p, j, h, size) = (partial.clone(), journal.clone(), header.clone(), info.size);
            let fresh = done.is_empty();
            blocking(move || {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(fresh)
                    .open(&p)
                    .map_err(|e| S3Error::io(&p, e))?;
                f.set_len(size).map_err(|e| S3Error::io(&p, e))?;
                if fresh {
                    std::fs::write(&j, format!("{h}\n")).map_err(|e| S3Error::io(&j, e))?;
                }
                Ok(())
            })
            .await?;
        }
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&partial)
                .map_err(|e| S3Error::io(&partial, e))?,
        );
        let log = Arc::new(std::sync::Mutex::new(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&journal)
                .map_err(|e| S3Error::io(&journal, e))?,
        ));
        let todo: Vec<u64> = (0..ranges).filter(|i| !done.contains(i)).collect();
        let fetched = todo.len() as u32;
        let etag = info.etag.clone();
        // the SHA-256 follows the ranges as they land, in order, on a blocking thread: when the
        // last range is written, little is left to hash
        let (landed, hasher) = {
            let (tx, rx) = std::sync::mpsc::channel::<u64>();
            let (p, size) = (partial.clone(), info.size);
            let ready: std::collections::BTreeSet<u64> = done.iter().copied().collect();
            let task = tokio::task::spawn_blocking(move || {
                hash_in_order(&p, size, range, ranges, ready, &rx)
            });
            (tx, task)
        };
        let result: Result<(), S3Error> = stream::iter(todo)
            .map(|i| {
                let (file, log, etag, landed) =
                    (file.clone(), log.clone(), etag.clone(), landed.clone());
                let (partial, journal) = (partial.clone(), journal.clone());
                async move {
                    let start = i * range;
                    let end = (start + range).min(info.size);
                    let n = if info.size == 0 {
                        0
                    } else {
                        let sink = RangeSink {
                            file: file.clone(),
                            path: partial.clone(),
                            start,
                            whole: ranges == 1,
                        };
                        self.range_to_file(ctx, bucket, key, start..end, etag.as_deref(), &sink)
                            .await?
                    };
                    if n != end - start {
                        return Err(S3Error::ChecksumMismatch {
                            key: key.to_owned(),
                            expected: format!("{} bytes at {start}", end - start),
                            actual: format!("{n} bytes"),
                        });
                    }
                    blocking(move || {
                        let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                        writeln!(l, "{i}").map_err(|e| S3Error::io(&journal, e))?;
                        Ok(())
                    })
                    .await?;
                    let _ = landed.send(i);
                    if let Some(p) = progress {
                        p(n);
                    }
                    Ok(())
                }
            })
            .buffer_unordered(transfer.concurrency)
            .try_collect()
            .await;
        drop(file);
        drop(landed);
        if let Err(e) = result {
            if matches!(e, S3Error::ObjectChanged { .. }) {
                let _ = tokio::fs::remove_file(&partial).await;
                let _ = tokio::fs::remove_file(&journal).await;
            }
            return Err(e);
        }
        let sha = hasher.await.map_err(|e| {
            S3Error::Call(Error::new(
                ErrorKind::Storage,
                format!("the hashing task failed: {e}"),
            ))
        })??;
        // an SSE-KMS or SSE-C object's ETag is not its MD5: nothing to check it against
        let plain_md5 = info.etag.as_deref().filter(|_| info.etag_is_md5);
        let check = match (&info.sha256, plain_md5) {
            (Some(expected), _) => Some((expected.clone(), sha.clone())),
            (None, Some(md5)) => Some((md5.to_ascii_lowercase(), md5_file(&partial).await?)),
            _ => None,
        };
        let verified = check.is_some();
        if !verified {
            tracing::warn!(
                target: "infermux::s3",
                bucket,
                key,
                "the object carries neither a SHA-256 nor a plain MD5 ETag: the download is \
                 not verified"
            );
        }
        if let Some((expected, actual)) = check
            && expected != actual
        {
            let _ = tokio::fs::remove_file(&partial).await;
            let _ = tokio::fs::remove_file(&journal).await;
            return Err(S3Error::ChecksumMismatch {
                key: key.to_owned(),
                expected,
                actual,
            });
        }
        tokio::fs::rename(&partial, path)
            .await
            .map_err(|e| S3Error::io(path, e))?;
        let _ = tokio::fs::remove_file(&journal).await;
        Ok(Downloaded {
            path: path.to_path_buf(),
            size: info.size,
            sha256: sha,
            ranges_fetched: fetched,
            ranges_resumed: resumed,
            verified,
        })
    }

    /// One range straight into the partial file: the body is written as it arrives, at most
    /// [`WRITE_CHUNK`] held at once, so memory per range stays small whatever the part size.
    /// Returns the bytes written (a retried attempt writes the range again from its start).
    async fn range_to_file(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        range: std::ops::Range<u64>,
        etag: Option<&str>,
        sink: &RangeSink,
    ) -> Result<u64, S3Error> {
        self.run("s3.get_range", Idempotency::Idempotent, ctx, |ep| {
            let req = crate::kit::ranged_get(&ep.client, bucket, key, &range, etag);
            let range = range.clone();
            async move {
                let mut out = req.send().await.map_err(|e| sdk_error("GetObject", e))?;
                let body_error = |e: &dyn std::fmt::Display| {
                    Error::new(ErrorKind::Connect, format!("S3 GetObject: body: {e}"))
                        .with_reached_server(true)
                };
                // the range asked for, or nothing written: a server (or a proxy) that ignores
                // `Range` answers the whole object, which written at this range's offset
                // overwrote the ranges after it, already counted as done
                crate::kit::check_range(out.content_range(), &range, sink.whole)?;
                let end = sink.start + (range.end - range.start);
                let mut at = sink.start;
                let mut buf: Vec<u8> = Vec::with_capacity(WRITE_CHUNK);
                loop {
                    let chunk = out.body.try_next().await.map_err(|e| body_error(&e))?;
                    let done = chunk.is_none();
                    if let Some(c) = &chunk {
                        if at + (buf.len() + c.len()) as u64 > end {
                            return Err(crate::kit::too_many_bytes());
                        }
                        buf.extend_from_slice(c);
                    }
                    if buf.len() >= WRITE_CHUNK || (done && !buf.is_empty()) {
                        let full = std::mem::replace(&mut buf, Vec::with_capacity(WRITE_CHUNK));
                        let (file, path, len) = (sink.file.clone(), sink.path.clone(), full.len());
                        blocking(move || {
                            file.write_all_at(&full, at)
                                .map_err(|e| S3Error::io(&path, e))
                        })
                        .await
                        .map_err(|e| {
                            Error::new(ErrorKind::Storage, e.to_string()).with_reached_server(true)
                        })?;
                        at += len as u64;
                    }
                    if done {
                        return Ok(at - sink.start);
                    }
                }
            }
        })
        .await
        .map(|(v, _)| v)
        .map_err(|e| ranged_error(e, bucket, key))
    }
}

async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R, cap: usize) -> Result<Vec<u8>, S3Error> {
    let mut buf = Vec::with_capacity(cap);
    reader
        .take(cap as u64)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| S3Error::io("<stream>", e))?;
    Ok(buf)
}

fn ctx_expired(ctx: &RequestContext) -> bool {
    ctx.deadline()
        .is_some_and(|d| d <= std::time::Instant::now())
}

async fn md5_file(path: &Path) -> Result<String, S3Error> {
    let p = path.to_path_buf();
    blocking(move || {
        let mut f = StdFile::open(&p).map_err(|e| S3Error::io(&p, e))?;
        let mut h = md5::Md5::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|e| S3Error::io(&p, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(hex::encode(h.finalize()))
    })
    .await
}

/// The most a range holds in memory before writing it out.
const WRITE_CHUNK: usize = 1 << 20;

/// Where one range of a download goes: the partial file at `start`.
struct RangeSink {
    file: Arc<StdFile>,
    path: PathBuf,
    start: u64,
    /// The range is the whole object: a plain 200 (a server that ignores `Range`) is its body.
    whole: bool,
}

/// SHA-256 of a file being written range by range: `ready` holds the ranges already on disk,
/// `landed` names each one as it is written; ranges are hashed in order as soon as they and
/// all before them are there. Fails when `landed` closes before the last range.
fn hash_in_order(
    path: &Path,
    size: u64,
    range: u64,
    ranges: u64,
    mut ready: std::collections::BTreeSet<u64>,
    landed: &std::sync::mpsc::Receiver<u64>,
) -> Result<String, S3Error> {
    let f = StdFile::open(path).map_err(|e| S3Error::io(path, e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut next = 0u64;
    while next < ranges {
        if ready.remove(&next) {
            let (mut at, end) = (next * range, ((next + 1) * range).min(size));
            while at < end {
                let n = ((end - at) as usize).min(buf.len());
                f.read_exact_at(&mut buf[..n], at)
                    .map_err(|e| S3Error::io(path, e))?;
                h.update(&buf[..n]);
                at += n as u64;
            }
            next += 1;
            continue;
        }
        match landed.recv() {
            Ok(i) => {
                ready.insert(i);
            }
            Err(_) => {
                return Err(S3Error::Config(
                    "the download stopped before its last range".into(),
                ));
            }
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// `PATH.suffix` beside `path`.
pub(crate) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// The ranges an interrupted download finished, when its journal names the same object
/// (ETag, size, range size); none otherwise (and the stale files are replaced).
async fn resume_state(
    partial: &Path,
    journal: &Path,
    header: &str,
) -> Result<std::collections::HashSet<u64>, S3Error> {
    let mut done = std::collections::HashSet::new();
    let (Ok(text), true) = (
        tokio::fs::read_to_string(journal).await,
        tokio::fs::try_exists(partial).await.unwrap_or(false),
    ) else {
        return Ok(done);
    };
    let mut lines = text.lines();
    if lines.next() != Some(header) {
        return Ok(done);
    }
    // only whole lines count: a line cut by a crash is ignored
    let complete = if text.ends_with('\n') {
        text.lines().count()
    } else {
        text.lines().count() - 1
    };
    for l in text.lines().skip(1).take(complete.saturating_sub(1)) {
        if let Ok(i) = l.trim().parse() {
            done.insert(i);
        }
    }
    Ok(done)
}

/// The size of part `n` (1-based) of a stream of unknown length: the configured size for
/// the first 800 parts, doubling every 800 parts after, at most [`MAX_PART_SIZE`]. S3
/// takes at most [`MAX_PARTS`] parts: at one fixed 8 MiB size a stream could not pass 78 GiB
/// (and S3 refused its 10 001st part only after all of it was sent); grown this way, 10 000
/// parts carry past S3's 5 TiB object limit.
pub(crate) fn stream_part_size(base: u64, n: u32) -> u64 {
    let doublings = (n.saturating_sub(1) / 800).min(20);
    base.saturating_mul(1u64 << doublings)
        .clamp(base, MAX_PART_SIZE.max(base))
}

/// A multipart upload in progress, aborted if the future that owns it is dropped before it
/// completes or fails (its own failure path aborts it and reports the id instead).
struct AbortOnDrop<'a> {
    kit: &'a S3Kit,
    ep: usize,
    bucket: &'a str,
    key: &'a str,
    upload_id: &'a str,
    armed: bool,
}

impl<'a> AbortOnDrop<'a> {
    fn new(kit: &'a S3Kit, ep: usize, bucket: &'a str, key: &'a str, upload_id: &'a str) -> Self {
        AbortOnDrop {
            kit,
            ep,
            bucket,
            key,
            upload_id,
            armed: true,
        }
    }

    /// The upload ended (completed, or failed and handled): nothing to do on drop.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let kit = self.kit.clone();
        let (ep, bucket, key, id) = (
            self.ep,
            self.bucket.to_owned(),
            self.key.to_owned(),
            self.upload_id.to_owned(),
        );
        let task = rt.spawn(async move {
            let aborted = kit.abort_on(ep, &bucket, &key, &id).await;
            tracing::info!(
                target: "infermux::s3",
                endpoint = kit.endpoint_name(ep),
                aborted = matches!(aborted, Ok(true)),
                "a multipart upload given up by its caller was aborted"
            );
        });
        let mut aborts = self
            .kit
            .inner
            .aborts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        aborts.retain(|h| !h.is_finished());
        aborts.push(task);
    }
}

/// A multipart upload that failed for a local reason (its file changed, could not be read)
/// and could not be aborted either: its error has no place for the id, so the id is logged
/// (its parts stay stored, and billed, until it is aborted or a lifecycle rule removes them).
fn left_behind(endpoint: &str, bucket: &str, key: &str, upload_id: &str) {
    tracing::warn!(
        target: "infermux::s3",
        endpoint,
        bucket,
        key,
        upload_id,
        "a failed multipart upload could not be aborted: its parts stay stored until it is \
         aborted (`AbortMultipartUpload` with this id) or a lifecycle rule removes them"
    );
}

#[cfg(test)]
mod tests {
    use super::stream_part_size;
    use crate::config::{MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE};

    /// A stream's 10 000 parts carry more than S3's largest object (5 TiB), every part within
    /// S3's sizes; the first 800 are the configured size.
    #[test]
    fn a_streams_parts_grow_to_carry_five_tib_in_ten_thousand() {
        for base in [MIN_PART_SIZE, 8 << 20, 64 << 20] {
            let sizes: Vec<u64> = (1..=MAX_PARTS as u32)
                .map(|n| stream_part_size(base, n))
                .collect();
            assert!(sizes[..800].iter().all(|&s| s == base));
            assert!(
                sizes
                    .iter()
                    .all(|&s| (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&s))
            );
            assert!(sizes.windows(2).all(|w| w[0] <= w[1]));
            let total: u64 = sizes.iter().sum();
            assert!(total > 5 << 40, "{base}: {total}");
        }
    }
}
