//! The FUSE shell over [`Vfs`]: each method translates arguments, asks the Vfs,
//! maps its error to an errno on purpose, and replies exactly once. Writes get
//! `EROFS`, a missing xattr `ENODATA`, unreadable data `EIO` for that read only.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileHandle, FileType, Filesystem, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;

use crate::format::tree::NodeKind;
use crate::mount::kernel::{
    errno, file_attr, file_type, reply_dir, reply_xattr, reply_xattr_names, tune_kernel,
};
use crate::util::ByteLru;
use crate::view::vfs::{Attr, Vfs};

/// Snapshot content never changes: let the kernel cache it for a day.
const IMMUTABLE_TTL: Duration = Duration::from_secs(86_400);
/// The store's layout changes as snapshots are made.
const LAYOUT_TTL: Duration = Duration::from_secs(1);

fn ttl(a: &Attr) -> Duration {
    if a.immutable {
        IMMUTABLE_TTL
    } else {
        LAYOUT_TTL
    }
}

/// Adds the `readdirplus` entry `name` with attributes `a`, which a reader
/// resumes after at `offset`; true when the reply is full (not added).
fn add_plus(reply: &mut ReplyDirectoryPlus, a: &Attr, offset: usize, name: &[u8]) -> bool {
    reply.add(
        INodeNo(a.ino),
        offset as u64,
        OsStr::from_bytes(name),
        &ttl(a),
        &file_attr(a),
        Generation(0),
    )
}

type Listing = Arc<Vec<(u64, NodeKind, Vec<u8>)>>;

/// Entries of a directory's first `readdirplus` page (with `.` and `..`).
const FIRST_PAGE: usize = 128;

/// Memory for directories being listed: a listing is taken when a reader
/// starts at offset 0 and serves the rest of its pages.
const LISTING_BYTES: usize = 16 << 20;

/// The read-only filesystem.
pub struct ReadOnlyFs {
    vfs: Arc<Vfs>,
    dirs: Mutex<ByteLru<u64, Listing>>,
}

/// Hands the least recently used entries beyond the Vfs's cap back to the
/// kernel, from a thread of its own (a request handler must not wait on the
/// kernel). Stops when the filesystem is gone.
pub fn trim_inodes(vfs: Arc<Vfs>, notifier: fuser::Notifier) {
    std::thread::spawn(move || {
        while Arc::strong_count(&vfs) > 1 {
            std::thread::sleep(std::time::Duration::from_millis(200));
            for (parent, name) in vfs.over_cap() {
                let name = OsStr::from_bytes(&name);
                // ENOENT: the kernel already let it go.
                let _ = notifier.inval_entry(INodeNo(parent), name);
            }
        }
    });
}

impl ReadOnlyFs {
    pub fn new(vfs: Arc<Vfs>) -> Self {
        Self {
            vfs,
            dirs: Mutex::new(ByteLru::new(LISTING_BYTES)),
        }
    }

    fn listing(&self, ino: u64, offset: u64) -> Result<Listing, Errno> {
        if offset > 0 {
            if let Some(l) = self.dirs.lock().get(&ino) {
                return Ok(l.clone());
            }
        }
        let mut list = match (self.vfs.readdir(ino), self.vfs.parent(ino)) {
            (Ok(l), Ok(p)) => {
                let mut v = Vec::with_capacity(l.len() + 2);
                v.push((ino, NodeKind::Dir, b".".to_vec()));
                v.push((p, NodeKind::Dir, b"..".to_vec()));
                v.extend(l);
                v
            }
            (Err(e), _) | (_, Err(e)) => return Err(errno(&e)),
        };
        list.shrink_to_fit();
        let bytes = list.iter().map(|e| 40 + e.2.len()).sum();
        let l = Arc::new(list);
        self.dirs.lock().put(ino, l.clone(), bytes);
        Ok(l)
    }

    /// `readdirplus` of a directory of the store's layout (few entries, which
    /// may change between pages): each child looked up by name.
    fn layout_readdirplus(&self, dir: u64, offset: usize, mut reply: ReplyDirectoryPlus) {
        let list = match self.listing(dir, offset as u64) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        for (i, (ino, _, name)) in list.iter().enumerate().skip(offset) {
            let dots = i < 2;
            let a = if dots {
                self.vfs.getattr(*ino)
            } else {
                self.vfs.lookup(dir, name)
            };
            let a = match a {
                Ok(a) => a,
                Err(e) => return reply.error(errno(&e)),
            };
            if add_plus(&mut reply, &a, i + 1, name) {
                if !dots {
                    self.vfs.forget(a.ino, 1);
                }
                break;
            }
        }
        reply.ok();
    }
}

impl Filesystem for ReadOnlyFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        tune_kernel(config);
        // See `opendir`: re-check a cached listing's mtime when it may be stale.
        let _ = config.add_capabilities(InitFlags::FUSE_AUTO_INVAL_DATA);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.vfs.lookup(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry(&ttl(&a), &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.vfs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.vfs.getattr(ino.0) {
            Ok(a) => reply.attr(&ttl(&a), &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.vfs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Declined: the kernel then stops sending `open` and `release` for
    /// files and opens them itself with the page cache kept (FUSE_NO_OPEN_SUPPORT),
    /// two requests fewer per file for `rsync` out of the mount. Reads come by
    /// inode, and the mount is read-only, so the kernel refuses write opens
    /// (EROFS) before asking.
    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(Errno::ENOSYS)
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.vfs.read(ino.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Declined likewise: nothing to do on close, and after the first ENOSYS
    /// the kernel stops sending it (one request fewer per file).
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS)
    }

    /// Declined like `open`: the kernel then stops sending `opendir` and
    /// `releasedir`, and caches each directory's listing (FOPEN_CACHE_DIR).
    /// Snapshot directories never change; a layout directory's mtime moves
    /// whenever its entries do, and with FUSE_AUTO_INVAL_DATA the kernel
    /// checks it (attributes live 1 s) each time a reader starts over.
    /// Two requests fewer per directory: `find` over a kernel tree 1.13 ->
    /// 0.97 s, and a second walk lists from the kernel's cache.
    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(Errno::ENOSYS)
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        // Entry i of the listing is `.`, `..`, then child i - 2, as in
        // `readdirplus`; a snapshot directory's page comes from its tree.
        let offset = offset as usize;
        let children = match self.vfs.peek_children(ino.0, offset.saturating_sub(2)) {
            Ok(Some(c)) => c,
            Ok(None) => {
                return match self.listing(ino.0, offset as u64) {
                    Ok(list) => reply_dir(
                        reply,
                        offset as u64,
                        list.iter().map(|(ino, kind, name)| (*ino, *kind, name)),
                    ),
                    Err(e) => reply.error(e),
                }
            }
            Err(e) => return reply.error(errno(&e)),
        };
        for i in offset..2 {
            let (at, name) = if i == 0 {
                (Ok(ino.0), ".")
            } else {
                (self.vfs.parent(ino.0), "..")
            };
            let at = match at {
                Ok(at) => at,
                Err(e) => return reply.error(errno(&e)),
            };
            if reply.add(INodeNo(at), i as u64 + 1, FileType::Directory, name) {
                return reply.ok();
            }
        }
        let first = offset.max(2);
        for k in 0..children.len() {
            let (child, kind) = children.ino_kind(k);
            let name = OsStr::from_bytes(children.name(k));
            if reply.add(
                INodeNo(child),
                (first + k + 1) as u64,
                file_type(kind),
                name,
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        dir: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        // The kernel asks for the first page of every directory with
        // attributes, whether its reader wants them or not (`find` does
        // not), and for later pages only when the reader looks entries
        // up. A short first page keeps a walk that only wants names from
        // filling the kernel and this daemon with inodes.
        let end = if offset == 0 { FIRST_PAGE } else { usize::MAX };
        let offset = offset as usize;
        // Entry i of the listing is `.`, `..`, then child i - 2.
        let children = match self.vfs.peek_children(dir.0, offset.saturating_sub(2)) {
            Ok(Some(c)) => c,
            Ok(None) => return self.layout_readdirplus(dir.0, offset, reply),
            Err(e) => return reply.error(errno(&e)),
        };
        for i in offset..2 {
            // `.` and `..` count as no lookup in the kernel.
            let ino = if i == 0 {
                Ok(dir.0)
            } else {
                self.vfs.parent(dir.0)
            };
            let a = match ino.and_then(|ino| self.vfs.getattr(ino)) {
                Ok(a) => a,
                Err(e) => return reply.error(errno(&e)),
            };
            let name: &[u8] = if i == 0 { b"." } else { b".." };
            if add_plus(&mut reply, &a, i + 1, name) {
                return reply.ok();
            }
        }
        let first = offset.max(2);
        let mut sent = Vec::new();
        for k in 0..children.len().min(end.saturating_sub(first)) {
            let a = self.vfs.child_attr(&children, k);
            if add_plus(&mut reply, &a, first + k + 1, children.name(k)) {
                break;
            }
            sent.push(a.ino);
        }
        // Every child sent counts as a lookup in the kernel: register them
        // before the reply can make the kernel forget any.
        self.vfs.hold_children(&children, &sent);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let blocks = self.vfs.store_bytes().div_ceil(4096);
        reply.statfs(blocks, 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.vfs.getxattr(ino.0, name.as_bytes()) {
            Ok(v) => reply_xattr(reply, &v, size),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.vfs.listxattr(ino.0) {
            Ok(names) => reply_xattr_names(reply, names.iter().map(|n| n.as_slice()), size),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            reply.error(Errno::EROFS)
        } else {
            reply.ok()
        }
    }

    // Every change is refused: this is a view of immutable snapshots.
    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }
}
