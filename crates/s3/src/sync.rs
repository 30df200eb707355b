//! Folder sync: a local model folder up to a prefix (`sync_up`), and a prefix down into a
//! local cache folder (`fetch`, the step a launcher runs before it starts a server) — each
//! moving only what changed, by SHA-256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::S3Error;
use crate::key::local_path;
use crate::kit::{S3Kit, erase};
use crate::transfer::{Progress, sha256_file};

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Files transferred (relative paths, `/`-separated).
    pub transferred: Vec<String>,
    /// Files already equal on both sides.
    pub unchanged: Vec<String>,
    /// Bytes transferred.
    pub bytes: u64,
    /// Files fetched that could not be checked against the object (it has neither a SHA-256
    /// nor a plain MD5 ETag: an object uploaded in parts by another tool): also in
    /// `transferred`.
    pub unverified: Vec<String>,
}

/// The record `fetch` keeps in the folder (`.infermux-fetch.json`): what each file was when
/// it was fetched, so an unchanged file is recognised without hashing it again.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    files: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    etag: Option<String>,
    size: u64,
    sha256: String,
    mtime_ns: u128,
}

const MANIFEST: &str = ".infermux-fetch.json";

fn mtime_ns(path: &Path) -> Option<(u64, u128)> {
    let m = std::fs::metadata(path).ok()?;
    let t = m
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((m.len(), t))
}

fn join_key(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() {
        rel.to_owned()
    } else {
        format!("{}/{rel}", prefix.trim_end_matches('/'))
    }
}

/// Every regular file under `dir`, as (`/`-separated relative path, path), sorted; the
/// fetch manifest and partial downloads are left out.
fn walk(dir: &Path) -> Result<Vec<(String, PathBuf)>, S3Error> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    // the folders walked, as the file system names them: a link back up is walked once
    let mut seen = std::collections::HashSet::new();
    if let Ok(real) = std::fs::canonicalize(dir) {
        seen.insert(real);
    }
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| S3Error::io(&d, e))? {
            let entry = entry.map_err(|e| S3Error::io(&d, e))?;
            let path = entry.path();
            let mut ft = entry.file_type().map_err(|e| S3Error::io(&path, e))?;
            if ft.is_symlink() {
                // a link is what it points to (a Hugging Face snapshot's files are links
                // into its blobs); a dangling one is an error, not a file quietly left out
                ft = std::fs::metadata(&path)
                    .map_err(|e| S3Error::io(&path, e))?
                    .file_type();
            }
            if ft.is_dir() {
                // each folder once, however many links reach it
                let real = std::fs::canonicalize(&path).map_err(|e| S3Error::io(&path, e))?;
                if !seen.insert(real) {
                    continue;
                }
                stack.push(path);
            } else if ft.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .map_err(|_| S3Error::Config(format!("{} is outside", path.display())))?;
                let Some(rel) = rel.to_str() else {
                    return Err(S3Error::InvalidKey {
                        key: rel.to_string_lossy().into_owned(),
                        reason: "the file name is not UTF-8",
                    });
                };
                let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
                if rel == MANIFEST
                    || rel.ends_with(".infermux-partial")
                    || rel.ends_with(".infermux-parts")
                {
                    continue;
                }
                out.push((rel, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

impl S3Kit {
    /// Uploads the files of `dir` under `prefix` that are missing there or whose SHA-256
    /// differs from the one the object carries.
    pub async fn sync_up(
        &self,
        dir: &Path,
        bucket: &str,
        prefix: &str,
        progress: Option<&Progress>,
    ) -> Result<SyncReport, S3Error> {
        erase(async move {
            let mut report = SyncReport::default();
            for (rel, path) in walk(dir)? {
                let key = join_key(prefix, &rel);
                let local = sha256_file(&path).await?;
                let remote = match Box::pin(self.head(bucket, &key)).await {
                    Ok(info) => info.sha256,
                    Err(S3Error::NoSuchKey { .. }) => None,
                    Err(e) => return Err(e),
                };
                if remote.as_deref() == Some(local.as_str()) {
                    report.unchanged.push(rel);
                    continue;
                }
                // boxed: a transfer's future is large, and a sync holds several in a row
                let up = Box::pin(self.upload_file_with(bucket, &key, &path, progress)).await?;
                report.bytes += up.size;
                report.transferred.push(rel);
            }
            Ok(report)
        })
        .await
    }

    /// Fetches every object under `prefix` into `dir` (the model folder a local server
    /// loads): a file whose size and time still match what the last fetch recorded, and whose
    /// object kept its ETag, is not read again; another local file is hashed and kept when its
    /// SHA-256 equals the object's; everything else is downloaded (resuming a partial
    /// download). Keys that would leave `dir` are refused.
    pub async fn fetch(
        &self,
        bucket: &str,
        prefix: &str,
        dir: &Path,
        progress: Option<&Progress>,
    ) -> Result<SyncReport, S3Error> {
        erase(async move {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| S3Error::io(dir, e))?;
            let manifest_path = dir.join(MANIFEST);
            let mut manifest: Manifest = match tokio::fs::read(&manifest_path).await {
                Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
                Err(_) => Manifest::default(),
            };
            let strip = if prefix.is_empty() || prefix.ends_with('/') {
                prefix.to_owned()
            } else {
                format!("{prefix}/")
            };
            let mut report = SyncReport::default();
            let objects = Box::pin(self.list(bucket, &strip)).await?;
            for obj in objects {
                let Some(rel) = obj.key.strip_prefix(&strip) else {
                    continue;
                };
                if rel.is_empty() || rel.ends_with('/') {
                    continue; // a "folder" marker
                }
                let rel = rel.to_owned();
                let path = local_path(dir, &rel)?;
                let stat = mtime_ns(&path);
                if let (Some(e), Some((len, t))) = (manifest.files.get(&rel), stat)
                    && e.size == len
                    && e.mtime_ns == t
                    && e.etag == obj.etag
                    && len == obj.size
                {
                    report.unchanged.push(rel);
                    continue;
                }
                let ctx = self.ctx();
                let (info, _) = Box::pin(self.head_in(&ctx, bucket, &obj.key)).await?;
                if stat.is_some_and(|(len, _)| len == info.size) {
                    let local = sha256_file(&path).await?;
                    if info.sha256.as_deref() == Some(local.as_str()) {
                        let (len, t) = mtime_ns(&path).unwrap_or_default();
                        manifest.files.insert(
                            rel.clone(),
                            Entry {
                                etag: info.etag.clone(),
                                size: len,
                                sha256: local,
                                mtime_ns: t,
                            },
                        );
                        report.unchanged.push(rel);
                        continue;
                    }
                }
                let got =
                    Box::pin(self.download_known(&ctx, bucket, &info, &path, progress)).await?;
                let (len, t) = mtime_ns(&path).unwrap_or_default();
                manifest.files.insert(
                    rel.clone(),
                    Entry {
                        etag: info.etag.clone(),
                        size: len,
                        sha256: got.sha256,
                        mtime_ns: t,
                    },
                );
                report.bytes += got.size;
                if !got.verified {
                    report.unverified.push(rel.clone());
                }
                report.transferred.push(rel);
                write_manifest(&manifest_path, &manifest).await?;
            }
            write_manifest(&manifest_path, &manifest).await?;
            Ok(report)
        })
        .await
    }
}

async fn write_manifest(path: &Path, m: &Manifest) -> Result<(), S3Error> {
    let text = serde_json::to_vec_pretty(m).map_err(|e| S3Error::Config(e.to_string()))?;
    let tmp = crate::transfer::sidecar(path, "tmp");
    tokio::fs::write(&tmp, text)
        .await
        .map_err(|e| S3Error::io(&tmp, e))?;
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(|e| S3Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Links are what they point to: a linked file is synced under the link's name, a linked
    /// folder is walked (a link back up only once), a dangling link is an error. Before, all
    /// three were left out without a word (a Hugging Face snapshot, all links, synced nothing).
    #[test]
    fn links_are_followed_and_a_dangling_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("blobs")).unwrap();
        std::fs::write(root.join("blobs/abc"), b"weights").unwrap();
        std::fs::create_dir_all(root.join("snap")).unwrap();
        std::os::unix::fs::symlink(root.join("blobs/abc"), root.join("snap/model.bin")).unwrap();
        std::os::unix::fs::symlink(root.join("blobs"), root.join("snap/linked")).unwrap();
        std::os::unix::fs::symlink(root, root.join("snap/up")).unwrap();
        let names: Vec<String> = walk(&root.join("snap"))
            .unwrap()
            .into_iter()
            .map(|(rel, _)| rel)
            .collect();
        assert!(names.contains(&"model.bin".to_owned()), "{names:?}");
        assert!(names.contains(&"linked/abc".to_owned()), "{names:?}");
        // the link back up walks the root once (its blobs and its snap's file), not for ever
        assert!(names.len() < 10, "{names:?}");
        // and each folder once: the root's blobs and snap were walked already
        assert_eq!(names, ["linked/abc", "model.bin"]);
        std::os::unix::fs::symlink(root.join("gone"), root.join("snap/dangling")).unwrap();
        assert!(matches!(walk(&root.join("snap")), Err(S3Error::Io { .. })));
    }
}
