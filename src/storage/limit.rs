//! Bounded concurrency around any storage: at most N requests in flight, the
//! rest wait their turn. Keeps a remote server (and our memory) from drowning
//! when every backup worker, prefetcher and FUSE thread asks at once.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::{Kind, Storage, StorageResult};

pub struct LimitStorage {
    inner: Arc<dyn Storage>,
    max: usize,
    busy: Mutex<usize>,
    freed: Condvar,
}

/// A slot; dropping it frees the slot, also when the request panicked.
struct Slot<'a>(&'a LimitStorage);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock() -= 1;
        self.0.freed.notify_one();
    }
}

impl LimitStorage {
    pub fn new(inner: Arc<dyn Storage>, max: usize) -> Self {
        Self {
            inner,
            max: max.max(1),
            busy: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    fn slot(&self) -> Slot<'_> {
        let mut busy = self.busy.lock();
        while *busy >= self.max {
            self.freed.wait(&mut busy);
        }
        *busy += 1;
        Slot(self)
    }
}

impl Storage for LimitStorage {
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> StorageResult<()> {
        let _s = self.slot();
        self.inner.put(kind, name, data)
    }

    fn get(&self, kind: Kind, name: &str) -> StorageResult<Vec<u8>> {
        let _s = self.slot();
        self.inner.get(kind, name)
    }

    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> StorageResult<Vec<u8>> {
        let _s = self.slot();
        self.inner.get_range(kind, name, offset, len)
    }

    fn list(&self, kind: Kind) -> StorageResult<Vec<(String, u64)>> {
        let _s = self.slot();
        self.inner.list(kind)
    }

    fn delete(&self, kind: Kind, name: &str) -> StorageResult<()> {
        let _s = self.slot();
        self.inner.delete(kind, name)
    }

    fn temporaries(
        &self,
        older_than: std::time::SystemTime,
        remove: bool,
    ) -> StorageResult<Vec<(String, u64)>> {
        self.inner.temporaries(older_than, remove)
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{FaultPlan, FaultStorage, MemoryStorage};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts requests in flight inside the limit.
    struct Probe {
        inner: FaultStorage,
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    impl Probe {
        fn enter(&self) -> impl Drop + '_ {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(n, Ordering::SeqCst);
            struct Exit<'a>(&'a AtomicUsize);
            impl Drop for Exit<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Exit(&self.now)
        }
    }

    impl Storage for Probe {
        fn put(&self, kind: Kind, name: &str, data: &[u8]) -> StorageResult<()> {
            let _e = self.enter();
            self.inner.put(kind, name, data)
        }
        fn get(&self, kind: Kind, name: &str) -> StorageResult<Vec<u8>> {
            let _e = self.enter();
            self.inner.get(kind, name)
        }
        fn get_range(&self, k: Kind, n: &str, o: u64, l: u64) -> StorageResult<Vec<u8>> {
            let _e = self.enter();
            self.inner.get_range(k, n, o, l)
        }
        fn list(&self, kind: Kind) -> StorageResult<Vec<(String, u64)>> {
            self.inner.list(kind)
        }
        fn delete(&self, kind: Kind, name: &str) -> StorageResult<()> {
            self.inner.delete(kind, name)
        }
        fn location(&self) -> String {
            "probe".into()
        }
    }

    #[test]
    fn never_more_than_max_in_flight() {
        let probe = Arc::new(Probe {
            inner: FaultStorage::new(
                Arc::new(MemoryStorage::new()),
                FaultPlan {
                    latency: Some(std::time::Duration::from_millis(5)),
                    ..Default::default()
                },
            ),
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let s = Arc::new(LimitStorage::new(probe.clone(), 3));
        std::thread::scope(|sc| {
            for t in 0..12 {
                let s = s.clone();
                sc.spawn(move || {
                    for i in 0..5 {
                        s.put(Kind::Pack, &format!("p{t}x{i}"), b"data").unwrap();
                    }
                });
            }
        });
        assert_eq!(probe.peak.load(Ordering::SeqCst), 3);
        assert_eq!(s.list(Kind::Pack).unwrap().len(), 60);
        crate::storage::suite::run_all(Arc::new(LimitStorage::new(
            Arc::new(MemoryStorage::new()),
            2,
        )));
    }
}
