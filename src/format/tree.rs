//! Trees: one directory's entries with full Unix metadata, stored as a blob of
//! type `Tree`. Names are bytes. Identical directories produce identical blobs,
//! so unchanged directories dedupe across snapshots.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::id::BlobId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

/// One chunk of a file: its blob id and plaintext length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: BlobId,
    pub size: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits with setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub size: u64,
    /// Nanoseconds since the epoch.
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    /// Source device and inode: hard links share both.
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
    pub xattrs: Vec<Xattr>,
    /// Symlink target.
    pub target: Vec<u8>,
    /// File content, in order.
    pub content: Vec<ChunkRef>,
    /// A directory's own tree.
    pub subtree: Option<BlobId>,
}

impl Node {
    /// A node of `kind` named `name` with no metadata yet: mode 0, owner 0,
    /// times 0, one link, no content. Writers that do not read a real file's
    /// metadata (the snapshot root, the S3 and stream sources) fill in the rest.
    pub fn bare(name: Vec<u8>, kind: NodeKind) -> Node {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            size: 0,
            atime: 0,
            mtime: 0,
            ctime: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
            rdev: 0,
            xattrs: vec![],
            target: vec![],
            content: vec![],
            subtree: None,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == NodeKind::Dir
    }

    /// `st_mode` with the file-type bits.
    pub fn st_mode(&self) -> u32 {
        let t = match self.kind {
            NodeKind::File => libc::S_IFREG,
            NodeKind::Dir => libc::S_IFDIR,
            NodeKind::Symlink => libc::S_IFLNK,
            NodeKind::Fifo => libc::S_IFIFO,
            NodeKind::CharDevice => libc::S_IFCHR,
            NodeKind::BlockDevice => libc::S_IFBLK,
            NodeKind::Socket => libc::S_IFSOCK,
        };
        t | (self.mode & 0o7777)
    }

    /// True when this node is one of several hard links to one inode.
    pub fn is_hardlinked(&self) -> bool {
        self.kind != NodeKind::Dir && self.nlink > 1
    }
}

/// Is `name` safe as one path component? Never empty, `.`, `..`, or with `/` or NUL.
pub fn safe_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0)
        && name.len() <= 4096
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Sorted by name, names unique.
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn new(mut nodes: Vec<Node>) -> Self {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        Self { nodes }
    }

    /// Bytes the decoded tree takes in memory (close enough to bound caches).
    pub fn mem_bytes(&self) -> usize {
        use std::mem::size_of;
        size_of::<Tree>()
            + self
                .nodes
                .iter()
                .map(|n| {
                    size_of::<Node>()
                        + n.name.len()
                        + n.target.len()
                        + n.user.len()
                        + n.group.len()
                        + n.content.len() * size_of::<ChunkRef>()
                        + n.xattrs
                            .iter()
                            .map(|x| size_of::<Xattr>() + x.name.len() + x.value.len())
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("trees serialize")
    }

    /// Decodes a tree; entries whose names could escape a directory, or that
    /// repeat a name, are dropped with a warning: a hostile store can never make
    /// a reader walk outside its target.
    pub fn decode(id: &BlobId, bytes: &[u8]) -> Result<Self> {
        let mut t: Tree = postcard::from_bytes(bytes)
            .map_err(|e| Error::corrupt(format!("tree {}", id.short()), e))?;
        let before = t.nodes.len();
        t.nodes.retain(|n| safe_name(&n.name));
        let mut sorted = true;
        for w in t.nodes.windows(2) {
            if w[0].name >= w[1].name {
                sorted = false;
                break;
            }
        }
        if !sorted {
            t = Tree::new(t.nodes);
        }
        if t.nodes.len() != before {
            tracing::warn!(
                tree = %id.short(),
                dropped = before - t.nodes.len(),
                "tree has unsafe or repeated names; those entries are hidden"
            );
        }
        Ok(t)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

/// The root directory of a snapshot, as a node (it has no stored metadata of its own).
pub fn synthetic_dir(tree: BlobId) -> Node {
    Node {
        mode: 0o755,
        subtree: Some(tree),
        ..Node::bare(b"/".to_vec(), NodeKind::Dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn node(name: &[u8]) -> Node {
        Node {
            mode: 0o644,
            ..Node::bare(name.to_vec(), NodeKind::File)
        }
    }

    /// The byte layout docs/design.md §2 and §8 describe, worked by hand:
    /// fields in order, varints, zigzag times, fixed arrays without a
    /// length, `Option` and enum tags.
    #[test]
    fn a_tree_encodes_as_the_design_says() {
        let t = Tree {
            nodes: vec![Node {
                mode: 0o755,
                uid: 1,
                gid: 2,
                user: "u".into(),
                group: "g".into(),
                atime: -1,
                mtime: 1,
                content: vec![ChunkRef {
                    id: BlobId([7; 32]),
                    size: 300,
                }],
                subtree: Some(BlobId([9; 32])),
                ..Node::bare(b"a".to_vec(), NodeKind::Dir)
            }],
        };
        let mut want = vec![
            1, // one node
            1, b'a', // name
            1,    // kind: Dir
            0xED, 0x03, // mode 493
            1, 2, // uid, gid
            1, b'u', 1, b'g', // user, group
            0,    // size
            1, 2, 0, // atime -1, mtime 1, ctime 0 (zigzag)
            0, 0, 1, 0, // dev, ino, nlink, rdev
            0, 0, // no xattrs, no target
            1, // one chunk:
        ];
        want.extend([7; 32]);
        want.extend([0xAC, 0x02, 1]); // its size 300; subtree: Some
        want.extend([9; 32]);
        assert_eq!(t.encode(), want);
    }

    #[test]
    fn hostile_names_are_dropped_and_order_restored() {
        let raw = Tree {
            nodes: vec![
                node(b"z"),
                node(b".."),
                node(b"a/b"),
                node(b"/etc"),
                node(b"\xff\nodd"),
                node(b"a"),
                node(b"a"),
            ],
        };
        let t = Tree::decode(&BlobId([0; 32]), &raw.encode()).unwrap();
        let names: Vec<&[u8]> = t.nodes.iter().map(|n| n.name.as_slice()).collect();
        assert_eq!(names, vec![&b"a"[..], b"z", b"\xff\nodd"]);
        assert!(t.find(b"z").is_some() && t.find(b"..").is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Tree::decode(&BlobId([0; 32]), &[0xff; 40]).is_err());
    }
}
