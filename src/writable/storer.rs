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
//!
//! The workers keep off one core ([`StoreCpus`]): the writer and the FUSE
//! threads answering it take turns on that one, and a copy of many small
//! files waits on those turns, not on storing. Where a worker could run
//! anywhere, it kept taking the core a reply had just woken the writer on
//! (`cp -a` of 33.6k entries from tmpfs, 2 cores, interleaved: 10.8–12.7 s
//! confined, 14.6–15.9 s for 28f77d7; docs/benchmarks.md). Streams of large files
//! (`stream.rs`) are not confined: confined, they held about 170 MiB more of
//! the daemon's memory for no time saved.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use parking_lot::{Condvar, Mutex};

use crate::fs_error::{FsError, FsResult};

/// Jobs and bytes (of in-memory files) waiting or running at once.
const MAX_JOBS: usize = 256;
const MAX_BYTES: u64 = 64 << 20;

type Job = Box<dyn FnOnce() -> FsResult<()> + Send>;

#[derive(Default)]
struct State {
    queue: VecDeque<(u64, Job)>,
    /// Queued or running, and the bytes they hold.
    jobs: usize,
    bytes: u64,
    error: Option<FsError>,
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

/// The CPUs the storer's workers run on: every CPU the mount may use but its
/// first, when it may use two or more; otherwise no confinement.
#[derive(Clone, Copy, Default)]
pub struct StoreCpus(Option<CpuSet>);

impl StoreCpus {
    /// From the calling thread's CPUs: call it before confining any thread.
    pub fn detect() -> Self {
        let Ok(all) = sched_getaffinity(Pid::from_raw(0)) else {
            return Self(None);
        };
        let allowed: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| all.is_set(c).unwrap_or(false))
            .collect();
        if allowed.len() < 2 {
            return Self(None);
        }
        let mut set = CpuSet::new();
        for &c in &allowed[1..] {
            let _ = set.set(c);
        }
        Self(Some(set))
    }

    /// How many CPUs storing has (all, if it is not confined).
    pub fn count(&self) -> usize {
        match &self.0 {
            Some(s) => (0..CpuSet::count())
                .filter(|&c| s.is_set(c).unwrap_or(false))
                .count(),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Confines the calling thread; a failure only costs speed.
    pub fn enter(&self) {
        if let Some(s) = &self.0 {
            if let Err(e) = sched_setaffinity(Pid::from_raw(0), s) {
                tracing::debug!("storing thread not confined: {e}");
            }
        }
    }
}

impl Storer {
    /// One worker per CPU of `cpus` (at least two, so that one long job
    /// does not hold up the small ones), each confined to them.
    pub fn new(cpus: StoreCpus) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let workers = (0..cpus.count().max(2))
            .map(|i| {
                let sh = shared.clone();
                std::thread::Builder::new()
                    .name(format!("store-{i}"))
                    .spawn(move || {
                        cpus.enter();
                        work(&sh)
                    })
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Self { shared, workers })
    }

    /// The first failure of a job, if any.
    pub fn error(&self) -> Option<FsError> {
        self.shared.state.lock().error.clone()
    }

    /// Queues `job` (holding `bytes` of memory), waiting while the queue is full.
    pub fn submit(&self, bytes: u64, job: impl FnOnce() -> FsResult<()> + Send + 'static) {
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

    /// Storing threads keep off the first CPU the process may use, and stay
    /// unconfined with a single CPU.
    #[test]
    fn storing_keeps_off_one_cpu() {
        let all = sched_getaffinity(Pid::from_raw(0)).unwrap();
        let allowed: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| all.is_set(c).unwrap())
            .collect();
        let cpus = StoreCpus::detect();
        if allowed.len() < 2 {
            assert!(cpus.0.is_none());
            return;
        }
        assert_eq!(cpus.count(), allowed.len() - 1);
        let seen = std::thread::spawn(move || {
            cpus.enter();
            sched_getaffinity(Pid::from_raw(0)).unwrap()
        })
        .join()
        .unwrap();
        assert!(!seen.is_set(allowed[0]).unwrap(), "the first CPU is left");
        for &c in &allowed[1..] {
            assert!(seen.is_set(c).unwrap());
        }
        // The calling thread itself is not confined by detect().
        let me = sched_getaffinity(Pid::from_raw(0)).unwrap();
        assert!(me.is_set(allowed[0]).unwrap());
    }

    #[test]
    fn runs_everything_before_idle_and_keeps_the_first_error() {
        let s = Storer::new(StoreCpus::default()).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..1000u64 {
            let d = done.clone();
            s.submit(i % 7 * (1 << 20), move || {
                d.fetch_add(1, Ordering::SeqCst);
                if i == 500 {
                    Err(FsError::Unavailable("boom".into()))
                } else {
                    Ok(())
                }
            });
        }
        s.wait_idle();
        assert_eq!(done.load(Ordering::SeqCst), 1000);
        assert_eq!(s.error(), Some(FsError::Unavailable("boom".into())));
        let st = s.shared.state.lock();
        assert_eq!((st.jobs, st.bytes), (0, 0));
    }
}
