//! What changed between two snapshot trees: entries added, removed and
//! modified, in name order. Equal subtrees (same tree id) are skipped without
//! being read, so diffs of large stores stay fast. `diff` prints it; the web
//! viewer shows it with links to both sides.

use std::sync::Arc;

use crate::error::Result;
use crate::format::tree::{Node, Tree};
use crate::repo::Repo;
use crate::util::join_path as join;

/// How an entry differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Modified,
}

impl Change {
    /// The mark `diff` prints: `+`, `-` or `M`.
    pub fn mark(self) -> &'static str {
        match self {
            Change::Added => "+",
            Change::Removed => "-",
            Change::Modified => "M",
        }
    }
}

/// What [`diff_nodes`] calls for each difference: `(change, path, older,
/// newer)`, answering whether to go on.
pub type OnChange<'a> = dyn FnMut(Change, &[u8], Option<&Node>, Option<&Node>) -> bool + 'a;

/// Calls `f(change, path, older, newer)` for every difference between `a`
/// and `b` (a directory's own change comes after its entries'), where `path`
/// is `base` joined with the entry's names. `f` answers whether to go on;
/// the answer is whether the walk went to the end.
pub fn diff_nodes(repo: &Repo, a: &Node, b: &Node, base: &[u8], f: &mut OnChange) -> Result<bool> {
    // The two sides' trees usually sit in different packs (the older and
    // the newer backup's): on a remote store both come at once.
    let roots: Vec<_> = [a.subtree, b.subtree].into_iter().flatten().collect();
    repo.warm_trees(&roots);
    walk(repo, a, b, base, f)
}

fn walk(repo: &Repo, a: &Node, b: &Node, base: &[u8], f: &mut OnChange) -> Result<bool> {
    if a.is_dir() && b.is_dir() {
        if a.subtree == b.subtree {
            return Ok(true);
        }
        let load = |n: &Node| -> Result<Arc<Tree>> {
            Ok(match n.subtree {
                Some(id) => repo.load_tree(&id)?,
                None => Default::default(),
            })
        };
        let (ta, tb) = (load(a)?, load(b)?);
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let (x, y) = (ta.nodes.get(i), tb.nodes.get(j));
            let ord = match (x, y) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let go_on = match ord {
                std::cmp::Ordering::Less => {
                    i += 1;
                    f(Change::Removed, &join(base, &ta.nodes[i - 1].name), x, None)
                }
                std::cmp::Ordering::Greater => {
                    j += 1;
                    f(Change::Added, &join(base, &tb.nodes[j - 1].name), None, y)
                }
                std::cmp::Ordering::Equal => {
                    let (x, y) = (&ta.nodes[i], &tb.nodes[j]);
                    i += 1;
                    j += 1;
                    walk(repo, x, y, &join(base, &x.name), f)?
                }
            };
            if !go_on {
                return Ok(false);
            }
        }
        if changed(a, b) && !base.is_empty() {
            return Ok(f(Change::Modified, base, Some(a), Some(b)));
        }
    } else if changed(a, b) {
        let path = if base.is_empty() { &a.name } else { base };
        return Ok(f(Change::Modified, path, Some(a), Some(b)));
    }
    Ok(true)
}

/// Whether two entries of the same name differ in anything a restore keeps.
pub fn changed(a: &Node, b: &Node) -> bool {
    a.kind != b.kind
        || a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.size != b.size
        || a.mtime != b.mtime
        || a.content != b.content
        || a.target != b.target
        || a.xattrs != b.xattrs
        || a.rdev != b.rdev
}
