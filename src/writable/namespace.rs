//! The writable mount's namespace: every inode in memory (the base snapshot is
//! loaded eagerly), with the rules of a POSIX directory tree. Live requests and
//! journal replay go through the same methods, so a replay rebuilds exactly
//! what the live mount showed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::Result;
use crate::format::id::BlobId;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{ChunkRef, Node, NodeKind, Xattr};
use crate::fs_error::{FsError, FsResult};
use crate::repo::Repo;

use super::record::{AttrChange, NewMeta};

pub const ROOT: u64 = 1;

#[derive(Clone, Debug)]
pub struct WInode {
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub rdev: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub xattrs: Vec<Xattr>,
    pub target: Vec<u8>,
    /// Directories: name → inode.
    pub children: BTreeMap<Vec<u8>, u64>,
    /// Every name this inode has: (parent, name). Directories have one.
    pub links: Vec<(u64, Vec<u8>)>,
    /// Content as of the last successful close (or the base).
    pub content: Vec<ChunkRef>,
    pub size: u64,
    /// Spool file holding the current bytes, when there is one.
    pub spool: Option<String>,
    /// The spool has writes no close has stored yet.
    pub dirty: bool,
    /// Bumped by every write or truncate, so a close that raced a write
    /// leaves the file dirty.
    pub generation: u64,
    /// The generation `content` was stored from: a background store of an
    /// older close that finishes late must not replace a newer one.
    pub content_gen: u64,
    /// The generation last journaled and queued for storing: another close
    /// of the same bytes (every close sends a FLUSH, a reader's too) must
    /// not journal and store them again while the background store runs.
    pub queued_gen: u64,
    /// The kernel's references (entries it was given, less those it forgot):
    /// a file that lost its last name lives on while a process may still
    /// read or write it, until the kernel forgets it. (The mount declines
    /// OPEN, so there are no handles to count.)
    pub lookups: u64,
}

impl WInode {
    pub fn new(meta: &NewMeta) -> Self {
        let mut n = Node::bare(Vec::new(), meta.kind);
        n.mode = meta.mode & 0o7777;
        (n.uid, n.gid, n.rdev) = (meta.uid, meta.gid, meta.rdev);
        (n.atime, n.mtime, n.ctime) = (meta.time, meta.time, meta.time);
        n.target = meta.target.clone();
        if meta.kind == NodeKind::Symlink {
            n.size = meta.target.len() as u64;
        }
        Self::from_node(&n)
    }

    fn from_node(n: &Node) -> Self {
        WInode {
            kind: n.kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            user: n.user.clone(),
            group: n.group.clone(),
            rdev: n.rdev,
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
            xattrs: n.xattrs.clone(),
            target: n.target.clone(),
            children: BTreeMap::new(),
            links: Vec::new(),
            content: n.content.clone(),
            size: n.size,
            spool: None,
            dirty: false,
            generation: 0,
            content_gen: 0,
            queued_gen: 0,
            lookups: 0,
        }
    }

    /// This inode as a tree node, without a name or a place in a tree
    /// (the inverse of `from_node`).
    pub fn to_node(&self) -> Node {
        Node {
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            user: self.user.clone(),
            group: self.group.clone(),
            size: self.size,
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            rdev: self.rdev,
            xattrs: self.xattrs.clone(),
            target: self.target.clone(),
            content: self.content.clone(),
            ..Node::bare(Vec::new(), self.kind)
        }
    }

    /// Written since the last close journaled and queued its bytes: what a
    /// close (FLUSH) has to store.
    pub fn unqueued_writes(&self) -> bool {
        self.dirty && self.queued_gen != self.generation
    }

    pub fn is_dir(&self) -> bool {
        self.kind == NodeKind::Dir
    }

    /// chmod/chown/utimens: the one place both live requests and journal
    /// replay change attributes. A new owner drops the stored owner name.
    pub fn set_attrs(&mut self, c: AttrChange, ctime: i64) {
        let AttrChange {
            mode,
            uid,
            gid,
            atime,
            mtime,
        } = c;
        if let Some(m) = mode {
            self.mode = m & 0o7777;
        }
        if let Some(u) = uid {
            self.uid = u;
            self.user.clear();
        }
        if let Some(g) = gid {
            self.gid = g;
            self.group.clear();
        }
        if let Some(a) = atime {
            self.atime = a;
        }
        if let Some(m) = mtime {
            self.mtime = m;
        }
        self.ctime = ctime;
    }
}

pub struct Namespace {
    pub inodes: HashMap<u64, WInode>,
    next: u64,
}

impl Namespace {
    /// An empty root directory, or the tree of a base snapshot (with its
    /// root's recorded metadata, if any).
    pub fn load(repo: &Arc<Repo>, base: Option<&Snapshot>, now: i64) -> Result<Self> {
        let mut ns = Namespace {
            inodes: HashMap::new(),
            next: ROOT + 1,
        };
        let root_meta = NewMeta {
            kind: NodeKind::Dir,
            mode: 0o755,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            time: base.map(|b| b.time).unwrap_or(now),
            rdev: 0,
            target: Vec::new(),
        };
        let root = match base.and_then(|b| b.root.as_ref()) {
            Some(r) => WInode::from_node(r),
            None => WInode::new(&root_meta),
        };
        ns.inodes.insert(ROOT, root);
        if let Some(b) = base {
            let mut hardlinks = HashMap::new();
            ns.load_dir(repo, ROOT, &b.tree, &mut hardlinks)?;
        }
        Ok(ns)
    }

    fn load_dir(
        &mut self,
        repo: &Arc<Repo>,
        dir: u64,
        tree: &BlobId,
        hardlinks: &mut HashMap<(u64, u64), u64>,
    ) -> Result<()> {
        let t = repo.load_tree(tree)?;
        for n in &t.nodes {
            if n.is_hardlinked() {
                if let Some(&ino) = hardlinks.get(&(n.dev, n.ino)) {
                    self.attach(dir, &n.name, ino);
                    continue;
                }
            }
            let ino = self.alloc(WInode::from_node(n));
            if n.is_hardlinked() {
                hardlinks.insert((n.dev, n.ino), ino);
            }
            self.attach(dir, &n.name, ino);
            if let Some(sub) = n.subtree.filter(|_| n.is_dir()) {
                self.load_dir(repo, ino, &sub, hardlinks)?;
            }
        }
        Ok(())
    }

    fn alloc(&mut self, i: WInode) -> u64 {
        let ino = self.next;
        self.next += 1;
        self.inodes.insert(ino, i);
        ino
    }

    fn attach(&mut self, dir: u64, name: &[u8], ino: u64) {
        self.inodes
            .get_mut(&dir)
            .expect("dir exists")
            .children
            .insert(name.to_vec(), ino);
        self.inodes
            .get_mut(&ino)
            .expect("ino exists")
            .links
            .push((dir, name.to_vec()));
    }

    fn detach(&mut self, dir: u64, name: &[u8]) -> Option<u64> {
        let ino = self.inodes.get_mut(&dir)?.children.remove(name)?;
        if let Some(i) = self.inodes.get_mut(&ino) {
            if let Some(pos) = i.links.iter().position(|(p, n)| *p == dir && n == name) {
                i.links.remove(pos);
            }
        }
        Some(ino)
    }

    pub fn get(&self, ino: u64) -> FsResult<&WInode> {
        self.inodes.get(&ino).ok_or(FsError::NotFound)
    }

    pub fn get_mut(&mut self, ino: u64) -> FsResult<&mut WInode> {
        self.inodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<u64> {
        let p = self.get(parent)?;
        if !p.is_dir() {
            return Err(FsError::NotDir);
        }
        p.children.get(name).copied().ok_or(FsError::NotFound)
    }

    /// A current path of `ino` relative to the root (`None` once unlinked).
    pub fn path(&self, ino: u64) -> Option<Vec<u8>> {
        self.joined(ino, None)
    }

    /// The path `name` has (or would have) in directory `parent`.
    pub fn child_path(&self, parent: u64, name: &[u8]) -> Option<Vec<u8>> {
        self.joined(parent, Some(name))
    }

    /// The path of `ino`, then `last` if given. Names are borrowed on the way
    /// up, then joined into one allocation of the right size: this runs on
    /// every create, close, rename and chmod.
    fn joined(&self, ino: u64, last: Option<&[u8]>) -> Option<Vec<u8>> {
        let mut names: Vec<&[u8]> = Vec::with_capacity(16);
        names.extend(last);
        let mut at = ino;
        while at != ROOT {
            if names.len() > self.inodes.len() + 1 {
                return None; // a cycle: never made, but never loop on one
            }
            let (parent, name) = self.inodes.get(&at)?.links.first()?;
            names.push(name);
            at = *parent;
        }
        let len = names.iter().map(|n| n.len() + 1).sum::<usize>();
        let mut p = Vec::with_capacity(len.saturating_sub(1));
        for (k, name) in names.iter().rev().enumerate() {
            if k > 0 {
                p.push(b'/');
            }
            p.extend_from_slice(name);
        }
        Some(p)
    }

    /// Resolves a journal path to (parent, name).
    pub fn resolve_parent<'a>(&self, path: &'a [u8]) -> FsResult<(u64, &'a [u8])> {
        let mut comps: Vec<&[u8]> = path
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        let name = comps.pop().ok_or(FsError::Invalid)?;
        let mut dir = ROOT;
        for c in comps {
            dir = self.lookup(dir, c)?;
        }
        Ok((dir, name))
    }

    pub fn resolve(&self, path: &[u8]) -> FsResult<u64> {
        if path.iter().all(|b| *b == b'/') {
            return Ok(ROOT);
        }
        let (dir, name) = self.resolve_parent(path)?;
        self.lookup(dir, name)
    }

    pub fn create(&mut self, parent: u64, name: &[u8], meta: &NewMeta) -> FsResult<u64> {
        if !crate::format::tree::safe_name(name) {
            return Err(FsError::Invalid);
        }
        match self.lookup(parent, name) {
            Ok(_) => return Err(FsError::Exists),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let ino = self.alloc(WInode::new(meta));
        self.attach(parent, name, ino);
        self.touch_dir(parent, meta.time);
        Ok(ino)
    }

    pub fn link(&mut self, ino: u64, parent: u64, name: &[u8], now: i64) -> FsResult<()> {
        if self.get(ino)?.is_dir() {
            return Err(FsError::IsDir);
        }
        if !crate::format::tree::safe_name(name) {
            return Err(FsError::Invalid);
        }
        if self.lookup(parent, name).is_ok() {
            return Err(FsError::Exists);
        }
        self.attach(parent, name, ino);
        self.get_mut(ino)?.ctime = now;
        self.touch_dir(parent, now);
        Ok(())
    }

    /// Removes a name; `dir` says whether the caller expects a directory
    /// (rmdir) or not (unlink). Returns the inode and whether it is now gone.
    pub fn unlink(
        &mut self,
        parent: u64,
        name: &[u8],
        dir: bool,
        now: i64,
    ) -> FsResult<(u64, bool)> {
        let ino = self.lookup(parent, name)?;
        let i = self.get(ino)?;
        match (dir, i.is_dir()) {
            (true, false) => return Err(FsError::NotDir),
            (false, true) => return Err(FsError::IsDir),
            (true, true) if !i.children.is_empty() => return Err(FsError::NotEmpty),
            _ => {}
        }
        self.detach(parent, name);
        self.touch_dir(parent, now);
        let i = self.get_mut(ino)?;
        i.ctime = now;
        let gone = i.links.is_empty() && i.lookups == 0;
        if gone {
            self.inodes.remove(&ino);
        }
        Ok((ino, gone))
    }

    /// POSIX rename: replaces a non-directory by a non-directory, or an empty
    /// directory by a directory. Returns an inode that lost its last name.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        noreplace: bool,
        now: i64,
    ) -> FsResult<Option<u64>> {
        let ino = self.lookup(parent, name)?;
        if !crate::format::tree::safe_name(newname) {
            return Err(FsError::Invalid);
        }
        if !self.get(newparent)?.is_dir() {
            return Err(FsError::NotDir);
        }
        let moving_dir = self.get(ino)?.is_dir();
        if moving_dir {
            // Not into itself or below itself.
            let mut d = newparent;
            loop {
                if d == ino {
                    return Err(FsError::Invalid);
                }
                if d == ROOT {
                    break;
                }
                d = self.get(d)?.links.first().map(|l| l.0).unwrap_or(ROOT);
            }
        }
        let mut dropped = None;
        if let Ok(existing) = self.lookup(newparent, newname) {
            if existing == ino {
                return Ok(None);
            }
            if noreplace {
                return Err(FsError::Exists);
            }
            let e = self.get(existing)?;
            match (moving_dir, e.is_dir()) {
                (false, true) => return Err(FsError::IsDir),
                (true, false) => return Err(FsError::NotDir),
                (true, true) if !e.children.is_empty() => return Err(FsError::NotEmpty),
                _ => {}
            }
            let (gone_ino, gone) = self.unlink(newparent, newname, moving_dir, now)?;
            if gone {
                dropped = Some(gone_ino);
            }
        }
        self.detach(parent, name);
        self.attach(newparent, newname, ino);
        self.get_mut(ino)?.ctime = now;
        self.touch_dir(parent, now);
        self.touch_dir(newparent, now);
        Ok(dropped)
    }

    fn touch_dir(&mut self, dir: u64, now: i64) {
        if let Some(d) = self.inodes.get_mut(&dir) {
            d.mtime = now;
            d.ctime = now;
        }
    }

    /// Inodes reachable from the root, for building a snapshot.
    pub fn to_nodes(&self, ino: u64) -> Vec<(Vec<u8>, u64)> {
        self.inodes
            .get(&ino)
            .map(|i| i.children.iter().map(|(n, c)| (n.clone(), *c)).collect())
            .unwrap_or_default()
    }
}
