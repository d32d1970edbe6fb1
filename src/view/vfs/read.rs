//! File reads of the Vfs: per-inode chunk offsets kept for the files read
//! lately, ranges served by the shared chunk reader, read-ahead for
//! sequential readers, and, for remote stores, read-ahead across the files
//! of a directory read in order (`rsync`, `cp -r`): the next files' chunks
//! come in one coalesced ranged read (files of one directory sit side by
//! side in a pack), so a reader of small files waits one round trip per
//! batch of files instead of one per file.

use std::sync::Arc;

use parking_lot::Mutex;

use super::{Vfs, What};
use crate::format::tree::{Node, NodeKind};
use crate::fs_error::{FsError, FsResult};
use crate::view::chunk_cache::{chunk_offsets, read_chunks};

/// What reads of one file need, kept per inode (reads carry no open handle:
/// the FUSE shell declines `open`, see `fuse.rs`).
pub(super) struct Handle {
    node: Arc<Node>,
    /// Start offset of each chunk, plus the end: binary-searched on each read.
    offsets: Vec<u64>,
    /// End of the last read and the chunk index read-ahead has reached.
    cursor: Mutex<(u64, usize)>,
}

impl Vfs {
    /// The read state of a regular file, built on its first read.
    fn handle(&self, ino: u64) -> FsResult<Arc<Handle>> {
        if let Some(h) = self.handles.lock().get(&ino) {
            return Ok(h.clone());
        }
        let n = self.node(ino)?.ok_or(FsError::IsDir)?;
        match n.kind {
            NodeKind::File => {}
            NodeKind::Dir => return Err(FsError::IsDir),
            _ => return Err(FsError::NotFound),
        }
        let offsets = chunk_offsets(&n.content);
        let h = Arc::new(Handle {
            node: n,
            offsets,
            cursor: Mutex::new((u64::MAX, 0)),
        });
        self.handles.lock().put(ino, h.clone());
        Ok(h)
    }

    /// Up to `size` bytes of file `ino` at `offset` (short only at end of file).
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let h = self.handle(ino)?;
        let file_end = *h.offsets.last().expect("has the end offset");
        if offset >= file_end || size == 0 {
            return Ok(Vec::new());
        }
        let end = (offset + size as u64).min(file_end);
        let first = h.offsets.partition_point(|o| *o <= offset) - 1;
        if offset == 0 && self.opts.dir_ahead_files.unwrap_or(0) > 0 {
            self.dir_ahead(ino, &h.node);
        }
        self.read_ahead(&h, offset, end, first);
        read_chunks(&self.cache, &h.node.content, &h.offsets, offset, end).map_err(|e| {
            tracing::error!(
                "read of {:?} at {offset}: {e}",
                String::from_utf8_lossy(&h.node.name)
            );
            FsError::from(e)
        })
    }

    /// A file's first read: fetch the files that come after it in a walk
    /// (the rest of its directory in listing order, depth first, then on
    /// past its directory's end into the next ones) in the background,
    /// unless enough of them already are. At most `dir_ahead_files` files
    /// and a quarter of the chunk cache are fetched ahead, so what is fetched
    /// is still there when it is read.
    fn dir_ahead(&self, ino: u64, node: &Node) {
        let want = self.opts.dir_ahead_files.unwrap_or(0);
        let Some(first) = node.content.first().map(|c| c.id) else {
            return;
        };
        // Still a quarter of a window ahead of the reader: nothing to do.
        if self
            .dir_ahead
            .lock()
            .get(&first)
            .is_some_and(|left| *left > want / 4)
        {
            return;
        }
        // A cursor at the file, then forward: (a tree, the next position).
        let mut stack: Vec<(Arc<crate::format::tree::Tree>, usize)> = Vec::new();
        let mut at = ino;
        let mut name = node.name.clone();
        let budget = self.opts.cache_bytes / 4;
        let (mut bytes, mut files) = (0usize, Vec::new());
        // Climbs at most this many directories past the file's own.
        let mut climbs = 4;
        'walk: while let Ok(e) = self.entry(at) {
            let Ok(pe) = self.entry(e.parent) else { break };
            let What::Node { node: dir, .. } = &pe.what else {
                break;
            };
            let Some(tree) = dir.subtree.and_then(|t| self.repo.load_tree(&t).ok()) else {
                break;
            };
            let Ok(pos) = tree
                .nodes
                .binary_search_by(|n| n.name.as_slice().cmp(&name))
            else {
                break;
            };
            stack.push((tree, pos + 1));
            while let Some((t, i)) = stack.last_mut() {
                let Some(n) = t.nodes.get(*i) else {
                    stack.pop();
                    continue;
                };
                *i += 1;
                match n.kind {
                    NodeKind::File if !n.content.is_empty() => {
                        let size: usize = n.content.iter().map(|c| c.size as usize).sum();
                        if bytes + size > budget {
                            break 'walk;
                        }
                        bytes += size;
                        files.push(n.content.iter().map(|c| c.id).collect::<Vec<_>>());
                        if files.len() >= want {
                            break 'walk;
                        }
                    }
                    NodeKind::Dir => {
                        if let Some(sub) = n.subtree.and_then(|t| self.repo.load_tree(&t).ok()) {
                            stack.push((sub, 0));
                        }
                    }
                    _ => {}
                }
            }
            // The directory is done: go on after it in its parent.
            if climbs == 0 || e.parent == at {
                break;
            }
            climbs -= 1;
            name = dir.name.clone();
            at = e.parent;
        }
        if files.is_empty() {
            return;
        }
        {
            let mut marks = self.dir_ahead.lock();
            let n = files.len();
            for (i, f) in files.iter().enumerate() {
                marks.put(f[0], n - i);
            }
        }
        self.cache
            .spawn_prefetch(files.into_iter().flatten().collect());
    }

    /// On a sequential read, fetch the next chunks in the background.
    fn read_ahead(&self, h: &Arc<Handle>, offset: u64, end: u64, first: usize) {
        let n = self.opts.readahead_chunks;
        let todo = {
            let mut cur = h.cursor.lock();
            let sequential = cur.0 == offset || offset == 0;
            cur.0 = end;
            if !sequential || n == 0 {
                return;
            }
            let from = cur.1.max(first + 1);
            let mut to = (first + 1 + n).min(h.node.content.len());
            // The window never holds more than half the chunk cache: chunks
            // fetched ahead must not evict each other before they are read.
            let mut bytes: usize = h.node.content[first + 1..to]
                .iter()
                .map(|c| c.size as usize)
                .sum();
            while to > first + 2 && bytes > self.opts.cache_bytes / 2 {
                to -= 1;
                bytes -= h.node.content[to].size as usize;
            }
            // Ask in steps of an eighth of the window (at least one chunk), so
            // a long window makes fewer, larger range reads.
            let step = (n / 8).max(1);
            if from >= to || (to - from < step && to < h.node.content.len()) {
                return;
            }
            cur.1 = to;
            from..to
        };
        let ids: Vec<_> = h.node.content[todo].iter().map(|c| c.id).collect();
        self.cache.spawn_prefetch(ids);
    }
}
