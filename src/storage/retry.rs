//! Retries around any storage: failures that may pass (timeouts, throttling,
//! 5xx, refused connections: [`StorageError::Unavailable`]) are retried with
//! exponential backoff and full jitter; everything else (not found, refused
//! credentials, a full disk) is returned at once, since asking again will not
//! change the answer.

use std::sync::Arc;
use std::time::Duration;

use super::{Kind, Storage, StorageError, StorageResult};

#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// About a minute of patience in all (1+2+4+8+16+20+20 s at most), enough
    /// for a server restart, short enough that a dead endpoint fails clearly.
    fn default() -> Self {
        Self {
            attempts: 8,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The sleep before retry number `n` (from 1): uniform in [0, min(max, base·2ⁿ⁻¹)].
    fn delay(&self, n: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(self.max_delay);
        let mut r = [0u8; 8];
        // Jitter only: a failed getrandom just means no jitter.
        let _ = getrandom::getrandom(&mut r);
        let frac = u64::from_le_bytes(r) as f64 / u64::MAX as f64;
        cap.mul_f64(frac)
    }
}

pub struct RetryStorage {
    inner: Arc<dyn Storage>,
    policy: RetryPolicy,
}

impl RetryStorage {
    pub fn new(inner: Arc<dyn Storage>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    fn retry<T>(&self, what: &str, op: impl FnMut() -> StorageResult<T>) -> StorageResult<T> {
        self.policy.run(what, op)
    }
}

impl RetryPolicy {
    /// Runs `op`, retrying it while it fails with [`StorageError::Unavailable`].
    pub fn run<T>(&self, what: &str, mut op: impl FnMut() -> StorageResult<T>) -> StorageResult<T> {
        let mut n = 0;
        loop {
            n += 1;
            match op() {
                Err(StorageError::Unavailable(msg)) if n < self.attempts => {
                    let d = self.delay(n);
                    tracing::warn!("{what}: {msg}; retry {n} in {d:.1?}");
                    std::thread::sleep(d);
                }
                Err(StorageError::Unavailable(msg)) => {
                    return Err(StorageError::Unavailable(format!(
                        "{msg} (gave up after {n} attempts)"
                    )))
                }
                r => return r,
            }
        }
    }

    /// The default, with `KLOSETFS_RETRY_ATTEMPTS` applied when set.
    pub fn from_env() -> Self {
        let mut p = Self::default();
        if let Some(n) = std::env::var("KLOSETFS_RETRY_ATTEMPTS")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
        {
            p.attempts = n.max(1);
        }
        p
    }
}

impl Storage for RetryStorage {
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> StorageResult<()> {
        let mut failed_before = false;
        self.retry(&format!("writing {kind} {name}"), || {
            match self.inner.put(kind, name, data) {
                // An earlier attempt may have landed although its answer was
                // lost; if the stored bytes are ours, the put succeeded.
                Err(StorageError::AlreadyExists { .. })
                    if failed_before && self.inner.get(kind, name).is_ok_and(|b| b == data) =>
                {
                    Ok(())
                }
                r => {
                    failed_before = r.is_err();
                    r
                }
            }
        })
    }

    fn get(&self, kind: Kind, name: &str) -> StorageResult<Vec<u8>> {
        self.retry(&format!("reading {kind} {name}"), || {
            self.inner.get(kind, name)
        })
    }

    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> StorageResult<Vec<u8>> {
        self.retry(&format!("reading {kind} {name}"), || {
            self.inner.get_range(kind, name, offset, len)
        })
    }

    fn list(&self, kind: Kind) -> StorageResult<Vec<(String, u64)>> {
        self.retry(&format!("listing {kind}"), || self.inner.list(kind))
    }

    fn delete(&self, kind: Kind, name: &str) -> StorageResult<()> {
        let mut failed_before = false;
        self.retry(&format!("deleting {kind} {name}"), || {
            match self.inner.delete(kind, name) {
                // A lost answer to a delete that happened.
                Err(StorageError::NotFound { .. }) if failed_before => Ok(()),
                r => {
                    failed_before = r.is_err();
                    r
                }
            }
        })
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

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    #[test]
    fn passes_the_storage_suite() {
        let s = Arc::new(RetryStorage::new(Arc::new(MemoryStorage::new()), quick()));
        crate::storage::suite::run_all(s);
    }

    #[test]
    fn retries_transient_failures_and_lost_answers() {
        let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let f = Arc::new(FaultStorage::new(
            mem.clone(),
            FaultPlan {
                fail_put: Some(1),
                lose_answer_put: Some(3),
                fail_get: Some(1),
                transient: true,
                ..Default::default()
            },
        ));
        let r = RetryStorage::new(f.clone(), quick());
        r.put(Kind::Index, "aa", b"one").unwrap(); // puts 1 (fails) + 2
        assert_eq!(r.get(Kind::Index, "aa").unwrap(), b"one"); // gets 1 (fails) + 2
        r.put(Kind::Index, "bb", b"two").unwrap(); // put 3 lands, answer lost; put 4 sees it
        assert_eq!(f.puts(), 4);
        assert_eq!(mem.get(Kind::Index, "bb").unwrap(), b"two");
        // Someone else's object under our name is still a conflict.
        let e = r.put(Kind::Index, "bb", b"other").unwrap_err();
        assert!(matches!(e, StorageError::AlreadyExists { .. }), "{e}");
    }

    #[test]
    fn gives_up_and_never_retries_permanent_errors() {
        let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let f = Arc::new(FaultStorage::new(
            mem,
            FaultPlan {
                crash_after_puts: Some(0),
                transient: true,
                ..Default::default()
            },
        ));
        let r = RetryStorage::new(f.clone(), quick());
        let e = r.put(Kind::Pack, "cc", b"x").unwrap_err();
        assert!(e.to_string().contains("gave up after 4 attempts"), "{e}");
        assert_eq!(f.puts(), 4);
        let e = r.get(Kind::Pack, "missing").unwrap_err();
        assert!(matches!(e, StorageError::NotFound { .. }), "{e}");
    }
}
