//! The Vfs: snapshots seen as a filesystem, with no FUSE types. It resolves
//! names to stable inode numbers, lists directories, serves file ranges through
//! the chunk cache (with sequential read-ahead), and lays out a whole store as
//! `snapshots/`, `ids/`, `hosts/`, `tags/` and `latest`. Trees load lazily,
//! and an entry lives while the kernel holds its inode, so memory follows the
//! kernel's inode cache rather than everything ever visited.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::fs_error::{FsError, FsResult};
use crate::repo::Repo;
use crate::view::chunk_cache::ChunkCache;

mod layout;
mod page;
mod prefetch;
mod read;

pub use page::Children;
use read::Handle;

pub const ROOT_INO: u64 = 1;

/// Files fetched ahead in a directory read in order, on a remote store.
const DIR_AHEAD_FILES: usize = 512;
/// Files fetched ahead that are remembered as such.
const DIR_AHEAD_MARKS: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(4096) {
    Some(n) => n,
    None => unreachable!(),
};

/// Files whose chunk offsets stay ready (a few KiB each at most).
const OPEN_FILES: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(4096) {
    Some(n) => n,
    None => unreachable!(),
};

/// What `stat` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: NodeKind,
    /// Permission bits (`mode & 0o7777`).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub blocks: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub rdev: u32,
    /// True for snapshot content (cache it for long); false for the store's
    /// own layout, which changes as snapshots are made.
    pub immutable: bool,
}

#[derive(Clone, Debug)]
pub struct VfsOptions {
    /// Show every entry as owned by this uid / gid.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// How often the whole-store layout looks for new snapshots.
    pub refresh: Duration,
    /// Chunk cache size in bytes.
    pub cache_bytes: usize,
    /// Chunks fetched ahead of a sequential reader.
    pub readahead_chunks: usize,
    /// Threads fetching ahead (0: one per core). Remote stores want many, so
    /// that read-ahead hides network round trips.
    pub fetch_threads: usize,
    /// Snapshot entries kept in memory (about 0.4 KiB each) before the
    /// least recently used are handed back to the kernel ([`Vfs::over_cap`]).
    pub max_inodes: usize,
    /// Files after the one being read that are fetched ahead in its
    /// directory. `None`: 64 on a remote store (one with a local metadata
    /// cache), 0 on a local one, where a read costs no round trip.
    pub dir_ahead_files: Option<usize>,
}

impl Default for VfsOptions {
    fn default() -> Self {
        Self {
            uid: None,
            gid: None,
            refresh: Duration::from_secs(30),
            cache_bytes: 128 << 20,
            readahead_chunks: 8,
            fetch_threads: 0,
            max_inodes: 100_000,
            dir_ahead_files: None,
        }
    }
}

enum What {
    /// A directory of the store's layout: name → inode.
    Layout(BTreeMap<Vec<u8>, u64>),
    /// A symlink of the layout (`latest`).
    Link(Vec<u8>),
    /// A snapshot entry. `scope` is the inode of its snapshot's root, which
    /// makes hard links share an inode within one snapshot.
    Node { node: Arc<Node>, scope: u64 },
}

struct Entry {
    parent: u64,
    what: What,
    /// Times for layout entries.
    time: i64,
    /// Lookups the kernel holds (each `lookup` reply and `readdirplus`
    /// entry adds one; `forget` takes them back).
    lookups: AtomicU64,
    /// Snapshot content registered on a lookup: dropped when the kernel
    /// forgets it, so memory follows the kernel's inode cache rather than
    /// everything ever visited. Layout entries and roots stay.
    evictable: bool,
    /// When it was last used (a tick of [`Vfs::tick`]), for the LRU cap.
    used: AtomicU64,
}

impl Entry {
    fn fixed(parent: u64, what: What, time: i64) -> Self {
        Self {
            parent,
            what,
            time,
            lookups: AtomicU64::new(0),
            evictable: false,
            used: AtomicU64::new(0),
        }
    }
}

pub struct Vfs {
    repo: Arc<Repo>,
    cache: Arc<ChunkCache>,
    opts: VfsOptions,
    entries: RwLock<HashMap<u64, Arc<Entry>>>,
    /// The files read lately; a file's offsets are built on its first read.
    handles: Mutex<lru::LruCache<u64, Arc<Handle>>>,
    /// `Some` for a whole-store mount: when the layout was last rebuilt.
    refreshed: Option<Mutex<Instant>>,
    mounted_at: i64,
    /// Counts uses of entries, for least-recently-used order.
    tick: AtomicU64,
    /// Loads the trees of listed directories' subdirectories ahead.
    prefetch: prefetch::Prefetcher,
    /// Files fetched ahead for a walk, by their first chunk: how many of
    /// that window's files come after it.
    dir_ahead: Mutex<lru::LruCache<crate::format::id::BlobId, usize>>,
}

fn hash_ino(parts: &[&[u8]]) -> u64 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let v = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    // 0 is invalid and 1 is the root.
    v.max(2)
}

impl Vfs {
    /// A whole store: the layout of every snapshot, refreshed as new ones appear.
    pub fn whole_store(repo: Arc<Repo>, opts: VfsOptions) -> crate::Result<Self> {
        let v = Self::new(repo, opts, true);
        v.rebuild_layout()?;
        Ok(v)
    }

    /// One directory of one snapshot at the root (a snapshot's root comes
    /// from [`Snapshot::root_node`]: recorded, or synthetic with its time).
    pub fn single(repo: Arc<Repo>, opts: VfsOptions, root: Node, snapshot: &Snapshot) -> Self {
        let v = Self::new(repo, opts, false);
        v.entries.write().insert(
            ROOT_INO,
            Arc::new(Entry::fixed(
                ROOT_INO,
                What::Node {
                    node: Arc::new(root),
                    scope: ROOT_INO,
                },
                snapshot.time,
            )),
        );
        v
    }

    fn new(repo: Arc<Repo>, mut opts: VfsOptions, whole: bool) -> Self {
        let remote = repo.storage().keeps_meta();
        opts.dir_ahead_files =
            Some(
                opts.dir_ahead_files
                    .unwrap_or(if remote { DIR_AHEAD_FILES } else { 0 }),
            );
        let cache = Arc::new(ChunkCache::with_threads(
            repo.clone(),
            opts.cache_bytes,
            opts.fetch_threads,
        ));
        Self {
            prefetch: prefetch::Prefetcher::new(repo.clone()),
            repo,
            cache,
            opts,
            entries: RwLock::new(HashMap::new()),
            handles: Mutex::new(lru::LruCache::new(OPEN_FILES)),
            refreshed: whole.then(|| Mutex::new(Instant::now())),
            mounted_at: crate::util::now_ns(),
            tick: AtomicU64::new(0),
            dir_ahead: Mutex::new(lru::LruCache::new(DIR_AHEAD_MARKS)),
        }
    }

    /// The chunk cache every read goes through (shared with other views of
    /// the same store, such as the web server's downloads).
    pub fn chunk_cache(&self) -> &Arc<ChunkCache> {
        &self.cache
    }

    pub fn repo(&self) -> &Arc<Repo> {
        &self.repo
    }

    fn maybe_refresh(&self) {
        let Some(last) = &self.refreshed else { return };
        let due = {
            let mut l = last.lock();
            if l.elapsed() >= self.opts.refresh {
                *l = Instant::now();
                true
            } else {
                false
            }
        };
        if due {
            if let Err(e) = self.rebuild_layout() {
                tracing::warn!("could not look for new snapshots: {e}");
            }
        }
    }

    fn entry(&self, ino: u64) -> FsResult<Arc<Entry>> {
        let e = self
            .entries
            .read()
            .get(&ino)
            .cloned()
            .ok_or(FsError::NotFound)?;
        e.used
            .store(self.tick.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        Ok(e)
    }

    fn attr_of(&self, ino: u64, e: &Entry) -> Attr {
        let (uid, gid) = (self.opts.uid, self.opts.gid);
        match &e.what {
            What::Layout(children) => Attr {
                ino,
                kind: NodeKind::Dir,
                perm: 0o555,
                nlink: 2 + children.len() as u32,
                uid: uid.unwrap_or(0),
                gid: gid.unwrap_or(0),
                size: 0,
                blocks: 0,
                atime: e.time,
                mtime: e.time,
                ctime: e.time,
                rdev: 0,
                immutable: false,
            },
            What::Link(t) => Attr {
                ino,
                kind: NodeKind::Symlink,
                perm: 0o777,
                nlink: 1,
                uid: uid.unwrap_or(0),
                gid: gid.unwrap_or(0),
                size: t.len() as u64,
                blocks: 0,
                atime: e.time,
                mtime: e.time,
                ctime: e.time,
                rdev: 0,
                immutable: false,
            },
            What::Node { node: n, .. } => self.node_attr(ino, n),
        }
    }

    /// What `stat` shows for a snapshot entry.
    fn node_attr(&self, ino: u64, n: &Node) -> Attr {
        let size = match n.kind {
            NodeKind::File => n.size,
            NodeKind::Symlink => n.target.len() as u64,
            _ => 0,
        };
        Attr {
            ino,
            kind: n.kind,
            perm: (n.mode & 0o7777) as u16,
            nlink: if n.is_dir() {
                2
            } else {
                n.nlink.clamp(1, u32::MAX as u64) as u32
            },
            uid: self.opts.uid.unwrap_or(n.uid),
            gid: self.opts.gid.unwrap_or(n.gid),
            size,
            blocks: size.div_ceil(512),
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
            rdev: n.rdev as u32,
            immutable: true,
        }
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let e = self.entry(ino)?;
        if matches!(e.what, What::Layout(_)) {
            self.maybe_refresh();
        }
        let e = self.entry(ino)?;
        Ok(self.attr_of(ino, &e))
    }

    /// A child node's inode number: derived from where it is (or, for hard
    /// links, from its snapshot and original inode), so it is the same after
    /// the entry was forgotten and looked up again.
    fn child_ino(parent: u64, scope: u64, n: &Node) -> u64 {
        let scope = if scope == 0 { parent } else { scope };
        if n.is_hardlinked() {
            hash_ino(&[
                b"hardlink",
                &scope.to_le_bytes(),
                &n.dev.to_le_bytes(),
                &n.ino.to_le_bytes(),
            ])
        } else {
            hash_ino(&[b"child", &parent.to_le_bytes(), &n.name])
        }
    }

    /// Registers a child the kernel is about to be told of, counting one
    /// lookup (under the entries' lock, so a racing `forget` of the same
    /// inode cannot drop it in between).
    fn child(&self, parent: u64, scope: u64, n: &Node) -> u64 {
        let ino = Self::child_ino(parent, scope, n);
        self.hold(&mut self.entries.write(), ino, parent, scope, n);
        ino
    }

    /// Counts one kernel lookup of `ino`, the child `n` of `parent`,
    /// creating its entry if it has none.
    fn hold(
        &self,
        entries: &mut HashMap<u64, Arc<Entry>>,
        ino: u64,
        parent: u64,
        scope: u64,
        n: &Node,
    ) {
        let scope = if scope == 0 { parent } else { scope };
        let e = entries.entry(ino).or_insert_with(|| {
            Arc::new(Entry {
                parent,
                what: What::Node {
                    node: Arc::new(held_copy(n)),
                    scope,
                },
                time: n.mtime,
                lookups: AtomicU64::new(0),
                evictable: true,
                used: AtomicU64::new(0),
            })
        });
        e.lookups.fetch_add(1, Ordering::Relaxed);
        e.used
            .store(self.tick.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The kernel dropped `n` of its lookups of `ino`: at none, snapshot
    /// content is dropped too (its inode number comes back the same).
    pub fn forget(&self, ino: u64, n: u64) {
        let mut entries = self.entries.write();
        let Some(e) = entries.get(&ino) else { return };
        let left = e.lookups.load(Ordering::Relaxed).saturating_sub(n);
        e.lookups.store(left, Ordering::Relaxed);
        if left == 0 && e.evictable {
            entries.remove(&ino);
        }
    }

    /// Beyond `max_inodes` entries: the least recently used tenth and then
    /// some, as (parent, name) for the kernel to forget (the FUSE shell sends
    /// them as entry invalidations; the kernel's FORGETs then drop them).
    /// Entries the kernel keeps in use (open files, working directories)
    /// stay, and come back here until they are let go.
    pub fn over_cap(&self) -> Vec<(u64, Vec<u8>)> {
        let cap = self.opts.max_inodes.max(1);
        let entries = self.entries.read();
        if entries.len() <= cap {
            return Vec::new();
        }
        let mut old: Vec<(u64, u64, &[u8])> = entries
            .values()
            .filter(|e| e.evictable)
            .filter_map(|e| match &e.what {
                What::Node { node, .. } => {
                    Some((e.used.load(Ordering::Relaxed), e.parent, &node.name[..]))
                }
                _ => None,
            })
            .collect();
        let n = (entries.len() - cap + cap / 10).min(old.len());
        if n == 0 {
            return Vec::new();
        }
        old.select_nth_unstable_by_key(n - 1, |x| x.0);
        old.truncate(n);
        old.into_iter()
            .map(|(_, p, name)| (p, name.to_vec()))
            .collect()
    }

    /// Inodes held in memory (layout, roots and what the kernel holds).
    pub fn entry_count(&self) -> usize {
        self.entries.read().len()
    }

    fn node_tree(&self, node: &Node) -> FsResult<Arc<crate::format::tree::Tree>> {
        let sub = node.subtree.ok_or(FsError::NotDir)?;
        self.repo.load_tree(&sub).map_err(|e| {
            tracing::error!("tree {}: {e}", sub.short());
            FsError::from(e)
        })
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Attr> {
        let e = self.entry(parent)?;
        let ino = match &e.what {
            What::Layout(_) => {
                self.maybe_refresh();
                match &self.entry(parent)?.what {
                    What::Layout(children) => *children.get(name).ok_or(FsError::NotFound)?,
                    _ => return Err(FsError::NotDir),
                }
            }
            What::Link(_) => return Err(FsError::NotDir),
            What::Node { node, scope } => {
                if !node.is_dir() {
                    return Err(FsError::NotDir);
                }
                let tree = self.node_tree(node)?;
                let n = tree.find(name).ok_or(FsError::NotFound)?;
                self.child(parent, *scope, n)
            }
        };
        self.getattr(ino)
    }

    /// Entries of a directory (without `.` and `..`): inode, kind, name.
    pub fn readdir(&self, ino: u64) -> FsResult<Vec<(u64, NodeKind, Vec<u8>)>> {
        let e = self.entry(ino)?;
        match &e.what {
            What::Layout(_) => {
                self.maybe_refresh();
                let e = self.entry(ino)?;
                let What::Layout(children) = &e.what else {
                    return Err(FsError::NotDir);
                };
                let entries = self.entries.read();
                Ok(children
                    .iter()
                    .map(|(name, i)| {
                        let kind = match entries.get(i).map(|e| &e.what) {
                            Some(What::Link(_)) => NodeKind::Symlink,
                            _ => NodeKind::Dir,
                        };
                        (*i, kind, name.clone())
                    })
                    .collect())
            }
            What::Link(_) => Err(FsError::NotDir),
            What::Node { node, scope } => {
                if !node.is_dir() {
                    return Err(FsError::NotDir);
                }
                // Listed, not registered: the kernel looks names up (or
                // gets them by `readdirplus`) before it uses an inode.
                let tree = self.node_tree(node)?;
                Ok(tree
                    .nodes
                    .iter()
                    .map(|n| (Self::child_ino(ino, *scope, n), n.kind, n.name.clone()))
                    .collect())
            }
        }
    }

    pub fn parent(&self, ino: u64) -> FsResult<u64> {
        Ok(self.entry(ino)?.parent)
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        match &self.entry(ino)?.what {
            What::Link(t) => Ok(t.clone()),
            What::Node { node, .. } if node.kind == NodeKind::Symlink => Ok(node.target.clone()),
            _ => Err(FsError::NotFound),
        }
    }

    fn node(&self, ino: u64) -> FsResult<Option<Arc<Node>>> {
        Ok(match &self.entry(ino)?.what {
            What::Node { node, .. } => Some(node.clone()),
            _ => None,
        })
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        let n = self.node(ino)?.ok_or(FsError::NoData)?;
        n.xattrs
            .iter()
            .find(|x| x.name == name)
            .map(|x| x.value.clone())
            .ok_or(FsError::NoData)
    }

    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<Vec<u8>>> {
        Ok(self
            .node(ino)?
            .map(|n| n.xattrs.iter().map(|x| x.name.clone()).collect())
            .unwrap_or_default())
    }

    /// Bytes of unique data in the store, for `statfs`.
    pub fn store_bytes(&self) -> u64 {
        self.repo
            .index()
            .read()
            .blobs()
            .map(|(_, l)| l.length as u64)
            .sum()
    }
}

/// What an inode the kernel holds keeps of its tree node: all that the
/// filesystem answers from, without the owner and group names (attributes
/// carry the numeric ids). Two allocations fewer for every entry a
/// `readdirplus` page sends, and less memory per held inode.
fn held_copy(n: &Node) -> Node {
    Node {
        name: n.name.clone(),
        kind: n.kind,
        mode: n.mode,
        uid: n.uid,
        gid: n.gid,
        user: String::new(),
        group: String::new(),
        size: n.size,
        atime: n.atime,
        mtime: n.mtime,
        ctime: n.ctime,
        dev: n.dev,
        ino: n.ino,
        nlink: n.nlink,
        rdev: n.rdev,
        xattrs: n.xattrs.clone(),
        target: n.target.clone(),
        content: n.content.clone(),
        subtree: n.subtree,
    }
}

#[cfg(test)]
mod tests;
