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

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// Jobs and bytes (of in-memory files) waiting or running at once.
const MAX_JOBS: usize = 256;
const MAX_BYTES: u64 = 64 << 20;

#[derive(Default)]
struct State {
    jobs: usize,
    bytes: u64,
    error: Option<String>,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

pub struct Storer {
    pool: rayon::ThreadPool,
    state: Shared,
}

impl Storer {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("store-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self {
            pool,
            state: Arc::new((Mutex::new(State::default()), Condvar::new())),
        })
    }

    /// The first failure of a job, if any.
    pub fn error(&self) -> Option<String> {
        self.state.0.lock().error.clone()
    }

    /// Queues `job` (holding `bytes` of memory), waiting while the queue is full.
    pub fn submit(&self, bytes: u64, job: impl FnOnce() -> Result<(), String> + Send + 'static) {
        {
            let (lock, cv) = &*self.state;
            let mut s = lock.lock();
            while s.jobs >= MAX_JOBS || (s.jobs > 0 && s.bytes + bytes > MAX_BYTES) {
                cv.wait(&mut s);
            }
            s.jobs += 1;
            s.bytes += bytes;
        }
        let state = self.state.clone();
        self.pool.spawn(move || {
            let r = job();
            let (lock, cv) = &*state;
            let mut s = lock.lock();
            if let Err(e) = r {
                tracing::error!("writable mount: storing a closed file failed: {e}");
                s.error.get_or_insert(e);
            }
            s.jobs -= 1;
            s.bytes -= bytes;
            cv.notify_all();
        });
    }

    /// Waits until every queued job has finished.
    pub fn wait_idle(&self) {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock();
        while s.jobs > 0 {
            cv.wait(&mut s);
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
        let st = s.state.0.lock();
        assert_eq!((st.jobs, st.bytes), (0, 0));
    }
}
