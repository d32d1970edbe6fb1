//! `sync`: copies snapshots from one store to another (local ↔ local, local
//! ↔ S3), each store with its own keys. Blob ids are keyed by the store's
//! id key, so every blob is decrypted with the source's keys, named and
//! sealed with the destination's, and stored only if the destination lacks
//! it; trees are rewritten with the new ids, so copies dedup against what
//! the destination holds. A copy records the snapshot it copies
//! (`Snapshot::original`): that is how a later sync knows it is there.
//! Order of writes is the backup's: packs, index, then the snapshot, so a
//! sync killed at any moment leaves both stores consistent and the next one
//! finishes the work.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rayon::prelude::*;

use crate::error::Result;
use crate::format::blob::BlobType;
use crate::format::id::{BlobId, SnapshotId};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, Tree};
use crate::ops::writer::save_copy;
use crate::pipeline::packer::Packer;
use crate::repo::Repo;

#[derive(Default)]
pub struct SyncProgress {
    pub snapshots: AtomicU64,
    /// Plaintext bytes read from the source.
    pub bytes: AtomicU64,
}

#[derive(Debug, Default)]
pub struct SyncReport {
    /// (source id, new id in the destination), oldest first.
    pub copied: Vec<(SnapshotId, SnapshotId)>,
    /// Snapshots asked for that the destination already had.
    pub present: usize,
    /// Blobs and plaintext bytes the destination did not have.
    pub new_blobs: u64,
    pub new_bytes: u64,
}

/// The snapshots of `src` that `dst` lacks (matched by identity: the
/// original snapshot's id), oldest first; with `only`, just those of them.
pub fn missing(
    src: &Repo,
    dst: &Repo,
    only: Option<&[SnapshotId]>,
) -> Result<(Vec<(SnapshotId, Snapshot)>, usize)> {
    let there: HashSet<SnapshotId> = dst
        .snapshots()?
        .iter()
        .map(|(id, s)| s.identity(id))
        .collect();
    let mut out = Vec::new();
    let mut present = 0;
    for (id, s) in src.snapshots()? {
        if only.is_some_and(|o| !o.contains(&id)) {
            continue;
        }
        if there.contains(&s.identity(&id)) {
            present += 1;
        } else {
            out.push((id, s));
        }
    }
    Ok((out, present))
}

struct Copier<'a> {
    src: &'a Repo,
    packer: Packer,
    /// Both stores name blobs alike (same id key): ids carry over.
    same_ids: bool,
    trees: Mutex<HashMap<BlobId, BlobId>>,
    data: Mutex<HashMap<BlobId, BlobId>>,
    progress: &'a SyncProgress,
}

/// Copies `list` (from [`missing`]) into `dst` under its shared lock.
pub fn copy_snapshots(
    src: &Arc<Repo>,
    dst: &Arc<Repo>,
    list: &[(SnapshotId, Snapshot)],
    progress: &SyncProgress,
) -> Result<SyncReport> {
    let _lock = crate::format::lock::acquire(dst.storage(), dst.keys(), false)?;
    src.load_index()?;
    dst.load_index()?;
    let probe = b"klosetfs sync: do these stores name blobs alike?";
    let c = Copier {
        src,
        packer: Packer::new(dst.clone()),
        same_ids: src.keys().blob_id(probe) == dst.keys().blob_id(probe),
        trees: Default::default(),
        data: Default::default(),
        progress,
    };
    // Copies already in the destination, to point parents at.
    let mut copies: HashMap<SnapshotId, SnapshotId> = dst
        .snapshots()?
        .into_iter()
        .map(|(id, s)| (s.identity(&id), id))
        .collect();
    let mut report = SyncReport::default();
    for (id, s) in list {
        let tree = c.tree(&s.tree)?;
        let identity = s.identity(id);
        let parent = s.parent.and_then(|p| copies.get(&p).copied());
        let new = save_copy(dst, &c.packer, s, identity, tree, parent)?;
        copies.insert(*id, new);
        copies.insert(identity, new);
        report.copied.push((*id, new));
        progress.snapshots.fetch_add(1, Ordering::Relaxed);
    }
    let st = &c.packer.stats;
    report.new_blobs = st.new_blobs.load(Ordering::Relaxed);
    report.new_bytes = st.new_bytes.load(Ordering::Relaxed);
    Ok(report)
}

impl Copier<'_> {
    /// The destination's id of source tree `id`, storing it (and what it
    /// holds) there if needed.
    fn tree(&self, id: &BlobId) -> Result<BlobId> {
        if let Some(t) = self.trees.lock().get(id) {
            return Ok(*t);
        }
        let tree = self.src.load_tree(id)?;
        let nodes: Vec<Node> = tree
            .nodes
            .par_iter()
            .map(|n| self.node(n))
            .collect::<Result<_>>()?;
        let bytes = Tree::new(nodes).encode();
        let new = if self.same_ids && self.packer.is_known(id) {
            *id
        } else {
            self.packer.save(BlobType::Tree, &bytes)?
        };
        self.trees.lock().insert(*id, new);
        Ok(new)
    }

    fn node(&self, n: &Node) -> Result<Node> {
        let mut n = n.clone();
        if let Some(sub) = n.subtree {
            n.subtree = Some(self.tree(&sub)?);
        }
        for c in &mut n.content {
            c.id = self.data(&c.id)?;
        }
        Ok(n)
    }

    fn data(&self, id: &BlobId) -> Result<BlobId> {
        if self.same_ids && self.packer.is_known(id) {
            return Ok(*id);
        }
        if let Some(d) = self.data.lock().get(id) {
            return Ok(*d);
        }
        let raw = self.src.read_blob(BlobType::Data, id)?;
        self.progress
            .bytes
            .fetch_add(raw.len() as u64, Ordering::Relaxed);
        let new = self.packer.save(BlobType::Data, &raw)?;
        self.data.lock().insert(*id, new);
        Ok(new)
    }
}
