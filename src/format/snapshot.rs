//! Snapshot objects (`snapshots/<id>`): the root tree of one backup plus who,
//! when, what and how much. Written last, so a visible snapshot is complete.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::crypto::Keys;
use crate::format::id::{content_hash, BlobId, SnapshotId};
use crate::format::tree::{Node, NodeKind};

const SNAPSHOT_AAD: &[u8] = b"klosetfs snapshot v1";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    /// Bytes of file content in the snapshot.
    pub bytes: u64,
    /// Plaintext bytes of blobs this backup added to the store.
    pub new_bytes: u64,
    /// Stored (compressed, sealed) bytes this backup added.
    pub stored_bytes: u64,
    pub new_blobs: u64,
    /// Entries that could not be read and were left out.
    pub errors: u64,
    pub duration_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// Nanoseconds since the epoch.
    pub time: i64,
    pub host: String,
    pub user: String,
    /// Absolute source paths (bytes) or source URIs.
    pub paths: Vec<Vec<u8>>,
    pub tags: Vec<String>,
    /// Root tree: the filesystem root, holding the backed-up paths.
    pub tree: BlobId,
    pub parent: Option<SnapshotId>,
    pub summary: Summary,
    /// The root directory's own metadata (mode, owner, times, xattrs), when
    /// the source has one: a writable mount's root. Written after every other
    /// field, so readers that predate it decode the rest and ignore it.
    pub root: Option<Node>,
    /// For a copy made by `sync`: the id of the snapshot it copies (the
    /// first original, when copied on). Copies cannot share the original's
    /// id, which names sealed bytes; this says they are the same snapshot.
    /// A trailing field too, after `root`.
    pub original: Option<SnapshotId>,
}

/// A snapshot as written before `root` existed.
#[derive(Deserialize)]
struct SnapshotWithoutRoot {
    version: u32,
    time: i64,
    host: String,
    user: String,
    paths: Vec<Vec<u8>>,
    tags: Vec<String>,
    tree: BlobId,
    parent: Option<SnapshotId>,
    summary: Summary,
}

impl Snapshot {
    pub fn encode(&self, keys: &Keys) -> Result<(SnapshotId, Vec<u8>)> {
        let plain = postcard::to_stdvec(self).map_err(|e| Error::corrupt("snapshot", e))?;
        let sealed = keys.seal(SNAPSHOT_AAD, &plain)?;
        Ok((SnapshotId(content_hash(&sealed)), sealed))
    }

    pub fn decode(keys: &Keys, id: &SnapshotId, bytes: &[u8]) -> Result<Self> {
        let what = format!("snapshot {}", id.short());
        if content_hash(bytes) != id.0 {
            return Err(Error::corrupt(&what, "content does not match its name"));
        }
        let plain = keys.open(SNAPSHOT_AAD, bytes, &what)?;
        // The fields every version has, then the optional trailing ones
        // (`root`, `original`), each absent in snapshots written before it.
        let corrupt = |e: postcard::Error| Error::corrupt(&what, e);
        let (o, rest) =
            postcard::take_from_bytes::<SnapshotWithoutRoot>(&plain).map_err(corrupt)?;
        let (root, rest) = match rest {
            [] => (None, rest),
            _ => postcard::take_from_bytes::<Option<Node>>(rest).map_err(corrupt)?,
        };
        let original = match rest {
            [] => None,
            _ => {
                postcard::take_from_bytes::<Option<SnapshotId>>(rest)
                    .map_err(corrupt)?
                    .0
            }
        };
        let s = Snapshot {
            version: o.version,
            time: o.time,
            host: o.host,
            user: o.user,
            paths: o.paths,
            tags: o.tags,
            tree: o.tree,
            parent: o.parent,
            summary: o.summary,
            root,
            original,
        };
        if s.version != 1 {
            return Err(Error::corrupt(
                &what,
                format!("unknown version {}", s.version),
            ));
        }
        Ok(s)
    }

    /// The root directory as a node: the recorded one (named `/`, holding
    /// `tree`), or a synthetic one (0755, the snapshot's time) when none was.
    pub fn root_node(&self) -> Node {
        match &self.root {
            Some(r) => Node {
                name: b"/".to_vec(),
                kind: NodeKind::Dir,
                subtree: Some(self.tree),
                content: Vec::new(),
                ..r.clone()
            },
            None => {
                let mut n = super::tree::synthetic_dir(self.tree);
                n.atime = self.time;
                n.mtime = self.time;
                n.ctime = self.time;
                n
            }
        }
    }

    /// What makes two snapshots in two stores the same snapshot: the
    /// original's id for a copy, else its own.
    pub fn identity(&self, id: &SnapshotId) -> SnapshotId {
        self.original.unwrap_or(*id)
    }

    /// Paths joined for display.
    pub fn paths_display(&self) -> String {
        self.paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(root: Option<Node>) -> Snapshot {
        Snapshot {
            version: 1,
            time: 1_700_000_000_000_000_000,
            host: "h".into(),
            user: "u".into(),
            paths: vec![b"/".to_vec()],
            tags: vec!["t".into()],
            tree: BlobId([7; 32]),
            parent: None,
            summary: Summary::default(),
            root,
            original: None,
        }
    }

    /// The root's metadata is a trailing field: snapshots written before it
    /// still decode (as a synthetic root), and readers that predate it decode
    /// new snapshots and ignore it.
    #[test]
    fn the_recorded_root_is_compatible_both_ways() {
        let mut root = Node::bare(b"/".to_vec(), NodeKind::Dir);
        root.mode = 0o750;
        root.mtime = 981_173_106_789_000_000;
        let new = sample(Some(root.clone()));
        let bytes = postcard::to_stdvec(&new).unwrap();
        assert_eq!(postcard::from_bytes::<Snapshot>(&bytes).unwrap(), new);
        let old_reader: SnapshotWithoutRoot = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(old_reader.tree, new.tree);
        // An old snapshot is a new one without the trailing `None` byte.
        let keys = Keys::encrypted(&crate::format::crypto::MasterKey::random().unwrap());
        let mut old = postcard::to_stdvec(&sample(None)).unwrap();
        assert_eq!(old.pop(), Some(0));
        let sealed = keys.seal(SNAPSHOT_AAD, &old).unwrap();
        let id = SnapshotId(content_hash(&sealed));
        let back = Snapshot::decode(&keys, &id, &sealed).unwrap();
        assert_eq!(back, sample(None));
        let synthetic = back.root_node();
        assert_eq!((synthetic.mode, synthetic.mtime), (0o755, back.time));
        // A copy's `original` comes after `root`: snapshots written with a
        // root but before `original` decode, and so does a copy.
        let mut with_root = postcard::to_stdvec(&new).unwrap();
        assert_eq!(with_root.pop(), Some(0));
        let sealed = keys.seal(SNAPSHOT_AAD, &with_root).unwrap();
        let id = SnapshotId(content_hash(&sealed));
        assert_eq!(Snapshot::decode(&keys, &id, &sealed).unwrap(), new);
        let mut copy = new.clone();
        copy.original = Some(SnapshotId([9; 32]));
        let (id, sealed) = copy.encode(&keys).unwrap();
        assert_eq!(Snapshot::decode(&keys, &id, &sealed).unwrap(), copy);
        assert_eq!(copy.identity(&id), SnapshotId([9; 32]));
        let recorded = new.root_node();
        assert_eq!((recorded.mode, recorded.mtime), (0o750, root.mtime));
        assert_eq!(recorded.subtree, Some(new.tree));
    }
}
