//! The FUSE floor for the writable-mount benchmarks: a minimal in-memory
//! filesystem on the same `fuser`, mount options and kernel settings as
//! klosetfs's writable mount, keeping only what the kernel needs (attributes, names, bytes,
//! xattrs). Whatever a copy into it costs is what FUSE itself costs; the
//! writable mount's time above it is klosetfs's own work.
//!
//! `cargo run --release --example memfs -- MOUNTPOINT [--prefill DIR]`
//! serves until unmounted; `--prefill` loads a tree first (the floor for an
//! rsync onto a `--base` mount). It prints the requests it answered, by kind,
//! when it exits.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;

/// The same entry/attribute lifetime as the writable mount.
const TTL: Duration = Duration::from_secs(1);

struct Node {
    attr: FileAttr,
    data: Vec<u8>,
    target: Vec<u8>,
    children: BTreeMap<Vec<u8>, u64>,
    parent: u64,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

struct State {
    nodes: HashMap<u64, Node>,
    next: u64,
}

/// Requests answered, by kind (printed at exit).
#[derive(Default)]
struct Counts(Mutex<BTreeMap<&'static str, u64>>);

impl Counts {
    fn add(&self, what: &'static str) {
        *self.0.lock().entry(what).or_default() += 1;
    }
}

struct MemFs {
    st: Mutex<State>,
    counts: std::sync::Arc<Counts>,
    fh: AtomicU64,
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn new_attr(ino: u64, kind: FileType, perm: u32, uid: u32, gid: u32, rdev: u32) -> FileAttr {
    let t = now();
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind,
        perm: (perm & 0o7777) as u16,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid,
        gid,
        rdev,
        blksize: 4096,
        flags: 0,
    }
}

fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::Now => now(),
        TimeOrNow::SpecificTime(t) => t,
    }
}

impl State {
    fn add(&mut self, parent: u64, name: &[u8], mut node: Node) -> Result<u64, Errno> {
        let p = self.nodes.get(&parent).ok_or(Errno::ENOENT)?;
        if p.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        node.attr.ino = INodeNo(ino);
        node.parent = parent;
        self.nodes.insert(ino, node);
        self.nodes
            .get_mut(&parent)
            .expect("checked")
            .children
            .insert(name.to_vec(), ino);
        Ok(ino)
    }

    /// Drops one name of `ino`, and the inode with its last name.
    fn drop_name(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.attr.nlink = n.attr.nlink.saturating_sub(1);
            if n.attr.nlink == 0 || n.attr.kind == FileType::Directory {
                self.nodes.remove(&ino);
            }
        }
    }
}

impl MemFs {
    fn new() -> Self {
        let mut nodes = HashMap::new();
        let root = Node {
            attr: new_attr(1, FileType::Directory, 0o755, 0, 0, 0),
            data: Vec::new(),
            target: Vec::new(),
            children: BTreeMap::new(),
            parent: 1,
            xattrs: BTreeMap::new(),
        };
        nodes.insert(1, root);
        MemFs {
            st: Mutex::new(State { nodes, next: 2 }),
            counts: Default::default(),
            fh: AtomicU64::new(1),
        }
    }

    /// Loads `dir` into the root, as a base for an rsync onto it.
    fn prefill(&self, dir: &Path) -> std::io::Result<()> {
        let mut st = self.st.lock();
        let mut links: HashMap<(u64, u64), u64> = HashMap::new();
        let mut todo: Vec<(PathBuf, u64)> = vec![(dir.to_path_buf(), 1)];
        while let Some((d, parent)) = todo.pop() {
            for e in std::fs::read_dir(&d)? {
                let e = e?;
                let m = e.path().symlink_metadata()?;
                if m.nlink() > 1 && !m.is_dir() {
                    if let Some(&ino) = links.get(&(m.dev(), m.ino())) {
                        st.nodes.get_mut(&ino).expect("added").attr.nlink += 1;
                        st.nodes
                            .get_mut(&parent)
                            .expect("a directory")
                            .children
                            .insert(e.file_name().as_bytes().to_vec(), ino);
                        continue;
                    }
                }
                let ft = m.file_type();
                let mut attr = new_attr(0, kind_of(m.mode()), m.mode(), m.uid(), m.gid(), 0);
                attr.rdev = m.rdev() as u32;
                attr.size = m.len();
                attr.blocks = m.len().div_ceil(512);
                let at = |s: i64, ns: i64| UNIX_EPOCH + Duration::new(s.max(0) as u64, ns as u32);
                attr.mtime = at(m.mtime(), m.mtime_nsec());
                attr.atime = at(m.atime(), m.atime_nsec());
                let mut node = Node {
                    attr,
                    data: Vec::new(),
                    target: Vec::new(),
                    children: BTreeMap::new(),
                    parent,
                    xattrs: BTreeMap::new(),
                };
                if ft.is_file() {
                    node.data = std::fs::read(e.path())?;
                } else if ft.is_symlink() {
                    node.target = std::fs::read_link(e.path())?
                        .as_os_str()
                        .as_bytes()
                        .to_vec();
                } else if !(ft.is_dir()
                    || ft.is_fifo()
                    || ft.is_char_device()
                    || ft.is_block_device()
                    || ft.is_socket())
                {
                    continue;
                }
                let ino = st
                    .add(parent, e.file_name().as_bytes(), node)
                    .map_err(|e| std::io::Error::from_raw_os_error(e.code()))?;
                if m.nlink() > 1 && !m.is_dir() {
                    links.insert((m.dev(), m.ino()), ino);
                }
                if ft.is_dir() {
                    todo.push((e.path(), ino));
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        target: &[u8],
    ) -> Result<FileAttr, Errno> {
        let mut attr = new_attr(0, kind_of(mode), mode & !umask, req.uid(), req.gid(), rdev);
        if attr.kind == FileType::Symlink {
            attr.size = target.len() as u64;
        }
        let node = Node {
            attr,
            data: Vec::new(),
            target: target.to_vec(),
            children: BTreeMap::new(),
            parent: parent.0,
            xattrs: BTreeMap::new(),
        };
        let mut st = self.st.lock();
        let ino = st.add(parent.0, name.as_bytes(), node)?;
        Ok(st.nodes[&ino].attr)
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        self.st
            .lock()
            .nodes
            .get(&ino)
            .map(|n| n.attr)
            .ok_or(Errno::ENOENT)
    }
}

impl Filesystem for MemFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        klosetfs::mount::writable::tune_writable_kernel(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.counts.add("lookup");
        let st = self.st.lock();
        let found = st
            .nodes
            .get(&parent.0)
            .and_then(|p| p.children.get(name.as_bytes()))
            .and_then(|c| st.nodes.get(c));
        match found {
            Some(n) => reply.entry(&TTL, &n.attr, Generation(0)),
            None => {
                // A cached negative entry, as the writable mount answers.
                let mut a = new_attr(0, FileType::RegularFile, 0, 0, 0, 0);
                a.ino = INodeNo(0);
                reply.entry(&TTL, &a, Generation(0))
            }
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.counts.add("getattr");
        match self.attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
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
        self.counts.add("setattr");
        let mut st = self.st.lock();
        let Some(n) = st.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(m) = mode {
            n.attr.perm = (m & 0o7777) as u16;
        }
        if let Some(u) = uid {
            n.attr.uid = u;
        }
        if let Some(g) = gid {
            n.attr.gid = g;
        }
        if let Some(s) = size {
            n.data.resize(s as usize, 0);
            n.attr.size = s;
            n.attr.blocks = s.div_ceil(512);
        }
        if let Some(t) = atime {
            n.attr.atime = time(t);
        }
        if let Some(t) = mtime {
            n.attr.mtime = time(t);
        }
        n.attr.ctime = now();
        reply.attr(&TTL, &n.attr)
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.counts.add("readlink");
        match self.st.lock().nodes.get(&ino.0) {
            Some(n) => reply.data(&n.target),
            None => reply.error(Errno::ENOENT),
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
        self.counts.add("mknod");
        match self.make(req, parent, name, mode, umask, rdev, b"") {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
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
        self.counts.add("mkdir");
        match self.make(req, parent, name, mode | libc::S_IFDIR, umask, 0, b"") {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.counts.add("symlink");
        let t = target.as_os_str().as_bytes();
        match self.make(req, parent, name, libc::S_IFLNK | 0o777, 0, 0, t) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.counts.add("unlink");
        let mut st = self.st.lock();
        let gone = st
            .nodes
            .get_mut(&parent.0)
            .and_then(|p| p.children.remove(name.as_bytes()));
        match gone {
            Some(ino) => {
                st.drop_name(ino);
                reply.ok()
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.counts.add("rmdir");
        let mut st = self.st.lock();
        let Some(&ino) = st
            .nodes
            .get(&parent.0)
            .and_then(|p| p.children.get(name.as_bytes()))
        else {
            return reply.error(Errno::ENOENT);
        };
        if st.nodes.get(&ino).is_some_and(|n| !n.children.is_empty()) {
            return reply.error(Errno::ENOTEMPTY);
        }
        st.nodes
            .get_mut(&parent.0)
            .expect("looked up")
            .children
            .remove(name.as_bytes());
        st.drop_name(ino);
        reply.ok()
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.counts.add("rename");
        let mut st = self.st.lock();
        let Some(ino) = st
            .nodes
            .get_mut(&parent.0)
            .and_then(|p| p.children.remove(name.as_bytes()))
        else {
            return reply.error(Errno::ENOENT);
        };
        let Some(np) = st.nodes.get_mut(&newparent.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(old) = np.children.insert(newname.as_bytes().to_vec(), ino) {
            st.drop_name(old);
        }
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.parent = newparent.0;
        }
        reply.ok()
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.counts.add("link");
        let mut st = self.st.lock();
        let Some(p) = st.nodes.get_mut(&newparent.0) else {
            return reply.error(Errno::ENOENT);
        };
        if p.children.contains_key(newname.as_bytes()) {
            return reply.error(Errno::EEXIST);
        }
        p.children.insert(newname.as_bytes().to_vec(), ino.0);
        match st.nodes.get_mut(&ino.0) {
            Some(n) => {
                n.attr.nlink += 1;
                reply.entry(&TTL, &n.attr, Generation(0))
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.counts.add("open");
        if flags.0 & libc::O_TRUNC != 0 {
            if let Some(n) = self.st.lock().nodes.get_mut(&ino.0) {
                n.data.clear();
                n.attr.size = 0;
            }
        }
        reply.opened(
            FileHandle(self.fh.fetch_add(1, Ordering::Relaxed)),
            FopenFlags::empty(),
        )
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
        self.counts.add("create");
        match self.make(req, parent, name, mode, umask, 0, b"") {
            Ok(a) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(self.fh.fetch_add(1, Ordering::Relaxed)),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
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
        self.counts.add("read");
        let st = self.st.lock();
        let Some(n) = st.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let from = (offset as usize).min(n.data.len());
        let to = (from + size as usize).min(n.data.len());
        reply.data(&n.data[from..to])
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
        self.counts.add("write");
        let mut st = self.st.lock();
        let Some(n) = st.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let end = offset as usize + data.len();
        if n.data.len() < end {
            n.data.resize(end, 0);
        }
        n.data[offset as usize..end].copy_from_slice(data);
        n.attr.size = n.data.len() as u64;
        n.attr.blocks = n.attr.size.div_ceil(512);
        n.attr.mtime = now();
        if wf.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            n.attr.perm &= !0o6000;
        }
        reply.written(data.len() as u32)
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.counts.add("flush");
        reply.ok()
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.counts.add("fsync");
        reply.ok()
    }

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
        self.counts.add("release");
        reply.ok()
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.counts.add("opendir");
        reply.opened(FileHandle(0), FopenFlags::empty())
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.counts.add("readdir");
        let st = self.st.lock();
        let Some(d) = st.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let all = [
            (ino.0, FileType::Directory, &b"."[..]),
            (d.parent, FileType::Directory, &b".."[..]),
        ]
        .into_iter()
        .chain(d.children.iter().map(|(n, c)| {
            (
                *c,
                st.nodes
                    .get(c)
                    .map_or(FileType::RegularFile, |c| c.attr.kind),
                n.as_slice(),
            )
        }));
        for (i, (c, kind, name)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(c), i as u64 + 1, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok()
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        self.counts.add("readdirplus");
        let st = self.st.lock();
        let Some(d) = st.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let all = [(ino.0, &b"."[..]), (d.parent, &b".."[..])]
            .into_iter()
            .chain(d.children.iter().map(|(n, c)| (*c, n.as_slice())));
        for (i, (c, name)) in all.enumerate().skip(offset as usize) {
            let Some(n) = st.nodes.get(&c) else { continue };
            if reply.add(
                INodeNo(c),
                i as u64 + 1,
                OsStr::from_bytes(name),
                &TTL,
                &n.attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok()
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.counts.add("fsyncdir");
        reply.ok()
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.counts.add("statfs");
        reply.statfs(1 << 30, 1 << 29, 1 << 29, 0, 0, 4096, 255, 4096)
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.counts.add("setxattr");
        match self.st.lock().nodes.get_mut(&ino.0) {
            Some(n) => {
                n.xattrs.insert(name.as_bytes().to_vec(), value.to_vec());
                reply.ok()
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.counts.add("getxattr");
        let st = self.st.lock();
        match st.nodes.get(&ino.0).map(|n| n.xattrs.get(name.as_bytes())) {
            Some(Some(v)) => klosetfs::mount::kernel::reply_xattr(reply, v, size),
            Some(None) => reply.error(Errno::ENODATA),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.counts.add("listxattr");
        let st = self.st.lock();
        match st.nodes.get(&ino.0) {
            Some(n) => klosetfs::mount::kernel::reply_xattr_names(
                reply,
                n.xattrs.keys().map(|k| k.as_slice()),
                size,
            ),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.counts.add("removexattr");
        match self
            .st
            .lock()
            .nodes
            .get_mut(&ino.0)
            .map(|n| n.xattrs.remove(name.as_bytes()))
        {
            Some(Some(_)) => reply.ok(),
            Some(None) => reply.error(Errno::ENODATA),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        self.counts.add("access");
        reply.ok()
    }
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (mut mnt, mut prefill, mut threads) = (None, None, 8usize);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--prefill") => prefill = args.next().map(PathBuf::from),
            Some("--threads") => {
                threads = args
                    .next()
                    .and_then(|t| t.to_str()?.parse().ok())
                    .unwrap_or(8)
            }
            _ => mnt = Some(PathBuf::from(a)),
        }
    }
    let Some(mnt) = mnt else {
        eprintln!("usage: memfs MOUNTPOINT [--prefill DIR] [--threads N]");
        std::process::exit(2);
    };
    let fs = MemFs::new();
    if let Some(d) = prefill {
        if let Err(e) = fs.prefill(&d) {
            eprintln!("memfs: prefill {}: {e}", d.display());
            std::process::exit(1);
        }
    }
    let counts = fs.counts.clone();
    let cfg = klosetfs::mount::MountConfig {
        allow_other: false,
        read_only: false,
        threads,
        fsname: "memfs".into(),
        // The floor as a plain FUSE filesystem mounts: the kernel checks.
        checks_in_daemon: false,
    };
    if let Err(e) = klosetfs::mount::serve(
        fs,
        &mnt,
        &cfg,
        |_| {},
        || eprintln!("memfs: mounted on {}", mnt.display()),
    ) {
        eprintln!("memfs: {e}");
        std::process::exit(1);
    }
    let c = counts.0.lock();
    let line: Vec<String> = c.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("memfs requests: {}", line.join(" "));
}
