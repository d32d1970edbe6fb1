//! Tree read-ahead for walks: when a snapshot directory is listed, the trees
//! of its subdirectories are loaded (read, verified, decoded) by a background
//! thread, so that a `find`, `rsync` or `du` going into them finds them in the
//! tree cache instead of waiting for that work inside its request.
//!
//! Walkers go depth first in listing order, so the queue is a stack: a newly
//! listed directory's children are taken next, in their listing order, before
//! the siblings queued earlier. It is bounded; the oldest (furthest from where
//! the walk is) are dropped first. Failures are ignored here: the request
//! that needs the tree loads it again and reports the error.

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::format::id::BlobId;
use crate::repo::Repo;

/// Subtrees waiting at most. Enough for a walk's frontier, and few enough
/// that the trees loaded ahead fit the tree cache beside those in use (64
/// trees of 1,000 files are roughly 20–25 MiB decoded, against the default
/// 64 MiB): running further ahead than the cache holds would evict the
/// trees the walk is about to take.
const MAX_QUEUED: usize = 64;

#[derive(Default)]
struct State {
    /// Next to load at the end.
    stack: Vec<BlobId>,
    closing: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    work: Condvar,
}

pub struct Prefetcher {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Prefetcher {
    /// One loader thread: enough to stay ahead of a walk whose requests
    /// each take one tree, and it leaves the other cores to the walker.
    pub fn new(repo: Arc<Repo>) -> Self {
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let worker = std::thread::Builder::new()
            .name("tree-prefetch".into())
            .spawn(move || work(&sh, &repo))
            .map_err(|e| tracing::warn!("no tree read-ahead: {e}"))
            .ok();
        Self { shared, worker }
    }

    /// Queues the subtrees of a directory just listed, in listing order.
    pub fn push(&self, subtrees: impl DoubleEndedIterator<Item = BlobId>) {
        if self.worker.is_none() {
            return;
        }
        let mut s = self.shared.state.lock();
        let before = s.stack.len();
        // Reversed, so the first child is on top.
        s.stack.extend(subtrees.rev());
        if s.stack.len() == before {
            return;
        }
        if s.stack.len() > MAX_QUEUED {
            let over = s.stack.len() - MAX_QUEUED;
            s.stack.drain(..over);
        }
        self.shared.work.notify_one();
    }

    #[cfg(test)]
    fn queued(&self) -> Vec<BlobId> {
        self.shared.state.lock().stack.clone()
    }
}

fn work(sh: &Shared, repo: &Repo) {
    let mut s = sh.state.lock();
    loop {
        if s.closing {
            return;
        }
        let Some(id) = s.stack.pop() else {
            sh.work.wait(&mut s);
            continue;
        };
        drop(s);
        // Answered from the cache if already there (and kept recent there).
        if let Err(e) = repo.load_tree(&id) {
            tracing::debug!("tree read-ahead of {id}: {e}");
        }
        s = sh.state.lock();
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.shared.state.lock().closing = true;
        self.shared.work.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u8) -> BlobId {
        BlobId([i; 32])
    }

    /// Depth first: the last listed directory's children come first, in
    /// their order; beyond the bound the oldest go.
    #[test]
    fn stack_order_and_bound() {
        let p = Prefetcher {
            shared: Arc::default(),
            worker: None,
        };
        // Without a worker nothing is queued.
        p.push([id(1)].into_iter());
        assert!(p.queued().is_empty());
        let p = Prefetcher {
            shared: Arc::default(),
            // A worker that never runs: the queue is only inspected.
            worker: Some(std::thread::spawn(|| {})),
        };
        p.push([id(1), id(2)].into_iter());
        p.push([id(3), id(4)].into_iter());
        assert_eq!(p.queued(), vec![id(2), id(1), id(4), id(3)]);
        p.push((0..MAX_QUEUED).map(|i| id((i % 200) as u8 + 10)));
        let q = p.queued();
        assert_eq!(q.len(), MAX_QUEUED);
        assert_eq!(q.last(), Some(&id(10)));
    }
}
