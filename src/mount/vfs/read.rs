//! File reads of the Vfs: per-inode chunk offsets kept for the files read
//! lately, ranges served by the shared chunk reader, and read-ahead for
//! sequential readers.

use std::sync::Arc;

use parking_lot::Mutex;

use super::{VResult, Vfs, VfsError};
use crate::format::tree::{Node, NodeKind};
use crate::pipeline::chunk_cache::{chunk_offsets, read_chunks};

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
    fn handle(&self, ino: u64) -> VResult<Arc<Handle>> {
        if let Some(h) = self.handles.lock().get(&ino) {
            return Ok(h.clone());
        }
        let n = self.node(ino)?.ok_or(VfsError::IsDir)?;
        match n.kind {
            NodeKind::File => {}
            NodeKind::Dir => return Err(VfsError::IsDir),
            _ => return Err(VfsError::NotFound),
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
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> VResult<Vec<u8>> {
        let h = self.handle(ino)?;
        let file_end = *h.offsets.last().expect("has the end offset");
        if offset >= file_end || size == 0 {
            return Ok(Vec::new());
        }
        let end = (offset + size as u64).min(file_end);
        let first = h.offsets.partition_point(|o| *o <= offset) - 1;
        self.read_ahead(&h, offset, end, first);
        read_chunks(&self.cache, &h.node.content, &h.offsets, offset, end).map_err(|e| {
            tracing::error!(
                "read of {:?} at {offset}: {e}",
                String::from_utf8_lossy(&h.node.name)
            );
            VfsError::Io(e.to_string())
        })
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
