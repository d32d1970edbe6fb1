//! Whole uploads: a file's new bytes (or a range of them) written and closed
//! as one change, for front ends whose clients send a file in one request
//! (WebDAV's `PUT`). Nothing of an upload is in a commit before all of it
//! is, and an upload that fails leaves the file as its last close left it.

use std::io::Read;

use super::namespace::ROOT;
use super::record::{NewMeta, Record};
use super::{now, WritableFs};
use crate::format::tree::NodeKind;
use crate::fs_error::{FsError, FsResult};

/// How an upload lands on its name.
#[derive(Clone, Debug)]
pub struct Upload {
    /// May create the file.
    pub create: bool,
    /// Must create it (fails with `Exists` if the name is taken).
    pub create_new: bool,
    /// The upload is the whole file (a `PUT`), not a range written into it.
    pub truncate: bool,
    /// Where the bytes go.
    pub offset: u64,
    /// The modification time the client asked for (ns since the epoch).
    pub mtime: Option<i64>,
    /// Mode, owner and group of a file it creates.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Bytes handed to the namespace per write.
const PIECE: usize = 1 << 20;

impl WritableFs {
    /// The inode at `path` (`/`-separated, from the root).
    pub fn resolve(&self, path: &[u8]) -> FsResult<u64> {
        self.ns.lock().resolve(path)
    }

    /// The directory holding `path` and its last name.
    pub fn resolve_parent(&self, path: &[u8]) -> FsResult<(u64, Vec<u8>)> {
        let ns = self.ns.lock();
        let (dir, name) = ns.resolve_parent(path)?;
        Ok((dir, name.to_vec()))
    }

    /// Writes everything `src` gives into `name` in `parent` as `how` says,
    /// then closes the file (journaled and queued for storing, as a close of
    /// the mount is). A commit waits for it as for a close, so a snapshot
    /// never holds half an upload. On failure a file this made is removed
    /// again and an existing one keeps the bytes of its last close.
    pub fn put(&self, parent: u64, name: &[u8], how: &Upload, src: &mut dyn Read) -> FsResult<u64> {
        if parent == ROOT && name == super::COMMIT_FILE {
            return Err(FsError::Invalid);
        }
        let gate = self.commits.gate.read();
        let found = self.ns.lock().lookup(parent, name);
        // A new file is journaled (`Create`) only once its bytes are all in,
        // just before its `Content`: a crash while a large body is handed
        // over leaves no empty file behind for recovery to commit. (No
        // commit sees it meanwhile: commits wait for the close gate.)
        let (ino, made) = match found {
            Ok(ino) => {
                if how.create_new {
                    return Err(FsError::Exists);
                }
                if self.with_inode(ino, |i| i.kind)? != NodeKind::File {
                    return Err(FsError::IsDir);
                }
                (ino, None)
            }
            Err(FsError::NotFound) if how.create || how.create_new => {
                let meta = NewMeta {
                    kind: NodeKind::File,
                    mode: how.mode & 0o7777,
                    uid: how.uid,
                    gid: how.gid,
                    time: now(),
                    rdev: 0,
                    target: Vec::new(),
                };
                let ino = self.ns.lock().create(parent, name, &meta)?;
                (ino, Some(meta))
            }
            Err(e) => return Err(e),
        };
        let before = self.with_inode(ino, |i| (i.mtime, i.ctime))?;
        let written = self.put_bytes(ino, how, src).and_then(|()| {
            self.check_store_error()?;
            if let Some(meta) = &made {
                self.journal_create(ino, meta)?;
            }
            self.store_content_gated(&gate, ino)
        });
        match written {
            Ok(()) => {
                if let Some(spool) = self.with_inode(ino, |i| i.spool.clone())? {
                    self.spools.files.lock().remove(&spool);
                }
                Ok(ino)
            }
            Err(e) => {
                drop(gate);
                if made.is_some() {
                    let _ = self.unlink(parent, name, false);
                } else {
                    self.abandon(ino, before);
                }
                Err(e)
            }
        }
    }

    /// Journals the creation of `ino`, made in the namespace alone, under
    /// the name it has now.
    fn journal_create(&self, ino: u64, meta: &NewMeta) -> FsResult<()> {
        let appended = {
            let ns = self.ns.lock();
            self.append_named(&ns, ino, |path| Record::Create {
                path,
                meta: meta.clone(),
            })?
        };
        appended.map_or(Ok(()), |a| self.settle(a, false))
    }

    fn put_bytes(&self, ino: u64, how: &Upload, src: &mut dyn Read) -> FsResult<()> {
        if how.truncate {
            self.truncate(ino, 0, true)?;
        }
        let mut buf = vec![0u8; PIECE];
        let mut at = how.offset;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FsError::Io(format!("reading the upload: {e}"))),
            };
            self.write(ino, at, &buf[..n], false)?;
            at += n as u64;
        }
        if let Some(t) = how.mtime {
            // Journaled by the close's `Content` record, which carries it.
            self.ns.lock().get_mut(ino)?.mtime = t;
        }
        Ok(())
    }

    /// Drops what a failed upload wrote into an existing file: its bytes are
    /// those of its last close again (stored by then: the upload's first
    /// write waited for that close's store), with its times.
    fn abandon(&self, ino: u64, (mtime, ctime): (i64, i64)) {
        let spool = {
            let mut ns = self.ns.lock();
            let Ok(i) = ns.get_mut(ino) else {
                return;
            };
            if i.queued_gen == i.generation {
                return; // journaled: it is a close after all
            }
            i.dirty = false;
            i.size = i.content.iter().map(|c| c.size as u64).sum();
            i.mtime = mtime;
            i.ctime = ctime;
            i.spool.take()
        };
        let stream = self.streams.lock().remove(&ino);
        drop(stream);
        if let Some(s) = spool {
            self.drop_spool(&s);
        }
    }
}
