//! What both FUSE shells (read-only and writable) say to the kernel the same
//! way: the errno of each failure, attributes, file types and times, the
//! kernel options every mount asks for, `getxattr`/`listxattr` replies and
//! the `readdir` page loop. The shells
//! keep only their own requests' translation.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileType, INodeNo, InitFlags, KernelConfig, ReplyDirectory, ReplyXattr,
    TimeOrNow,
};

use crate::format::tree::NodeKind;
use crate::fs_error::FsError;
use crate::view::vfs::Attr;

/// What each failure is to the kernel, for both mounts. A store or disk
/// failure is `EIO` whatever its cause: programs take it as a failed read
/// or write and go on or stop (`cp`, `rsync` name the file), where
/// `EAGAIN` or `EINTR` would make some retry in a loop; the log says which
/// it was (an outage, damage, or a local fault).
pub fn errno(e: &FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::Invalid => Errno::EINVAL,
        FsError::NoData => Errno::ENODATA,
        FsError::NoSpace => Errno::ENOSPC,
        FsError::Unavailable(_) | FsError::Damaged(_) | FsError::Io(_) => Errno::EIO,
    }
}

pub fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

/// The kind named by a `mode`'s `S_IFMT` bits (what `mknod` asks for).
pub fn kind_of_mode(mode: u32) -> NodeKind {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => NodeKind::Dir,
        libc::S_IFLNK => NodeKind::Symlink,
        libc::S_IFIFO => NodeKind::Fifo,
        libc::S_IFCHR => NodeKind::CharDevice,
        libc::S_IFBLK => NodeKind::BlockDevice,
        libc::S_IFSOCK => NodeKind::Socket,
        _ => NodeKind::File,
    }
}

/// Nanoseconds since the epoch (negative before it) as a `SystemTime`.
pub fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// A time `setattr` was given, in nanoseconds since the epoch.
pub fn ns_time(t: TimeOrNow) -> i64 {
    match t {
        TimeOrNow::Now => crate::util::now_ns(),
        TimeOrNow::SpecificTime(st) => match st.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i64,
            Err(e) => -(e.duration().as_nanos() as i64),
        },
    }
}

pub fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.ctime),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 1 << 20,
        flags: 0,
    }
}

/// Kernel options every klosetfs mount asks for: big read-ahead, readdirplus.
pub fn tune_kernel(config: &mut KernelConfig) {
    if let Err(max) = config.set_max_readahead(4 << 20) {
        let _ = config.set_max_readahead(max);
    }
    for cap in [
        InitFlags::FUSE_DO_READDIRPLUS,
        InitFlags::FUSE_READDIRPLUS_AUTO,
        InitFlags::FUSE_PARALLEL_DIROPS,
        InitFlags::FUSE_CACHE_SYMLINKS,
    ] {
        let _ = config.add_capabilities(cap);
    }
}

/// Replies to `getxattr`: the size when asked for it, `ERANGE` when the
/// caller's buffer is too small, else the value.
pub fn reply_xattr(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32)
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(value)
    }
}

/// Replies to `listxattr` with NUL-terminated names.
pub fn reply_xattr_names<'a>(reply: ReplyXattr, names: impl Iterator<Item = &'a [u8]>, size: u32) {
    let mut buf = Vec::new();
    for n in names {
        buf.extend_from_slice(n);
        buf.push(0);
    }
    reply_xattr(reply, &buf, size)
}

/// Replies to `readdir` with the entries from `offset` on (entry `i` is at
/// offset `i + 1`, so a reader resumes after the last one it got), as many
/// as fit in the kernel's page.
pub fn reply_dir<N: AsRef<[u8]>>(
    mut reply: ReplyDirectory,
    offset: u64,
    entries: impl Iterator<Item = (u64, NodeKind, N)>,
) {
    for (i, (ino, kind, name)) in entries.enumerate().skip(offset as usize) {
        if reply.add(
            INodeNo(ino),
            i as u64 + 1,
            file_type(kind),
            OsStr::from_bytes(name.as_ref()),
        ) {
            break;
        }
    }
    reply.ok();
}
