//! The FUSE shell of the writable mount: argument translation and errno
//! mapping only. Write errors are reported from `write`, `flush` (close) and
//! `fsync`, never only from `release`, so `cp` and editors see them.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

use crate::format::tree::NodeKind;
use crate::fs_error::FsError;
use crate::mount::kernel::{
    file_attr, kind_of_mode, ns_time, reply_dir, reply_xattr, reply_xattr_names, tune_kernel,
};
use crate::view::vfs::Attr;
use crate::writable::journal::NewMeta;
use crate::writable::namespace::WInode;
use crate::writable::{is_commit_ino, AttrChange, WritableFs, COMMIT_TEXT_LEN};

const TTL: Duration = Duration::from_secs(1);

/// [`kernel::errno`](crate::mount::kernel::errno), with store and disk
/// failures logged (the writable core returns them without logging).
fn errno(e: &FsError) -> Errno {
    if e.is_failure() {
        tracing::error!("writable mount: {e}");
    }
    crate::mount::kernel::errno(e)
}

fn attr(ino: u64, i: &WInode) -> FileAttr {
    file_attr(&Attr {
        ino,
        kind: i.kind,
        perm: (i.mode & 0o7777) as u16,
        nlink: if i.is_dir() {
            2
        } else {
            i.links.len().max(1) as u32
        },
        uid: i.uid,
        gid: i.gid,
        size: i.size,
        blocks: i.size.div_ceil(512),
        atime: i.atime,
        mtime: i.mtime,
        ctime: i.ctime,
        rdev: i.rdev as u32,
        immutable: false,
    })
}

/// The control file: its size is what reading it gives, so the kernel
/// (which caches its pages: the mount declines OPEN, so no open can ask for
/// direct I/O) reads it to the end.
fn commit_attr(ino: u64) -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino: INodeNo(ino),
        size: COMMIT_TEXT_LEN,
        blocks: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind: FileType::RegularFile,
        perm: 0o444,
        nlink: 1,
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

pub struct WritableFuse {
    fs: Arc<WritableFs>,
}

impl WritableFuse {
    pub fn new(fs: Arc<WritableFs>) -> Self {
        Self { fs }
    }

    /// Replies with an entry, which the kernel counts as a reference to the
    /// inode until it forgets it.
    fn entry(&self, ino: u64, reply: ReplyEntry) {
        if is_commit_ino(ino) {
            return reply.entry(&Duration::ZERO, &commit_attr(ino), Generation(0));
        }
        match self.fs.looked_up(ino, |i| attr(ino, i)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: NodeKind,
        mode: u32,
        umask: u32,
        rdev: u64,
        target: &[u8],
        reply: ReplyEntry,
    ) {
        let meta = NewMeta {
            kind,
            mode: mode & !umask & 0o7777,
            uid: req.uid(),
            gid: req.gid(),
            time: crate::util::now_ns(),
            rdev,
            target: target.to_vec(),
        };
        match self.fs.create(parent.0, name.as_bytes(), meta) {
            Ok(ino) => self.entry(ino, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

/// The kernel options of a writable mount: those of every mount, and
/// `HANDLE_KILLPRIV_V2` — the daemon clears setuid/setgid bits on a write
/// (the kernel flags the writes that must), so the kernel stops asking for
/// `security.capability` before every write and asks once per file.
pub fn tune_writable_kernel(config: &mut KernelConfig) {
    tune_kernel(config);
    let _ = config.add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2);
}

impl Filesystem for WritableFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        tune_writable_kernel(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.fs.lookup(parent.0, name.as_bytes()) {
            Ok(ino) => self.entry(ino, reply),
            // A cached negative entry (node id 0 with a timeout): every change
            // to this tree comes through the kernel, which replaces the entry
            // when the name is created. A tool that stats a name and then
            // creates it (rsync, tar) saves the second lookup.
            Err(FsError::NotFound) => reply.entry(&TTL, &commit_attr(0), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if is_commit_ino(ino.0) {
            return reply.attr(&Duration::ZERO, &commit_attr(ino.0));
        }
        match self.fs.with_inode(ino.0, |i| attr(ino.0, i)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if is_commit_ino(ino.0) {
            return reply.error(Errno::EACCES);
        }
        // The kernel names the file when the change comes through an open
        // one (`ftruncate`; its handle is 0, the mount declining OPEN).
        let change = AttrChange {
            mode,
            uid,
            gid,
            atime: atime.map(ns_time),
            mtime: mtime.map(ns_time),
        };
        match self
            .fs
            .setattr(ino.0, change, size.map(|s| (s, fh.is_some())))
        {
            Ok(()) => self.getattr(_req, ino, None, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.with_inode(ino.0, |i| {
            (i.kind == NodeKind::Symlink).then(|| i.target.clone())
        }) {
            Ok(Some(t)) => reply.data(&t),
            Ok(None) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.make(
            req,
            parent,
            name,
            kind_of_mode(mode),
            mode,
            umask,
            rdev as u64,
            b"",
            reply,
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.make(req, parent, name, NodeKind::Dir, mode, umask, 0, b"", reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.make(
            req,
            parent,
            link_name,
            NodeKind::Symlink,
            0o777,
            0,
            0,
            target.as_os_str().as_bytes(),
            reply,
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.unlink(parent.0, name.as_bytes(), false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.unlink(parent.0, name.as_bytes(), true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            return reply.error(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self.fs.rename(
            parent.0,
            name.as_bytes(),
            newparent.0,
            newname.as_bytes(),
            noreplace,
        ) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.fs.link(ino.0, newparent.0, newname.as_bytes()) {
            Ok(()) => self.entry(ino.0, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Declined, and so is `create`: the kernel then makes new files with
    /// MKNOD, opens files itself and sends no RELEASE — two requests fewer
    /// per copied file. Its FLUSH at every close still comes (handle 0), so
    /// a close still journals the file and reports errors. All the state is
    /// per inode; the kernel keeps the page cache across opens, which only
    /// ever changes through it.
    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(Errno::ENOSYS);
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
        reply.error(Errno::ENOSYS);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let r = if is_commit_ino(ino.0) {
            self.fs.commit_read(ino.0, offset, size)
        } else {
            self.fs.read(ino.0, offset, size)
        };
        match r {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        wf: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if is_commit_ino(ino.0) {
            return reply.error(Errno::EBADF);
        }
        let kill = wf.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        match self.fs.write(ino.0, offset, data, kill) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        if is_commit_ino(ino.0) {
            return reply.ok();
        }
        match self.fs.flush(ino.0, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        if is_commit_ino(ino.0) {
            return reply.ok();
        }
        match self.fs.flush(ino.0, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Only the file whose OPEN taught the kernel that the mount declines
    /// it is released; its FLUSH came before.
    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let (parent, list) = match self.fs.readdir(ino.0) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(&e)),
        };
        let dots = [
            (ino.0, NodeKind::Dir, b".".to_vec()),
            (parent, NodeKind::Dir, b"..".to_vec()),
        ];
        reply_dir(reply, offset, dots.into_iter().chain(list));
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        let (parent, list) = match self.fs.readdir(ino.0) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(&e)),
        };
        let all = [(ino.0, b".".to_vec()), (parent, b"..".to_vec())]
            .into_iter()
            .chain(list.into_iter().map(|(i, _, n)| (i, n)));
        for (i, (child, name)) in all.enumerate().skip(offset as usize) {
            let Ok(a) = self.fs.with_inode(child, |c| attr(child, c)) else {
                continue;
            };
            if reply.add(
                INodeNo(child),
                i as u64 + 1,
                OsStr::from_bytes(&name),
                &TTL,
                &a,
                Generation(0),
            ) {
                break;
            }
            // The kernel takes a reference to every entry but the dots.
            if i >= 2 {
                let _ = self.fs.looked_up(child, |_| ());
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // What editors call after renaming a file into place.
        match self.fs.sync_journal() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (blocks, free) = match nix::sys::statvfs::statvfs(self.fs.spool_dir()) {
            Ok(s) => (
                s.blocks() * s.fragment_size() / 4096,
                s.blocks_available() * s.fragment_size() / 4096,
            ),
            Err(_) => (0, 0),
        };
        reply.statfs(blocks, free, free, 0, 0, 4096, 255, 4096);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match self.fs.set_xattr(ino.0, name.as_bytes(), value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = self.fs.with_inode(ino.0, |i| {
            i.xattrs
                .iter()
                .find(|x| x.name == name.as_bytes())
                .map(|x| x.value.clone())
        });
        match value {
            Ok(Some(v)) => reply_xattr(reply, &v, size),
            Ok(None) => reply.error(Errno::ENODATA),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.with_inode(ino.0, |i| i.xattrs.clone()) {
            Ok(xs) => reply_xattr_names(reply, xs.iter().map(|x| x.name.as_slice()), size),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.as_bytes();
        let r = self.fs.set_xattrs(ino.0, |xs| {
            let before = xs.len();
            xs.retain(|x| x.name != name);
            if xs.len() == before {
                Err(FsError::NoData)
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Sent only where the daemon checks permissions (root's own mount, see
    /// [`crate::mount::writable_checks_in_daemon`]), and the kernel lets only
    /// root in: root's rule — everything but executing a file that has no
    /// execute bit.
    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if is_commit_ino(ino.0) {
            return reply.ok();
        }
        let exec_denied = self.fs.with_inode(ino.0, |i| {
            mask.contains(AccessFlags::X_OK) && !i.is_dir() && i.mode & 0o111 == 0
        });
        match exec_denied {
            Ok(false) => reply.ok(),
            Ok(true) => reply.error(Errno::EACCES),
            Err(e) => reply.error(errno(&e)),
        }
    }
}
