//! An on-disk cache in front of a remote store. Index and snapshot objects and
//! tree ranges of packs are kept always (they are small and every command reads
//! them); data ranges are kept within a size cap, oldest dropped first.
//!
//! Every cached object is immutable on the remote (names are content ids), so
//! an entry never goes stale; it is only dropped when the object is deleted or
//! no longer listed. Each entry carries a BLAKE3 trailer: a damaged entry is
//! dropped and fetched again, never served. The cache is an optimization only:
//! a full or missing disk, or the folder deleted under a running process, makes
//! it a no-op for that request, never a failed operation.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Kind, Storage, StorageResult};

const TRAILER: usize = 32;

pub struct CacheStorage {
    inner: Arc<dyn Storage>,
    dir: PathBuf,
    data_cap: u64,
    /// Bytes of data ranges on disk (an estimate kept in step with our writes).
    data_bytes: AtomicU64,
    evicting: Mutex<()>,
    seq: AtomicU64,
    warned: std::sync::Once,
}

/// Where a cache entry goes: whole objects by kind, ranges by class.
fn class_dir(kind: Kind, meta: bool) -> &'static str {
    match (kind, meta) {
        (Kind::Pack, true) => "trees",
        (Kind::Pack, false) => "data",
        (Kind::Index, _) => "index",
        (Kind::Snapshot, _) => "snapshots",
        _ => "other",
    }
}

impl CacheStorage {
    /// Caches `inner` in `dir` (created if needed), with at most `data_cap`
    /// bytes of data ranges.
    pub fn new(inner: Arc<dyn Storage>, dir: impl Into<PathBuf>, data_cap: u64) -> Self {
        let dir = dir.into();
        let c = Self {
            inner,
            dir,
            data_cap,
            data_bytes: AtomicU64::new(0),
            evicting: Mutex::new(()),
            seq: AtomicU64::new(0),
            warned: std::sync::Once::new(),
        };
        c.data_bytes
            .store(dir_size(&c.dir.join("data")), Ordering::Relaxed);
        c
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, kind: Kind, name: &str, range: Option<(u64, u64, bool)>) -> PathBuf {
        match range {
            Some((off, len, meta)) => self
                .dir
                .join(class_dir(kind, meta))
                .join(&name[..2.min(name.len())])
                .join(format!("{name}.{off}.{len}")),
            None => self.dir.join(class_dir(kind, false)).join(name),
        }
    }

    fn load(&self, path: &Path) -> Option<Vec<u8>> {
        let mut b = fs::read(path).ok()?;
        if b.len() >= TRAILER {
            let body = b.len() - TRAILER;
            if blake3::hash(&b[..body]).as_bytes() == &b[body..] {
                b.truncate(body);
                return Some(b);
            }
        }
        tracing::warn!("dropping damaged cache entry {}", path.display());
        let _ = fs::remove_file(path);
        None
    }

    /// Best effort: any failure only means this entry is not cached.
    fn save(&self, path: &Path, data: &[u8]) -> bool {
        let r = (|| -> std::io::Result<()> {
            let parent = path.parent().expect("entries live in folders");
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
            let tmp = parent.join(format!(
                ".tmp.{}.{}",
                std::process::id(),
                self.seq.fetch_add(1, Ordering::Relaxed)
            ));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let w = f
                .write_all(data)
                .and_then(|_| f.write_all(blake3::hash(data).as_bytes()))
                .and_then(|_| fs::rename(&tmp, path));
            if w.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            w
        })();
        if let Err(e) = &r {
            self.warned.call_once(|| {
                tracing::warn!(
                    "cache at {} not written ({e}); going on without it",
                    self.dir.display()
                )
            });
        }
        r.is_ok()
    }

    fn cached_range(
        &self,
        kind: Kind,
        name: &str,
        offset: u64,
        len: u64,
        meta: bool,
    ) -> StorageResult<Vec<u8>> {
        let path = self.entry(kind, name, Some((offset, len, meta)));
        if let Some(b) = self.load(&path) {
            if b.len() as u64 == len {
                return Ok(b);
            }
        }
        let b = self.inner.get_range(kind, name, offset, len)?;
        if self.save(&path, &b) && !meta {
            let total = self.data_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
            if total + b.len() as u64 > self.data_cap {
                self.evict();
            }
        }
        Ok(b)
    }

    /// Drops the oldest data ranges until the cache is under 90% of its cap.
    fn evict(&self) {
        let Some(_g) = self.evicting.try_lock() else {
            return;
        };
        let mut files = Vec::new();
        for shard in fs::read_dir(self.dir.join("data"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                if let Ok(m) = f.metadata() {
                    let t = m.accessed().or_else(|_| m.modified()).ok();
                    files.push((t, m.len(), f.path()));
                }
            }
        }
        files.sort();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        let goal = self.data_cap / 10 * 9;
        for (_, len, p) in files {
            if total <= goal {
                break;
            }
            if fs::remove_file(&p).is_ok() {
                total -= len;
            }
        }
        self.data_bytes.store(total, Ordering::Relaxed);
    }
}

fn dir_size(d: &Path) -> u64 {
    fs::read_dir(d)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            fs::read_dir(e.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .sum()
}

impl Storage for CacheStorage {
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> StorageResult<()> {
        self.inner.put(kind, name, data)?;
        // What we just wrote is what we will read next (index after a backup).
        if matches!(kind, Kind::Index | Kind::Snapshot) {
            self.save(&self.entry(kind, name, None), data);
        }
        Ok(())
    }

    fn get(&self, kind: Kind, name: &str) -> StorageResult<Vec<u8>> {
        if !matches!(kind, Kind::Index | Kind::Snapshot) {
            return self.inner.get(kind, name);
        }
        let path = self.entry(kind, name, None);
        if let Some(b) = self.load(&path) {
            return Ok(b);
        }
        let b = self.inner.get(kind, name)?;
        self.save(&path, &b);
        Ok(b)
    }

    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> StorageResult<Vec<u8>> {
        if kind != Kind::Pack || len == 0 || self.data_cap == 0 {
            return self.inner.get_range(kind, name, offset, len);
        }
        self.cached_range(kind, name, offset, len, false)
    }

    fn get_meta_range(
        &self,
        kind: Kind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> StorageResult<Vec<u8>> {
        if kind != Kind::Pack || len == 0 {
            return self.inner.get_range(kind, name, offset, len);
        }
        self.cached_range(kind, name, offset, len, true)
    }

    fn hint_meta_ranges(&self, kind: Kind, name: &str, ranges: &[(u64, u64)], data: &[u8]) {
        for &(off, len) in ranges {
            if let Some(b) = data.get(off as usize..(off + len) as usize) {
                if !self.save(&self.entry(kind, name, Some((off, len, true))), b) {
                    return;
                }
            }
        }
    }

    /// Listing always asks the remote; entries of objects gone from it are dropped.
    fn list(&self, kind: Kind) -> StorageResult<Vec<(String, u64)>> {
        let l = self.inner.list(kind)?;
        if matches!(kind, Kind::Index | Kind::Snapshot) {
            let live: HashSet<&str> = l.iter().map(|(n, _)| n.as_str()).collect();
            for e in fs::read_dir(self.dir.join(class_dir(kind, false)))
                .into_iter()
                .flatten()
                .flatten()
            {
                let n = e.file_name();
                let n = n.to_string_lossy();
                if !n.starts_with(".tmp.") && !live.contains(n.as_ref()) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(l)
    }

    fn delete(&self, kind: Kind, name: &str) -> StorageResult<()> {
        self.inner.delete(kind, name)?;
        match kind {
            Kind::Index | Kind::Snapshot => {
                let _ = fs::remove_file(self.entry(kind, name, None));
            }
            Kind::Pack => {
                for class in ["trees", "data"] {
                    let shard = self.dir.join(class).join(&name[..2.min(name.len())]);
                    for e in fs::read_dir(&shard).into_iter().flatten().flatten() {
                        if e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("{name}."))
                        {
                            let _ = fs::remove_file(e.path());
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
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

    #[test]
    fn passes_the_storage_suite() {
        let d = tempfile::tempdir().unwrap();
        let s = Arc::new(CacheStorage::new(
            Arc::new(MemoryStorage::new()),
            d.path(),
            1 << 20,
        ));
        crate::storage::suite::run_all(s);
    }

    #[test]
    fn serves_hits_locally_and_survives_damage_and_deletion() {
        let d = tempfile::tempdir().unwrap();
        let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        mem.put(Kind::Pack, "ab12", &body).unwrap();
        mem.put(Kind::Index, "cd34", b"index bytes").unwrap();
        let f = Arc::new(FaultStorage::new(mem, FaultPlan::default()));
        let c = CacheStorage::new(f.clone(), d.path().join("c"), 1 << 20);
        assert_eq!(
            c.get_meta_range(Kind::Pack, "ab12", 10, 100).unwrap(),
            &body[10..110]
        );
        assert_eq!(c.get(Kind::Index, "cd34").unwrap(), b"index bytes");
        // The remote now hides everything: hits still work.
        f.set_plan(FaultPlan {
            hide: Some(Kind::Pack),
            ..Default::default()
        });
        assert_eq!(
            c.get_meta_range(Kind::Pack, "ab12", 10, 100).unwrap(),
            &body[10..110]
        );
        assert!(
            c.get_range(Kind::Pack, "ab12", 0, 5).is_err(),
            "a miss asks the remote"
        );
        // A damaged entry is dropped, not served.
        let e = c.entry(Kind::Pack, "ab12", Some((10, 100, true)));
        let mut raw = fs::read(&e).unwrap();
        raw[3] ^= 1;
        fs::write(&e, raw).unwrap();
        assert!(c.get_meta_range(Kind::Pack, "ab12", 10, 100).is_err());
        assert!(!e.exists());
        // The whole folder deleted under us: requests still succeed.
        f.set_plan(FaultPlan::default());
        fs::remove_dir_all(d.path().join("c")).unwrap();
        assert_eq!(c.get_range(Kind::Pack, "ab12", 0, 5).unwrap(), &body[..5]);
        assert_eq!(c.get(Kind::Index, "cd34").unwrap(), b"index bytes");
    }

    #[test]
    fn hinted_tree_ranges_are_served_without_the_remote() {
        let d = tempfile::tempdir().unwrap();
        let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let f = Arc::new(FaultStorage::new(mem, FaultPlan::default()));
        let c = CacheStorage::new(f.clone(), d.path(), 0);
        let pack: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        c.put(Kind::Pack, "ab77", &pack).unwrap();
        c.hint_meta_ranges(Kind::Pack, "ab77", &[(0, 100), (100, 900)], &pack);
        let before = f.gets();
        assert_eq!(
            c.get_meta_range(Kind::Pack, "ab77", 100, 900).unwrap(),
            &pack[100..1000]
        );
        assert_eq!(f.gets(), before, "served from the cache");
    }

    #[test]
    fn data_ranges_stay_under_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        mem.put(Kind::Pack, "ab12", &vec![7u8; 1 << 20]).unwrap();
        let c = CacheStorage::new(mem, d.path(), 64 * 1024);
        for i in 0..64u64 {
            c.get_range(Kind::Pack, "ab12", i * 4096, 4096).unwrap();
        }
        let on_disk = dir_size(&d.path().join("data"));
        assert!(on_disk <= 64 * 1024 + 4096 + TRAILER as u64, "{on_disk}");
        assert!(on_disk > 0);
    }

    #[test]
    fn a_cache_on_a_full_disk_is_a_no_op() {
        // A cache "folder" that is a file: every write fails.
        let d = tempfile::tempdir().unwrap();
        let blocker = d.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let c = CacheStorage::new(mem, &blocker, 1 << 20);
        c.put(Kind::Index, "ee56", b"idx").unwrap();
        assert_eq!(c.get(Kind::Index, "ee56").unwrap(), b"idx");
    }
}
