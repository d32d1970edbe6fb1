//! Trees of a remote store come a pack at a time. Tree blobs live in packs of
//! their own, written together by one backup, so the first tree a walk needs
//! from a pack brings every tree of that pack into the disk cache in one
//! ranged read ([`crate::storage::Storage::warm_meta`]). A cold `find`,
//! `restore`, `diff` or WebDAV walk then waits for one round trip per tree
//! pack it touches (a few for a kernel tree) instead of one per directory
//! (thousands), and fetches only tree bytes. Packs are warmed once per
//! process; concurrent loaders of one pack wait for the one warming it.
//! Stores without a local metadata cache (a local directory, `--no-cache`)
//! skip all of this.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::format::blob::BlobType;
use crate::format::id::PackId;
use crate::format::master_index::MasterIndex;
use crate::storage::{Kind, Storage};

/// The `(offset, length)` of every tree blob, by pack.
type RangesByPack = HashMap<PackId, Vec<(u64, u64)>>;

/// The tree ranges of each pack, and which packs were warmed.
#[derive(Default)]
pub struct TreePacks {
    /// Built from the index on first use; cleared when the index reloads.
    ranges: RwLock<Option<Arc<RangesByPack>>>,
    /// One lock per pack: `true` once warmed (or tried).
    packs: Mutex<HashMap<PackId, Arc<Mutex<bool>>>>,
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// What warming cost so far: requests made and bytes fetched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WarmStats {
    pub requests: u64,
    pub bytes: u64,
}

impl TreePacks {
    /// Forgets the ranges (the index changed); warmed packs stay warmed.
    pub fn reset(&self) {
        *self.ranges.write() = None;
    }

    pub fn stats(&self) -> WarmStats {
        WarmStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// Every pack that holds trees.
    pub fn packs(&self, index: &RwLock<MasterIndex>) -> Vec<PackId> {
        self.ranges(index).keys().copied().collect()
    }

    fn ranges(&self, index: &RwLock<MasterIndex>) -> Arc<RangesByPack> {
        if let Some(r) = self.ranges.read().as_ref() {
            return r.clone();
        }
        let mut map = RangesByPack::new();
        for (_, l) in index.read().blobs() {
            if l.blob_type == BlobType::Tree {
                map.entry(l.pack)
                    .or_default()
                    .push((l.offset as u64, l.length as u64));
            }
        }
        let map = Arc::new(map);
        *self.ranges.write() = Some(map.clone());
        map
    }

    /// Makes sure every tree of `pack` is in the local cache (one ranged
    /// read the first time). Failures are left to the caller's own read,
    /// which then reports them; warming never fails a request.
    pub fn warm(&self, storage: &dyn Storage, index: &RwLock<MasterIndex>, pack: PackId) {
        if !storage.keeps_meta() {
            return;
        }
        let slot = self.packs.lock().entry(pack).or_default().clone();
        let mut done = slot.lock();
        if *done {
            return;
        }
        let ranges = self.ranges(index);
        let Some(r) = ranges.get(&pack) else {
            *done = true;
            return;
        };
        let t0 = std::time::Instant::now();
        match storage.warm_meta(Kind::Pack, &pack.to_hex(), r) {
            Ok((n, b)) => {
                tracing::debug!(
                    "trees of pack {}: {} ranges, {n} requests, {b} bytes in {:?}",
                    pack.short(),
                    r.len(),
                    t0.elapsed()
                );
                *done = true;
                self.requests.fetch_add(n, Ordering::Relaxed);
                self.bytes.fetch_add(b, Ordering::Relaxed);
            }
            // Tried again by the next loader of this pack.
            Err(e) => tracing::debug!("warming the trees of pack {}: {e}", pack.short()),
        }
    }
}
