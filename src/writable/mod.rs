//! The writable backup-on-close mount. Files copied in are spooled locally,
//! and on every successful `close()` go through the same packer as `backup`;
//! a journal records each change so nothing a close reported saved is lost if
//! the daemon or machine dies. A snapshot is committed on unmount, on request
//! (`klosetfs commit`, which reads the hidden `.klosetfs-commit` file), and on
//! an optional interval.

pub mod fuse;
pub mod journal;
pub mod namespace;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::cache::ChunkCache;
use crate::error::{Error, Result};
use crate::fsnode::NameCache;
use crate::id::{BlobId, SnapshotId};
use crate::packer::Packer;
use crate::repo::Repo;
use crate::snapshot::{Snapshot, Summary};
use crate::tree::{Node, NodeKind, Tree, Xattr};

use journal::{Journal, NewMeta, Record};
use namespace::{Namespace, NsError, WInode, ROOT};

/// The hidden control file: reading it commits a snapshot.
pub const COMMIT_FILE: &[u8] = b".klosetfs-commit";
pub const COMMIT_INO: u64 = u64::MAX - 1;
/// `dev` recorded for hard links made in the mount.
const MOUNT_DEV: u64 = 0x6b6c_6f73;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WError {
    Ns(NsError),
    NoData,
    BadHandle,
    NoSpace,
    Io(String),
}

impl From<NsError> for WError {
    fn from(e: NsError) -> Self {
        WError::Ns(e)
    }
}

impl From<Error> for WError {
    fn from(e: Error) -> Self {
        WError::Io(e.to_string())
    }
}

pub type WResult<T> = std::result::Result<T, WError>;
pub type Listing = Vec<(u64, NodeKind, Vec<u8>)>;

#[derive(Clone, Debug)]
pub struct WritableOptions {
    pub spool_dir: PathBuf,
    /// Spool bytes before closed files are flushed to the store and dropped.
    pub spool_cap: u64,
    pub host: String,
    pub tags: Vec<String>,
    pub cache_bytes: usize,
}

struct OpenFile {
    ino: u64,
    write: bool,
    /// For the control file: the text that opening it produced.
    text: Option<Vec<u8>>,
}

pub struct WritableFs {
    repo: Arc<Repo>,
    packer: Packer,
    cache: ChunkCache,
    opts: WritableOptions,
    ns: Mutex<Namespace>,
    journal: Mutex<Journal>,
    base: Mutex<Option<SnapshotId>>,
    handles: Mutex<HashMap<u64, OpenFile>>,
    spool_files: Mutex<HashMap<String, Arc<File>>>,
    next_fh: AtomicU64,
    spool_seq: AtomicU64,
    spool_bytes: AtomicU64,
    changed: AtomicBool,
    commit_lock: Mutex<()>,
    last_commit: Mutex<Option<SnapshotId>>,
    names: NameCache,
}

fn now() -> i64 {
    crate::util::now_ns()
}

impl WritableFs {
    /// Opens the spool: replays and commits a journal left by a crash first,
    /// then starts from `base` (or the recovered snapshot when `base` is `None`
    /// and one was recovered... only if asked: `base` wins).
    pub fn new(
        repo: Arc<Repo>,
        base: Option<SnapshotId>,
        opts: WritableOptions,
    ) -> Result<(Self, Option<SnapshotId>)> {
        std::fs::create_dir_all(&opts.spool_dir)
            .map_err(|e| Error::io(format!("creating spool {}", opts.spool_dir.display()), e))?;
        let recovered = recover_dir(&repo, &opts.spool_dir)?;
        let (ns, base_time) = match base {
            Some(id) => {
                let s = repo.load_snapshot(&id)?;
                (
                    Namespace::load(&repo, Some((s.tree, s.time)), now())?,
                    Some(s.time),
                )
            }
            None => (Namespace::load(&repo, None, now())?, None),
        };
        let _ = base_time;
        let header = Record::Header {
            store_id: repo.config().id.clone(),
            base,
            host: opts.host.clone(),
            tags: opts.tags.clone(),
        };
        let journal = Journal::create(&opts.spool_dir.join("journal"), &header)?;
        let fs = WritableFs {
            packer: Packer::new(repo.clone()),
            cache: ChunkCache::new(repo.clone(), opts.cache_bytes),
            repo,
            opts,
            ns: Mutex::new(ns),
            journal: Mutex::new(journal),
            base: Mutex::new(base),
            handles: Mutex::new(HashMap::new()),
            spool_files: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            spool_seq: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            changed: AtomicBool::new(false),
            commit_lock: Mutex::new(()),
            last_commit: Mutex::new(None),
            names: NameCache::default(),
        };
        Ok((fs, recovered))
    }

    pub fn repo(&self) -> &Arc<Repo> {
        &self.repo
    }

    fn log(&self, r: Record, sync: bool) -> WResult<()> {
        let mut j = self.journal.lock();
        j.append(&r)?;
        if sync {
            j.sync()?;
        }
        self.changed.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> WResult<u64> {
        if parent == ROOT && name == COMMIT_FILE {
            return Ok(COMMIT_INO);
        }
        Ok(self.ns.lock().lookup(parent, name)?)
    }

    /// A copy of an inode's state (for attributes).
    pub fn inode(&self, ino: u64) -> WResult<WInode> {
        Ok(self.ns.lock().get(ino)?.clone())
    }

    /// A directory's parent and entries (inode, kind, name).
    pub fn readdir(&self, ino: u64) -> WResult<(u64, Listing)> {
        let ns = self.ns.lock();
        let d = ns.get(ino)?;
        if !d.is_dir() {
            return Err(NsError::NotDir.into());
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

    /// Creates any kind of entry; regular files are opened for writing.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        meta: NewMeta,
        open: bool,
    ) -> WResult<(u64, Option<u64>)> {
        let (ino, path) = {
            let mut ns = self.ns.lock();
            let ino = ns.create(parent, name, &meta)?;
            (ino, ns.child_path(parent, name).unwrap_or_default())
        };
        self.log(
            Record::Create {
                path,
                meta: meta.clone(),
            },
            false,
        )?;
        let fh = if open && meta.kind == NodeKind::File {
            Some(self.open(ino, true, true)?)
        } else {
            None
        };
        Ok((ino, fh))
    }

    pub fn link(&self, ino: u64, parent: u64, name: &[u8]) -> WResult<()> {
        let (target, path) = {
            let mut ns = self.ns.lock();
            let target = ns.path(ino).ok_or(NsError::NotFound)?;
            ns.link(ino, parent, name, now())?;
            (target, ns.child_path(parent, name).unwrap_or_default())
        };
        self.log(Record::Link { target, path }, false)
    }

    pub fn unlink(&self, parent: u64, name: &[u8], dir: bool) -> WResult<()> {
        let (path, dropped) = {
            let mut ns = self.ns.lock();
            let path = ns.child_path(parent, name).unwrap_or_default();
            let spool = ns
                .lookup(parent, name)
                .ok()
                .and_then(|i| ns.get(i).ok())
                .and_then(|i| i.spool.clone());
            let (_, gone) = ns.unlink(parent, name, dir, now())?;
            (path, if gone { spool } else { None })
        };
        if let Some(s) = dropped {
            self.drop_spool(&s);
        }
        self.log(Record::Unlink { path }, false)
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        noreplace: bool,
    ) -> WResult<()> {
        let (from, to, dropped) = {
            let mut ns = self.ns.lock();
            let from = ns.child_path(parent, name).unwrap_or_default();
            let to = ns.child_path(newparent, newname).unwrap_or_default();
            let victim_spool = ns
                .lookup(newparent, newname)
                .ok()
                .and_then(|i| ns.get(i).ok())
                .and_then(|i| i.spool.clone());
            let dropped = ns.rename(parent, name, newparent, newname, noreplace, now())?;
            (from, to, dropped.and(victim_spool))
        };
        if let Some(s) = dropped {
            self.drop_spool(&s);
        }
        // Editors and rsync rename a closed temp file over the real one: make
        // the new name as durable as the close was.
        self.log(Record::Rename { from, to }, true)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<i64>,
        mtime: Option<i64>,
    ) -> WResult<WInode> {
        if let Some(sz) = size {
            self.truncate(ino, sz)?;
        }
        let t = now();
        let (path, snapshot) = {
            let mut ns = self.ns.lock();
            let path = ns.path(ino);
            let i = ns.get_mut(ino)?;
            if let Some(m) = mode {
                i.mode = m & 0o7777;
            }
            if let Some(u) = uid {
                i.uid = u;
                i.user.clear();
            }
            if let Some(g) = gid {
                i.gid = g;
                i.group.clear();
            }
            if let Some(a) = atime {
                i.atime = a;
            }
            if let Some(m) = mtime {
                i.mtime = m;
            }
            i.ctime = t;
            (path, i.clone())
        };
        if let Some(path) = path {
            let r = Record::SetAttr {
                path,
                mode,
                uid,
                gid,
                atime,
                mtime,
                ctime: t,
            };
            self.log(r, false)?;
        }
        Ok(snapshot)
    }

    pub fn set_xattrs(
        &self,
        ino: u64,
        f: impl FnOnce(&mut Vec<Xattr>) -> WResult<()>,
    ) -> WResult<()> {
        let (path, xattrs) = {
            let mut ns = self.ns.lock();
            let path = ns.path(ino);
            let i = ns.get_mut(ino)?;
            f(&mut i.xattrs)?;
            i.xattrs.sort_by(|a, b| a.name.cmp(&b.name));
            i.ctime = now();
            (path, i.xattrs.clone())
        };
        match path {
            Some(path) => self.log(Record::SetXattrs { path, xattrs }, false),
            None => Ok(()),
        }
    }

    fn spool_path(&self, name: &str) -> PathBuf {
        self.opts.spool_dir.join(name)
    }

    fn spool_file(&self, name: &str) -> WResult<Arc<File>> {
        if let Some(f) = self.spool_files.lock().get(name) {
            return Ok(f.clone());
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.spool_path(name))
            .map_err(|e| WError::Io(format!("spool: {e}")))?;
        let f = Arc::new(f);
        self.spool_files.lock().insert(name.to_string(), f.clone());
        Ok(f)
    }

    fn drop_spool(&self, name: &str) {
        self.spool_files.lock().remove(name);
        let p = self.spool_path(name);
        if let Ok(m) = std::fs::metadata(&p) {
            self.spool_bytes.fetch_sub(
                m.len().min(self.spool_bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
        let _ = std::fs::remove_file(p);
    }

    /// Gives `ino` a spool file holding its current bytes (copy on first write).
    fn ensure_spool(&self, ino: u64, truncate: bool) -> WResult<String> {
        let (existing, content) = {
            let ns = self.ns.lock();
            let i = ns.get(ino)?;
            if i.kind != NodeKind::File {
                return Err(NsError::IsDir.into());
            }
            (i.spool.clone(), i.content.clone())
        };
        if let Some(s) = existing {
            return Ok(s);
        }
        let name = format!("{ino}-{}", self.spool_seq.fetch_add(1, Ordering::Relaxed));
        let f = self.spool_file(&name)?;
        if !truncate {
            let mut off = 0u64;
            for c in &content {
                let d = self.cache.get(&c.id)?;
                f.write_all_at(&d, off)
                    .map_err(|e| WError::Io(format!("spool: {e}")))?;
                off += d.len() as u64;
            }
            self.spool_bytes.fetch_add(off, Ordering::Relaxed);
        }
        let mut ns = self.ns.lock();
        let i = ns.get_mut(ino)?;
        if let Some(s) = &i.spool {
            // Another thread won the race.
            let s = s.clone();
            drop(ns);
            self.drop_spool(&name);
            return Ok(s);
        }
        i.spool = Some(name.clone());
        Ok(name)
    }

    pub fn open(&self, ino: u64, write: bool, truncate: bool) -> WResult<u64> {
        if ino == COMMIT_INO {
            // Opening the control file commits; reads then serve the id.
            let id = self.commit()?;
            let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
            let text = Some(format!("{}\n", id.to_hex()).into_bytes());
            self.handles.lock().insert(
                fh,
                OpenFile {
                    ino,
                    write: false,
                    text,
                },
            );
            return Ok(fh);
        }
        if write {
            let reopened_clean = self
                .ns
                .lock()
                .get(ino)
                .map(|i| i.spool.is_some() && !i.dirty)?;
            if reopened_clean {
                // The spool is about to change: make the chunks its last close
                // stored durable first, so the journal never needs the old bytes.
                self.packer.flush()?;
            }
            let spool = self.ensure_spool(ino, truncate)?;
            if truncate {
                self.truncate_spool(ino, &spool, 0)?;
            }
        }
        self.ns.lock().get_mut(ino)?.open_handles += 1;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(
            fh,
            OpenFile {
                ino,
                write,
                text: None,
            },
        );
        Ok(fh)
    }

    fn truncate_spool(&self, ino: u64, spool: &str, size: u64) -> WResult<()> {
        let f = self.spool_file(spool)?;
        let old = f.metadata().map(|m| m.len()).unwrap_or(0);
        f.set_len(size)
            .map_err(|e| WError::Io(format!("spool: {e}")))?;
        if size > old {
            self.spool_bytes.fetch_add(size - old, Ordering::Relaxed);
        } else {
            self.spool_bytes.fetch_sub(
                (old - size).min(self.spool_bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
        let mut ns = self.ns.lock();
        let i = ns.get_mut(ino)?;
        i.size = size;
        i.dirty = true;
        i.generation += 1;
        i.mtime = now();
        i.ctime = i.mtime;
        Ok(())
    }

    fn truncate(&self, ino: u64, size: u64) -> WResult<()> {
        let spool = self.ensure_spool(ino, size == 0)?;
        self.truncate_spool(ino, &spool, size)?;
        if self.ns.lock().get(ino)?.open_handles == 0 {
            self.store_content(ino)?;
            self.spool_files.lock().remove(&spool);
        }
        Ok(())
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> WResult<Vec<u8>> {
        let ino = {
            let handles = self.handles.lock();
            let h = handles.get(&fh).ok_or(WError::BadHandle)?;
            if let Some(t) = &h.text {
                let from = (offset as usize).min(t.len());
                let to = (from + size as usize).min(t.len());
                return Ok(t[from..to].to_vec());
            }
            h.ino
        };
        let (spool, content, file_size) = {
            let ns = self.ns.lock();
            let i = ns.get(ino)?;
            (i.spool.clone(), i.content.clone(), i.size)
        };
        if offset >= file_size {
            return Ok(Vec::new());
        }
        let len = (size as u64).min(file_size - offset) as usize;
        let mut out = vec![0u8; len];
        if let Some(s) = spool {
            let f = self.spool_file(&s)?;
            let mut done = 0;
            while done < len {
                match f.read_at(&mut out[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) => return Err(WError::Io(format!("spool: {e}"))),
                }
            }
            return Ok(out);
        }
        let mut start = 0u64;
        let mut filled = 0usize;
        for c in content {
            let end = start + c.size as u64;
            if end > offset && start < offset + len as u64 {
                let d = self.cache.get(&c.id)?;
                let from = offset.max(start) - start;
                let to = ((offset + len as u64).min(end) - start) as usize;
                let n = to - from as usize;
                out[filled..filled + n].copy_from_slice(&d[from as usize..to]);
                filled += n;
            }
            start = end;
        }
        Ok(out)
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> WResult<u32> {
        let ino = match self.handles.lock().get(&fh) {
            Some(h) if h.write => h.ino,
            _ => return Err(WError::BadHandle),
        };
        if self.spool_bytes.load(Ordering::Relaxed) > self.opts.spool_cap {
            self.drain_spool()?;
            if self.spool_bytes.load(Ordering::Relaxed) > self.opts.spool_cap {
                return Err(WError::NoSpace);
            }
        }
        let spool = self.ensure_spool(ino, false)?;
        let f = self.spool_file(&spool)?;
        f.write_all_at(data, offset).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                WError::NoSpace
            } else {
                WError::Io(format!("spool: {e}"))
            }
        })?;
        let end = offset + data.len() as u64;
        let mut ns = self.ns.lock();
        let i = ns.get_mut(ino)?;
        if end > i.size {
            self.spool_bytes.fetch_add(end - i.size, Ordering::Relaxed);
            i.size = end;
        }
        i.dirty = true;
        i.generation += 1;
        i.mtime = now();
        i.ctime = i.mtime;
        Ok(data.len() as u32)
    }

    /// On close (flush) and fsync: store the file's bytes through the pipeline
    /// and journal them. An error here reaches the writer's `close()`.
    pub fn flush(&self, fh: u64) -> WResult<()> {
        let Some(ino) = self
            .handles
            .lock()
            .get(&fh)
            .filter(|h| h.write)
            .map(|h| h.ino)
        else {
            return Ok(());
        };
        self.store_content(ino)
    }

    fn store_content(&self, ino: u64) -> WResult<()> {
        let (spool, generation, path, mtime) = {
            let ns = self.ns.lock();
            let i = ns.get(ino)?;
            if !i.dirty {
                return Ok(());
            }
            (
                i.spool
                    .clone()
                    .ok_or(WError::Io("dirty file without spool".into()))?,
                i.generation,
                ns.path(ino),
                i.mtime,
            )
        };
        let f = self.spool_file(&spool)?;
        f.sync_data()
            .map_err(|e| WError::Io(format!("spool: {e}")))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        let reader = std::io::BufReader::with_capacity(1 << 20, SpoolReader { f: &f, pos: 0 });
        let chunks = self.packer.save_stream(reader, len)?;
        let size: u64 = chunks.iter().map(|c| c.size as u64).sum();
        {
            let mut ns = self.ns.lock();
            let i = ns.get_mut(ino)?;
            i.content = chunks.clone();
            if i.generation == generation {
                i.dirty = false;
            }
        }
        if let Some(path) = path {
            let r = Record::Content {
                path,
                size,
                mtime,
                chunks,
                spool: Some(spool),
            };
            self.log(r, true)?;
        }
        Ok(())
    }

    pub fn release(&self, fh: u64) {
        let Some(h) = self.handles.lock().remove(&fh) else {
            return;
        };
        if h.text.is_some() {
            return;
        }
        let mut ns = self.ns.lock();
        if let Ok(i) = ns.get_mut(h.ino) {
            i.open_handles = i.open_handles.saturating_sub(1);
            if i.open_handles == 0 {
                // Close the spool's descriptor with the last handle: a copy of
                // 80k files must not hold 80k descriptors.
                if let Some(s) = &i.spool {
                    self.spool_files.lock().remove(s);
                }
            }
            if i.open_handles == 0 && i.links.is_empty() {
                let spool = i.spool.clone();
                ns.inodes.remove(&h.ino);
                drop(ns);
                if let Some(s) = spool {
                    self.drop_spool(&s);
                }
            }
        }
    }

    /// Makes every stored chunk durable, then frees the spool of closed files.
    fn drain_spool(&self) -> WResult<()> {
        self.packer.flush()?;
        let freed: Vec<String> = {
            let mut ns = self.ns.lock();
            ns.inodes
                .values_mut()
                .filter(|i| !i.dirty && i.open_handles == 0)
                .filter_map(|i| i.spool.take())
                .collect()
        };
        for s in freed {
            self.drop_spool(&s);
        }
        Ok(())
    }

    pub fn has_changes(&self) -> bool {
        self.changed.load(Ordering::Relaxed)
    }

    pub fn last_commit(&self) -> Option<SnapshotId> {
        *self.last_commit.lock()
    }

    /// Writes a snapshot of everything closed so far: packs → index → trees →
    /// snapshot; then starts a new journal on top of it.
    pub fn commit(&self) -> WResult<SnapshotId> {
        let _g = self.commit_lock.lock();
        let started = std::time::Instant::now();
        self.packer.flush()?;
        let mut summary = Summary::default();
        let root = {
            let ns = self.ns.lock();
            self.build_tree(&ns, ROOT, &mut summary)?
        };
        self.packer.flush()?;
        let st = &self.packer.stats;
        summary.new_bytes = st.new_bytes.load(Ordering::Relaxed);
        summary.stored_bytes = st.stored_bytes.load(Ordering::Relaxed);
        summary.new_blobs = st.new_blobs.load(Ordering::Relaxed);
        summary.duration_ns = started.elapsed().as_nanos() as u64;
        let base = *self.base.lock();
        let snap = Snapshot {
            version: 1,
            time: now(),
            host: self.opts.host.clone(),
            user: crate::util::username(),
            paths: vec![b"/".to_vec()],
            tags: self.opts.tags.clone(),
            tree: root,
            parent: base,
            summary,
        };
        let id = self.repo.save_snapshot(&snap)?;
        let header = Record::Header {
            store_id: self.repo.config().id.clone(),
            base: Some(id),
            host: self.opts.host.clone(),
            tags: self.opts.tags.clone(),
        };
        // Hold the namespace while switching journals so no change falls between.
        let freed: Vec<String> = {
            let mut ns = self.ns.lock();
            *self.journal.lock() = Journal::create(&self.opts.spool_dir.join("journal"), &header)?;
            *self.base.lock() = Some(id);
            self.changed.store(false, Ordering::Relaxed);
            ns.inodes
                .values_mut()
                .filter(|i| !i.dirty && i.open_handles == 0)
                .filter_map(|i| i.spool.take())
                .collect()
        };
        for s in freed {
            self.drop_spool(&s);
        }
        *self.last_commit.lock() = Some(id);
        tracing::info!("committed snapshot {}", id.short());
        Ok(id)
    }

    fn build_tree(&self, ns: &Namespace, dir: u64, sum: &mut Summary) -> WResult<BlobId> {
        let mut nodes = Vec::new();
        for (name, ino) in ns.to_nodes(dir) {
            let i = ns.get(ino)?;
            let subtree = if i.is_dir() {
                sum.dirs += 1;
                Some(self.build_tree(ns, ino, sum)?)
            } else {
                None
            };
            let size = match i.kind {
                NodeKind::File => {
                    sum.files += 1;
                    let s: u64 = i.content.iter().map(|c| c.size as u64).sum();
                    sum.bytes += s;
                    s
                }
                NodeKind::Dir => 0,
                _ => {
                    sum.others += 1;
                    0
                }
            };
            let nlink = if i.is_dir() {
                1
            } else {
                i.links.len().max(1) as u64
            };
            nodes.push(Node {
                name,
                kind: i.kind,
                mode: i.mode,
                uid: i.uid,
                gid: i.gid,
                user: if i.user.is_empty() {
                    self.names.user(i.uid)
                } else {
                    i.user.clone()
                },
                group: if i.group.is_empty() {
                    self.names.group(i.gid)
                } else {
                    i.group.clone()
                },
                size,
                atime: i.atime,
                mtime: i.mtime,
                ctime: i.ctime,
                dev: MOUNT_DEV,
                ino,
                nlink,
                rdev: i.rdev,
                xattrs: i.xattrs.clone(),
                target: i.target.clone(),
                content: if i.kind == NodeKind::File {
                    i.content.clone()
                } else {
                    Vec::new()
                },
                subtree,
            });
        }
        let tree = Tree::new(nodes);
        Ok(self
            .packer
            .save(crate::blob::BlobType::Tree, &tree.encode())?)
    }
}

/// `Read` over a spool file by position, without a shared cursor.
struct SpoolReader<'a> {
    f: &'a File,
    pos: u64,
}

impl std::io::Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.f.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Replays and commits a journal left in `spool` by a mount that did not
/// finish. Returns the snapshot it committed, if there was anything to do.
pub fn recover_dir(repo: &Arc<Repo>, spool: &Path) -> Result<Option<SnapshotId>> {
    let path = spool.join("journal");
    if !path.exists() {
        return Ok(None);
    }
    let records = journal::read(&path)?;
    let Some(Record::Header {
        store_id,
        base,
        host,
        tags,
    }) = records.first().cloned()
    else {
        return Err(Error::corrupt("journal", "no header"));
    };
    if store_id != repo.config().id {
        return Err(Error::InvalidInput(format!(
            "the journal in {} belongs to another store ({})",
            spool.display(),
            &store_id[..8.min(store_id.len())]
        )));
    }
    if records.len() == 1 {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    repo.load_index()?;
    let (tree, time) = match base {
        Some(id) => {
            let s = repo.load_snapshot(&id)?;
            (Some(s.tree), s.time)
        }
        None => (None, now()),
    };
    let mut ns = Namespace::load(repo, tree.map(|t| (t, time)), time)?;
    let packer = Packer::new(repo.clone());
    for r in &records[1..] {
        if let Err(e) = replay(&mut ns, r, spool, &packer, repo) {
            tracing::warn!("journal replay: skipping {r:?}: {e:?}");
        }
    }
    let opts = WritableOptions {
        spool_dir: spool.to_path_buf(),
        spool_cap: u64::MAX,
        host,
        tags,
        cache_bytes: 64 << 20,
    };
    let header = Record::Header {
        store_id,
        base,
        host: opts.host.clone(),
        tags: opts.tags.clone(),
    };
    let fs = WritableFs {
        packer,
        cache: ChunkCache::new(repo.clone(), opts.cache_bytes),
        repo: repo.clone(),
        ns: Mutex::new(ns),
        journal: Mutex::new(Journal::create(&spool.join("journal.recovering"), &header)?),
        base: Mutex::new(base),
        handles: Mutex::new(HashMap::new()),
        spool_files: Mutex::new(HashMap::new()),
        next_fh: AtomicU64::new(1),
        spool_seq: AtomicU64::new(0),
        spool_bytes: AtomicU64::new(0),
        changed: AtomicBool::new(true),
        commit_lock: Mutex::new(()),
        last_commit: Mutex::new(None),
        names: NameCache::default(),
        opts,
    };
    let id = fs
        .commit()
        .map_err(|e| Error::InvalidInput(format!("committing recovered files: {e:?}")))?;
    // The commit wrote a fresh journal; the mount that follows replaces it.
    let _ = std::fs::remove_file(spool.join("journal.recovering"));
    let _ = std::fs::remove_file(&path);
    for e in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        if e.file_name() != "journal" {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(Some(id))
}

fn replay(
    ns: &mut Namespace,
    r: &Record,
    spool: &Path,
    packer: &Packer,
    repo: &Arc<Repo>,
) -> WResult<()> {
    let t = now();
    match r {
        Record::Header { .. } => {}
        Record::Create { path, meta } => {
            let (dir, name) = ns.resolve_parent(path)?;
            ns.create(dir, name, meta)?;
        }
        Record::Link { target, path } => {
            let ino = ns.resolve(target)?;
            let (dir, name) = ns.resolve_parent(path)?;
            ns.link(ino, dir, name, t)?;
        }
        Record::Unlink { path } => {
            let (dir, name) = ns.resolve_parent(path)?;
            let is_dir = ns.get(ns.lookup(dir, name)?)?.is_dir();
            ns.unlink(dir, name, is_dir, t)?;
        }
        Record::Rename { from, to } => {
            let (d1, n1) = ns.resolve_parent(from)?;
            let (d2, n2) = ns.resolve_parent(to)?;
            ns.rename(d1, n1, d2, n2, false, t)?;
        }
        Record::SetAttr {
            path,
            mode,
            uid,
            gid,
            atime,
            mtime,
            ctime,
        } => {
            let i = ns.get_mut(ns.resolve(path)?)?;
            if let Some(m) = mode {
                i.mode = m & 0o7777;
            }
            if let Some(u) = uid {
                i.uid = *u;
                i.user.clear();
            }
            if let Some(g) = gid {
                i.gid = *g;
                i.group.clear();
            }
            if let Some(a) = atime {
                i.atime = *a;
            }
            if let Some(m) = mtime {
                i.mtime = *m;
            }
            i.ctime = *ctime;
        }
        Record::SetXattrs { path, xattrs } => {
            ns.get_mut(ns.resolve(path)?)?.xattrs = xattrs.clone();
        }
        Record::Content {
            path,
            size,
            mtime,
            chunks,
            spool: file,
        } => {
            let ino = ns.resolve(path)?;
            let all_stored = {
                let idx = repo.index().read();
                chunks.iter().all(|c| idx.contains(&c.id))
            };
            let content = if all_stored {
                chunks.clone()
            } else {
                // The packs with these chunks never became durable: store the
                // bytes again from the spool.
                let name = file
                    .as_ref()
                    .ok_or(WError::Io("content lost: no spool file".into()))?;
                let f = File::open(spool.join(name))
                    .map_err(|e| WError::Io(format!("spool {name}: {e}")))?;
                let c = packer.save_stream(std::io::BufReader::new(f), *size)?;
                let total: u64 = c.iter().map(|x| x.size as u64).sum();
                if total != *size {
                    return Err(WError::Io(format!(
                        "spool {name} no longer matches its close"
                    )));
                }
                c
            };
            let i = ns.get_mut(ino)?;
            i.content = content;
            i.size = *size;
            i.mtime = *mtime;
        }
    }
    Ok(())
}
