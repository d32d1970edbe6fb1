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
    INodeNo, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::journal::NewMeta;
use super::namespace::{NsError, WInode};
use super::{WError, WritableFs, COMMIT_INO};
use crate::format::tree::NodeKind;
use crate::mount::kernel::{
    file_attr, kind_of_mode, ns_time, reply_dir, reply_xattr, reply_xattr_names, tune_kernel,
};
use crate::mount::vfs::Attr;

const TTL: Duration = Duration::from_secs(1);

fn errno(e: &WError) -> Errno {
    match e {
        WError::Ns(NsError::NotFound) => Errno::ENOENT,
        WError::Ns(NsError::Exists) => Errno::EEXIST,
        WError::Ns(NsError::NotDir) => Errno::ENOTDIR,
        WError::Ns(NsError::IsDir) => Errno::EISDIR,
        WError::Ns(NsError::NotEmpty) => Errno::ENOTEMPTY,
        WError::Ns(NsError::Invalid) => Errno::EINVAL,
        WError::NoData => Errno::ENODATA,
        WError::BadHandle => Errno::EBADF,
        WError::NoSpace => Errno::ENOSPC,
        WError::Io(msg) => {
            tracing::error!("writable mount: {msg}");
            Errno::EIO
        }
    }
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

fn commit_attr() -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino: INodeNo(COMMIT_INO),
        size: 0,
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

    fn entry(&self, ino: u64, reply: ReplyEntry) {
        if ino == COMMIT_INO {
            return reply.entry(&Duration::ZERO, &commit_attr(), Generation(0));
        }
        match self.fs.with_inode(ino, |i| attr(ino, i)) {
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
        match self.fs.create(parent.0, name.as_bytes(), meta, false) {
            Ok((ino, _)) => self.entry(ino, reply),
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
            Err(WError::Ns(NsError::NotFound)) => {
                let mut a = commit_attr();
                a.ino = INodeNo(0);
                reply.entry(&TTL, &a, Generation(0))
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino.0 == COMMIT_INO {
            return reply.attr(&Duration::ZERO, &commit_attr());
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
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.fs.setattr(
            ino.0,
            mode,
            uid,
            gid,
            size,
            atime.map(ns_time),
            mtime.map(ns_time),
        ) {
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

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        if ino.0 == COMMIT_INO && write {
            return reply.error(Errno::EACCES);
        }
        let trunc = flags.0 & libc::O_TRUNC != 0;
        // A reader's close has nothing to flush (only writers' closes journal
        // bytes): the kernel skips the FLUSH round trip for it.
        let flags = if write {
            FopenFlags::empty()
        } else {
            FopenFlags::FOPEN_NOFLUSH
        };
        match self.fs.open(ino.0, write, trunc) {
            Ok(fh) if ino.0 == COMMIT_INO => {
                reply.opened(FileHandle(fh), flags | FopenFlags::FOPEN_DIRECT_IO)
            }
            Ok(fh) => reply.opened(FileHandle(fh), flags),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let meta = NewMeta {
            kind: NodeKind::File,
            mode: mode & !umask & 0o7777,
            uid: req.uid(),
            gid: req.gid(),
            time: crate::util::now_ns(),
            rdev: 0,
            target: Vec::new(),
        };
        match self.fs.create(parent.0, name.as_bytes(), meta, true) {
            Ok((ino, Some(fh))) => match self.fs.with_inode(ino, |i| attr(ino, i)) {
                Ok(a) => {
                    reply.created(&TTL, &a, Generation(0), FileHandle(fh), FopenFlags::empty())
                }
                Err(e) => reply.error(errno(&e)),
            },
            Ok((_, None)) => reply.error(Errno::EIO),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        wf: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let kill = wf.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        match self.fs.write(fh.0, offset, data, kill) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.fs.flush(fh.0, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs.flush(fh.0, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // A last attempt for writers that never flushed; its error cannot
        // reach close(), so it is only logged.
        if let Err(e) = self.fs.flush(fh.0, false) {
            tracing::error!("release: {e:?}");
        }
        self.fs.release(fh.0);
        reply.ok();
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
        let (blocks, free) = match nix::sys::statvfs::statvfs(&self.fs.opts.spool_dir) {
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
                Err(WError::NoData)
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
