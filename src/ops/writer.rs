//! The one snapshot writer. Every source — local paths, an S3 prefix, a
//! writable mount — turns into a snapshot through here: take the store's
//! shared lock, load the index, choose the parent, feed blobs to one
//! [`Packer`], and finish with the write barrier (packs → index) before the
//! snapshot object, so a visible snapshot is always complete.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::error::Result;
use crate::format::id::{BlobId, SnapshotId};
use crate::format::lock::Lock;
use crate::format::snapshot::{Snapshot, Summary};
use crate::pipeline::packer::Packer;
use crate::repo::Repo;

/// Who and what a snapshot is of.
#[derive(Clone, Debug)]
pub struct SnapshotPlan {
    pub host: String,
    /// Absolute source paths (bytes) or source URIs; with the host, they pick
    /// the parent.
    pub paths: Vec<Vec<u8>>,
    pub tags: Vec<String>,
    /// The snapshot's time (ns since the epoch), for imports; `None` is now.
    pub time: Option<i64>,
    /// The root directory's own metadata, when the source has one (a
    /// writable mount's root); `None` gives a synthetic root.
    pub root: Option<crate::format::tree::Node>,
}

/// Which earlier snapshot a new one is compared with (unchanged files keep
/// its chunks without being read again).
#[derive(Clone, Copy, Debug, Default)]
pub enum ParentChoice {
    /// The newest snapshot with the same host and paths.
    #[default]
    Newest,
    None,
    Given(SnapshotId),
}

impl ParentChoice {
    /// From the `--parent` / `--no-parent` options every source takes.
    pub fn from_options(parent: Option<SnapshotId>, no_parent: bool) -> Self {
        match (parent, no_parent) {
            (_, true) => ParentChoice::None,
            (Some(p), false) => ParentChoice::Given(p),
            (None, false) => ParentChoice::Newest,
        }
    }
}

/// A snapshot being written: holds the store's shared lock until it is
/// finished or dropped.
pub struct SnapshotWriter {
    repo: Arc<Repo>,
    _lock: Lock,
    packer: Packer,
    plan: SnapshotPlan,
    parent: Option<(SnapshotId, Snapshot)>,
    started: Instant,
}

impl SnapshotWriter {
    /// Locks the store (shared, like every writer), loads its index and finds
    /// the parent.
    pub fn start(repo: &Arc<Repo>, plan: SnapshotPlan, parent: ParentChoice) -> Result<Self> {
        let started = Instant::now();
        let lock = crate::format::lock::acquire(repo.storage(), repo.keys(), false)?;
        repo.load_index()?;
        let parent = match parent {
            ParentChoice::None => None,
            ParentChoice::Given(p) => Some((p, repo.load_snapshot(&p)?)),
            ParentChoice::Newest => repo
                .snapshots()?
                .into_iter()
                .rev()
                .find(|(_, s)| s.host == plan.host && s.paths == plan.paths),
        };
        Ok(Self {
            repo: repo.clone(),
            _lock: lock,
            packer: Packer::new(repo.clone()),
            plan,
            parent,
            started,
        })
    }

    pub fn repo(&self) -> &Arc<Repo> {
        &self.repo
    }

    /// Where the source's blobs go (dedup, compression, sealing, packs).
    pub fn packer(&self) -> &Packer {
        &self.packer
    }

    /// The parent's root tree, to match unchanged entries against.
    pub fn parent_tree(&self) -> Option<BlobId> {
        self.parent.as_ref().map(|(_, s)| s.tree)
    }

    /// Stores the snapshot of `tree` (whose blobs went through [`Self::packer`])
    /// and releases the lock. `summary` carries the source's counts; the
    /// packer's figures and the duration are filled in here.
    pub fn finish(self, tree: BlobId, summary: Summary) -> Result<(SnapshotId, Snapshot)> {
        let parent = self.parent.as_ref().map(|(id, _)| *id);
        save_snapshot(
            &self.repo,
            &self.packer,
            &self.plan,
            parent,
            tree,
            summary,
            self.started,
        )
    }
}

/// The tail every writer shares: the write barrier, then the snapshot object.
/// A writable mount, which holds its lock and packer for its whole life, calls
/// this at each commit; everyone else goes through [`SnapshotWriter::finish`].
pub fn save_snapshot(
    repo: &Repo,
    packer: &Packer,
    plan: &SnapshotPlan,
    parent: Option<SnapshotId>,
    tree: BlobId,
    mut summary: Summary,
    started: Instant,
) -> Result<(SnapshotId, Snapshot)> {
    // Flushed first, so the figures count the last packs; `seal` flushes
    // again, which is then free.
    packer.flush()?;
    let st = &packer.stats;
    summary.new_bytes = st.new_bytes.load(Ordering::Relaxed);
    summary.stored_bytes = st.stored_bytes.load(Ordering::Relaxed);
    summary.new_blobs = st.new_blobs.load(Ordering::Relaxed);
    summary.duration_ns = started.elapsed().as_nanos() as u64;
    let snapshot = Snapshot {
        version: 1,
        time: plan.time.unwrap_or_else(crate::util::now_ns),
        host: plan.host.clone(),
        user: crate::util::username(),
        paths: plan.paths.clone(),
        tags: plan.tags.clone(),
        tree,
        parent,
        summary,
        root: plan.root.clone(),
        original: None,
    };
    let id = seal(repo, packer, &snapshot)?;
    Ok((id, snapshot))
}

/// A snapshot copied from another store (`sync`): the same snapshot over the
/// copied tree, pointing at the copy of its parent and naming its origin, saved
/// after the same write barrier.
pub fn save_copy(
    repo: &Repo,
    packer: &Packer,
    original: &Snapshot,
    identity: SnapshotId,
    tree: BlobId,
    parent: Option<SnapshotId>,
) -> Result<SnapshotId> {
    let copy = Snapshot {
        tree,
        parent,
        original: Some(identity),
        ..original.clone()
    };
    seal(repo, packer, &copy)
}

/// The write barrier every snapshot passes: the packer's packs, then the
/// index naming them, and only then the snapshot object, so a snapshot that
/// can be listed never points at a blob the store lacks. The one place in the
/// crate that saves a snapshot.
fn seal(repo: &Repo, packer: &Packer, snapshot: &Snapshot) -> Result<SnapshotId> {
    packer.flush()?;
    repo.save_snapshot(snapshot)
}
