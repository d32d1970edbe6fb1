//! The write side of the pipeline, shared by `backup` and the writable mount:
//! dedup against the index and blobs in flight, compress + seal, fill packs,
//! store full packs, and write index objects after the packs they describe.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::format::blob::{self, BlobType};
use crate::format::id::BlobId;
use crate::format::index::IndexPack;
use crate::format::pack::PackWriter;
use crate::repo::Repo;

/// Write an index object after this many packs, so an interrupted backup leaves
/// most of its work findable by the next one.
const PACKS_PER_INDEX: usize = 32;

#[derive(Default, Debug)]
pub struct PackerStats {
    pub new_blobs: AtomicU64,
    pub new_bytes: AtomicU64,
    pub stored_bytes: AtomicU64,
}

/// Why a stream could not be chunked: its source failed, or the store did.
#[derive(Debug)]
pub enum StreamError {
    Read(std::io::Error),
    Store(Error),
}

impl StreamError {
    /// One error, a read failure named by `reading` (what was being read).
    pub fn into_error(self, reading: &str) -> Error {
        match self {
            StreamError::Read(e) => Error::io(reading, e),
            StreamError::Store(e) => e,
        }
    }
}

pub struct Packer {
    repo: Arc<Repo>,
    level: i32,
    target: usize,
    data: Mutex<PackWriter>,
    tree: Mutex<PackWriter>,
    inflight: Mutex<HashSet<BlobId>>,
    pending: Mutex<Vec<IndexPack>>,
    failed: AtomicBool,
    /// Full packs taken out of a writer and not yet stored and indexed:
    /// [`Packer::flush`] waits for them, so its barrier covers blobs that
    /// another thread is writing out at that moment.
    writing: Mutex<usize>,
    written: Condvar,
    /// The first store failure, repeated to every later caller.
    first_error: Mutex<Option<Error>>,
    pub stats: PackerStats,
}

impl Packer {
    pub fn new(repo: Arc<Repo>) -> Self {
        let level = repo.config().compression_level;
        let target = repo.config().pack_size as usize;
        Self {
            repo,
            level,
            target,
            data: Mutex::new(PackWriter::new()),
            tree: Mutex::new(PackWriter::new()),
            inflight: Mutex::new(HashSet::new()),
            pending: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
            writing: Mutex::new(0),
            written: Condvar::new(),
            first_error: Mutex::new(None),
            stats: PackerStats::default(),
        }
    }

    /// True once a store write failed: nothing more will be stored.
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn repo(&self) -> &Arc<Repo> {
        &self.repo
    }

    /// True if the blob is stored or being stored.
    pub fn is_known(&self, id: &BlobId) -> bool {
        self.repo.index().read().contains(id) || self.inflight.lock().contains(id)
    }

    /// Claims a blob for storing: `true` means the caller must [`Packer::store`] it;
    /// `false` means it is already stored or someone else is storing it.
    pub fn claim(&self, id: &BlobId) -> bool {
        if self.repo.index().read().contains(id) {
            return false;
        }
        self.inflight.lock().insert(*id)
    }

    /// Compresses, seals and packs a claimed blob; stores the pack when full.
    pub fn store(&self, t: BlobType, id: BlobId, raw: &[u8]) -> Result<()> {
        self.check_failed()?;
        let sealed = blob::encode(self.repo.keys(), t, &id, raw, self.level)?;
        self.stats.new_blobs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .new_bytes
            .fetch_add(raw.len() as u64, Ordering::Relaxed);
        self.stats
            .stored_bytes
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        let full = {
            let mut w = self.writer(t).lock();
            w.add(t, id, &sealed, raw.len() as u32);
            if w.size() >= self.target {
                // Counted while the writer is still locked, so a flush that
                // takes the writer after this point also waits for this pack.
                *self.writing.lock() += 1;
                Some(std::mem::take(&mut *w))
            } else {
                None
            }
        };
        if let Some(w) = full {
            let r = self.write_pack(w);
            let mut n = self.writing.lock();
            *n -= 1;
            self.written.notify_all();
            r?;
        }
        Ok(())
    }

    /// Hashes, dedups and stores a blob; returns its id.
    pub fn save(&self, t: BlobType, raw: &[u8]) -> Result<BlobId> {
        let id = self.repo.keys().blob_id(raw);
        if self.claim(&id) {
            self.store(t, id, raw)?;
        }
        Ok(id)
    }

    /// Chunks a whole stream and saves every chunk: the writable mount's and the
    /// S3 source's path, sharing dedup, compression, sealing and packing with backup.
    pub fn save_stream(
        &self,
        r: impl std::io::Read,
        size: u64,
    ) -> Result<Vec<crate::format::tree::ChunkRef>> {
        self.chunk_stream(r, size, |id, chunk| self.store(BlobType::Data, id, &chunk))
            .map_err(|e| match e {
                StreamError::Read(e) => Error::io("reading the source", e),
                StreamError::Store(e) => e,
            })
    }

    /// The one chunking loop: cuts `r` into content-defined chunks, names each
    /// and hands every chunk this packer does not have yet (and claims) to
    /// `store` — inline, or to a pool of compressing threads as `backup` does.
    /// Returns the stream's chunk list.
    pub fn chunk_stream(
        &self,
        r: impl std::io::Read,
        size_hint: u64,
        mut store: impl FnMut(BlobId, Vec<u8>) -> Result<()>,
    ) -> std::result::Result<Vec<crate::format::tree::ChunkRef>, StreamError> {
        let params = self.repo.config().chunker;
        let seed = self.repo.keys().chunker_seed();
        let mut out = Vec::new();
        let chunker =
            crate::pipeline::chunker::Chunker::with_size_hint(r, size_hint, &params, seed)
                .map_err(StreamError::Read)?;
        for chunk in chunker {
            let chunk = chunk.map_err(StreamError::Read)?;
            let id = self.repo.keys().blob_id(&chunk);
            out.push(crate::format::tree::ChunkRef {
                id,
                size: chunk.len() as u32,
            });
            if self.claim(&id) {
                store(id, chunk).map_err(StreamError::Store)?;
            }
        }
        Ok(out)
    }

    fn writer(&self, t: BlobType) -> &Mutex<PackWriter> {
        match t {
            BlobType::Data => &self.data,
            BlobType::Tree => &self.tree,
        }
    }

    /// Fails once a store write failed (with that first failure).
    pub fn check_failed(&self) -> Result<()> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let first = self.first_error.lock();
        let why = first.as_ref().map_or_else(
            || Error::InvalidInput("an earlier write failed".into()),
            Error::duplicate,
        );
        Err(Error::WriteFailed(Box::new(why)))
    }

    fn fail(&self, e: &Error) {
        self.first_error.lock().get_or_insert_with(|| e.duplicate());
        self.failed.store(true, Ordering::Release);
    }

    fn write_pack(&self, w: PackWriter) -> Result<()> {
        let result = self.write_pack_inner(w);
        if let Err(e) = &result {
            self.fail(e);
        }
        result
    }

    fn write_pack_inner(&self, w: PackWriter) -> Result<()> {
        if w.is_empty() {
            return Ok(());
        }
        let (p, _) = self.repo.store_pack(w)?;
        {
            let mut idx = self.repo.index().write();
            idx.add_pack(p.id, &p.entries);
            let mut inflight = self.inflight.lock();
            for e in &p.entries {
                inflight.remove(&e.id);
            }
        }
        let batch = {
            let mut pending = self.pending.lock();
            pending.push(p);
            if pending.len() >= PACKS_PER_INDEX {
                std::mem::take(&mut *pending)
            } else {
                Vec::new()
            }
        };
        self.write_index(batch)
    }

    /// Writes one index object for `packs` (none for an empty batch).
    fn write_index(&self, packs: Vec<IndexPack>) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let r = self.repo.write_full_index(packs, Vec::new());
        if let Err(e) = &r {
            self.fail(e);
        }
        r
    }

    /// The write barrier: stores partly-filled packs, then the index of every
    /// pack written so far. After `Ok`, every saved blob is durable and indexed.
    pub fn flush(&self) -> Result<()> {
        self.check_failed()?;
        for t in [BlobType::Data, BlobType::Tree] {
            let w = std::mem::take(&mut *self.writer(t).lock());
            self.write_pack(w)?;
        }
        {
            let mut n = self.writing.lock();
            while *n > 0 {
                self.written.wait(&mut n);
            }
        }
        self.check_failed()?;
        let batch = std::mem::take(&mut *self.pending.lock());
        self.write_index(batch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Kind;
    use crate::storage::{MemoryStorage, Storage};

    #[test]
    fn dedups_and_flush_makes_blobs_readable() {
        let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let repo = crate::repo::test_repo(s.clone());
        let p = Packer::new(repo.clone());
        let a = p.save(BlobType::Data, b"hello").unwrap();
        let b = p.save(BlobType::Data, b"hello").unwrap();
        assert_eq!(a, b);
        assert_eq!(p.stats.new_blobs.load(Ordering::Relaxed), 1);
        assert!(repo.locate(&a).is_none(), "not indexed before flush");
        p.flush().unwrap();
        assert_eq!(repo.read_blob(BlobType::Data, &a).unwrap(), b"hello");
        assert_eq!(s.list(Kind::Pack).unwrap().len(), 1);
        assert_eq!(s.list(Kind::Index).unwrap().len(), 1);
        // A fresh reader finds it through the stored index.
        let again = Repo::open(s, &|| Ok(b"pw".to_vec())).unwrap();
        again.load_index().unwrap();
        assert_eq!(again.read_blob(BlobType::Data, &a).unwrap(), b"hello");
    }
}
