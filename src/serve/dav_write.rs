//! WebDAV over a writable session (`serve --writable`): the tree a client
//! sees and changes is the writable namespace, driven through the same
//! [`WritableFs`] API as the FUSE mount. A `PUT`'s body is staged (memory,
//! then an owner-only unnamed file in the spool folder) and handed over
//! whole once it has all arrived ([`WritableFs::put`]): an upload cut off or
//! refused leaves the file as it was. Dead properties (`PROPPATCH`) are kept
//! as `user.dav:` xattrs, so they are in the snapshot too.

use std::sync::Arc;

use axum::http::StatusCode;
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError as DavFsError, FsFuture,
    FsResult as DavFsResult, FsStream, OpenOptions, ReadDirMeta,
};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::format::tree::{NodeKind, Xattr};
use crate::fs_error::FsError;
use crate::writable::journal::NewMeta;
use crate::writable::{AttrChange, Upload, WritableFs};

mod props;
mod upload;
use props::{prop_key, prop_of, PROP_PREFIX};
use upload::{Incoming, Staged};

use super::dav::{blocking, dav_error, entry_stream, Entry, Meta, ReadAt, ReadFile};

tokio::task_local! {
    /// The modification time a request asked for (rclone's `X-OC-Mtime`),
    /// set by the server around the request it came with.
    pub static ASKED_MTIME: Option<i64>;
}

/// Body bytes kept in memory before an upload spills to a file.
const IN_MEMORY: usize = 4 << 20;

/// The writable namespace as a WebDAV file system.
#[derive(Clone)]
pub struct DavWritable {
    fs: Arc<WritableFs>,
    /// Owner of what clients create (WebDAV carries no owners).
    uid: u32,
    gid: u32,
    /// Uploads are handed over one at a time per name (`put` of two bodies
    /// to one file at once would interleave them).
    names: Arc<[parking_lot::Mutex<()>; 64]>,
}

impl DavWritable {
    pub fn new(fs: Arc<WritableFs>) -> Self {
        Self {
            fs,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            names: Arc::new(std::array::from_fn(|_| parking_lot::Mutex::new(()))),
        }
    }

    fn name_lock(&self, parent: u64, name: &[u8]) -> parking_lot::MutexGuard<'_, ()> {
        let h = blake3::Hasher::new()
            .update(&parent.to_le_bytes())
            .update(name)
            .finalize();
        self.names[h.as_bytes()[0] as usize % 64].lock()
    }

    fn ino(&self, path: &[u8]) -> DavFsResult<u64> {
        checked(path)?;
        self.fs.resolve(path).map_err(dav_error)
    }

    fn parent(&self, path: &[u8]) -> DavFsResult<(u64, Vec<u8>)> {
        checked(path)?;
        self.fs.resolve_parent(path).map_err(dav_error)
    }

    /// Runs `f` for `path` on the writable core, off the async threads.
    fn on<T: Send + 'static>(
        &self,
        path: &DavPath,
        f: impl FnOnce(&DavWritable, &[u8]) -> DavFsResult<T> + Send + 'static,
    ) -> FsFuture<'static, T> {
        let me = self.clone();
        let p = path.as_bytes().to_vec();
        blocking(move || f(&me, &p)).boxed()
    }

    /// Sets the times a `PROPPATCH` asked for (dav-server does not apply
    /// them; the drive reads them from the request).
    pub fn set_times(
        &self,
        path: &[u8],
        atime: Option<i64>,
        mtime: Option<i64>,
    ) -> DavFsResult<()> {
        let ino = self.ino(path)?;
        self.fs
            .setattr(ino, AttrChange::times(atime, mtime), None)
            .map_err(dav_error)
    }

    /// A file's or folder's metadata. Links, devices and fifos (from a
    /// base snapshot) have no WebDAV form: the FUSE mount or `restore`
    /// show them.
    fn meta(&self, ino: u64) -> DavFsResult<Meta> {
        self.fs
            .with_inode(ino, |i| match i.kind {
                NodeKind::File | NodeKind::Dir => Ok(Meta {
                    dir: i.kind == NodeKind::Dir,
                    len: if i.kind == NodeKind::File { i.size } else { 0 },
                    mtime: i.mtime,
                }),
                _ => Err(DavFsError::NotFound),
            })
            .map_err(dav_error)?
    }
}

/// Refuses `.`, `..`, NUL and over-long names: a request only walks down.
fn checked(path: &[u8]) -> DavFsResult<()> {
    super::paths::components(path)
        .map(|_| ())
        .map_err(|_| DavFsError::Forbidden)
}

impl DavFileSystem for DavWritable {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: OpenOptions,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        let me = self.clone();
        let p = path.as_bytes().to_vec();
        let mtime = ASKED_MTIME.try_with(|t| *t).ok().flatten();
        async move {
            if !(options.write || options.append || options.truncate || options.create) {
                let f = blocking(move || {
                    let ino = me.ino(&p)?;
                    let meta = me.meta(ino)?;
                    if meta.dir {
                        return Err(DavFsError::Forbidden);
                    }
                    let fs = me.fs.clone();
                    let read: ReadAt =
                        Arc::new(move |pos, count| fs.read(ino, pos, count).map_err(dav_error));
                    Ok(ReadFile::new(read, meta))
                })
                .await?;
                return Ok(Box::new(f) as Box<dyn DavFile>);
            }
            let f = blocking(move || me.start_upload(p, options, mtime)).await?;
            Ok(Box::new(f) as Box<dyn DavFile>)
        }
        .boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        _meta: ReadDirMeta,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        self.on(path, |me, p| {
            let (_, children) = me.fs.readdir(me.ino(p)?).map_err(dav_error)?;
            Ok(entry_stream(
                children
                    .into_iter()
                    .filter_map(|(ino, _, name)| me.meta(ino).ok().map(|meta| Entry { name, meta }))
                    .collect(),
            ))
        })
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        self.on(path, |me, p| {
            Ok(Box::new(me.meta(me.ino(p)?)?) as Box<dyn DavMetaData>)
        })
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        self.on(path, |me, p| {
            let (parent, name) = me.parent(p)?;
            let meta = NewMeta {
                kind: NodeKind::Dir,
                mode: 0o755,
                uid: me.uid,
                gid: me.gid,
                time: crate::util::now_ns(),
                rdev: 0,
                target: Vec::new(),
            };
            me.fs
                .create(parent, &name, meta)
                .map(|_| ())
                .map_err(dav_error)
        })
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        self.on(path, |me, p| {
            let (parent, name) = me.parent(p)?;
            me.fs.unlink(parent, &name, true).map_err(dav_error)
        })
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        self.on(path, |me, p| {
            let (parent, name) = me.parent(p)?;
            me.fs.unlink(parent, &name, false).map_err(dav_error)
        })
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        let me = self.clone();
        let (f, t) = (from.as_bytes().to_vec(), to.as_bytes().to_vec());
        blocking(move || {
            let (fp, fname) = me.parent(&f)?;
            let (tp, tname) = me.parent(&t)?;
            me.fs
                .rename(fp, &fname, tp, &tname, false)
                .map_err(dav_error)
        })
        .boxed()
    }

    /// A file's copy (folders are copied by the server, one `create_dir`
    /// and one `copy` per entry): its bytes, mtime and dead properties.
    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        let me = self.clone();
        let (f, t) = (from.as_bytes().to_vec(), to.as_bytes().to_vec());
        blocking(move || me.copy_file(&f, &t)).boxed()
    }

    fn have_props<'a>(&'a self, _path: &'a DavPath) -> BoxFuture<'a, bool> {
        futures_util::future::ready(true).boxed()
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        self.on(path, |me, p| me.patch(p, patch))
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, do_content: bool) -> FsFuture<'a, Vec<DavProp>> {
        self.on(path, move |me, p| {
            let xs = me
                .fs
                .with_inode(me.ino(p)?, |i| i.xattrs.clone())
                .map_err(dav_error)?;
            Ok(xs
                .into_iter()
                .filter_map(|x| {
                    let mut prop = prop_of(&x.name)?;
                    prop.xml = do_content.then_some(x.value);
                    Some(prop)
                })
                .collect())
        })
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        self.on(path, move |me, p| {
            let key = prop_key(&prop);
            me.fs
                .with_inode(me.ino(p)?, |i| {
                    i.xattrs
                        .iter()
                        .find(|x| x.name == key)
                        .map(|x| x.value.clone())
                })
                .map_err(dav_error)?
                .ok_or(DavFsError::NotFound)
        })
    }
}

impl DavWritable {
    /// Stages what `from` holds and puts it at `to`, with its mtime and
    /// dead properties.
    fn copy_file(&self, from: &[u8], to: &[u8]) -> DavFsResult<()> {
        let src = self.ino(from)?;
        let meta = self.meta(src)?;
        if meta.dir {
            return Err(DavFsError::Forbidden);
        }
        let props: Vec<Xattr> = self
            .fs
            .with_inode(src, |i| {
                i.xattrs
                    .iter()
                    .filter(|x| x.name.starts_with(PROP_PREFIX))
                    .cloned()
                    .collect()
            })
            .map_err(dav_error)?;
        let mut staged = Staged::default();
        let mut at = 0u64;
        while at < meta.len {
            let n = (meta.len - at).min(1 << 20) as u32;
            let b = self.fs.read(src, at, n).map_err(dav_error)?;
            if b.is_empty() {
                break;
            }
            at += b.len() as u64;
            staged.push(&self.fs, &b)?;
        }
        let (parent, name) = self.parent(to)?;
        let how = Upload {
            create: true,
            create_new: false,
            truncate: true,
            offset: 0,
            mtime: Some(meta.mtime),
            mode: 0o644,
            uid: self.uid,
            gid: self.gid,
        };
        let ino = {
            let _one = self.name_lock(parent, &name);
            self.fs
                .put(parent, &name, &how, &mut staged.reader()?)
                .map_err(dav_error)?
        };
        if !props.is_empty() {
            self.fs
                .set_xattrs(ino, |xs| {
                    xs.retain(|x| !x.name.starts_with(PROP_PREFIX));
                    xs.extend(props);
                    Ok(())
                })
                .map_err(dav_error)?;
        }
        Ok(())
    }

    /// Checks what an open for writing may do, before any byte comes.
    fn start_upload(
        &self,
        p: Vec<u8>,
        o: OpenOptions,
        mtime: Option<i64>,
    ) -> DavFsResult<Incoming> {
        let (parent, name) = self.parent(&p)?;
        let exists = match self.fs.lookup(parent, &name) {
            Ok(ino) => {
                if self.meta(ino)?.dir {
                    return Err(DavFsError::Forbidden);
                }
                true
            }
            Err(FsError::NotFound) => false,
            Err(e) => return Err(dav_error(e)),
        };
        if exists && o.create_new {
            return Err(DavFsError::Exists);
        }
        if !exists && !o.create && !o.create_new {
            return Err(DavFsError::NotFound);
        }
        let how = Upload {
            create: o.create || o.create_new,
            create_new: o.create_new,
            truncate: o.truncate,
            offset: 0,
            mtime,
            mode: 0o644,
            uid: self.uid,
            gid: self.gid,
        };
        // LOCK of an unmapped name opens it to create it and writes
        // nothing (a "lock-null" resource, RFC 4918 §7.3): it becomes an
        // empty file now. A PUT always says how long its body is or truncates.
        if !exists && !o.truncate && o.size.is_none() && !o.append {
            let _one = self.name_lock(parent, &name);
            self.fs
                .put(parent, &name, &how, &mut std::io::empty())
                .map_err(dav_error)?;
        }
        Ok(Incoming {
            dav: self.clone(),
            parent,
            name,
            how,
            expected: o.size,
            append: o.append,
            staged: Staged::default(),
            written: 0,
        })
    }
}
