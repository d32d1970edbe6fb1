//! WebDAV, read-only, under `/dav/`: the whole-store mount's layout
//! (`snapshots/`, `ids/`, `hosts/`, `tags/`, `latest`) for clients without
//! FUSE (Finder, Windows Explorer, davfs2, rclone, cadaver). It is the same
//! [`Vfs`] the read-only mount shows; `dav-server` speaks the protocol. The
//! layout's links (`latest`) are followed and show as folders; inside
//! snapshots, only files and folders are listed (WebDAV has no symlinks,
//! devices or fifos: `restore`, the mount or an archive keep those).

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, FsError as DavFsError, FsFuture,
    FsResult as DavFsResult, FsStream, OpenOptions, ReadDirMeta,
};
use futures_util::FutureExt;

use crate::format::tree::NodeKind;
use crate::fs_error::FsError;
use crate::view::vfs::{Attr, Vfs, ROOT_INO};

/// The store as a WebDAV file system.
#[derive(Clone)]
pub struct DavView {
    vfs: Arc<Vfs>,
}

impl DavView {
    pub fn new(vfs: Arc<Vfs>) -> Self {
        Self { vfs }
    }
}

/// Entries looked up on the way to a path: the Vfs keeps them while held and
/// drops them when given back, as the kernel's FORGET does for the mount.
struct Held {
    vfs: Arc<Vfs>,
    inos: Vec<u64>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for i in self.inos.iter().rev() {
            self.vfs.forget(*i, 1);
        }
    }
}

/// What each failure is to a WebDAV client, for both views (the UI's
/// read-only `/dav/` and `serve --writable`); store and disk failures are
/// logged here, with what they were.
pub(super) fn dav_error(e: FsError) -> DavFsError {
    match e {
        FsError::NotFound | FsError::NotDir | FsError::NoData => DavFsError::NotFound,
        FsError::Exists | FsError::NotEmpty => DavFsError::Exists,
        FsError::IsDir | FsError::Invalid => DavFsError::Forbidden,
        FsError::NoSpace => DavFsError::InsufficientStorage,
        FsError::Unavailable(_) | FsError::Damaged(_) | FsError::Io(_) => {
            tracing::error!("webdav: {e}");
            DavFsError::GeneralFailure
        }
    }
}

/// What a WebDAV client sees of an entry: a folder, or a file's length, and
/// the mtime. Shared with the writable drive (`dav_write.rs`).
#[derive(Clone, Debug)]
pub(super) struct Meta {
    pub dir: bool,
    pub len: u64,
    /// Nanoseconds since the epoch.
    pub mtime: i64,
}

impl Meta {
    fn of(a: &Attr) -> Self {
        Meta {
            dir: a.kind == NodeKind::Dir || a.kind == NodeKind::Symlink,
            len: if a.kind == NodeKind::File { a.size } else { 0 },
            mtime: a.mtime,
        }
    }
}

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.len
    }
    fn modified(&self) -> DavFsResult<SystemTime> {
        let t = if self.mtime >= 0 {
            UNIX_EPOCH + Duration::from_nanos(self.mtime as u64)
        } else {
            UNIX_EPOCH - Duration::from_nanos(self.mtime.unsigned_abs())
        };
        Ok(t)
    }
    fn is_dir(&self) -> bool {
        self.dir
    }
}

/// Links of the layout (not snapshot content) are followed, at most this deep.
const MAX_HOPS: usize = 8;

impl DavView {
    /// Walks `path` from the root, following the layout's links; the entries
    /// passed are held until the result is dropped.
    fn resolve(&self, path: &[u8]) -> DavFsResult<(Held, Attr)> {
        let comps = super::paths::components(path).map_err(|_| DavFsError::Forbidden)?;
        let mut held = Held {
            vfs: self.vfs.clone(),
            inos: Vec::new(),
        };
        let mut queue: std::collections::VecDeque<Vec<u8>> =
            comps.into_iter().map(|c| c.to_vec()).collect();
        let mut dirs = vec![ROOT_INO];
        let mut attr = self.vfs.getattr(ROOT_INO).map_err(dav_error)?;
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            if c == b".." {
                // Only link targets get here (requests are checked above).
                if dirs.len() > 1 {
                    dirs.pop();
                }
                attr = self
                    .vfs
                    .getattr(*dirs.last().expect("root"))
                    .map_err(dav_error)?;
                continue;
            }
            if c == b"." {
                continue;
            }
            let dir = *dirs.last().expect("root");
            let a = self.vfs.lookup(dir, &c).map_err(dav_error)?;
            held.inos.push(a.ino);
            if a.kind == NodeKind::Symlink && !a.immutable {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(DavFsError::LoopDetected);
                }
                let target = self.vfs.readlink(a.ino).map_err(dav_error)?;
                if target.starts_with(b"/") {
                    return Err(DavFsError::NotFound);
                }
                for t in target.split(|b| *b == b'/').rev().filter(|t| !t.is_empty()) {
                    queue.push_front(t.to_vec());
                }
                continue;
            }
            if !queue.is_empty() && a.kind != NodeKind::Dir {
                return Err(DavFsError::NotFound);
            }
            dirs.push(a.ino);
            attr = a;
        }
        match attr.kind {
            NodeKind::File | NodeKind::Dir => Ok((held, attr)),
            _ => Err(DavFsError::NotFound),
        }
    }

    /// The files and folders of the folder at `path` (links of the layout
    /// resolved), with their metadata.
    fn list(&self, path: &[u8]) -> DavFsResult<Vec<Entry>> {
        let (_held, dir) = self.resolve(path)?;
        if dir.kind != NodeKind::Dir {
            return Err(DavFsError::Forbidden);
        }
        let mut out = Vec::new();
        for (_, kind, name) in self.vfs.readdir(dir.ino).map_err(dav_error)? {
            let meta = match kind {
                NodeKind::File | NodeKind::Dir => {
                    let a = self.vfs.lookup(dir.ino, &name).map_err(dav_error)?;
                    self.vfs.forget(a.ino, 1);
                    Meta::of(&a)
                }
                NodeKind::Symlink if !dir.immutable => {
                    match self.resolve(&crate::util::join_path(path, &name)) {
                        Ok((_h, a)) => Meta::of(&a),
                        Err(_) => continue,
                    }
                }
                _ => continue,
            };
            out.push(Entry { name, meta });
        }
        Ok(out)
    }
}

/// Runs work that may wait for the disk or the store off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> DavFsResult<T> + Send + 'static,
) -> DavFsResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| DavFsError::GeneralFailure)?
}

/// A folder's entry, with its metadata.
pub(super) struct Entry {
    pub name: Vec<u8>,
    pub meta: Meta,
}

/// A folder's listing as the server takes it.
pub(super) fn entry_stream(list: Vec<Entry>) -> FsStream<Box<dyn DavDirEntry>> {
    let items: Vec<DavFsResult<Box<dyn DavDirEntry>>> = list
        .into_iter()
        .map(|e| Ok(Box::new(e) as Box<dyn DavDirEntry>))
        .collect();
    Box::pin(futures_util::stream::iter(items))
}

impl DavDirEntry for Entry {
    fn name(&self) -> Vec<u8> {
        self.name.clone()
    }
    fn metadata(&self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let m: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        futures_util::future::ready(Ok(m)).boxed()
    }
}

impl DavFileSystem for DavView {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: OpenOptions,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        let me = self.clone();
        let p = path.as_bytes().to_vec();
        async move {
            if options.write
                || options.append
                || options.create
                || options.create_new
                || options.truncate
            {
                return Err(DavFsError::Forbidden);
            }
            let f = blocking(move || {
                let (held, a) = me.resolve(&p)?;
                if a.kind != NodeKind::File {
                    return Err(DavFsError::Forbidden);
                }
                let (vfs, ino) = (me.vfs.clone(), a.ino);
                // The entries stay held while the file is open.
                let read: ReadAt = Arc::new(move |pos, count| {
                    let _ = &held;
                    vfs.read(ino, pos, count).map_err(dav_error)
                });
                Ok(ReadFile::new(read, Meta::of(&a)))
            })
            .await?;
            Ok(Box::new(f) as Box<dyn DavFile>)
        }
        .boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        _meta: ReadDirMeta,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        let me = self.clone();
        let p = path.as_bytes().to_vec();
        async move {
            let list = blocking(move || me.list(&p)).await?;
            Ok(entry_stream(list))
        }
        .boxed()
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        let me = self.clone();
        let p = path.as_bytes().to_vec();
        async move {
            let m = blocking(move || me.resolve(&p).map(|(_, a)| Meta::of(&a))).await?;
            Ok(Box::new(m) as Box<dyn DavMetaData>)
        }
        .boxed()
    }
}

/// Reads `count` bytes at an offset; it owns what keeps the file reachable.
pub(super) type ReadAt = Arc<dyn Fn(u64, u32) -> DavFsResult<Vec<u8>> + Send + Sync>;

/// A file open for reading, in either view: a position over `read`.
pub(super) struct ReadFile {
    read: ReadAt,
    pos: u64,
    meta: Meta,
}

impl ReadFile {
    pub(super) fn new(read: ReadAt, meta: Meta) -> Self {
        ReadFile { read, pos: 0, meta }
    }
}

impl std::fmt::Debug for ReadFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadFile({} bytes)", self.meta.len)
    }
}

impl DavFile for ReadFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let m: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        futures_util::future::ready(Ok(m)).boxed()
    }
    fn write_buf(&mut self, _: Box<dyn bytes::Buf + Send>) -> FsFuture<'_, ()> {
        futures_util::future::ready(Err(DavFsError::Forbidden)).boxed()
    }
    fn write_bytes(&mut self, _: Bytes) -> FsFuture<'_, ()> {
        futures_util::future::ready(Err(DavFsError::Forbidden)).boxed()
    }
    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        let read = self.read.clone();
        let pos = self.pos;
        let count = count.min(u32::MAX as usize) as u32;
        async move {
            let b = blocking(move || read(pos, count)).await?;
            self.pos += b.len() as u64;
            Ok(Bytes::from(b))
        }
        .boxed()
    }
    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        let len = self.meta.len as i64;
        let at = match pos {
            SeekFrom::Start(n) => n as i64,
            SeekFrom::End(n) => len + n,
            SeekFrom::Current(n) => self.pos as i64 + n,
        };
        let r = if at < 0 {
            Err(DavFsError::GeneralFailure)
        } else {
            self.pos = at as u64;
            Ok(self.pos)
        };
        futures_util::future::ready(r).boxed()
    }
    fn flush(&mut self) -> FsFuture<'_, ()> {
        futures_util::future::ready(Ok(())).boxed()
    }
}
