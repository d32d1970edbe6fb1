//! Committing a writable session: everything closed so far becomes a
//! snapshot (packs → index → trees → snapshot), and a new journal starts on
//! top of it. [`write_snapshot`] is the one commit: the live session calls
//! it on its namespace, a recovery (`recover.rs`) on the namespace its
//! replay rebuilt.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::error::Result;
use crate::format::id::{BlobId, SnapshotId};
use crate::format::snapshot::Summary;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::fs_error::FsResult;
use crate::ops::local_node::NameCache;
use crate::ops::writer::{save_snapshot, SnapshotPlan};
use crate::pipeline::packer::Packer;
use crate::repo::Repo;

use super::journal::{Journal, Record};
use super::namespace::{Namespace, WInode, ROOT};
use super::{WritableFs, MOUNT_DEV};
use crate::ops::exclude::Excludes;

/// Who a commit's snapshot is from, and what it follows.
pub(super) struct Origin<'a> {
    pub host: &'a str,
    pub tags: &'a [String],
    pub base: Option<SnapshotId>,
}

/// The namespace's tree, stored through `packer` (which holds every chunk
/// the tree names), then the snapshot over it on top of `origin.base`.
/// `tree` is what [`tree`] built while the caller held the namespace.
pub(super) fn write_snapshot(
    repo: &Repo,
    packer: &Packer,
    origin: &Origin,
    tree: (BlobId, Node, Summary),
    started: Instant,
) -> Result<SnapshotId> {
    let (root, root_meta, summary) = tree;
    let plan = SnapshotPlan {
        host: origin.host.to_string(),
        paths: vec![b"/".to_vec()],
        tags: origin.tags.to_vec(),
        time: None,
        root: Some(root_meta),
    };
    let (id, _) = save_snapshot(repo, packer, &plan, origin.base, root, summary, started)?;
    Ok(id)
}

/// Stores the trees of `ns` (bottom up), leaving out what `excludes`
/// names, and returns the root's id, the root's own metadata (what
/// `cp -a SRC/. MNT/` set on the mount's root) and the counts.
pub(super) fn tree(
    ns: &Namespace,
    packer: &Packer,
    names: &NameCache,
    excludes: &Excludes,
) -> FsResult<(BlobId, Node, Summary)> {
    let mut summary = Summary::default();
    let walk = Walk {
        ns,
        packer,
        names,
        excludes,
    };
    let root = walk.build_tree(ROOT, &mut Vec::new(), &mut summary)?;
    let meta = meta_node(names, b"/".to_vec(), ROOT, ns.get(ROOT)?);
    Ok((root, meta, summary))
}

/// What one commit's tree walk reads.
struct Walk<'a> {
    ns: &'a Namespace,
    packer: &'a Packer,
    names: &'a NameCache,
    excludes: &'a Excludes,
}

impl Walk<'_> {
    /// The tree of `dir`, whose path from the root is `path` (kept only when
    /// there are excludes to match).
    fn build_tree(&self, dir: u64, path: &mut Vec<u8>, sum: &mut Summary) -> FsResult<BlobId> {
        let (ns, names) = (self.ns, self.names);
        let mut nodes = Vec::new();
        for (name, ino) in ns.to_nodes(dir) {
            let depth = path.len();
            if !self.excludes.is_empty() {
                path.push(b'/');
                path.extend_from_slice(&name);
                if self.excludes.matches(path) {
                    path.truncate(depth);
                    continue;
                }
            }
            let i = ns.get(ino)?;
            let subtree = if i.is_dir() {
                sum.dirs += 1;
                Some(self.build_tree(ino, path, sum)?)
            } else {
                None
            };
            path.truncate(depth);
            let size = match i.kind {
                NodeKind::File => {
                    sum.files += 1;
                    let s: u64 = i.content.iter().map(|c| c.size as u64).sum();
                    sum.bytes += s;
                    s
                }
                NodeKind::Dir => 0,
                _ => {
                    sum.others += 1;
                    0
                }
            };
            nodes.push(Node {
                size,
                content: if i.kind == NodeKind::File {
                    i.content.clone()
                } else {
                    Vec::new()
                },
                subtree,
                ..meta_node(names, name, ino, i)
            });
        }
        let tree = Tree::new(nodes);
        Ok(self
            .packer
            .save(crate::format::blob::BlobType::Tree, &tree.encode())?)
    }
}

/// An inode's metadata as a tree node (no size, content or subtree).
fn meta_node(names: &NameCache, name: Vec<u8>, ino: u64, i: &WInode) -> Node {
    let mut n = i.to_node();
    n.name = name;
    n.size = 0;
    n.content = Vec::new();
    if n.user.is_empty() {
        n.user = names.user(i.uid);
    }
    if n.group.is_empty() {
        n.group = names.group(i.gid);
    }
    n.dev = MOUNT_DEV;
    n.ino = ino;
    n.nlink = if i.is_dir() {
        1
    } else {
        i.links.len().max(1) as u64
    };
    n
}

impl WritableFs {
    /// Writes a snapshot of everything closed so far, then starts a new
    /// journal on top of it.
    pub fn commit(&self) -> FsResult<SnapshotId> {
        self.commit_with(|| {})
    }

    /// [`commit`](Self::commit), running `while_saving` after the tree is
    /// built and before the snapshot is saved (tests change the namespace
    /// there, as a copy going on during the commit would).
    pub(super) fn commit_with(&self, while_saving: impl FnOnce()) -> FsResult<SnapshotId> {
        let _g = self.commits.lock.lock();
        // No close falls between the tree and the new journal.
        let _closes = self.commits.gate.write();
        let started = Instant::now();
        // Every close so far must be stored before its chunks go in a tree.
        self.storer.wait_idle();
        self.check_store_error()?;
        self.packer.flush()?;
        // The tree and the journal's end at one instant: every change is
        // journaled under the namespace's lock, so the records after `mark`
        // are exactly the changes the tree does not hold.
        let (tree, mark) = {
            let ns = self.ns.lock();
            let tree = tree(&ns, &self.packer, &self.names, &self.opts.excludes)?;
            (tree, self.journal.lock().end())
        };
        while_saving();
        let origin = Origin {
            host: &self.opts.host,
            tags: &self.opts.tags,
            base: *self.commits.base.lock(),
        };
        // Renames, creations and the like go on meanwhile (only closes wait).
        let id = write_snapshot(&self.repo, &self.packer, &origin, tree, started)?;
        let header = Record::Header {
            store_id: self.repo.config().id.clone(),
            base: Some(id),
            host: self.opts.host.clone(),
            tags: self.opts.tags.clone(),
        };
        let freed: Vec<String> = {
            let mut ns = self.ns.lock();
            let mut journal = self.journal.lock();
            // What changed while the snapshot was saved goes on into the new
            // journal: it is not in the snapshot the new journal starts from.
            let since = journal.bytes_since(mark)?;
            *journal = Journal::create(
                &self.opts.spool_dir.join("journal"),
                &super::journal_head(header, &self.opts.excludes),
                &since,
                self.opts.sync == super::SyncMode::Close,
            )?;
            *self.commits.base.lock() = Some(id);
            self.commits
                .changed
                .store(!since.is_empty(), Ordering::Relaxed);
            Self::take_clean_spools(&mut ns)
        };
        self.drop_spools(freed);
        *self.commits.last.lock() = Some(id);
        tracing::info!("committed snapshot {}", id.short());
        Ok(id)
    }
}
