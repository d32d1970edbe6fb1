//! An on-disk cache in front of a remote store. Index and snapshot objects and
//! tree ranges of packs are kept always (they are small and every command reads
//! them); data ranges are kept within a size cap, oldest dropped first.
//! A range is served from any cached run of its pack that holds it, not only
//! from an entry of exactly its bounds: a mount's reads are batched into
//! ranged GETs, and a second walk whose batches fall differently must still
//! find its bytes on disk rather than at the remote.
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

use super::ahead::{Ahead, Fetcher};
use super::{Kind, Storage, StorageResult};

const TRAILER: usize = 32;

/// [`Storage::warm_meta`] reads across gaps up to this size between ranges
/// rather than making another request (at 40 ms a round trip, 1 MiB more in
/// the same answer is cheaper).
const WARM_GAP: u64 = 1 << 20;

pub struct CacheStorage {
    inner: Arc<dyn Storage>,
    dir: PathBuf,
    data_cap: u64,
    /// Bytes of data ranges on disk (an estimate kept in step with our writes).
    data_bytes: AtomicU64,
    evicting: Mutex<()>,
    seq: AtomicU64,
    warned: std::sync::Once,
    /// The runs of packs on disk: tree spans fetched whole
    /// ([`Storage::warm_meta`]) and data ranges, found by containment.
    spans: Mutex<Spans>,
    /// What opening a store fetches ahead ([`Storage::look_ahead`]).
    ahead: Arc<Ahead>,
}

/// A class of runs: tree spans (`trees/…/<pack>.span.<start>.<len>`) or
/// data ranges (`data/…/<pack>.<start>.<len>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Class {
    Trees,
    Data,
}

/// The runs of packs: which are on disk (per class and pack, read from its
/// shard folder on first use) and the recently used ones in memory.
#[derive(Default)]
struct Spans {
    on_disk: std::collections::HashMap<(Class, String), Vec<(u64, u64)>>,
    mem: std::collections::HashMap<(Class, String, u64), Arc<Vec<u8>>>,
    /// Oldest first, for the memory bound.
    order: std::collections::VecDeque<(Class, String, u64)>,
    mem_bytes: usize,
}

/// Spans kept in memory at most; the rest are read again from disk (and
/// verified) when needed.
const SPAN_MEMORY: usize = 128 << 20;

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
            spans: Mutex::new(Spans::default()),
            ahead: Arc::default(),
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
        let class = if meta { Class::Trees } else { Class::Data };
        if let Some(b) = self.span_slice(class, name, offset, len) {
            return Ok(b);
        }
        let path = self.entry(kind, name, Some((offset, len, meta)));
        if meta {
            // Single trees hinted by a backup (`hint_meta_ranges`).
            if let Some(b) = self.load(&path) {
                if b.len() as u64 == len {
                    return Ok(b);
                }
            }
        }
        let b = self.inner.get_range(kind, name, offset, len)?;
        if self.save(&path, &b) && !meta {
            let b = Arc::new(b);
            {
                let mut sp = self.spans.lock();
                let mut on = self.spans_on_disk(&mut sp, Class::Data, name);
                on.push((offset, b.len() as u64));
                sp.on_disk.insert((Class::Data, name.to_string()), on);
                Self::keep_span(&mut sp, (Class::Data, name.to_string(), offset), b.clone());
            }
            let total = self.data_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
            if total + b.len() as u64 > self.data_cap {
                self.evict();
            }
            return Ok(Arc::unwrap_or_clone(b));
        }
        Ok(b)
    }

    fn span_path(&self, class: Class, name: &str, start: u64, len: u64) -> PathBuf {
        let shard = &name[..2.min(name.len())];
        match class {
            Class::Trees => self
                .dir
                .join("trees")
                .join(shard)
                .join(format!("{name}.span.{start}.{len}")),
            Class::Data => self
                .dir
                .join("data")
                .join(shard)
                .join(format!("{name}.{start}.{len}")),
        }
    }

    /// The runs of `name` of a class on disk (listed once per pack and
    /// process, then kept in step with this process's own writes).
    fn spans_on_disk(&self, sp: &mut Spans, class: Class, name: &str) -> Vec<(u64, u64)> {
        let key = (class, name.to_string());
        if let Some(v) = sp.on_disk.get(&key) {
            return v.clone();
        }
        let (folder, prefix) = match class {
            Class::Trees => ("trees", format!("{name}.span.")),
            Class::Data => ("data", format!("{name}.")),
        };
        let mut v = Vec::new();
        let shard = self.dir.join(folder).join(&name[..2.min(name.len())]);
        for e in fs::read_dir(shard).into_iter().flatten().flatten() {
            let f = e.file_name();
            let Some(rest) = f.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
                continue;
            };
            if let Some((a, b)) = rest.split_once('.') {
                if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                    v.push((a, b));
                }
            }
        }
        sp.on_disk.insert(key, v.clone());
        v
    }

    /// `len` bytes at `offset` of pack `name` from a run of `class` on disk
    /// that holds them, if one does. A run not in memory is read and
    /// verified outside the lock, so other readers go on meanwhile.
    fn span_slice(&self, class: Class, name: &str, offset: u64, len: u64) -> Option<Vec<u8>> {
        let holds = |start: u64, slen: u64| offset >= start && offset + len <= start + slen;
        let slice = |b: &[u8], start: u64| {
            b.get((offset - start) as usize..(offset - start + len) as usize)
                .map(<[u8]>::to_vec)
        };
        let on_disk: Vec<(u64, u64)> = {
            let mut sp = self.spans.lock();
            let runs = self.spans_on_disk(&mut sp, class, name);
            for &(start, slen) in runs.iter().filter(|r| holds(r.0, r.1)) {
                if let Some(b) = sp.mem.get(&(class, name.to_string(), start)) {
                    if b.len() as u64 == slen {
                        return slice(b, start);
                    }
                }
            }
            runs.into_iter().filter(|r| holds(r.0, r.1)).collect()
        };
        for (start, slen) in on_disk {
            let path = self.span_path(class, name, start, slen);
            match self.load(&path) {
                Some(b) if b.len() as u64 == slen => {
                    let out = slice(&b, start);
                    let key = (class, name.to_string(), start);
                    Self::keep_span(&mut self.spans.lock(), key, Arc::new(b));
                    return out;
                }
                // Damaged (and dropped by `load`) or gone: forget it.
                _ => {
                    let _ = fs::remove_file(&path);
                    let mut sp = self.spans.lock();
                    if let Some(v) = sp.on_disk.get_mut(&(class, name.to_string())) {
                        v.retain(|s| *s != (start, slen));
                    }
                }
            }
        }
        None
    }

    fn keep_span(sp: &mut Spans, key: (Class, String, u64), b: Arc<Vec<u8>>) {
        sp.mem_bytes += b.len();
        if let Some(old) = sp.mem.insert(key.clone(), b) {
            sp.mem_bytes -= old.len();
        } else {
            sp.order.push_back(key);
        }
        while sp.mem_bytes > SPAN_MEMORY {
            let Some(k) = sp.order.pop_front() else { break };
            if let Some(b) = sp.mem.remove(&k) {
                sp.mem_bytes -= b.len();
            }
        }
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
        // Listed again on next use: what is left on disk is the truth.
        let mut sp = self.spans.lock();
        sp.on_disk.retain(|k, _| k.0 != Class::Data);
        sp.mem.retain(|k, _| k.0 != Class::Data);
        sp.order.retain(|k| k.0 != Class::Data);
        sp.mem_bytes = sp.mem.values().map(|b| b.len()).sum();
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
        self.ahead.invalidate(kind, name);
        self.inner.put(kind, name, data)?;
        // What we just wrote is what we will read next (index after a backup).
        if matches!(kind, Kind::Index | Kind::Snapshot) {
            self.save(&self.entry(kind, name, None), data);
        }
        Ok(())
    }

    fn get(&self, kind: Kind, name: &str) -> StorageResult<Vec<u8>> {
        // An object fetched ahead is on disk by now, or held here (keys, an
        // error, a cache that could not be written).
        if let Some(held) = self.ahead.wait_for(kind, name) {
            return held;
        }
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

    fn keeps_meta(&self) -> bool {
        true
    }

    fn warm_meta(
        &self,
        kind: Kind,
        name: &str,
        ranges: &[(u64, u64)],
    ) -> StorageResult<(u64, u64)> {
        if kind != Kind::Pack {
            return Ok((0, 0));
        }
        let spans = self.spans_on_disk(&mut self.spans.lock(), Class::Trees, name);
        let covered =
            |off: u64, len: u64| spans.iter().any(|&(s, l)| off >= s && off + len <= s + l);
        let mut missing: Vec<(u64, u64)> = ranges
            .iter()
            .copied()
            .filter(|&(off, len)| {
                len > 0
                    && !covered(off, len)
                    && !self.entry(kind, name, Some((off, len, true))).exists()
            })
            .collect();
        missing.sort_unstable();
        let (mut requests, mut bytes) = (0, 0);
        let mut i = 0;
        while i < missing.len() {
            // One read per run of ranges with gaps under WARM_GAP between
            // them: a tree pack holds trees only, so it is usually one run,
            // kept as one span (writing a file per tree costs more than the
            // round trip it saves).
            let start = missing[i].0;
            let mut end = missing[i].0 + missing[i].1;
            let mut j = i + 1;
            while j < missing.len() && missing[j].0 <= end + WARM_GAP {
                end = end.max(missing[j].0 + missing[j].1);
                j += 1;
            }
            let b = self.inner.get_range(kind, name, start, end - start)?;
            requests += 1;
            bytes += b.len() as u64;
            let len = b.len() as u64;
            let saved = self.save(&self.span_path(Class::Trees, name, start, len), &b);
            let mut sp = self.spans.lock();
            if saved {
                let mut on = self.spans_on_disk(&mut sp, Class::Trees, name);
                on.push((start, len));
                sp.on_disk.insert((Class::Trees, name.to_string()), on);
                Self::keep_span(
                    &mut sp,
                    (Class::Trees, name.to_string(), start),
                    Arc::new(b),
                );
            } else {
                // No room or no cache folder: warming is pointless.
                return Ok((requests, bytes));
            }
            i = j;
        }
        Ok((requests, bytes))
    }

    /// Listing asks the remote (or takes the listing fetched ahead when the
    /// store was opened); entries of objects gone from it are dropped.
    fn list(&self, kind: Kind) -> StorageResult<Vec<(String, u64)>> {
        let l = match self.ahead.take_listing(kind) {
            Some(l) => l?,
            None => self.inner.list(kind)?,
        };
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
        self.ahead.invalidate(kind, name);
        self.inner.delete(kind, name)?;
        match kind {
            Kind::Index | Kind::Snapshot => {
                let _ = fs::remove_file(self.entry(kind, name, None));
            }
            Kind::Pack => {
                {
                    let mut sp = self.spans.lock();
                    sp.on_disk.retain(|k, _| k.1 != name);
                    sp.mem.retain(|k, _| k.1 != name);
                    sp.order.retain(|k| k.1 != name);
                    sp.mem_bytes = sp.mem.values().map(|b| b.len()).sum();
                }
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

    /// Keys are fetched and held in memory (they are not cached on disk);
    /// index and snapshot objects the cache lacks are fetched into it.
    fn look_ahead(self: Arc<Self>) {
        for kind in [Kind::Key, Kind::Index, Kind::Snapshot] {
            let (me, me2, me3) = (self.clone(), self.clone(), self.clone());
            let f = Fetcher {
                list: Box::new(move || me.inner.list(kind)),
                wanted: Box::new(move |n| match kind {
                    // The twins are read only when the first copy fails.
                    Kind::Key => !n.ends_with("-copy"),
                    _ => super::check_name(n).is_ok() && !me2.entry(kind, n, None).exists(),
                }),
                fetch: Box::new(move |n| {
                    let r = me3.inner.get(kind, n);
                    match r {
                        Ok(b) if kind != Kind::Key && me3.save(&me3.entry(kind, n, None), &b) => {
                            None
                        }
                        r => Some(r),
                    }
                }),
            };
            self.ahead.start(kind, f);
        }
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
