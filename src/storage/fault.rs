//! Fault injection around any storage: fail the Nth put or get, tear a write,
//! flip a byte on read, add latency, hide objects, or "crash" after N puts
//! (every later put fails, as if the process had died: what was written before
//! is exactly what a real crash leaves, since each put is atomic).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{Kind, Storage, StorageError, StorageResult};

#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Puts numbered from 1; this one and every later one fail (a crash).
    pub crash_after_puts: Option<u64>,
    /// Only this put fails (transient error).
    pub fail_put: Option<u64>,
    /// This put stores only the first half of its bytes, then reports success.
    pub tear_put: Option<u64>,
    /// Gets numbered from 1: this one fails.
    pub fail_get: Option<u64>,
    /// Every get of this kind returns data with one byte flipped.
    pub flip_on_get: Option<Kind>,
    /// Gets of this kind answer not-found.
    pub hide: Option<Kind>,
    pub latency: Option<Duration>,
    /// Puts and deletes numbered from 1: this one and every later one fail
    /// (a crash that can also fall between the deletions of a prune).
    pub crash_after_mutations: Option<u64>,
    /// This put stores the object, then reports a failure (a lost answer).
    pub lose_answer_put: Option<u64>,
    /// Injected failures are transient ([`StorageError::Unavailable`], retried
    /// by the retry wrapper) instead of permanent.
    pub transient: bool,
}

pub struct FaultStorage {
    inner: Arc<dyn Storage>,
    plan: Mutex<FaultPlan>,
    puts: AtomicU64,
    gets: AtomicU64,
    mutations: AtomicU64,
    torn: Mutex<Option<Kind>>,
}

impl FaultStorage {
    pub fn new(inner: Arc<dyn Storage>, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan: Mutex::new(plan),
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            mutations: AtomicU64::new(0),
            torn: Mutex::new(None),
        }
    }

    pub fn set_plan(&self, plan: FaultPlan) {
        *self.plan.lock() = plan;
    }

    /// The kind of object a `tear_put` tore, once it has.
    pub fn torn(&self) -> Option<Kind> {
        *self.torn.lock()
    }

    /// Gets (and range gets) attempted so far.
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }

    /// Puts and deletes attempted so far.
    pub fn mutations(&self) -> u64 {
        self.mutations.load(Ordering::SeqCst)
    }

    /// True when the mutation just counted falls after a planned crash.
    fn crashed_mutation(&self) -> bool {
        let m = self.mutations.fetch_add(1, Ordering::SeqCst) + 1;
        self.plan
            .lock()
            .crash_after_mutations
            .is_some_and(|c| m > c)
    }

    /// Puts attempted so far.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }

    fn injected(&self, what: &str) -> StorageError {
        let msg = format!("injected fault: {what}");
        if self.plan.lock().transient {
            StorageError::Unavailable(msg)
        } else {
            StorageError::Backend(msg)
        }
    }

    fn on_get(
        &self,
        kind: Kind,
        name: &str,
        data: StorageResult<Vec<u8>>,
    ) -> StorageResult<Vec<u8>> {
        let n = self.gets.fetch_add(1, Ordering::SeqCst) + 1;
        let plan = self.plan.lock().clone();
        if let Some(d) = plan.latency {
            std::thread::sleep(d);
        }
        if plan.fail_get == Some(n) {
            return Err(self.injected("get failed"));
        }
        if plan.hide == Some(kind) {
            return Err(StorageError::NotFound {
                kind,
                name: name.to_string(),
            });
        }
        let mut data = data?;
        if plan.flip_on_get == Some(kind) && !data.is_empty() {
            let i = data.len() / 2;
            data[i] ^= 0x01;
        }
        Ok(data)
    }
}

impl Storage for FaultStorage {
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> StorageResult<()> {
        let n = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crashed_mutation() {
            return Err(self.injected("crashed"));
        }
        let plan = self.plan.lock().clone();
        if let Some(d) = plan.latency {
            std::thread::sleep(d);
        }
        if plan.crash_after_puts.is_some_and(|c| n > c) {
            return Err(self.injected("crashed"));
        }
        if plan.fail_put == Some(n) {
            return Err(self.injected("put failed"));
        }
        if plan.lose_answer_put == Some(n) {
            self.inner.put(kind, name, data)?;
            return Err(self.injected("answer lost"));
        }
        if plan.tear_put == Some(n) {
            *self.torn.lock() = Some(kind);
            return self.inner.put(kind, name, &data[..data.len() / 2]);
        }
        self.inner.put(kind, name, data)
    }

    fn get(&self, kind: Kind, name: &str) -> StorageResult<Vec<u8>> {
        let r = self.inner.get(kind, name);
        self.on_get(kind, name, r)
    }

    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> StorageResult<Vec<u8>> {
        let r = self.inner.get_range(kind, name, offset, len);
        self.on_get(kind, name, r)
    }

    fn list(&self, kind: Kind) -> StorageResult<Vec<(String, u64)>> {
        self.inner.list(kind)
    }

    fn delete(&self, kind: Kind, name: &str) -> StorageResult<()> {
        if self.crashed_mutation() {
            return Err(self.injected("crashed"));
        }
        if self
            .plan
            .lock()
            .crash_after_puts
            .is_some_and(|c| self.puts() > c)
        {
            return Err(self.injected("crashed"));
        }
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
        format!("fault({})", self.inner.location())
    }
}
