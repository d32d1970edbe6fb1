//! The chunk cache shared by mount readers: decoded data blobs, bounded by
//! bytes, with single-flight loading (concurrent readers of one chunk wait for
//! one fetch) and batched fetches that coalesce neighbouring blobs of a pack
//! into one range read. [`read_chunks`] is the one reader of a file's bytes
//! over its chunks, for every view.

use std::collections::HashMap;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::id::BlobId;
use crate::format::tree::ChunkRef;
use crate::repo::Repo;

/// Why a chunk did not load, kept apart so an outage is not called damage.
#[derive(Clone, Debug)]
enum LoadError {
    /// Its bytes did not decode or verify (or it is in no index).
    Damaged(String),
    /// The store did not answer or refused (network, permissions, outage).
    Unavailable(String),
}

type Loaded = std::result::Result<Arc<Vec<u8>>, LoadError>;

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
        r.map_err(|e| match e {
            LoadError::Damaged(m) => Error::corrupt(format!("chunk {}", id.short()), m),
            LoadError::Unavailable(m) => Error::Storage(crate::storage::StorageError::Backend(
                format!("chunk {}: {m}", id.short()),
            )),
        })
    }

    fn load_one(&self, id: &BlobId) -> Loaded {
        self.repo
            .read_blob(BlobType::Data, id)
            .map(Arc::new)
            .map_err(|e| match e {
                // A pack the index names but the store lacks is damage.
                Error::Storage(crate::storage::StorageError::NotFound { .. }) => {
                    LoadError::Damaged(e.to_string())
                }
                Error::Storage(_) | Error::Io { .. } => LoadError::Unavailable(e.to_string()),
                e => LoadError::Damaged(e.to_string()),
            })
    }

    /// Loads the chunks not yet cached or loading, with the coalesced range
    /// reads of [`crate::view::coalesce`]; each chunk is published as its range arrives.
    pub fn prefetch(&self, ids: &[BlobId]) {
        let mut want: HashMap<BlobId, Arc<Slot>> = HashMap::new();
        {
            let mut inflight = self.inflight.lock();
            for id in ids {
                if self.contains(id) || inflight.contains_key(id) || self.repo.locate(id).is_none()
                {
                    continue;
                }
                let s = Arc::new(Slot::default());
                inflight.insert(*id, s.clone());
                want.insert(*id, s);
            }
        }
        let ids: Vec<BlobId> = want.keys().copied().collect();
        let run = || {
            crate::view::coalesce::for_each_data_blob(&self.repo, &ids, |id, got| {
                let r = match got {
                    Some(d) => Ok(Arc::new(d)),
                    None => self.load_one(&id),
                };
                if let Some(slot) = want.get(&id) {
                    self.finish(id, slot, r);
                }
            })
        };
        match &self.pool {
            Some(p) => p.install(run),
            None => run(),
        }
    }

    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}
/// Where each chunk of a file starts, plus the file's end: `offsets[i]` is
/// chunk `i`'s first byte, `offsets[len]` the size.
pub fn chunk_offsets(chunks: &[ChunkRef]) -> Vec<u64> {
    let mut offsets = Vec::with_capacity(chunks.len() + 1);
    let mut at = 0u64;
    for c in chunks {
        offsets.push(at);
        at += c.size as u64;
    }
    offsets.push(at);
    offsets
}

/// The one reader of file contents over chunks, shared by every view: bytes
/// `offset..end` (clamped to the file) of the file made of `chunks`, whose
/// [`chunk_offsets`] are `offsets`, through `cache`.
pub fn read_chunks(
    cache: &ChunkCache,
    chunks: &[ChunkRef],
    offsets: &[u64],
    offset: u64,
    end: u64,
) -> Result<Vec<u8>> {
    let file_end = offsets.last().copied().unwrap_or(0);
    let end = end.min(file_end);
    if offset >= end {
        return Ok(Vec::new());
    }
    // The chunk holding `offset`: the last start offset <= offset.
    let mut i = offsets.partition_point(|o| *o <= offset) - 1;
    let mut out = Vec::with_capacity((end - offset) as usize);
    while (out.len() as u64) < end - offset {
        let c = &chunks[i];
        let data = cache.get(&c.id)?;
        let start = offsets[i];
        let from = (offset.max(start) - start) as usize;
        let to = (end.min(offsets[i + 1]) - start) as usize;
        let piece = data.get(from..to).ok_or_else(|| {
            Error::corrupt(
                format!("data blob {}", c.id.short()),
                "shorter than the tree records",
            )
        })?;
        out.extend_from_slice(piece);
        i += 1;
    }
    Ok(out)
}
