//! A `PUT` on its way in: the body staged whole (memory, then an unnamed
//! owner-only file in the spool folder) and handed to the writable core at
//! the server's flush, only if it all came.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use axum::body::Bytes;
use dav_server::fs::{
    DavFile, DavMetaData, FsError as DavFsError, FsFuture, FsResult as DavFsResult,
};
use futures_util::FutureExt;

use super::{dav_error, DavWritable, Meta, IN_MEMORY};
use crate::writable::{Upload, WritableFs};

/// An upload's body so far: in memory, then (past [`IN_MEMORY`]) in an
/// unnamed owner-only file in the spool folder, gone with its descriptor.
#[derive(Default)]
pub(super) struct Staged {
    mem: Vec<u8>,
    file: Option<std::fs::File>,
}

impl Staged {
    pub(super) fn fits_in_memory(&self, more: usize) -> bool {
        self.file.is_none() && self.mem.len() + more <= IN_MEMORY
    }

    pub(super) fn push(&mut self, fs: &WritableFs, b: &[u8]) -> DavFsResult<()> {
        if self.fits_in_memory(b.len()) {
            self.mem.extend_from_slice(b);
            return Ok(());
        }
        let f = match &mut self.file {
            Some(f) => f,
            None => {
                let dir: PathBuf = fs.spool_dir().to_path_buf();
                let mut f = tempfile::tempfile_in(&dir).map_err(|e| {
                    tracing::error!("webdav: staging an upload in {}: {e}", dir.display());
                    DavFsError::InsufficientStorage
                })?;
                f.write_all(&self.mem).map_err(stage_err)?;
                self.mem = Vec::new();
                self.file.insert(f)
            }
        };
        f.write_all(b).map_err(stage_err)
    }

    pub(super) fn reader(&mut self) -> DavFsResult<Box<dyn Read + '_>> {
        Ok(match &mut self.file {
            Some(f) => {
                f.seek(SeekFrom::Start(0)).map_err(stage_err)?;
                Box::new(std::io::BufReader::with_capacity(1 << 20, f))
            }
            None => Box::new(&self.mem[..]),
        })
    }
}

fn stage_err(e: std::io::Error) -> DavFsError {
    tracing::error!("webdav: staging an upload: {e}");
    if e.raw_os_error() == Some(libc::ENOSPC) {
        DavFsError::InsufficientStorage
    } else {
        DavFsError::GeneralFailure
    }
}

/// A file opened for writing: the body is staged, and handed over at
/// `flush` if it all came (the server flushes once, after the body).
pub(super) struct Incoming {
    pub(super) dav: DavWritable,
    pub(super) parent: u64,
    pub(super) name: Vec<u8>,
    pub(super) how: Upload,
    /// The body's length, when the request said.
    pub(super) expected: Option<u64>,
    pub(super) append: bool,
    pub(super) staged: Staged,
    pub(super) written: u64,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upload({})", String::from_utf8_lossy(&self.name))
    }
}

impl Incoming {
    fn push(&mut self, b: &[u8]) -> DavFsResult<()> {
        // An upload larger than the spool may hold is refused before it
        // fills the disk (507): the spool is where it would go next.
        if self.written + b.len() as u64 > self.dav.fs.spool_cap() {
            return Err(DavFsError::InsufficientStorage);
        }
        let fs = self.dav.fs.clone();
        if self.staged.fits_in_memory(b.len()) {
            self.staged.push(&fs, b)?;
        } else {
            // A disk write: off the async thread's turn.
            tokio::task::block_in_place(|| self.staged.push(&fs, b))?;
        }
        self.written += b.len() as u64;
        Ok(())
    }

    /// Puts the staged body in place: the file's one close.
    fn hand_over(&mut self) -> DavFsResult<()> {
        let dav = self.dav.clone();
        let mut how = self.how.clone();
        if self.append {
            how.offset = dav
                .fs
                .lookup(self.parent, &self.name)
                .and_then(|i| dav.fs.with_inode(i, |i| i.size))
                .unwrap_or(0);
        }
        let _one = dav.name_lock(self.parent, &self.name);
        let mut r = self.staged.reader()?;
        dav.fs
            .put(self.parent, &self.name, &how, &mut r)
            .map(|_| ())
            .map_err(dav_error)
    }
}

impl DavFile for Incoming {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let m: Box<dyn DavMetaData> = Box::new(Meta {
            dir: false,
            len: self.written,
            mtime: crate::util::now_ns(),
        });
        futures_util::future::ready(Ok(m)).boxed()
    }
    fn write_buf(&mut self, mut buf: Box<dyn bytes::Buf + Send>) -> FsFuture<'_, ()> {
        async move {
            while buf.has_remaining() {
                let n = buf.chunk().len();
                let chunk = buf.chunk().to_vec();
                self.push(&chunk)?;
                buf.advance(n);
            }
            Ok(())
        }
        .boxed()
    }
    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        async move { self.push(&buf) }.boxed()
    }
    fn read_bytes(&mut self, _count: usize) -> FsFuture<'_, Bytes> {
        futures_util::future::ready(Err(DavFsError::Forbidden)).boxed()
    }
    /// Where a ranged `PUT` (`Content-Range`) goes; asked before any byte.
    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        let r = match pos {
            SeekFrom::Start(n) if self.written == 0 => {
                self.how.offset = n;
                Ok(n)
            }
            _ => Err(DavFsError::NotImplemented),
        };
        futures_util::future::ready(r).boxed()
    }
    fn flush(&mut self) -> FsFuture<'_, ()> {
        async move {
            // Fewer bytes than announced: the server answers 400 and drops
            // the upload; nothing is handed over.
            if self.expected.is_some_and(|n| n != self.written) {
                return Ok(());
            }
            tokio::task::block_in_place(|| self.hand_over())
        }
        .boxed()
    }
}
