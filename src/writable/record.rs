//! The writable mount's journal records: what each change to the namespace
//! is written as (`postcard`), apart from how `journal.rs` frames, checks and
//! syncs them in the file.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::format::id::SnapshotId;
use crate::format::tree::{ChunkRef, NodeKind, Xattr};

/// Metadata set when an entry is created.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewMeta {
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub time: i64,
    pub rdev: u64,
    #[serde(with = "serde_bytes")]
    pub target: Vec<u8>,
}

/// A chmod, chown or utimens: what it sets, the rest left as it is. The
/// one spelling of these fields, for live requests and journal replay.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttrChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<i64>,
    pub mtime: Option<i64>,
}

impl AttrChange {
    pub fn mode(mode: u32) -> Self {
        AttrChange {
            mode: Some(mode),
            ..Default::default()
        }
    }

    pub fn times(atime: Option<i64>, mtime: Option<i64>) -> Self {
        AttrChange {
            atime,
            mtime,
            ..Default::default()
        }
    }
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
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        meta: NewMeta,
    },
    Link {
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
    },
    /// Removes a name (file or empty directory).
    Unlink {
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
    },
    Rename {
        #[serde(with = "serde_bytes")]
        from: Vec<u8>,
        #[serde(with = "serde_bytes")]
        to: Vec<u8>,
    },
    /// (postcard writes a nested struct's fields in place: the same bytes
    /// as when they were this variant's own.)
    SetAttr {
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        change: AttrChange,
        ctime: i64,
    },
    SetXattrs {
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        xattrs: Vec<Xattr>,
    },
    /// A file's content as of a successful close: its chunks (stored in packs
    /// that may not be durable yet) and the spool file that holds the bytes
    /// until they are.
    Content {
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        size: u64,
        mtime: i64,
        chunks: Vec<ChunkRef>,
        spool: Option<String>,
        /// The bytes themselves, for small files (then the spool is not synced).
        /// Shared with the memory spool and the store job, not copied.
        #[serde(with = "shared_bytes")]
        inline: Option<Arc<Vec<u8>>>,
    },
    /// Right after the header when the session leaves names out of its
    /// snapshots (`--exclude`): the globs, so a recovery leaves out the same.
    /// Last in the enum: journals written before it read as they did.
    Excludes { patterns: Vec<String> },
}

/// `Option<Arc<Vec<u8>>>` on the wire exactly as `serde_bytes` writes an
/// `Option<Vec<u8>>`, so journals written before the bytes were shared read
/// the same.
mod shared_bytes {
    use std::sync::Arc;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Arc<Vec<u8>>>, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::serialize(&v.as_deref().map(|b| serde_bytes::Bytes::new(b)), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<Vec<u8>>>, D::Error> {
        let v: Option<Vec<u8>> = serde_bytes::deserialize(d)?;
        Ok(v.map(Arc::new))
    }
}

impl Record {
    /// About the size of the record's encoding, to size its buffer once.
    pub(super) fn encoded_len_hint(&self) -> usize {
        match self {
            Record::Content {
                path,
                chunks,
                inline,
                ..
            } => 64 + path.len() + chunks.len() * 48 + inline.as_ref().map_or(0, |b| b.len()),
            _ => 256,
        }
    }

    /// What the record does, with paths as text, for messages.
    pub fn describe(&self) -> String {
        let p = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            Record::Header { store_id, .. } => format!("header of store {store_id}"),
            Record::Create { path, .. } => format!("create of {}", p(path)),
            Record::Link { target, path } => format!("link {} -> {}", p(path), p(target)),
            Record::Unlink { path } => format!("removal of {}", p(path)),
            Record::Rename { from, to } => format!("rename {} -> {}", p(from), p(to)),
            Record::SetAttr { path, .. } => format!("attributes of {}", p(path)),
            Record::SetXattrs { path, .. } => format!("xattrs of {}", p(path)),
            Record::Content { path, size, .. } => {
                format!("content of {} ({size} bytes)", p(path))
            }
            Record::Excludes { patterns } => format!("excludes {patterns:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records as older builds wrote them: a journal they left must
    /// replay, so each is encoded to the same bytes as its new form.
    #[derive(Serialize)]
    enum Old {
        _Header,
        _Create,
        _Link,
        _Unlink,
        _Rename,
        /// Before `AttrChange`: the fields were the variant's own.
        SetAttr {
            #[serde(with = "serde_bytes")]
            path: Vec<u8>,
            mode: Option<u32>,
            uid: Option<u32>,
            gid: Option<u32>,
            atime: Option<i64>,
            mtime: Option<i64>,
            ctime: i64,
        },
        _SetXattrs,
        /// Before the inline bytes were shared: `Option<Vec<u8>>`.
        Content {
            #[serde(with = "serde_bytes")]
            path: Vec<u8>,
            size: u64,
            mtime: i64,
            chunks: Vec<ChunkRef>,
            spool: Option<String>,
            #[serde(with = "serde_bytes")]
            inline: Option<Vec<u8>>,
        },
    }

    fn same_bytes(new: &Record, old: &Old) {
        let enc = postcard::to_stdvec(new).unwrap();
        assert_eq!(enc, postcard::to_stdvec(old).unwrap());
        assert_eq!(&postcard::from_bytes::<Record>(&enc).unwrap(), new);
    }

    #[test]
    fn inline_bytes_keep_their_encoding() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for inline in [None, Some(bytes.clone())] {
            let new = Record::Content {
                path: b"a/b".to_vec(),
                size: 3,
                mtime: -5,
                chunks: Vec::new(),
                spool: Some("s1".into()),
                inline: inline.clone().map(Arc::new),
            };
            let old = Old::Content {
                path: b"a/b".to_vec(),
                size: 3,
                mtime: -5,
                chunks: Vec::new(),
                spool: Some("s1".into()),
                inline,
            };
            same_bytes(&new, &old);
        }
    }

    #[test]
    fn set_attr_keeps_its_encoding() {
        let new = Record::SetAttr {
            path: b"d/f".to_vec(),
            change: AttrChange {
                mode: Some(0o640),
                uid: None,
                gid: Some(7),
                atime: None,
                mtime: Some(-3),
            },
            ctime: 99,
        };
        let old = Old::SetAttr {
            path: b"d/f".to_vec(),
            mode: Some(0o640),
            uid: None,
            gid: Some(7),
            atime: None,
            mtime: Some(-3),
            ctime: 99,
        };
        same_bytes(&new, &old);
    }
}
