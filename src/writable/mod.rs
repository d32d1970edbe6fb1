//! The writable backup-on-close mount. Files copied in are spooled locally,
//! and on every successful `close()` go through the same packer as `backup`;
//! a journal records each change so nothing a close reported saved is lost if
//! the daemon or machine dies. A snapshot is committed on unmount, on request
//! (`klosetfs commit`, which reads the hidden `.klosetfs-commit` file), and on
//! an optional interval.

mod commit;
mod data;
pub mod journal;
pub mod namespace;
mod put;
mod record;
mod recover;
pub mod session;
mod spool;
mod storer;
mod stream;
#[cfg(test)]
mod tests;
mod xattrs;

pub use crate::ops::exclude::Excludes;
pub use put::Upload;
pub use record::AttrChange;
use recover::recover_dir;

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::lock::Lock;
use crate::format::tree::{NodeKind, Xattr};
use crate::fs_error::{FsError, FsResult};
use crate::ops::local_node::NameCache;
use crate::pipeline::packer::Packer;
use crate::repo::Repo;
use crate::view::chunk_cache::ChunkCache;

use journal::{Journal, NewMeta, Record};
use namespace::{Namespace, WInode, ROOT};

/// The hidden control file: reading it commits a snapshot.
pub const COMMIT_FILE: &[u8] = b".klosetfs-commit";
/// Each lookup of [`COMMIT_FILE`] gets a new inode from here up (the
/// namespace counts up from 1 and never gets near).
const COMMIT_INO_BASE: u64 = 1 << 62;
/// What reading the control file gives: a snapshot id in hex and a newline.
pub const COMMIT_TEXT_LEN: u64 = 65;

pub fn is_commit_ino(ino: u64) -> bool {
    ino >= COMMIT_INO_BASE
}
/// `dev` recorded for hard links made in the mount.
const MOUNT_DEV: u64 = 0x6b6c_6f73;

/// The close gate held shared: closes (and whole uploads, `put.rs`) go on
/// side by side; a commit waits until none is between its first change and
/// its close.
type ClosesHeld<'a> = parking_lot::RwLockReadGuard<'a, ()>;

/// A record in the journal, not yet made durable ([`WritableFs::settle`]).
#[must_use]
struct Appended {
    sync: Arc<journal::SyncState>,
    end: u64,
}
pub type Listing = Vec<(u64, NodeKind, Vec<u8>)>;

#[derive(Clone, Debug)]
pub struct WritableOptions {
    pub spool_dir: PathBuf,
    /// Spool bytes before closed files are flushed to the store and dropped.
    pub spool_cap: u64,
    pub host: String,
    pub tags: Vec<String>,
    pub cache_bytes: usize,
    pub sync: SyncMode,
    /// Names kept out of every snapshot the session commits.
    pub excludes: Excludes,
}

/// When a closed file becomes durable against a power cut. In every mode a
/// file whose `close()` returned survives a crash (`kill -9`) of the daemon:
/// its journal record and spool are in the kernel by then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `fdatasync` of the journal (and a large file's spool) before `close()`
    /// returns; other changes within [`journal::LAZY_SYNC`].
    Close,
    /// Everything within [`journal::LAZY_SYNC`] of the change, by one
    /// background sync for all the files closed meanwhile (the default).
    Lazy,
    /// Only at the next commit (`fsync` and `fsyncdir` still sync).
    Commit,
}

impl SyncMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "close" => Some(Self::Close),
            "lazy" => Some(Self::Lazy),
            "commit" => Some(Self::Commit),
            _ => None,
        }
    }
}

/// The writable core: a namespace over a spool and a journal, whose closed
/// files are stored in the background and committed as snapshots.
///
/// Locks, always taken in this order (a thread holding one never waits for
/// an earlier one): `commits.texts` (held across the commit a read of the
/// control file makes) → `commits.lock` → `commits.gate` → `ns` →
/// `journal`; and `spools.mem` → `spools.files` (a memory spool spilling to
/// a file). `streams`, `commits.base` and `commits.last` are leaves: held
/// for a lookup or an update, never while taking another.
pub struct WritableFs {
    repo: Arc<Repo>,
    /// The store's shared lock, held for the session's whole life.
    _lock: Lock,
    /// The spool's own lock ([`lock_spool`]), held for the session's life.
    _spool_lock: nix::fcntl::Flock<File>,
    packer: Arc<Packer>,
    cache: ChunkCache,
    opts: WritableOptions,
    ns: Arc<Mutex<Namespace>>,
    journal: Arc<Mutex<Journal>>,
    storer: storer::Storer,
    /// Large files being written sequentially, streaming into the chunker.
    streams: Mutex<HashMap<u64, Arc<stream::Stream>>>,
    spools: Spools,
    commits: Commits,
    names: NameCache,
}

/// The spool files of files written since they were last stored.
#[derive(Default)]
struct Spools {
    /// Open spool files by name.
    files: Mutex<HashMap<String, Arc<File>>>,
    /// Spools of small files, kept in memory: creating a file per copied file
    /// costs more than the copy. Spilled to a file past `INLINE_LIMIT`.
    /// Shared with journal records and store jobs of closed files.
    mem: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    /// Names the next spool.
    seq: AtomicU64,
    /// Bytes in spools, files and memory.
    bytes: AtomicU64,
}

/// What commits share: their order, the gate closes pass, and what the last
/// one made.
struct Commits {
    /// One commit at a time.
    lock: Mutex<()>,
    /// Closes hold it shared, a commit exclusively: no close falls between
    /// the commit's tree and its new journal.
    gate: parking_lot::RwLock<()>,
    /// The snapshot the journal starts from.
    base: Mutex<Option<SnapshotId>>,
    /// Something changed since that snapshot.
    changed: AtomicBool,
    last: Mutex<Option<SnapshotId>>,
    /// The id each control-file inode's first read committed.
    texts: Mutex<HashMap<u64, Vec<u8>>>,
    next_ino: AtomicU64,
}

fn now() -> i64 {
    crate::util::now_ns()
}

/// Creates the spool folder (and missing parents) readable by its owner only,
/// and closes an existing one to others: it holds plaintext file contents.
fn private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |e| Error::io(format!("creating spool {}", dir.display()), e);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

/// The file in a spool whose lock a session holds for its life.
pub const SPOOL_LOCK_FILE: &str = "lock";

/// Locks a spool folder for one session (or one recovery): `None` if a live
/// session holds it. Two sessions on one spool would interleave their
/// journals, and a recovery of a live one would commit its journal and
/// delete the spool under it. The lock goes with the process, a `kill -9`
/// too, so a dead session's spool is free to recover.
fn lock_spool(dir: &std::path::Path) -> Result<Option<nix::fcntl::Flock<File>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(SPOOL_LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(Some(held)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::io(format!("locking {}", path.display()), e.into())),
    }
}

/// Commits what dead writable sessions left in `spools`, under the store's
/// shared lock: for each spool that held closed files, the snapshot made of
/// them. A spool a live session holds is left alone, with a warning.
pub fn recover(repo: &Arc<Repo>, spools: &[PathBuf]) -> Result<Vec<(PathBuf, SnapshotId)>> {
    let _lock = crate::format::lock::acquire(repo.storage(), repo.keys(), false)?;
    let mut out = Vec::new();
    for s in spools {
        if !s.join("journal").exists() {
            continue;
        }
        let Some(_held) = lock_spool(s)? else {
            tracing::warn!(
                "{} belongs to a running writable session (a mount or `serve --writable`): \
                 not recovered; it commits its own files",
                s.display()
            );
            continue;
        };
        if let Some(id) = recover_dir(repo, s)? {
            out.push((s.clone(), id));
        }
    }
    Ok(out)
}

/// A journal's first records: its header, then the excludes if there are
/// any (a session without them writes journals older builds read).
fn journal_head(header: Record, excludes: &Excludes) -> Vec<Record> {
    let mut head = vec![header];
    if !excludes.is_empty() {
        head.push(Record::Excludes {
            patterns: excludes.patterns().to_vec(),
        });
    }
    head
}

impl WritableFs {
    /// Opens the spool (replaying and committing a journal a crash left there,
    /// whose snapshot id is returned), then starts a tree from `base`, or empty.
    /// Takes the store's shared lock for the mount's life, commits what a dead
    /// mount left in the spool (its snapshot id is returned), then starts a
    /// tree from `base` (an id, a prefix or `latest`, resolved after that
    /// recovery), or empty.
    pub fn new(
        repo: Arc<Repo>,
        base: Option<&str>,
        opts: WritableOptions,
    ) -> Result<(Self, Option<SnapshotId>)> {
        let lock = crate::format::lock::acquire(repo.storage(), repo.keys(), false)?;
        private_dir(&opts.spool_dir)?;
        let spool_lock = lock_spool(&opts.spool_dir)?.ok_or_else(|| {
            Error::InvalidInput(format!(
                "the spool {} is in use by another writable session (a mount or \
                 `serve --writable`); give this one its own --spool",
                opts.spool_dir.display()
            ))
        })?;
        let recovered = recover_dir(&repo, &opts.spool_dir)?;
        let base = base
            .map(|b| repo.resolve_snapshot(b))
            .transpose()?
            .map(|(id, _)| id);
        let base_snapshot = base.map(|id| repo.load_snapshot(&id)).transpose()?;
        let ns = Namespace::load(&repo, base_snapshot.as_ref(), now())?;
        let header = Record::Header {
            store_id: repo.config().id.clone(),
            base,
            host: opts.host.clone(),
            tags: opts.tags.clone(),
        };
        let journal = Journal::create(
            &opts.spool_dir.join("journal"),
            &journal_head(header, &opts.excludes),
            &[],
            opts.sync == SyncMode::Close,
        )?;
        let storer = storer::Storer::new(storer::StoreCpus::detect())
            .map_err(|e| Error::io("starting the background storer", e))?;
        let fs = WritableFs {
            _lock: lock,
            _spool_lock: spool_lock,
            packer: Arc::new(Packer::new(repo.clone())),
            cache: ChunkCache::new(repo.clone(), opts.cache_bytes),
            repo,
            opts,
            ns: Arc::new(Mutex::new(ns)),
            journal: Arc::new(Mutex::new(journal)),
            storer,
            streams: Mutex::new(HashMap::new()),
            spools: Spools::default(),
            commits: Commits {
                lock: Mutex::new(()),
                gate: parking_lot::RwLock::new(()),
                base: Mutex::new(base),
                changed: AtomicBool::new(false),
                last: Mutex::new(None),
                texts: Mutex::new(HashMap::new()),
                next_ino: AtomicU64::new(COMMIT_INO_BASE),
            },
            names: NameCache::default(),
        };
        Ok((fs, recovered))
    }

    pub fn repo(&self) -> &Arc<Repo> {
        &self.repo
    }

    /// Where closed files wait to be stored (the spool folder).
    pub fn spool_dir(&self) -> &std::path::Path {
        &self.opts.spool_dir
    }

    /// Spool bytes the session may hold (`--spool-size`).
    pub fn spool_cap(&self) -> u64 {
        self.opts.spool_cap
    }

    /// Appends a change's record while the caller still holds the namespace
    /// (`_held`; the lock order is namespace, then journal): records are in
    /// the order of the changes they replay, and a commit's tree and the
    /// journal's end are taken at one instant. [`WritableFs::settle`] it
    /// once the namespace is let go.
    fn append(&self, _held: &Namespace, r: &Record) -> FsResult<Appended> {
        let mut j = self.journal.lock();
        j.append(r)?;
        Ok(Appended {
            sync: j.syncer(),
            end: j.end(),
        })
    }

    /// [`WritableFs::append`] of the record `make` builds from `ino`'s path,
    /// if it has one (a file unlinked while still open has none: nothing
    /// replays a change to it).
    fn append_named(
        &self,
        held: &Namespace,
        ino: u64,
        make: impl FnOnce(Vec<u8>) -> Record,
    ) -> FsResult<Option<Appended>> {
        held.path(ino)
            .map(|path| self.append(held, &make(path)))
            .transpose()
    }

    /// Makes an appended record durable as the sync mode says: with
    /// [`SyncMode::Close`] a `durable` one (a close) before this returns;
    /// otherwise (but for [`SyncMode::Commit`]) within
    /// [`journal::LAZY_SYNC`], by the journal's background syncer.
    fn settle(&self, a: Appended, durable: bool) -> FsResult<()> {
        self.commits.changed.store(true, Ordering::Relaxed);
        match self.opts.sync {
            // Outside every lock: other appenders go on meanwhile.
            SyncMode::Close if durable => a.sync.sync_to(a.end)?,
            SyncMode::Close | SyncMode::Lazy => a.sync.arm(),
            SyncMode::Commit => {}
        }
        Ok(())
    }

    /// Makes every journaled change durable (fsync, fsyncdir).
    pub fn sync_journal(&self) -> FsResult<()> {
        let sync = self.journal.lock().syncer();
        Ok(sync.sync_all()?)
    }

    /// The first failure of a background store, or of the packer under a
    /// file still being written (its stream), as an I/O error.
    fn check_store_error(&self) -> FsResult<()> {
        match self.storer.error() {
            Some(e) => Err(e.within("storing a closed file failed")),
            None => Ok(self.packer.check_failed()?),
        }
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<u64> {
        if parent == ROOT && name == COMMIT_FILE {
            return Ok(self.commits.next_ino.fetch_add(1, Ordering::Relaxed));
        }
        self.ns.lock().lookup(parent, name)
    }

    /// Runs `f` on an inode's state, under the namespace's lock: what a
    /// reply needs is read in place (a directory's copy would copy every
    /// name in it, on every `getattr` of the directory a copy is writing to).
    pub fn with_inode<T>(&self, ino: u64, f: impl FnOnce(&WInode) -> T) -> FsResult<T> {
        Ok(f(self.ns.lock().get(ino)?))
    }

    /// A directory's parent and entries (inode, kind, name).
    pub fn readdir(&self, ino: u64) -> FsResult<(u64, Listing)> {
        let ns = self.ns.lock();
        let d = ns.get(ino)?;
        if !d.is_dir() {
            return Err(FsError::NotDir);
        }
        let parent = d.links.first().map(|l| l.0).unwrap_or(ROOT);
        let list = d
            .children
            .iter()
            .map(|(n, c)| {
                (
                    *c,
                    ns.inodes.get(c).map(|i| i.kind).unwrap_or(NodeKind::File),
                    n.clone(),
                )
            })
            .collect();
        Ok((parent, list))
    }

    /// Creates any kind of entry (the kernel opens a new regular file itself).
    pub fn create(&self, parent: u64, name: &[u8], meta: NewMeta) -> FsResult<u64> {
        let (ino, appended) = {
            let mut ns = self.ns.lock();
            let ino = ns.create(parent, name, &meta)?;
            let path = ns.child_path(parent, name).unwrap_or_default();
            (ino, self.append(&ns, &Record::Create { path, meta })?)
        };
        self.settle(appended, false)?;
        Ok(ino)
    }

    pub fn link(&self, ino: u64, parent: u64, name: &[u8]) -> FsResult<()> {
        let appended = {
            let mut ns = self.ns.lock();
            let target = ns.path(ino).ok_or(FsError::NotFound)?;
            ns.link(ino, parent, name, now())?;
            let path = ns.child_path(parent, name).unwrap_or_default();
            self.append(&ns, &Record::Link { target, path })?
        };
        self.settle(appended, false)
    }

    pub fn unlink(&self, parent: u64, name: &[u8], dir: bool) -> FsResult<()> {
        let (appended, dropped) = {
            let mut ns = self.ns.lock();
            let path = ns.child_path(parent, name).unwrap_or_default();
            let spool = ns
                .lookup(parent, name)
                .ok()
                .and_then(|i| ns.get(i).ok())
                .and_then(|i| i.spool.clone());
            let (_, gone) = ns.unlink(parent, name, dir, now())?;
            let appended = self.append(&ns, &Record::Unlink { path })?;
            (appended, if gone { spool } else { None })
        };
        if let Some(s) = dropped {
            self.drop_spool(&s);
        }
        self.settle(appended, false)
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        noreplace: bool,
    ) -> FsResult<()> {
        let (appended, dropped) = {
            let mut ns = self.ns.lock();
            let from = ns.child_path(parent, name).unwrap_or_default();
            let to = ns.child_path(newparent, newname).unwrap_or_default();
            let victim_spool = ns
                .lookup(newparent, newname)
                .ok()
                .and_then(|i| ns.get(i).ok())
                .and_then(|i| i.spool.clone());
            let dropped = ns.rename(parent, name, newparent, newname, noreplace, now())?;
            let appended = self.append(&ns, &Record::Rename { from, to })?;
            (appended, dropped.and(victim_spool))
        };
        if let Some(s) = dropped {
            self.drop_spool(&s);
        }
        // Like a rename on ext4, durable at the next fsync (of the file or the
        // directory) or close, or by the background sync soon after; the
        // closed file's bytes already are, under one name or the other.
        self.settle(appended, false)
    }

    /// Changes attributes; a new `size` is a truncation, `(size, open)`: through
    /// an open file (`ftruncate`, stored at its close) or not (stored now).
    pub fn setattr(&self, ino: u64, change: AttrChange, size: Option<(u64, bool)>) -> FsResult<()> {
        if let Some((sz, open)) = size {
            self.truncate(ino, sz, open)?;
        }
        let t = now();
        let appended = {
            let mut ns = self.ns.lock();
            ns.get_mut(ino)?.set_attrs(change, t);
            self.append_named(&ns, ino, |path| Record::SetAttr {
                path,
                change,
                ctime: t,
            })?
        };
        appended.map_or(Ok(()), |a| self.settle(a, false))
    }

    pub fn set_xattrs(
        &self,
        ino: u64,
        f: impl FnOnce(&mut Vec<Xattr>) -> FsResult<()>,
    ) -> FsResult<()> {
        let appended = {
            let mut ns = self.ns.lock();
            let i = ns.get_mut(ino)?;
            f(&mut i.xattrs)?;
            i.xattrs.sort_by(|a, b| a.name.cmp(&b.name));
            i.ctime = now();
            let xattrs = i.xattrs.clone();
            self.append_named(&ns, ino, |path| Record::SetXattrs { path, xattrs })?
        };
        appended.map_or(Ok(()), |a| self.settle(a, false))
    }

    pub fn has_changes(&self) -> bool {
        self.commits.changed.load(Ordering::Relaxed)
    }

    pub fn last_commit(&self) -> Option<SnapshotId> {
        *self.commits.last.lock()
    }
}
