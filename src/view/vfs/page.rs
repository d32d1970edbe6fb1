//! `readdir` and `readdirplus` pages of snapshot directories: one tree per
//! page, each child's inode (and attributes) computed from it, and the
//! children the kernel was sent counted as looked up under one lock (a lookup
//! per child cost two map lookups, a tree-cache lookup, a name search and a
//! node copy). No listing is copied out of the tree.

use std::sync::Arc;

use super::{Attr, Vfs, What};
use crate::format::tree::{NodeKind, Tree};
use crate::fs_error::{FsError, FsResult};

/// A page of a snapshot directory's children from [`Vfs::peek_children`].
pub struct Children {
    parent: u64,
    scope: u64,
    tree: Arc<Tree>,
    from: usize,
}

impl Children {
    /// Children in the page (those from its start to the directory's end).
    pub fn len(&self) -> usize {
        self.tree.nodes.len().saturating_sub(self.from)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of the `k`th child of the page.
    pub fn name(&self, k: usize) -> &[u8] {
        &self.tree.nodes[self.from + k].name
    }

    /// The inode number and kind of the `k`th child, as `lookup` gives them.
    pub fn ino_kind(&self, k: usize) -> (u64, NodeKind) {
        let n = &self.tree.nodes[self.from + k];
        (Vfs::child_ino(self.parent, self.scope, n), n.kind)
    }
}

impl Vfs {
    /// A snapshot directory's children from `from` on, in tree order (the
    /// order [`Vfs::readdir`] lists them), for a `readdirplus` page: one tree,
    /// attributes computed on demand by [`Vfs::child_attr`], no lookups
    /// counted until the shell passes what it sent to [`Vfs::hold_children`].
    /// `None` for a layout directory, whose children are looked up by name.
    pub fn peek_children(&self, dir: u64, from: usize) -> FsResult<Option<Children>> {
        let e = self.entry(dir)?;
        let What::Node { node, scope } = &e.what else {
            return Ok(None);
        };
        if !node.is_dir() {
            return Err(FsError::NotDir);
        }
        let tree = self.node_tree(node)?;
        if from == 0 {
            // A walk goes into the subdirectories next: load them ahead.
            self.prefetch
                .push(tree.nodes.iter().filter_map(|n| n.subtree));
        }
        Ok(Some(Children {
            parent: dir,
            scope: *scope,
            tree,
            from,
        }))
    }

    /// What `lookup` would answer for the `k`th child of a page.
    pub fn child_attr(&self, c: &Children, k: usize) -> Attr {
        let n = &c.tree.nodes[c.from + k];
        self.node_attr(Self::child_ino(c.parent, c.scope, n), n)
    }

    /// Counts one lookup of each of the first `inos.len()` children of a
    /// page (`inos` as [`Vfs::child_attr`] gave them), under one lock.
    pub fn hold_children(&self, c: &Children, inos: &[u64]) {
        let mut entries = self.entries.write();
        let nodes = c.tree.nodes.get(c.from..).unwrap_or_default();
        for (ino, node) in inos.iter().zip(nodes) {
            self.hold(&mut entries, *ino, c.parent, c.scope, node);
        }
    }
}
