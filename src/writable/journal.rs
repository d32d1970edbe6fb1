//! The writable mount's journal: an append-only log of every change to the
//! namespace, fsynced when a file is closed, renamed or fsynced. With the spool
//! files it names, it lets the next mount (or `recover`) rebuild exactly what
//! every successful `close()` saw, after a crash of the daemon or the machine.
//!
//! Format: a header record, then records, each `u32_le(len) ‖ postcard(Record)`.
//! A torn final record (crash mid-append) is ignored.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::tree::{ChunkRef, NodeKind, Xattr};

/// Metadata set when an entry is created.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewMeta {
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub time: i64,
    pub rdev: u64,
    pub target: Vec<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Record {
    /// First record: what the mount started from.
    Header {
        store_id: String,
        base: Option<SnapshotId>,
        host: String,
        tags: Vec<String>,
    },
    /// Paths are relative to the mount root, components joined by `/`.
    Create {
        path: Vec<u8>,
        meta: NewMeta,
    },
    Link {
        target: Vec<u8>,
        path: Vec<u8>,
    },
    /// Removes a name (file or empty directory).
    Unlink {
        path: Vec<u8>,
    },
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    SetAttr {
        path: Vec<u8>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        atime: Option<i64>,
        mtime: Option<i64>,
        ctime: i64,
    },
    SetXattrs {
        path: Vec<u8>,
        xattrs: Vec<Xattr>,
    },
    /// A file's content as of a successful close: its chunks (stored in packs
    /// that may not be durable yet) and the spool file that holds the bytes
    /// until they are.
    Content {
        path: Vec<u8>,
        size: u64,
        mtime: i64,
        chunks: Vec<ChunkRef>,
        spool: Option<String>,
        /// The bytes themselves, for small files (then the spool is not synced).
        inline: Option<Vec<u8>>,
    },
}

pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Starts a new journal (replacing any old one) with its header.
    pub fn create(path: &Path, header: &Record) -> Result<Self> {
        let tmp = path.with_extension("new");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("creating journal {}", tmp.display()), e))?;
        let mut j = Journal {
            path: tmp.clone(),
            file,
        };
        j.append(header)?;
        j.sync()?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("installing journal", e))?;
        if let Some(d) = path.parent() {
            File::open(d)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io("syncing spool dir", e))?;
        }
        j.path = path.to_path_buf();
        Ok(j)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, r: &Record) -> Result<()> {
        let body = postcard::to_stdvec(r).map_err(|e| Error::corrupt("journal record", e))?;
        let mut buf = Vec::with_capacity(body.len() + 4);
        buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
        buf.extend_from_slice(&body);
        self.file
            .write_all(&buf)
            .map_err(|e| Error::io("writing the journal", e))
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("syncing the journal", e))
    }
}

/// Reads every complete record; stops quietly at a torn tail.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let f = File::open(path)
        .map_err(|e| Error::io(format!("reading journal {}", path.display()), e))?;
    Ok(read_from(BufReader::new(f), path))
}

/// The records of a journal's bytes, up to the first torn or damaged one.
pub fn read_from(mut r: impl Read, path: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if r.read_exact(&mut len).is_err() {
            break;
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > 64 << 20 {
            tracing::warn!(
                "journal {}: implausible record length; stopping",
                path.display()
            );
            break;
        }
        let mut body = vec![0u8; n];
        if r.read_exact(&mut body).is_err() {
            tracing::warn!("journal {}: torn last record ignored", path.display());
            break;
        }
        match postcard::from_bytes(&body) {
            Ok(rec) => out.push(rec),
            Err(e) => {
                tracing::warn!("journal {}: bad record ({e}); stopping", path.display());
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal");
        let h = Record::Header {
            store_id: "s".into(),
            base: None,
            host: "h".into(),
            tags: vec![],
        };
        let mut j = Journal::create(&p, &h).unwrap();
        let u = Record::Unlink {
            path: b"x".to_vec(),
        };
        j.append(&u).unwrap();
        j.sync().unwrap();
        drop(j);
        // A torn record at the end is ignored.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[50, 0, 0, 0, 1, 2]).unwrap();
        assert_eq!(read(&p).unwrap(), vec![h, u]);
    }
}
