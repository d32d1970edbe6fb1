//! `backup s3://bucket/prefix`: the objects under a prefix become files of a
//! snapshot (the prefix is the snapshot's root; `/` in keys makes folders).
//! Size, last-modified time, ETag and content type are kept (the last two as
//! `user.s3.etag` / `user.s3.content_type` xattrs). Objects unchanged since the
//! parent snapshot (same size, time and ETag) are not downloaded again.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::Result;
use crate::format::id::SnapshotId;
use crate::format::tree::{Node, NodeKind, Xattr};
use crate::ops::source::{
    cores, walk, BackupResult, Content, Entry, Problems, Progress, Source, Threads,
};
use crate::ops::writer::{ParentChoice, SnapshotPlan, SnapshotWriter};
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

/// Folders made from the keys, as an arena: `dirs[0]` is the prefix itself.
#[derive(Default)]
struct Dir {
    dirs: BTreeMap<Vec<u8>, usize>,
    files: BTreeMap<Vec<u8>, usize>,
}

/// A folder (index into the arena) or an object (index into the listing).
enum Handle {
    Dir(usize),
    Object(usize),
}

/// The objects under a prefix as a [`Source`].
struct S3Source<'a> {
    bucket: &'a S3Bucket,
    retry: RetryPolicy,
    objects: Vec<ObjectInfo>,
    dirs: Vec<Dir>,
}

impl Content for ObjectReader<'_> {
    fn finish(self: Box<Self>, node: &mut Node) {
        if let Some(t) = self.content_type {
            node.xattrs.push(Xattr {
                name: XATTR_CONTENT_TYPE.to_vec(),
                value: t.into_bytes(),
            });
        }
    }
}

impl Source for S3Source<'_> {
    type Handle = Handle;

    fn list(&self, dir: &Handle, _: &Problems) -> Result<Vec<Entry<Handle>>> {
        let Handle::Dir(d) = *dir else {
            return Ok(Vec::new());
        };
        let d = &self.dirs[d];
        let folders = d.dirs.iter().map(|(name, &i)| Entry {
            node: Node {
                mode: 0o040755,
                ..Node::bare(name.clone(), NodeKind::Dir)
            },
            handle: Handle::Dir(i),
        });
        let files = d.files.iter().map(|(name, &i)| Entry {
            node: file_node(name.clone(), &self.objects[i]),
            handle: Handle::Object(i),
        });
        Ok(folders.chain(files).collect())
    }

    fn open(&self, file: &Handle) -> std::io::Result<Box<dyn Content + '_>> {
        let Handle::Object(i) = *file else {
            return Err(std::io::Error::other("a folder has no content"));
        };
        let o = &self.objects[i];
        Ok(Box::new(ObjectReader {
            b: self.bucket,
            retry: self.retry,
            key: &o.key,
            size: o.size,
            pos: 0,
            buf: Vec::new(),
            at: 0,
            content_type: None,
        }))
    }

    fn unchanged(&self, node: &Node, parent: &Node) -> bool {
        parent.mtime == node.mtime && xattr(parent, XATTR_ETAG) == xattr(node, XATTR_ETAG)
    }

    fn keep_from_parent(&self, node: &mut Node, parent: &Node) {
        if let Some(t) = xattr(parent, XATTR_CONTENT_TYPE) {
            node.xattrs.push(Xattr {
                name: XATTR_CONTENT_TYPE.to_vec(),
                value: t.to_vec(),
            });
        }
    }

    /// A folder's time is its newest object's.
    fn finish_dir(&self, dir: &mut Node, entries: &[Node]) {
        let newest = entries.iter().map(|n| n.mtime).max().unwrap_or(0);
        (dir.atime, dir.mtime, dir.ctime) = (newest, newest, newest);
    }

    fn describe(&self, h: &Handle) -> String {
        match *h {
            Handle::Object(i) => self.objects[i].key.clone(),
            Handle::Dir(_) => "a folder".into(),
        }
    }
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
    let mut dirs = vec![Dir::default()];
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
        let mut d = 0;
        let last = if folder_marker {
            parts.len()
        } else {
            parts.len() - 1
        };
        for p in &parts[..last] {
            if dirs[d].files.contains_key(p.as_bytes()) {
                errors.push((
                    o.key.clone(),
                    format!("{p} is both an object and a folder; skipped"),
                ));
                continue 'objects;
            }
            d = match dirs[d].dirs.get(p.as_bytes()) {
                Some(&sub) => sub,
                None => {
                    dirs.push(Dir::default());
                    let sub = dirs.len() - 1;
                    dirs[d].dirs.insert(p.as_bytes().to_vec(), sub);
                    sub
                }
            };
        }
        if !folder_marker {
            let name = parts[last].as_bytes().to_vec();
            if dirs[d].dirs.contains_key(&name) {
                errors.push((
                    o.key.clone(),
                    "is both an object and a folder; skipped".into(),
                ));
                continue;
            }
            dirs[d].files.insert(name, i);
        }
    }
    for (key, why) in &errors {
        tracing::warn!("{key}: {why}");
        progress.errors.fetch_add(1, Ordering::Relaxed);
    }

    // Objects are read by many readers at once: each waits on the network.
    let source = S3Source {
        bucket,
        retry,
        objects,
        dirs,
    };
    let threads = Threads {
        readers: READERS,
        storers: cores(),
    };
    let mut w = walk(&writer, &source, Handle::Dir(0), threads, progress)?;
    errors.append(&mut w.errors);
    w.summary.errors = errors.len() as u64;
    let (id, snapshot) = writer.finish(w.tree, w.summary)?;
    Ok(BackupResult {
        id,
        snapshot,
        errors,
    })
}
