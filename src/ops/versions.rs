//! `versions`: every version of one path across the store's snapshots, as
//! people ask "which versions of this file do I have?". Snapshots that hold
//! the same content at the path (same kind and chunk list, or link target,
//! or directory tree) share a version, wherever they fall in time.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::repo::Repo;

/// One distinct content of the path.
#[derive(Clone, Debug)]
pub struct Version {
    pub kind: NodeKind,
    pub size: u64,
    /// The entry's mtime in the first snapshot that has this version.
    pub mtime: i64,
    /// A hash of what makes the content (hex): equal hashes, equal content.
    pub content: String,
    /// The snapshots holding it, oldest first: (id, snapshot time).
    pub snapshots: Vec<(SnapshotId, i64)>,
}

/// What the walk found: the versions, oldest first seen first, and the
/// snapshots that could not be read at the path (with why).
#[derive(Debug, Default)]
pub struct Versions {
    pub versions: Vec<Version>,
    pub unreadable: Vec<(SnapshotId, String)>,
}

fn content_key(n: &Node) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&[n.kind as u8]);
    match n.kind {
        NodeKind::File => {
            for c in &n.content {
                h.update(&c.id.0);
            }
        }
        NodeKind::Dir => {
            if let Some(t) = n.subtree {
                h.update(&t.0);
            }
        }
        NodeKind::Symlink => {
            h.update(&n.target);
        }
        _ => {
            h.update(&n.rdev.to_le_bytes());
        }
    }
    h.finalize().to_hex()[..16].to_string()
}

/// The versions of `path` in `snapshots` (as [`Repo::snapshots`] lists them).
pub fn versions(repo: &Repo, snapshots: &[(SnapshotId, Snapshot)], path: &[u8]) -> Versions {
    // Remote stores: many snapshots' paths looked up at once, not a core's worth.
    let found: Vec<(SnapshotId, i64, Result<Node>)> =
        crate::util::on_io_pool(repo.storage().keeps_meta(), || {
            snapshots
                .par_iter()
                .map(|(id, s)| (*id, s.time, repo.find_node(s, path)))
                .collect()
        });
    let mut out = Versions::default();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut found = found;
    found.sort_by_key(|f| (f.1, f.0));
    for (id, time, r) in found {
        let n = match r {
            Ok(n) => n,
            // Not in this snapshot.
            Err(Error::InvalidInput(_)) => continue,
            Err(e) => {
                out.unreadable.push((id, e.to_string()));
                continue;
            }
        };
        let key = content_key(&n);
        let i = *by_key.entry(key.clone()).or_insert_with(|| {
            out.versions.push(Version {
                kind: n.kind,
                size: if n.kind == NodeKind::File { n.size } else { 0 },
                mtime: n.mtime,
                content: key,
                snapshots: Vec::new(),
            });
            out.versions.len() - 1
        });
        out.versions[i].snapshots.push((id, time));
    }
    out
}
