//! `backup s3://bucket/prefix`: the objects under a prefix become files of a
//! snapshot (the prefix is the snapshot's root; `/` in keys makes folders).
//! Size, last-modified time, ETag and content type are kept (the last two as
//! `user.s3.etag` / `user.s3.content_type` xattrs). Objects unchanged since the
//! parent snapshot (same size, time and ETag) are not downloaded again.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::bounded;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::id::{BlobId, SnapshotId};
use crate::format::snapshot::Summary;
use crate::format::tree::{ChunkRef, Node, NodeKind, Tree, Xattr};
use crate::ops::backup::{BackupResult, Progress};
use crate::ops::writer::{ParentChoice, SnapshotPlan, SnapshotWriter};
use crate::pipeline::packer::Packer;
use crate::repo::Repo;
use crate::storage::{ObjectInfo, RetryPolicy, S3Bucket};

pub const XATTR_ETAG: &[u8] = b"user.s3.etag";
pub const XATTR_CONTENT_TYPE: &[u8] = b"user.s3.content_type";

/// Objects read at once.
const READERS: usize = 16;
/// Bytes per ranged GET while streaming one object into the chunker.
const PIECE: u64 = 8 << 20;

pub struct SourceOptions {
    /// `s3://bucket/prefix`, also the snapshot's path.
    pub location: String,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub parent: Option<SnapshotId>,
    pub no_parent: bool,
    /// The snapshot's time (ns since the epoch) instead of now.
    pub time: Option<i64>,
}

/// An object's chunks and content type, once read.
type Slot = Mutex<Option<(Vec<ChunkRef>, Option<String>)>>;

#[derive(Default)]
struct Dir {
    dirs: BTreeMap<Vec<u8>, Dir>,
    files: BTreeMap<Vec<u8>, usize>,
}

/// Reads an object front to back in ranged pieces, retrying each piece.
struct ObjectReader<'a> {
    b: &'a S3Bucket,
    retry: RetryPolicy,
    key: &'a str,
    size: u64,
    pos: u64,
    buf: Vec<u8>,
    at: usize,
    content_type: Option<String>,
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            if self.pos >= self.size {
                return Ok(0);
            }
            let len = PIECE.min(self.size - self.pos);
            let what = format!("reading s3 object {}", self.key);
            let (b, ct) = self
                .retry
                .run(&what, || self.b.get(self.key, Some((self.pos, len)), &what))
                .map_err(std::io::Error::other)?;
            if b.len() as u64 != len {
                return Err(std::io::Error::other(format!(
                    "{}: changed while being read (expected {len} bytes, got {})",
                    self.key,
                    b.len()
                )));
            }
            if self.content_type.is_none() {
                self.content_type = ct;
            }
            self.pos += len;
            self.buf = b;
            self.at = 0;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn file_node(name: Vec<u8>, o: &ObjectInfo) -> Node {
    Node {
        mode: 0o100644,
        size: o.size,
        atime: o.mtime_ns,
        mtime: o.mtime_ns,
        ctime: o.mtime_ns,
        xattrs: vec![Xattr {
            name: XATTR_ETAG.to_vec(),
            value: o.etag.as_bytes().to_vec(),
        }],
        ..Node::bare(name, NodeKind::File)
    }
}

fn xattr<'a>(n: &'a Node, name: &[u8]) -> Option<&'a [u8]> {
    n.xattrs
        .iter()
        .find(|x| x.name == name)
        .map(|x| x.value.as_slice())
}

pub fn backup(
    repo: &Arc<Repo>,
    bucket: &S3Bucket,
    prefix: &str,
    opts: &SourceOptions,
    progress: &Progress,
) -> Result<BackupResult> {
    let plan = SnapshotPlan {
        host: opts.host.clone().unwrap_or_else(crate::util::hostname),
        paths: vec![opts.location.trim_end_matches('/').as_bytes().to_vec()],
        tags: opts.tags.clone(),
        time: opts.time,
        root: None,
    };
    let writer = SnapshotWriter::start(
        repo,
        plan,
        ParentChoice::from_options(opts.parent, opts.no_parent),
    )?;
    let retry = RetryPolicy::from_env();
    let what = format!("listing {}", opts.location);
    let objects = retry.run(&what, || bucket.list(prefix, &what))?;

    // Keys → folders; keys that cannot be paths are reported, not guessed at.
    let mut errors = Vec::new();
    let mut root = Dir::default();
    'objects: for (i, o) in objects.iter().enumerate() {
        let rel = &o.key[prefix.len()..];
        if rel.is_empty() {
            // The prefix's own folder marker.
            continue;
        }
        let mut parts: Vec<&str> = rel.split('/').collect();
        let folder_marker = rel.ends_with('/');
        if folder_marker {
            parts.pop();
        }
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            if !(folder_marker && parts.is_empty()) {
                errors.push((o.key.clone(), "key is not a usable path; skipped".into()));
            }
            continue;
        }
        let mut d = &mut root;
        let last = if folder_marker {
            parts.len()
        } else {
            parts.len() - 1
        };
        for p in &parts[..last] {
            if d.files.contains_key(p.as_bytes()) {
                errors.push((
                    o.key.clone(),
                    format!("{p} is both an object and a folder; skipped"),
                ));
                continue 'objects;
            }
            d = d.dirs.entry(p.as_bytes().to_vec()).or_default();
        }
        if !folder_marker {
            let name = parts[last].as_bytes().to_vec();
            if d.dirs.contains_key(&name) {
                errors.push((
                    o.key.clone(),
                    "is both an object and a folder; skipped".into(),
                ));
                continue;
            }
            d.files.insert(name, i);
        }
    }

    // Contents: unchanged objects reuse the parent's chunks; the rest are
    // read by a pool of readers, chunked and packed.
    let packer = writer.packer();
    let contents: Vec<Slot> = objects.iter().map(|_| Mutex::new(None)).collect();
    let mut todo = Vec::new();
    reuse_or_queue(
        repo,
        &root,
        writer.parent_tree(),
        &objects,
        &contents,
        &mut todo,
        progress,
    );
    let failures = Mutex::new(Vec::new());
    let (tx, rx) = bounded::<usize>(READERS * 4);
    std::thread::scope(|s| {
        for _ in 0..READERS {
            let rx = rx.clone();
            let (contents, failures) = (&contents, &failures);
            let objects = &objects;
            s.spawn(move || {
                for i in rx {
                    if packer.is_failed() {
                        continue;
                    }
                    let o = &objects[i];
                    let mut r = ObjectReader {
                        b: bucket,
                        retry,
                        key: &o.key,
                        size: o.size,
                        pos: 0,
                        buf: Vec::new(),
                        at: 0,
                        content_type: None,
                    };
                    match packer.save_stream(&mut r, o.size) {
                        Ok(chunks) => {
                            progress.files.fetch_add(1, Ordering::Relaxed);
                            progress.bytes.fetch_add(o.size, Ordering::Relaxed);
                            *contents[i].lock() = Some((chunks, r.content_type));
                        }
                        Err(e) => failures.lock().push((o.key.clone(), e)),
                    }
                }
            });
        }
        for i in todo {
            if tx.send(i).is_err() {
                break;
            }
        }
        drop(tx);
    });
    if packer.is_failed() {
        packer.flush()?;
    }
    for (key, e) in failures.into_inner() {
        // A store failure is fatal; an object that vanished or cannot be read is not.
        if matches!(e, Error::Storage(_)) && packer.is_failed() {
            return Err(e);
        }
        progress.errors.fetch_add(1, Ordering::Relaxed);
        errors.push((key, e.to_string()));
    }

    let mut sum = Summary::default();
    let (tree, _) = save_dir(packer, &root, &objects, &contents, &mut sum)?;
    sum.bytes = progress.bytes.load(Ordering::Relaxed);
    sum.errors = errors.len() as u64;
    let (id, snapshot) = writer.finish(tree, sum)?;
    Ok(BackupResult {
        id,
        snapshot,
        errors,
    })
}

/// Walks the new folder tree beside the parent's; objects whose size, time and
/// ETag match the parent's file keep its chunks, the rest go to `todo`.
fn reuse_or_queue(
    repo: &Repo,
    dir: &Dir,
    parent: Option<BlobId>,
    objects: &[ObjectInfo],
    contents: &[Slot],
    todo: &mut Vec<usize>,
    progress: &Progress,
) {
    let old: Option<Tree> = parent.and_then(|t| repo.load_tree(&t).ok().map(|t| (*t).clone()));
    for (name, &i) in &dir.files {
        let o = &objects[i];
        let prev = old.as_ref().and_then(|t| t.find(name)).filter(|n| {
            n.kind == NodeKind::File
                && n.size == o.size
                && n.mtime == o.mtime_ns
                && xattr(n, XATTR_ETAG) == Some(o.etag.as_bytes())
                && n.content
                    .iter()
                    .all(|c| repo.index().read().contains(&c.id))
        });
        match prev {
            Some(n) => {
                progress.files.fetch_add(1, Ordering::Relaxed);
                progress.bytes.fetch_add(o.size, Ordering::Relaxed);
                let ct =
                    xattr(n, XATTR_CONTENT_TYPE).map(|v| String::from_utf8_lossy(v).into_owned());
                *contents[i].lock() = Some((n.content.clone(), ct));
            }
            None => todo.push(i),
        }
    }
    for (name, sub) in &dir.dirs {
        let p = old
            .as_ref()
            .and_then(|t| t.find(name))
            .and_then(|n| n.subtree);
        reuse_or_queue(repo, sub, p, objects, contents, todo, progress);
    }
}

fn save_dir(
    packer: &Packer,
    dir: &Dir,
    objects: &[ObjectInfo],
    contents: &[Slot],
    sum: &mut Summary,
) -> Result<(BlobId, i64)> {
    let mut nodes = Vec::new();
    let mut newest = 0;
    for (name, sub) in &dir.dirs {
        let (id, t) = save_dir(packer, sub, objects, contents, sum)?;
        newest = newest.max(t);
        sum.dirs += 1;
        let mut n = file_node(
            name.clone(),
            &ObjectInfo {
                key: String::new(),
                size: 0,
                mtime_ns: t,
                etag: String::new(),
            },
        );
        n.kind = NodeKind::Dir;
        n.mode = 0o040755;
        n.xattrs.clear();
        n.subtree = Some(id);
        nodes.push(n);
    }
    for (name, &i) in &dir.files {
        // Objects that failed to read are left out (and reported).
        let Some((chunks, ctype)) = contents[i].lock().take() else {
            continue;
        };
        let o = &objects[i];
        let mut n = file_node(name.clone(), o);
        if let Some(t) = ctype {
            n.xattrs.push(Xattr {
                name: XATTR_CONTENT_TYPE.to_vec(),
                value: t.into_bytes(),
            });
        }
        n.content = chunks;
        newest = newest.max(o.mtime_ns);
        sum.files += 1;
        nodes.push(n);
    }
    // A folder's time is its newest object's.
    Ok((
        packer.save(BlobType::Tree, &Tree::new(nodes).encode())?,
        newest,
    ))
}
