//! Lock objects (`locks/<id>`): shared for writers (backup, writable mount),
//! exclusive for prune. A lock not refreshed within [`STALE_AFTER_NS`], or held by a
//! dead process on this host, is stale and can be broken on request.

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::crypto::{fill_random, Keys};
use crate::storage::{Kind, Storage, StorageError};

const LOCK_AAD: &[u8] = b"klosetfs lock v1";
/// Holders refresh every 5 minutes; 30 minutes without refresh means stale.
pub const STALE_AFTER_NS: i64 = 30 * 60 * 1_000_000_000;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    pub exclusive: bool,
    pub host: String,
    pub pid: u32,
    pub user: String,
    pub time: i64,
}

impl LockInfo {
    pub fn is_stale(&self, now: i64) -> bool {
        now - self.time > STALE_AFTER_NS || self.is_dead_here()
    }

    /// Held by a process of this host that no longer exists.
    pub fn is_dead_here(&self) -> bool {
        self.host == crate::util::hostname()
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), None)
                == Err(nix::errno::Errno::ESRCH)
            && self.pid != std::process::id()
    }

    pub fn describe(&self) -> String {
        format!(
            "{} lock by {}@{} pid {} since {}",
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            self.user,
            self.host,
            self.pid,
            crate::util::format_time(self.time)
        )
    }
}

/// A held lock, refreshed in the background while held; removed on drop.
pub struct Lock {
    storage: Arc<dyn Storage>,
    name: Arc<Mutex<String>>,
    stop: Option<crossbeam_channel::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let name = self.name.lock().clone();
        if let Err(e) = self.storage.delete(Kind::Lock, &name) {
            tracing::warn!("could not remove lock {name}: {e}");
        }
    }
}

fn write_lock(storage: &dyn Storage, keys: &Keys, info: &LockInfo) -> Result<String> {
    let mut rnd = [0u8; 16];
    fill_random(&mut rnd)?;
    let name = hex::encode(rnd);
    let body = postcard::to_stdvec(info).map_err(|e| Error::corrupt("lock", e))?;
    storage.put(Kind::Lock, &name, &keys.seal(LOCK_AAD, &body)?)?;
    Ok(name)
}

/// Every 5 minutes: write a fresh lock object, then remove the old one.
fn refresh_loop(
    storage: Arc<dyn Storage>,
    keys: Keys,
    mut info: LockInfo,
    name: Arc<Mutex<String>>,
    stop: crossbeam_channel::Receiver<()>,
) {
    let every = std::time::Duration::from_secs(300);
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        info.time = crate::util::now_ns();
        match write_lock(&*storage, &keys, &info) {
            Ok(new) => {
                let old = std::mem::replace(&mut *name.lock(), new);
                let _ = storage.delete(Kind::Lock, &old);
            }
            Err(e) => tracing::warn!("could not refresh lock: {e}"),
        }
    }
}

/// Every lock in the store, with its name. Unreadable locks count as foreign.
pub fn list_locks(storage: &dyn Storage, keys: &Keys) -> Result<Vec<(String, Option<LockInfo>)>> {
    let mut out = Vec::new();
    for (name, _) in storage.list(Kind::Lock)? {
        let info = match storage.get(Kind::Lock, &name) {
            Ok(b) => keys
                .open(LOCK_AAD, &b, "lock")
                .ok()
                .and_then(|p| postcard::from_bytes(&p).ok()),
            Err(StorageError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        out.push((name, info));
    }
    Ok(out)
}

/// Takes a lock: writes ours, then checks for conflicting ones (and backs off if
/// any), so two racing takers cannot both win an exclusive lock.
pub fn acquire(storage: &Arc<dyn Storage>, keys: &Keys, exclusive: bool) -> Result<Lock> {
    let info = LockInfo {
        exclusive,
        host: crate::util::hostname(),
        pid: std::process::id(),
        user: crate::util::username(),
        time: crate::util::now_ns(),
    };
    let name = write_lock(&**storage, keys, &info)?;
    let (tx, rx) = crossbeam_channel::bounded(0);
    let shared = Arc::new(Mutex::new(name.clone()));
    let refresher = {
        let (storage, keys, info, shared) =
            (storage.clone(), keys.clone(), info.clone(), shared.clone());
        std::thread::spawn(move || refresh_loop(storage, keys, info, shared, rx))
    };
    let lock = Lock {
        storage: storage.clone(),
        name: shared,
        stop: Some(tx),
        refresher: Some(refresher),
    };
    let now = crate::util::now_ns();
    for (other, info) in list_locks(&**storage, keys)? {
        if other == name {
            continue;
        }
        // A lock of a dead process on this host is certainly stale: clear it,
        // so kill -9'd writers do not pile up locks.
        if info.as_ref().is_some_and(|i| i.is_dead_here()) {
            match storage.delete(Kind::Lock, &other) {
                Ok(()) | Err(StorageError::NotFound { .. }) => {}
                Err(e) => tracing::warn!("could not remove the stale lock {other}: {e}"),
            }
            continue;
        }
        let conflict = match &info {
            Some(i) if i.is_stale(now) => false,
            Some(i) => exclusive || i.exclusive,
            None => exclusive,
        };
        if conflict {
            let what = info
                .map(|i| i.describe())
                .unwrap_or_else(|| format!("unreadable lock {other}"));
            return Err(Error::Locked(format!(
                "{what} (if that process is gone, run `unlock`)"
            )));
        }
    }
    Ok(lock)
}

/// The locks of a store, listed once, for the questions `check` and `prune`
/// ask of them.
pub type Locks = [(String, Option<LockInfo>)];

/// Partial objects left by writers that died mid-write: older than the oldest
/// live lock in `locks` (less a minute for clocks), so no running writer can
/// own them. Removed with `remove` (prune does, under its exclusive lock).
pub fn stale_temporaries(
    storage: &dyn Storage,
    locks: &Locks,
    remove: bool,
) -> Result<Vec<(String, u64)>> {
    let now = crate::util::now_ns();
    let oldest = locks
        .iter()
        .filter_map(|(_, i)| i.as_ref().filter(|i| !i.is_stale(now)).map(|i| i.time))
        .min()
        .unwrap_or(now)
        .min(now);
    let before = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(oldest.max(0) as u64)
        - std::time::Duration::from_secs(60);
    Ok(storage.temporaries(before, remove)?)
}

/// The stale ones of `locks` (see [`LockInfo::is_stale`]), described.
pub fn stale_locks(locks: &Locks) -> Vec<String> {
    let now = crate::util::now_ns();
    locks
        .iter()
        .filter_map(|(name, i)| match i {
            Some(i) if i.is_stale(now) => Some(i.describe()),
            None => Some(format!("unreadable lock {name}")),
            Some(_) => None,
        })
        .collect()
}

/// Removes stale locks, or every lock with `all`. Returns how many were removed.
pub fn break_locks(storage: &dyn Storage, keys: &Keys, all: bool) -> Result<usize> {
    let now = crate::util::now_ns();
    let mut n = 0;
    for (name, info) in list_locks(storage, keys)? {
        if all || info.as_ref().is_none_or(|i| i.is_stale(now)) {
            match storage.delete(Kind::Lock, &name) {
                Ok(()) => n += 1,
                Err(StorageError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[test]
    fn shared_locks_coexist_exclusive_does_not() {
        let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let k = Keys::plaintext([0; 32]);
        let a = acquire(&s, &k, false).unwrap();
        let _b = acquire(&s, &k, false).unwrap();
        assert!(matches!(acquire(&s, &k, true), Err(Error::Locked(_))));
        drop(a);
        drop(_b);
        let x = acquire(&s, &k, true).unwrap();
        assert!(acquire(&s, &k, false).is_err());
        drop(x);
        assert!(s.list(Kind::Lock).unwrap().is_empty());
    }

    #[test]
    fn stale_locks_are_ignored_and_broken() {
        let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let k = Keys::plaintext([0; 32]);
        let old = LockInfo {
            exclusive: true,
            host: "elsewhere".into(),
            pid: 1,
            user: "u".into(),
            time: crate::util::now_ns() - STALE_AFTER_NS - 1,
        };
        let body = k
            .seal(LOCK_AAD, &postcard::to_stdvec(&old).unwrap())
            .unwrap();
        s.put(Kind::Lock, "dead", &body).unwrap();
        drop(acquire(&s, &k, true).unwrap());
        assert_eq!(break_locks(&*s, &k, false).unwrap(), 1);
        assert!(s.list(Kind::Lock).unwrap().is_empty());
    }
}
