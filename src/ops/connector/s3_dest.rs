//! `restore -to s3://bucket/prefix SNAP[:PATH]`: the files of a snapshot become
//! objects under a prefix (multipart for large ones), with the content type an
//! S3 source recorded. Folders are implied by keys; symlinks, devices and other
//! special files have no object form and are counted as skipped. A file with a
//! damaged chunk is not uploaded at all: no object is better than a wrong one.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;

use crossbeam_channel::bounded;
use parking_lot::Mutex;

use super::s3_source::XATTR_CONTENT_TYPE;
use crate::error::Result;
use crate::format::tree::{Node, NodeKind};
use crate::ops::restore::{RestoreProgress, RestoreReport};
use crate::repo::Repo;
use crate::storage::{RetryPolicy, S3Bucket, StorageError, PART_SIZE};
use crate::view::content::ContentReader;

/// Objects uploaded at once.
const WRITERS: usize = 8;

/// Collects (key, file) pairs below `dir`; `at` is the key so far.
fn walk(
    repo: &Repo,
    node: &Node,
    at: &str,
    out: &mut Vec<(String, Node)>,
    report: &mut RestoreReport,
) {
    match node.kind {
        NodeKind::Dir => {
            report.dirs += 1;
            let Some(sub) = node.subtree else { return };
            let tree = match repo.load_tree(&sub) {
                Ok(t) => t,
                Err(e) => {
                    report.errors.push((at.to_string(), e.to_string()));
                    return;
                }
            };
            for n in &tree.nodes {
                let Ok(name) = std::str::from_utf8(&n.name) else {
                    report.errors.push((
                        format!("{at}{}", OsStr::from_bytes(&n.name).to_string_lossy()),
                        "name is not UTF-8, which S3 keys must be; skipped".into(),
                    ));
                    continue;
                };
                let key = format!("{at}{name}");
                if n.is_dir() {
                    walk(repo, n, &format!("{key}/"), out, report);
                } else {
                    walk(repo, n, &key, out, report);
                }
            }
        }
        NodeKind::File => out.push((at.to_string(), node.clone())),
        _ => {
            tracing::warn!("{at}: not a regular file; S3 has no place for it, skipped");
            report.others += 1;
        }
    }
}

/// Uploads one file; `Ok(Some(reason))` when a chunk was damaged.
fn upload(repo: &Repo, b: &S3Bucket, key: &str, n: &Node) -> Result<Option<String>> {
    let ctype = n
        .xattrs
        .iter()
        .find(|x| x.name == XATTR_CONTENT_TYPE)
        .and_then(|x| String::from_utf8(x.value.clone()).ok());
    let retry = RetryPolicy::from_env();
    let what = format!("uploading {key}");
    let mut content = ContentReader::of_chunks(repo, &n.content);
    let mut damage = None;
    let mut next = |want: usize| -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        let r = (&mut content).take(want as u64).read_to_end(&mut buf);
        if let Err(e) = r {
            damage = Some(e.to_string());
            return Err(std::io::Error::other("damaged chunk"));
        }
        Ok(buf)
    };
    let r = if n.size as usize <= PART_SIZE {
        next(usize::MAX)
            .map_err(|e| StorageError::Io {
                context: what.clone(),
                err: e,
            })
            .and_then(|data| retry.run(&what, || b.put(key, &data, false, ctype.as_deref(), &what)))
    } else {
        // Parts are not retried one by one: the whole upload is, from scratch.
        b.put_multipart(key, ctype.as_deref(), || next(PART_SIZE))
    };
    match (r, damage) {
        (_, Some(d)) => Ok(Some(d)),
        (Ok(()), None) => Ok(None),
        (Err(e), None) => Err(e.into()),
    }
}

pub fn restore(
    repo: &Repo,
    node: &Node,
    bucket: &S3Bucket,
    prefix: &str,
    progress: &RestoreProgress,
) -> Result<RestoreReport> {
    let mut report = RestoreReport::default();
    let mut files = Vec::new();
    let at = if node.is_dir() {
        prefix.to_string()
    } else {
        format!("{prefix}{}", String::from_utf8_lossy(&node.name))
    };
    walk(repo, node, &at, &mut files, &mut report);
    let shared = Mutex::new(report);
    let fatal = Mutex::new(None);
    let (tx, rx) = bounded::<(String, Node)>(WRITERS * 2);
    std::thread::scope(|s| {
        for _ in 0..WRITERS {
            let rx = rx.clone();
            let (shared, fatal) = (&shared, &fatal);
            s.spawn(move || {
                for (key, n) in rx {
                    if fatal.lock().is_some() {
                        continue;
                    }
                    match upload(repo, bucket, &key, &n) {
                        Ok(None) => {
                            let mut r = shared.lock();
                            r.files += 1;
                            r.bytes += n.size;
                            progress.files.fetch_add(1, Ordering::Relaxed);
                            progress.bytes.fetch_add(n.size, Ordering::Relaxed);
                        }
                        Ok(Some(d)) => shared.lock().damaged.push((key, d)),
                        // The destination failing ends the restore.
                        Err(e) => {
                            fatal.lock().get_or_insert(e);
                        }
                    }
                }
            });
        }
        for f in files {
            if tx.send(f).is_err() {
                break;
            }
        }
        drop(tx);
    });
    if let Some(e) = fatal.into_inner() {
        return Err(e);
    }
    Ok(shared.into_inner())
}
