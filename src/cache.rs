//! The chunk cache shared by mount readers: decoded data blobs, bounded by
//! bytes, with single-flight loading (concurrent readers of one chunk wait for
//! one fetch) and batched fetches that coalesce neighbouring blobs of a pack
//! into one range read.

use std::collections::HashMap;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::{Condvar, Mutex};
use rayon::prelude::*;

use crate::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::index::BlobLocation;
use crate::repo::Repo;
use crate::storage::Kind;

type Loaded = std::result::Result<Arc<Vec<u8>>, String>;

/// A chunk being loaded: waiters block until its loader fills it.
#[derive(Default)]
struct Slot {
    value: Mutex<Option<Loaded>>,
    ready: Condvar,
}

impl Slot {
    fn wait(&self) -> Loaded {
        let mut g = self.value.lock();
        while g.is_none() {
            self.ready.wait(&mut g);
        }
        g.clone().expect("filled")
    }

    fn fill(&self, v: Loaded) {
        *self.value.lock() = Some(v);
        self.ready.notify_all();
    }
}

/// Blobs closer than this in one pack are read together.
const COALESCE_GAP: u64 = 256 * 1024;

pub struct ChunkCache {
    repo: Arc<Repo>,
    capacity: usize,
    inner: Mutex<Inner>,
    inflight: Mutex<HashMap<BlobId, Arc<Slot>>>,
    /// Threads for prefetching; `None` uses rayon's global pool (one per
    /// core, right for a local disk). A remote store wants more requests in
    /// flight than there are cores, since each mostly waits on the network.
    pool: Option<rayon::ThreadPool>,
}

struct Inner {
    lru: LruCache<BlobId, Arc<Vec<u8>>>,
    bytes: usize,
}

impl ChunkCache {
    pub fn new(repo: Arc<Repo>, capacity: usize) -> Self {
        Self::with_threads(repo, capacity, 0)
    }

    /// A cache whose prefetches run on `threads` threads of their own (0: the
    /// global pool).
    pub fn with_threads(repo: Arc<Repo>, capacity: usize, threads: usize) -> Self {
        let pool = (threads > 0)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("klosetfs-fetch-{i}"))
                    .build()
                    .ok()
            })
            .flatten();
        Self {
            repo,
            capacity,
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            inflight: Mutex::new(HashMap::new()),
            pool,
        }
    }

    /// Starts a prefetch of `ids` in the background.
    pub fn spawn_prefetch(self: &Arc<Self>, ids: Vec<BlobId>) {
        let me = self.clone();
        match &self.pool {
            Some(p) => p.spawn(move || me.prefetch(&ids)),
            None => rayon::spawn(move || me.prefetch(&ids)),
        }
    }

    pub fn repo(&self) -> &Arc<Repo> {
        &self.repo
    }

    fn cached(&self, id: &BlobId) -> Option<Arc<Vec<u8>>> {
        self.inner.lock().lru.get(id).cloned()
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.inner.lock().lru.contains(id)
    }

    fn insert(&self, id: BlobId, data: Arc<Vec<u8>>) {
        let mut g = self.inner.lock();
        if g.lru.contains(&id) {
            return;
        }
        g.bytes += data.len();
        g.lru.put(id, data);
        while g.bytes > self.capacity {
            match g.lru.pop_lru() {
                Some((_, d)) => g.bytes -= d.len(),
                None => break,
            }
        }
    }

    /// Publishes a loaded chunk: cache first, then wake the waiters.
    fn finish(&self, id: BlobId, slot: &Slot, r: Loaded) {
        if let Ok(d) = &r {
            self.insert(id, d.clone());
        }
        self.inflight.lock().remove(&id);
        slot.fill(r);
    }

    /// One chunk, from the cache or the store; concurrent callers share one load.
    pub fn get(&self, id: &BlobId) -> Result<Arc<Vec<u8>>> {
        if let Some(d) = self.cached(id) {
            return Ok(d);
        }
        let (slot, owner) = {
            let mut m = self.inflight.lock();
            if let Some(s) = m.get(id) {
                (s.clone(), false)
            } else if let Some(d) = self.cached(id) {
                return Ok(d);
            } else {
                let s = Arc::new(Slot::default());
                m.insert(*id, s.clone());
                (s, true)
            }
        };
        let r = if owner {
            let r = self.load_one(id);
            self.finish(*id, &slot, r.clone());
            r
        } else {
            slot.wait()
        };
        r.map_err(|e| Error::corrupt(format!("chunk {}", id.short()), e))
    }

    fn load_one(&self, id: &BlobId) -> Loaded {
        self.repo
            .read_blob(BlobType::Data, id)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }

    /// Loads the chunks not yet cached or loading, coalescing range reads per
    /// pack and decoding in parallel.
    pub fn prefetch(&self, ids: &[BlobId]) {
        let mut want: Vec<(BlobId, BlobLocation, Arc<Slot>)> = Vec::new();
        {
            let mut inflight = self.inflight.lock();
            for id in ids {
                if self.contains(id) || inflight.contains_key(id) {
                    continue;
                }
                if let Some(l) = self.repo.locate(id) {
                    let s = Arc::new(Slot::default());
                    inflight.insert(*id, s.clone());
                    want.push((*id, l, s));
                }
            }
        }
        want.sort_by_key(|w| (w.1.pack, w.1.offset));
        let mut groups: Vec<Vec<(BlobId, BlobLocation, Arc<Slot>)>> = Vec::new();
        for w in want {
            match groups.last_mut() {
                Some(g)
                    if g[0].1.pack == w.1.pack && {
                        let last = g.last().expect("non-empty").1;
                        w.1.offset as u64 <= last.offset as u64 + last.length as u64 + COALESCE_GAP
                    } =>
                {
                    g.push(w)
                }
                _ => groups.push(vec![w]),
            }
        }
        match &self.pool {
            Some(p) => p.install(|| groups.par_iter().for_each(|g| self.fetch_group(g))),
            None => groups.par_iter().for_each(|g| self.fetch_group(g)),
        }
    }

    /// One range read for a group; any blob it cannot serve is loaded alone.
    fn fetch_group(&self, g: &[(BlobId, BlobLocation, Arc<Slot>)]) {
        let start = g[0].1.offset as u64;
        let end = g
            .iter()
            .map(|(_, l, _)| l.offset as u64 + l.length as u64)
            .max()
            .unwrap_or(start);
        let bytes = self
            .repo
            .storage()
            .get_range(Kind::Pack, &g[0].1.pack.to_hex(), start, end - start)
            .ok();
        g.par_iter().for_each(|(id, l, slot)| {
            let decoded = bytes.as_ref().and_then(|b| {
                let off = (l.offset as u64 - start) as usize;
                let sealed = &b[off..off + l.length as usize];
                self.repo
                    .decode_blob(BlobType::Data, id, sealed, l.raw_length)
                    .ok()
            });
            let r = match decoded {
                Some(d) => Ok(Arc::new(d)),
                None => self.load_one(id),
            };
            self.finish(*id, slot, r);
        });
    }

    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}
