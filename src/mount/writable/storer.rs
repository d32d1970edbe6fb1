//! The writable mount's background storer. A close journals the file's bytes
//! (that is what makes it durable) and hands them here; chunking, compression,
//! sealing and packing then run on every core while the writer moves on to
//! its next file, instead of inside its `close()`.
//!
//! The queue is bounded (jobs and bytes), so a fast writer waits instead of
//! filling memory. The first failure is kept and repeated to every later
//! `write`, `close` and commit, so the writer sees it: the file whose storing
//! failed is still in the journal and spool, and is stored by the next
//! successful commit or by `recover`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

/// Jobs and bytes (of in-memory files) waiting or running at once.
const MAX_JOBS: usize = 256;
const MAX_BYTES: u64 = 64 << 20;

type Job = Box<dyn FnOnce() -> Result<(), String> + Send>;

#[derive(Default)]
struct State {
    queue: VecDeque<(u64, Job)>,
    /// Queued or running, and the bytes they hold.
    jobs: usize,
    bytes: u64,
    error: Option<String>,
    closing: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Workers wait here for jobs.
    work: Condvar,
    /// Submitters and `wait_idle` wait here for jobs to finish.
    done: Condvar,
}

/// Plain threads blocking on a condition variable, not a work-stealing pool:
/// jobs come one per closed file, so a pool's workers would keep going idle,
/// and rayon's spin-and-yield while idle took a fifth of this pool's CPU from
/// the writer and the FUSE threads on a 2-core machine.
pub struct Storer {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Storer {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let workers = (0..threads.max(1))
            .map(|i| {
                let sh = shared.clone();
                std::thread::Builder::new()
                    .name(format!("store-{i}"))
                    .spawn(move || work(&sh))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Self { shared, workers })
    }

    /// The first failure of a job, if any.
    pub fn error(&self) -> Option<String> {
        self.shared.state.lock().error.clone()
    }

    /// Queues `job` (holding `bytes` of memory), waiting while the queue is full.
    pub fn submit(&self, bytes: u64, job: impl FnOnce() -> Result<(), String> + Send + 'static) {
        let sh = &*self.shared;
        let mut s = sh.state.lock();
        while s.jobs >= MAX_JOBS || (s.jobs > 0 && s.bytes + bytes > MAX_BYTES) {
            sh.done.wait(&mut s);
        }
        s.jobs += 1;
        s.bytes += bytes;
        s.queue.push_back((bytes, Box::new(job)));
        sh.work.notify_one();
    }

    /// Waits until every queued job has finished.
    pub fn wait_idle(&self) {
        let sh = &*self.shared;
        let mut s = sh.state.lock();
        while s.jobs > 0 {
            sh.done.wait(&mut s);
        }
    }
}

fn work(sh: &Shared) {
    let mut s = sh.state.lock();
    loop {
        let Some((bytes, job)) = s.queue.pop_front() else {
            if s.closing {
                return;
            }
            sh.work.wait(&mut s);
            continue;
        };
        drop(s);
        let r = job();
        s = sh.state.lock();
        if let Err(e) = r {
            tracing::error!("writable mount: storing a closed file failed: {e}");
            s.error.get_or_insert(e);
        }
        s.jobs -= 1;
        s.bytes -= bytes;
        sh.done.notify_all();
    }
}

impl Drop for Storer {
    /// Runs what is queued, then stops the workers.
    fn drop(&mut self) {
        self.shared.state.lock().closing = true;
        self.shared.work.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_everything_before_idle_and_keeps_the_first_error() {
        let s = Storer::new(2).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..1000u64 {
            let d = done.clone();
            s.submit(i % 7 * (1 << 20), move || {
                d.fetch_add(1, Ordering::SeqCst);
                if i == 500 {
                    Err("boom".into())
                } else {
                    Ok(())
                }
            });
        }
        s.wait_idle();
        assert_eq!(done.load(Ordering::SeqCst), 1000);
        assert_eq!(s.error().as_deref(), Some("boom"));
        let st = s.shared.state.lock();
        assert_eq!((st.jobs, st.bytes), (0, 0));
    }
}
