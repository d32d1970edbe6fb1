//! What a snapshot is made from, and the one walk that makes it. A [`Source`]
//! says what is in a directory, how to read a file and whether a file is
//! unchanged since the parent snapshot; [`write`] walks it beside the parent's
//! trees, keeps unchanged files' chunks, reads the rest on a pool of readers,
//! hands new chunks to a pool of storers (compression and sealing), saves each
//! directory's tree and finishes the snapshot through the [`SnapshotWriter`].
//! Local paths ([`crate::ops::backup`]), S3 prefixes and a stream are sources.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::id::{BlobId, SnapshotId};
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{ChunkRef, Node, NodeKind, Tree};
use crate::ops::writer::SnapshotWriter;
use crate::pipeline::packer::{Packer, StreamError};
use crate::repo::Repo;

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

/// One entry of a source directory: its metadata (no content, no subtree yet)
/// and how to reach it again.
pub struct Entry<H> {
    pub node: Node,
    pub handle: H,
}

/// A file's content being read. `finish` lets the source add what it learnt
/// while reading (an S3 object's content type) to the file's node.
pub trait Content: Read {
    fn finish(self: Box<Self>, _node: &mut Node) {}
}

impl Content for std::fs::File {}

/// Where entries that could not be read are reported (the snapshot goes on
/// without them).
pub struct Problems<'a> {
    list: Mutex<Vec<(String, String)>>,
    progress: &'a Progress,
}

impl Problems<'_> {
    pub fn report(&self, what: String, e: impl std::fmt::Display) {
        tracing::warn!("{what}: {e}");
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        self.list.lock().push((what, e.to_string()));
    }
}

/// A tree of entries a snapshot can be made of.
pub trait Source: Sync {
    /// Names a directory or a file of this source (a path, an object).
    type Handle: Send;

    /// The entries of a directory, in any order. An `Err` stops the snapshot
    /// (a source path that is not there); an entry or a directory that cannot
    /// be read should be reported and left out instead.
    fn list(&self, dir: &Self::Handle, problems: &Problems) -> Result<Vec<Entry<Self::Handle>>>;

    /// Opens a file's content.
    fn open(&self, file: &Self::Handle) -> std::io::Result<Box<dyn Content + '_>>;

    /// Whether `node` is the same file as the parent snapshot's `parent`
    /// (same size, and the source's cheap change key: mtime and inode, an
    /// ETag), so its chunks can be kept without reading it.
    fn unchanged(&self, node: &Node, parent: &Node) -> bool;

    /// What a kept file also takes from the parent's node besides its chunks.
    fn keep_from_parent(&self, _node: &mut Node, _parent: &Node) {}

    /// Whether to go into a directory (one-file-system: not into mount points,
    /// which are kept as empty directories).
    fn enter(&self, _dir: &Self::Handle, _node: &Node) -> bool {
        true
    }

    /// A directory's node, once its entries are known (a folder made from
    /// S3 keys takes its newest object's time).
    fn finish_dir(&self, _dir: &mut Node, _entries: &[Node]) {}

    /// How a handle is named in messages.
    fn describe(&self, h: &Self::Handle) -> String;
}

/// Threads for each stage: readers open and chunk files (more for a remote
/// source, whose reads wait on the network), storers compress and seal.
#[derive(Clone, Copy, Debug)]
pub struct Threads {
    pub readers: usize,
    pub storers: usize,
}

impl Threads {
    /// `n` of each; 0 means one per core.
    pub fn per_core(n: usize) -> Self {
        let n = if n == 0 { cores() } else { n };
        Threads {
            readers: n,
            storers: n,
        }
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// Makes a snapshot of `source` from its root directory `root`.
pub fn write<S: Source>(
    writer: SnapshotWriter,
    source: &S,
    root: S::Handle,
    threads: Threads,
    progress: &Progress,
) -> Result<BackupResult> {
    let w = walk(&writer, source, root, threads, progress)?;
    let (id, snapshot) = writer.finish(w.tree, w.summary)?;
    Ok(BackupResult {
        id,
        snapshot,
        errors: w.errors,
    })
}

/// What a walk made: the root tree, the counts and what was left out
/// (path, reason).
pub struct Walked {
    pub tree: BlobId,
    pub summary: Summary,
    pub errors: Vec<(String, String)>,
}

/// The walk without the snapshot: the root tree, the counts and what was left
/// out. For a source that decides after reading whether there is a snapshot at
/// all (a command that failed).
pub fn walk<S: Source>(
    writer: &SnapshotWriter,
    source: &S,
    root: S::Handle,
    threads: Threads,
    progress: &Progress,
) -> Result<Walked> {
    let packer = writer.packer();
    let (files_tx, files_rx) = bounded::<FileJob<S::Handle>>(threads.readers * 64);
    let (chunks_tx, chunks_rx) = bounded::<(BlobId, Vec<u8>)>(threads.storers * 2);
    let store_error: Mutex<Option<Error>> = Mutex::new(None);
    let problems = Problems {
        list: Mutex::new(Vec::new()),
        progress,
    };

    let (tree, dirs, others) = std::thread::scope(|s| -> Result<(BlobId, u64, u64)> {
        for _ in 0..threads.storers {
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
        for _ in 0..threads.readers {
            let (rx, tx) = (files_rx.clone(), chunks_tx.clone());
            let (problems, source) = (&problems, source);
            s.spawn(move || read_files(source, packer, problems, rx, tx));
        }
        drop((files_rx, chunks_tx));
        // The walker owns the job queue's sender: dropping it lets the readers stop.
        let mut w = Walker {
            source,
            repo: writer.repo(),
            packer,
            problems: &problems,
            files_tx,
            dirs: 0,
            others: 0,
        };
        let mut root_node = Node::bare(Vec::new(), NodeKind::Dir);
        let tree = w.save_dir(&root, &mut root_node, writer.parent_tree())?;
        Ok((tree, w.dirs, w.others))
    })?;
    if let Some(e) = store_error.lock().take() {
        return Err(e);
    }
    let errors = problems.list.into_inner();
    let summary = Summary {
        files: progress.files.load(Ordering::Relaxed),
        dirs,
        others,
        bytes: progress.bytes.load(Ordering::Relaxed),
        errors: errors.len() as u64,
        ..Default::default()
    };
    Ok(Walked {
        tree,
        summary,
        errors,
    })
}

struct FileJob<H> {
    handle: H,
    node: Node,
    reply: Sender<Option<Node>>,
}

/// Walks directories on one thread; file contents go to the readers.
struct Walker<'a, S: Source> {
    source: &'a S,
    repo: &'a Repo,
    packer: &'a Packer,
    problems: &'a Problems<'a>,
    files_tx: Sender<FileJob<S::Handle>>,
    dirs: u64,
    others: u64,
}

impl<S: Source> Walker<'_, S> {
    /// Saves directory `dir` (whose node is `node`) beside the parent's tree
    /// `parent`; returns its tree id.
    fn save_dir(
        &mut self,
        dir: &S::Handle,
        node: &mut Node,
        parent: Option<BlobId>,
    ) -> Result<BlobId> {
        if self.packer.is_failed() {
            return Err(Error::InvalidInput(
                "stopping: a write to the store failed".into(),
            ));
        }
        let ptree = parent.and_then(|id| self.repo.load_tree(&id).ok());
        let mut entries = self.source.list(dir, self.problems)?;
        entries.sort_by(|a, b| a.node.name.cmp(&b.node.name));
        let mut nodes = Vec::with_capacity(entries.len());
        let mut pending = Vec::new();
        let mut subdirs = Vec::new();
        for e in entries {
            let pnode = ptree.as_ref().and_then(|t| t.find(&e.node.name));
            if e.node.is_dir() {
                // Files first, so readers are busy while we descend.
                subdirs.push((e, pnode.and_then(|p| p.subtree)));
            } else {
                self.add_file(e, pnode, &mut nodes, &mut pending)?;
            }
        }
        for (mut e, psub) in subdirs {
            self.dirs += 1;
            let id = if self.source.enter(&e.handle, &e.node) {
                self.save_dir(&e.handle, &mut e.node, psub)?
            } else {
                self.save_tree(Vec::new())?
            };
            e.node.subtree = Some(id);
            nodes.push(e.node);
        }
        for rx in pending {
            match rx.recv() {
                Ok(Some(n)) => nodes.push(n),
                Ok(None) => {}
                Err(_) => return Err(Error::Internal("a backup reader died".into())),
            }
        }
        self.source.finish_dir(node, &nodes);
        self.save_tree(nodes)
    }

    fn save_tree(&self, nodes: Vec<Node>) -> Result<BlobId> {
        self.packer.save(BlobType::Tree, &Tree::new(nodes).encode())
    }

    /// A file keeps the parent's chunks when unchanged, else goes to the
    /// readers; anything else is metadata only.
    fn add_file(
        &mut self,
        e: Entry<S::Handle>,
        pnode: Option<&Node>,
        nodes: &mut Vec<Node>,
        pending: &mut Vec<Receiver<Option<Node>>>,
    ) -> Result<()> {
        let Entry { mut node, handle } = e;
        if node.kind != NodeKind::File {
            self.others += 1;
            nodes.push(node);
            return Ok(());
        }
        if let Some(p) = pnode.filter(|p| self.kept(&node, p)) {
            node.content = p.content.clone();
            self.source.keep_from_parent(&mut node, p);
            let progress = self.problems.progress;
            progress.files.fetch_add(1, Ordering::Relaxed);
            progress.bytes.fetch_add(node.size, Ordering::Relaxed);
            nodes.push(node);
            return Ok(());
        }
        let (reply, rx) = bounded(1);
        self.files_tx
            .send(FileJob {
                handle,
                node,
                reply,
            })
            .map_err(|_| Error::Internal("backup readers stopped".into()))?;
        pending.push(rx);
        Ok(())
    }

    /// Unchanged by the source's measure, and every chunk still in the store.
    fn kept(&self, node: &Node, p: &Node) -> bool {
        p.kind == NodeKind::File
            && p.size == node.size
            && p.content.iter().map(|c| c.size as u64).sum::<u64>() == node.size
            && self.source.unchanged(node, p)
            && p.content.iter().all(|c| self.packer.is_known(&c.id))
    }
}

/// A reader thread: opens, chunks and names files; new chunks go to the storers.
fn read_files<S: Source>(
    source: &S,
    packer: &Packer,
    problems: &Problems,
    jobs: Receiver<FileJob<S::Handle>>,
    chunks: Sender<(BlobId, Vec<u8>)>,
) {
    for FileJob {
        handle,
        mut node,
        reply,
    } in jobs
    {
        let out = if packer.is_failed() {
            None
        } else {
            match read_one(
                source,
                packer,
                problems.progress,
                &handle,
                node.size,
                &chunks,
            ) {
                Ok((content, file)) => {
                    node.size = content.iter().map(|c| c.size as u64).sum();
                    node.content = content;
                    file.finish(&mut node);
                    problems.progress.files.fetch_add(1, Ordering::Relaxed);
                    Some(node)
                }
                Err(StreamError::Read(e)) => {
                    problems.report(source.describe(&handle), e);
                    None
                }
                Err(StreamError::Store(e)) => {
                    problems.report(source.describe(&handle), e);
                    None
                }
            }
        };
        let _ = reply.send(out);
    }
}

type Opened<'a> = (Vec<ChunkRef>, Box<dyn Content + 'a>);

fn read_one<'a, S: Source>(
    source: &'a S,
    packer: &Packer,
    progress: &Progress,
    handle: &S::Handle,
    size_hint: u64,
    chunks: &Sender<(BlobId, Vec<u8>)>,
) -> std::result::Result<Opened<'a>, StreamError> {
    let mut file = source.open(handle).map_err(StreamError::Read)?;
    let counted = Counted {
        inner: &mut *file,
        bytes: &progress.bytes,
    };
    let content = packer.chunk_stream(counted, size_hint, |id, chunk| {
        chunks
            .send((id, chunk))
            .map_err(|_| Error::Internal("the packing stage stopped".into()))
    })?;
    Ok((content, file))
}

/// Counts the bytes read through it, for the progress display.
struct Counted<'a, R> {
    inner: R,
    bytes: &'a AtomicU64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
