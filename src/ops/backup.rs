//! `backup`: walks local paths, reuses content of files unchanged since the parent
//! snapshot, and feeds the rest through the packer on every core. Writes the
//! snapshot only after every pack and index it needs is durable.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};
use globset::{Glob, GlobSet, GlobSetBuilder};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::id::{BlobId, SnapshotId};
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{ChunkRef, Node, NodeKind, Tree};
use crate::ops::local_node::{node_from_meta, NameCache};
use crate::ops::writer::{ParentChoice, SnapshotPlan, SnapshotWriter};
use crate::pipeline::packer::{Packer, StreamError};
use crate::repo::Repo;

#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub tags: Vec<String>,
    /// Glob patterns matched against the full path and the file name.
    pub excludes: Vec<String>,
    /// Absolute paths never backed up (the store itself, when it is local).
    pub exclude_paths: Vec<PathBuf>,
    pub host: Option<String>,
    /// Compare against this snapshot; `None` picks the newest one with the same
    /// host and paths, unless `no_parent`.
    pub parent: Option<SnapshotId>,
    pub no_parent: bool,
    /// Worker threads per stage; 0 means one per core.
    pub threads: usize,
    /// The snapshot's time (ns since the epoch) instead of now.
    pub time: Option<i64>,
    /// Stay on the file systems of `paths`: a directory on another one (a
    /// mount point) is kept, empty.
    pub one_file_system: bool,
}

/// Live counters, read by the progress bar.
#[derive(Default, Debug)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

#[derive(Debug)]
pub struct BackupResult {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    /// Entries left out because they could not be read: (path, reason).
    pub errors: Vec<(String, String)>,
}

struct FileJob {
    path: PathBuf,
    node: Node,
    reply: Sender<Option<Node>>,
}

/// What the walker and the workers share.
struct Shared<'a> {
    repo: &'a Arc<Repo>,
    packer: &'a Packer,
    progress: &'a Progress,
    errors: Mutex<Vec<(String, String)>>,
    names: NameCache,
}

impl Shared<'_> {
    fn error(&self, path: &Path, e: impl std::fmt::Display) {
        tracing::warn!("{}: {e}", path.display());
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        self.errors
            .lock()
            .push((path.display().to_string(), e.to_string()));
    }
}

/// Walks directories on one thread; file contents go to the workers.
struct Walker<'a> {
    shared: &'a Shared<'a>,
    excludes: GlobSet,
    exclude_paths: &'a [PathBuf],
    files_tx: Sender<FileJob>,
    /// With `one_file_system`, the devices of the source paths.
    devices: Option<Vec<u64>>,
    dirs: u64,
    others: u64,
}

/// Lexically absolute path without `.`/`..` components.
pub fn normalize(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(format!("{}", p.display()), e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

pub fn build_globs(patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| Error::InvalidInput(format!("bad exclude {p:?}: {e}")))?);
    }
    b.build()
        .map_err(|e| Error::InvalidInput(format!("bad excludes: {e}")))
}

/// Paths to back up, arranged as the directories above them.
enum Entry {
    Source,
    Dir(BTreeMap<Vec<u8>, Entry>),
}

fn insert(map: &mut BTreeMap<Vec<u8>, Entry>, comps: &[Vec<u8>]) {
    let Some((first, rest)) = comps.split_first() else {
        return;
    };
    if rest.is_empty() {
        map.insert(first.clone(), Entry::Source);
        return;
    }
    let e = map
        .entry(first.clone())
        .or_insert_with(|| Entry::Dir(BTreeMap::new()));
    if let Entry::Dir(m) = e {
        insert(m, rest);
    }
}

pub fn backup(repo: &Arc<Repo>, opts: &BackupOptions, progress: &Progress) -> Result<BackupResult> {
    if opts.paths.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let mut paths = Vec::new();
    for p in &opts.paths {
        let n = normalize(p)?;
        fs::symlink_metadata(&n)
            .map_err(|e| Error::io(format!("cannot back up {}", p.display()), e))?;
        paths.push(n);
    }
    paths.sort();
    paths.dedup();
    let mut devices: Vec<u64> = paths
        .iter()
        .filter_map(|p| fs::metadata(p).ok().map(|m| m.dev()))
        .collect();
    devices.sort_unstable();
    devices.dedup();
    let host = opts.host.clone().unwrap_or_else(crate::util::hostname);
    let path_bytes: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .collect();

    let writer = SnapshotWriter::start(
        repo,
        SnapshotPlan {
            host,
            paths: path_bytes,
            tags: opts.tags.clone(),
            time: opts.time,
            root: None,
        },
        ParentChoice::from_options(opts.parent, opts.no_parent),
    )?;

    let mut roots = BTreeMap::new();
    for p in &paths {
        let comps: Vec<Vec<u8>> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        if comps.is_empty() {
            return Err(Error::InvalidInput(
                "backing up `/` itself: name directories below it".into(),
            ));
        }
        insert(&mut roots, &comps);
    }

    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        opts.threads
    };
    let packer = writer.packer();
    let (files_tx, files_rx) = bounded::<FileJob>(threads * 64);
    let (chunks_tx, chunks_rx) = bounded::<(BlobId, Vec<u8>)>(threads * 2);
    let store_error: Mutex<Option<Error>> = Mutex::new(None);

    let shared = Shared {
        repo,
        packer,
        progress,
        errors: Mutex::new(Vec::new()),
        names: NameCache::default(),
    };
    let excludes = build_globs(&opts.excludes)?;

    let (root, dirs, others) = std::thread::scope(|s| -> Result<(BlobId, u64, u64)> {
        for _ in 0..threads {
            let rx = chunks_rx.clone();
            let store_error = &store_error;
            s.spawn(move || {
                for (id, data) in rx {
                    if let Err(e) = packer.store(BlobType::Data, id, &data) {
                        store_error.lock().get_or_insert(e);
                    }
                }
            });
        }
        drop(chunks_rx);
        for _ in 0..threads {
            let (rx, tx) = (files_rx.clone(), chunks_tx.clone());
            let shared = &shared;
            s.spawn(move || file_worker(shared, rx, tx));
        }
        drop((files_rx, chunks_tx));
        // The walker owns the job queue's sender: dropping it lets the workers stop.
        let mut walker = Walker {
            shared: &shared,
            excludes,
            exclude_paths: &opts.exclude_paths,
            files_tx,
            devices: opts.one_file_system.then(|| devices.clone()),
            dirs: 0,
            others: 0,
        };
        let root = walker.save_dirs(Path::new("/"), &roots, writer.parent_tree())?;
        Ok((root, walker.dirs, walker.others))
    })?;
    if let Some(e) = store_error.lock().take() {
        return Err(e);
    }
    let errors = shared.errors.into_inner();
    let summary = Summary {
        files: progress.files.load(Ordering::Relaxed),
        dirs,
        others,
        bytes: progress.bytes.load(Ordering::Relaxed),
        errors: errors.len() as u64,
        ..Default::default()
    };
    let (id, snapshot) = writer.finish(root, summary)?;
    Ok(BackupResult {
        id,
        snapshot,
        errors,
    })
}

impl Walker<'_> {
    fn excluded(&self, path: &Path) -> bool {
        if self.exclude_paths.iter().any(|p| p == path) {
            return true;
        }
        !self.excludes.is_empty()
            && (self.excludes.is_match(path)
                || path.file_name().is_some_and(|n| self.excludes.is_match(n)))
    }

    /// Saves the directories above the source paths (or the sources themselves);
    /// returns the tree id of `dir`.
    fn save_dirs(
        &mut self,
        dir: &Path,
        entries: &BTreeMap<Vec<u8>, Entry>,
        parent: Option<BlobId>,
    ) -> Result<BlobId> {
        let ptree = parent.and_then(|id| self.shared.repo.load_tree(&id).ok());
        let mut nodes = Vec::new();
        for (name, entry) in entries {
            let path = dir.join(OsStr::from_bytes(name));
            let meta = fs::symlink_metadata(&path)
                .map_err(|e| Error::io(format!("cannot back up {}", path.display()), e))?;
            let mut node = node_from_meta(name, &path, &meta, &self.shared.names)
                .map_err(|e| Error::io(format!("cannot back up {}", path.display()), e))?;
            let pnode = ptree.as_ref().and_then(|t| t.find(name)).cloned();
            match entry {
                Entry::Dir(children) if node.is_dir() => {
                    self.dirs += 1;
                    let psub = pnode.and_then(|p| p.subtree);
                    node.subtree = Some(self.save_dirs(&path, children, psub)?);
                    nodes.push(node);
                }
                _ => {
                    let mut pending = Vec::new();
                    self.add_entry(&path, node, pnode.as_ref(), &mut nodes, &mut pending)?;
                    collect(pending, &mut nodes)?;
                }
            }
        }
        self.save_tree(nodes)
    }

    fn save_tree(&self, nodes: Vec<Node>) -> Result<BlobId> {
        let tree = Tree::new(nodes);
        self.shared.packer.save(BlobType::Tree, &tree.encode())
    }

    /// Adds one entry: directories recurse, files go to the workers (or reuse
    /// the parent's content when unchanged), everything else is metadata only.
    fn add_entry(
        &mut self,
        path: &Path,
        mut node: Node,
        pnode: Option<&Node>,
        nodes: &mut Vec<Node>,
        pending: &mut Vec<Receiver<Option<Node>>>,
    ) -> Result<()> {
        match node.kind {
            NodeKind::Dir => {
                self.dirs += 1;
                let other_fs = self
                    .devices
                    .as_ref()
                    .is_some_and(|d| !d.contains(&node.dev));
                node.subtree = Some(if other_fs {
                    // A mount point: kept as an empty directory, not entered.
                    self.save_tree(Vec::new())?
                } else {
                    let psub = pnode.filter(|p| p.is_dir()).and_then(|p| p.subtree);
                    self.save_dir(path, psub)?
                });
                nodes.push(node);
            }
            NodeKind::File => {
                if let Some(content) = self.unchanged(&node, pnode) {
                    node.content = content;
                    self.shared.progress.files.fetch_add(1, Ordering::Relaxed);
                    self.shared
                        .progress
                        .bytes
                        .fetch_add(node.size, Ordering::Relaxed);
                    nodes.push(node);
                } else {
                    let (tx, rx) = bounded(1);
                    let job = FileJob {
                        path: path.to_path_buf(),
                        node,
                        reply: tx,
                    };
                    self.files_tx
                        .send(job)
                        .map_err(|_| Error::InvalidInput("backup workers stopped".into()))?;
                    pending.push(rx);
                }
            }
            _ => {
                self.others += 1;
                nodes.push(node);
            }
        }
        Ok(())
    }

    /// Content of the parent's node when size, mtime and inode match and every
    /// chunk is still in the store.
    fn unchanged(&self, node: &Node, pnode: Option<&Node>) -> Option<Vec<ChunkRef>> {
        let p = pnode?;
        let same = p.kind == NodeKind::File
            && p.size == node.size
            && p.mtime == node.mtime
            && p.ino == node.ino
            && p.content.iter().map(|c| c.size as u64).sum::<u64>() == node.size;
        (same && p.content.iter().all(|c| self.shared.packer.is_known(&c.id)))
            .then(|| p.content.clone())
    }

    fn save_dir(&mut self, dir: &Path, parent: Option<BlobId>) -> Result<BlobId> {
        if self.shared.packer_failed() {
            return Err(Error::InvalidInput(
                "stopping: a write to the store failed".into(),
            ));
        }
        let ptree = parent.and_then(|id| self.shared.repo.load_tree(&id).ok());
        let mut names: Vec<Vec<u8>> = match fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| match e {
                    Ok(e) => Some(e.file_name().as_bytes().to_vec()),
                    Err(err) => {
                        self.shared.error(dir, err);
                        None
                    }
                })
                .collect(),
            Err(e) => {
                self.shared.error(dir, e);
                Vec::new()
            }
        };
        names.sort();
        let mut nodes = Vec::with_capacity(names.len());
        let mut pending = Vec::new();
        let mut subdirs = Vec::new();
        for name in names {
            let path = dir.join(OsStr::from_bytes(&name));
            if self.excluded(&path) {
                continue;
            }
            let node = match fs::symlink_metadata(&path)
                .and_then(|m| node_from_meta(&name, &path, &m, &self.shared.names))
            {
                Ok(n) => n,
                Err(e) => {
                    self.shared.error(&path, e);
                    continue;
                }
            };
            let pnode = ptree.as_ref().and_then(|t| t.find(&name));
            if node.is_dir() {
                // Files first, so workers are busy while we descend.
                subdirs.push((path, node, pnode.cloned()));
            } else {
                self.add_entry(&path, node, pnode, &mut nodes, &mut pending)?;
            }
        }
        for (path, node, pnode) in subdirs {
            self.add_entry(&path, node, pnode.as_ref(), &mut nodes, &mut pending)?;
        }
        collect(pending, &mut nodes)?;
        self.save_tree(nodes)
    }
}

impl Shared<'_> {
    fn packer_failed(&self) -> bool {
        self.packer.is_failed()
    }
}

fn collect(pending: Vec<Receiver<Option<Node>>>, nodes: &mut Vec<Node>) -> Result<()> {
    for rx in pending {
        match rx.recv() {
            Ok(Some(n)) => nodes.push(n),
            Ok(None) => {}
            Err(_) => return Err(Error::InvalidInput("a backup worker died".into())),
        }
    }
    Ok(())
}

/// Reads, chunks and hashes files; new chunks go to the packing stage.
fn file_worker(shared: &Shared<'_>, jobs: Receiver<FileJob>, chunks: Sender<(BlobId, Vec<u8>)>) {
    for FileJob {
        path,
        mut node,
        reply,
    } in jobs
    {
        let result = open_noatime(&path)
            .map_err(StreamError::Read)
            .and_then(|file| {
                let counted = Counted {
                    inner: file,
                    bytes: &shared.progress.bytes,
                };
                shared.packer.chunk_stream(counted, node.size, |id, chunk| {
                    chunks
                        .send((id, chunk))
                        .map_err(|_| Error::InvalidInput("the packing stage stopped".into()))
                })
            });
        let out = match result {
            Ok(content) => {
                node.size = content.iter().map(|c| c.size as u64).sum();
                node.content = content;
                shared.progress.files.fetch_add(1, Ordering::Relaxed);
                Some(node)
            }
            Err(StreamError::Read(e)) => {
                shared.error(&path, e);
                None
            }
            Err(StreamError::Store(e)) => {
                shared.error(&path, e);
                None
            }
        };
        let _ = reply.send(out);
    }
}

/// Counts the bytes read through it, for the progress display.
struct Counted<'a, R> {
    inner: R,
    bytes: &'a AtomicU64,
}

impl<R: std::io::Read> std::io::Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens for reading without touching atime where allowed (owner or root).
fn open_noatime(path: &Path) -> std::io::Result<fs::File> {
    match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME | libc::O_NOFOLLOW)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path),
        r => r,
    }
}
