//! An open store: config, keys, the master index, and typed access to blobs,
//! trees and snapshots. Everything above (backup, restore, the Vfs) goes through it.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::blob::{self, BlobType};
use crate::format::config::StoreConfig;
use crate::format::config::{CONFIG, CONFIG_COPY};
use crate::format::crypto::{Keys, MasterKey};
use crate::format::id::{BlobId, IndexId, KeyId, PackId, SnapshotId};
use crate::format::index::{BlobLocation, IndexFile, IndexPack, MasterIndex};
use crate::format::keyfile::{key_check, KdfParams, KeyFile};
use crate::format::pack::PackWriter;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, Tree};
use crate::storage::{Kind, Storage, StorageError};
use crate::unlock::{write_config, write_key};

/// Default memory for decoded trees.
pub const TREE_CACHE_BYTES: usize = 64 << 20;

/// Index objects that did not decode, each with what is wrong.
pub type DamagedIndexes = Vec<(IndexId, Error)>;

/// Supplies a passphrase when (and only when) the store needs one.
pub type PassphraseFn<'a> = &'a dyn Fn() -> Result<Vec<u8>>;

pub struct Repo {
    storage: Arc<dyn Storage>,
    config: StoreConfig,
    keys: Keys,
    master: Option<MasterKey>,
    /// The key file the store was opened with (encrypted stores).
    key_id: Option<KeyId>,
    index: RwLock<MasterIndex>,
    /// Decoded trees, bounded by bytes ([`Repo::set_tree_cache_bytes`]).
    trees: Mutex<crate::util::ByteLru<BlobId, Arc<Tree>>>,
    damaged: Mutex<Vec<(SnapshotId, String)>>,
    /// Set when index objects were damaged at the last load: a blob the
    /// index does not name may still be found in a pack's own header.
    /// The mutex holds whether those headers were read already.
    index_gaps: std::sync::atomic::AtomicBool,
    gaps_filled: Mutex<bool>,
    /// Remote stores: trees come into the disk cache a pack at a time.
    tree_packs: crate::tree_packs::TreePacks,
    /// The last listing of snapshot names and when: resolving a second id
    /// prefix right after a first (`diff A B`) needs no second listing.
    snapshot_names: Mutex<Option<(std::time::Instant, Vec<String>)>>,
}

/// How long [`Repo::resolve_snapshot`] trusts the last listing.
const NAMES_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

impl Repo {
    /// Creates a new store on an empty resource. Refuses to touch an existing one.
    pub fn create(
        storage: Arc<dyn Storage>,
        passphrase: Option<&[u8]>,
        kdf: KdfParams,
    ) -> Result<Repo> {
        let config = StoreConfig::new(passphrase.is_some())?;
        Self::create_with(storage, passphrase, kdf, config)
    }

    /// Like [`Repo::create`] with chosen parameters (tests use tiny packs).
    pub fn create_with(
        storage: Arc<dyn Storage>,
        passphrase: Option<&[u8]>,
        kdf: KdfParams,
        config: StoreConfig,
    ) -> Result<Repo> {
        for name in [CONFIG, CONFIG_COPY] {
            match storage.get(Kind::Config, name) {
                Ok(_) => {
                    return Err(Error::InvalidInput(format!(
                        "{} already holds a store; refusing to overwrite it",
                        storage.location()
                    )))
                }
                Err(StorageError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if config.encrypted() != passphrase.is_some() {
            return Err(Error::InvalidInput(
                "an encrypted store needs a passphrase, a plaintext one none".into(),
            ));
        }
        let mut config = config;
        let (keys, master, key_id) = match passphrase {
            Some(pw) => {
                let master = MasterKey::random()?;
                let store = (config.version >= 2).then_some(config.id.as_str());
                if store.is_some() {
                    config.key_check = Some(key_check(&master, &config.id));
                }
                let id = write_key(&*storage, &KeyFile::new(&master, pw, kdf, store)?)?;
                (Keys::encrypted(&master), Some(master), Some(id))
            }
            None => (plaintext_keys(&config)?, None, None),
        };
        // The config goes last: a resource without it is not (yet) a store.
        write_config(&*storage, &config)?;
        Ok(Self::assemble(storage, config, keys, master, key_id))
    }

    /// Opens a store; asks for the passphrase only if the store is encrypted.
    pub fn open(storage: Arc<dyn Storage>, passphrase: PassphraseFn<'_>) -> Result<Repo> {
        // Remote stores: keys, index and snapshot objects come meanwhile.
        storage.clone().look_ahead();
        let (config, notes) = read_config(&*storage)?;
        for n in notes {
            tracing::warn!("{n}");
        }
        if !config.encrypted() {
            let keys = plaintext_keys(&config)?;
            return Ok(Self::assemble(storage, config, keys, None, None));
        }
        let pw = zeroize::Zeroizing::new(passphrase()?);
        let (id, master) = unlock(&*storage, &config, &pw)?;
        let keys = Keys::encrypted(&master);
        Ok(Self::assemble(
            storage,
            config,
            keys,
            Some(master),
            Some(id),
        ))
    }

    fn assemble(
        storage: Arc<dyn Storage>,
        config: StoreConfig,
        keys: Keys,
        master: Option<MasterKey>,
        key_id: Option<KeyId>,
    ) -> Repo {
        Repo {
            storage,
            config,
            keys,
            master,
            key_id,
            index: RwLock::new(MasterIndex::default()),
            trees: Mutex::new(crate::util::ByteLru::new(TREE_CACHE_BYTES)),
            damaged: Mutex::new(Vec::new()),
            index_gaps: std::sync::atomic::AtomicBool::new(false),
            gaps_filled: Mutex::new(false),
            tree_packs: Default::default(),
            snapshot_names: Mutex::new(None),
        }
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }
    /// Brings every tree pack of the store into the disk cache, 16 at a
    /// time (remote stores; nothing to do otherwise): for the commands that
    /// walk every snapshot (`locate`, `versions`), which would otherwise
    /// meet the packs one at a time.
    pub fn warm_all_trees(&self) {
        if !self.storage.keeps_meta() {
            return;
        }
        self.warm_packs(self.tree_packs.packs(&self.index));
    }

    /// Warms the trees of `packs`, 16 at a time.
    fn warm_packs(&self, packs: Vec<PackId>) {
        crate::util::io_pool().install(|| {
            packs
                .par_iter()
                .for_each(|p| self.tree_packs.warm(&*self.storage, &self.index, *p))
        });
    }

    /// Brings the packs holding these trees into the disk cache at once
    /// (remote stores): a walk that starts from several roots (`diff`'s two
    /// sides) then waits for one round trip, not one per root.
    pub fn warm_trees(&self, ids: &[BlobId]) {
        if !self.storage.keeps_meta() {
            return;
        }
        let mut packs: Vec<PackId> = ids
            .iter()
            .filter_map(|id| self.locate(id))
            .map(|l| l.pack)
            .collect();
        packs.sort_unstable();
        packs.dedup();
        self.warm_packs(packs);
    }

    /// What fetching tree packs whole cost this process (remote stores).
    pub fn tree_warm_stats(&self) -> crate::tree_packs::WarmStats {
        self.tree_packs.stats()
    }

    /// The key file this store was opened with (`None`: plaintext).
    pub fn key_id(&self) -> Option<KeyId> {
        self.key_id
    }
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
    pub fn index(&self) -> &RwLock<MasterIndex> {
        &self.index
    }

    /// Adds a passphrase; returns the new key's id.
    pub fn add_key(&self, passphrase: &[u8], kdf: KdfParams) -> Result<KeyId> {
        let master = self
            .master
            .as_ref()
            .ok_or_else(|| Error::InvalidInput("a plaintext store has no keys".into()))?;
        let store = (self.config.version >= 2).then_some(self.config.id.as_str());
        let id = write_key(
            &*self.storage,
            &KeyFile::new(master, passphrase, kdf, store)?,
        )?;
        Ok(id)
    }

    /// Reads the index objects (in parallel) into the master index.
    /// Damaged index objects are skipped and returned, so readers keep working.
    pub fn load_index(&self) -> Result<Vec<(IndexId, Error)>> {
        let (live, bad) = self.read_index_files()?;
        let idx = MasterIndex::build(
            live.iter()
                .flat_map(|f| f.packs.iter().map(|p| (p.id, p.entries.as_slice()))),
        );
        drop(live);
        *self.index.write() = idx;
        self.tree_packs.reset();
        self.index_gaps
            .store(!bad.is_empty(), std::sync::atomic::Ordering::Relaxed);
        *self.gaps_filled.lock() = false;
        Ok(bad)
    }

    /// With damaged index objects, the blobs they listed are found through
    /// the headers of the packs no intact index names: read once, on the
    /// first miss, so `restore` and the mounts work before `check --repair`.
    /// A pack whose header is damaged too stays unreadable (as before).
    fn fill_index_gaps(&self) -> Result<()> {
        let mut filled = self.gaps_filled.lock();
        if *filled {
            return Ok(());
        }
        *filled = true;
        let packs = self.storage.list(Kind::Pack)?;
        let unindexed: Vec<(PackId, u64)> = {
            let idx = self.index.read();
            packs
                .into_iter()
                .filter_map(|(n, size)| PackId::from_hex(&n).ok().map(|id| (id, size)))
                .filter(|(id, _)| !idx.has_pack(id))
                .collect()
        };
        let found: Vec<(PackId, Vec<crate::format::pack::PackEntry>)> = unindexed
            .par_iter()
            .filter_map(|(id, size)| match self.read_pack_header(id, *size) {
                Ok(h) => Some((*id, h)),
                Err(e) => {
                    tracing::warn!(
                        "pack {} is in no intact index and its header does not read: {e}",
                        id.short()
                    );
                    None
                }
            })
            .collect();
        let mut idx = self.index.write();
        for (id, entries) in &found {
            idx.add_pack(*id, entries);
        }
        tracing::warn!(
            "the index is damaged: {} blobs found in the headers of {} packs no intact index names (`check --repair` makes this permanent)",
            found.iter().map(|f| f.1.len()).sum::<usize>(),
            found.len()
        );
        Ok(())
    }

    /// Reads a pack's header from its tail.
    pub fn read_pack_header(
        &self,
        id: &PackId,
        size: u64,
    ) -> Result<Vec<crate::format::pack::PackEntry>> {
        let name = id.to_hex();
        if size < 4 {
            return Err(Error::corrupt(format!("pack {}", id.short()), "too short"));
        }
        let len_bytes = self.storage.get_range(Kind::Pack, &name, size - 4, 4)?;
        let hlen = crate::format::pack::header_len(&len_bytes, size)
            .map_err(|d| Error::corrupt(format!("pack {}", id.short()), d))?;
        let tail =
            self.storage
                .get_range(Kind::Pack, &name, size - 4 - hlen as u64, hlen as u64 + 4)?;
        crate::format::pack::decode_header(&self.keys, id, &tail, size)
    }

    /// The index objects in force: every readable one that no other supersedes,
    /// plus the damaged ones (named, with what is wrong). A missing object (deleted
    /// by a concurrent prune between list and read) is neither.
    pub fn read_index_files(&self) -> Result<(Vec<IndexFile>, DamagedIndexes)> {
        let ids = self.index_ids()?;
        let loaded: Vec<(IndexId, Result<IndexFile>)> =
            crate::util::on_io_pool(self.storage.keeps_meta(), || {
                ids.into_par_iter()
                    .map(|id| {
                        let r = self
                            .storage
                            .get(Kind::Index, &id.to_hex())
                            .map_err(Error::from)
                            .and_then(|b| IndexFile::decode(&self.keys, &id, &b));
                        (id, r)
                    })
                    .collect()
            });
        let mut superseded = std::collections::HashSet::new();
        for (_, f) in &loaded {
            if let Ok(f) = f {
                superseded.extend(f.supersedes.iter().copied());
            }
        }
        let mut live = Vec::new();
        let mut bad = Vec::new();
        for (id, f) in loaded {
            match f {
                Ok(f) if !superseded.contains(&id) => live.push(f),
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!("skipping damaged index {}: {e}", id.short());
                    bad.push((id, e));
                }
            }
        }
        Ok((live, bad))
    }

    /// Every index object in the store, by name.
    pub fn index_ids(&self) -> Result<Vec<IndexId>> {
        Ok(self
            .storage
            .list(Kind::Index)?
            .into_iter()
            .filter_map(|(n, _)| IndexId::from_hex(&n).ok())
            .collect())
    }

    pub fn locate(&self, id: &BlobId) -> Option<BlobLocation> {
        let hit = self.index.read().get(id);
        if hit.is_some() || !self.index_gaps.load(std::sync::atomic::Ordering::Relaxed) {
            return hit;
        }
        if let Err(e) = self.fill_index_gaps() {
            tracing::warn!("looking for blobs in pack headers: {e}");
        }
        self.index.read().get(id)
    }

    /// Reads, decrypts, decompresses and verifies one blob.
    pub fn read_blob(&self, t: BlobType, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self.locate(id).ok_or_else(|| {
            Error::corrupt(format!("{t:?} blob {}", id.short()), "not in any index")
        })?;
        let (pack, off, len) = (loc.pack.to_hex(), loc.offset as u64, loc.length as u64);
        let sealed = match t {
            BlobType::Tree => {
                self.tree_packs.warm(&*self.storage, &self.index, loc.pack);
                self.storage.get_meta_range(Kind::Pack, &pack, off, len)?
            }
            BlobType::Data => self.storage.get_range(Kind::Pack, &pack, off, len)?,
        };
        blob::decode(&self.keys, t, id, &sealed, loc.raw_length)
    }

    /// Decodes a blob already fetched from `pack` at `loc`.
    pub fn decode_blob(
        &self,
        t: BlobType,
        id: &BlobId,
        sealed: &[u8],
        raw_len: u32,
    ) -> Result<Vec<u8>> {
        blob::decode(&self.keys, t, id, sealed, raw_len)
    }

    /// Caps the memory of decoded trees kept for reuse (emptying the cache).
    pub fn set_tree_cache_bytes(&self, bytes: usize) {
        *self.trees.lock() = crate::util::ByteLru::new(bytes);
    }

    /// Bytes of decoded trees held for reuse.
    pub fn tree_cache_bytes(&self) -> usize {
        self.trees.lock().bytes()
    }

    pub fn load_tree(&self, id: &BlobId) -> Result<Arc<Tree>> {
        if let Some(t) = self.trees.lock().get(id) {
            return Ok(t.clone());
        }
        let bytes = self.read_blob(BlobType::Tree, id)?;
        let t = Arc::new(Tree::decode(id, &bytes)?);
        self.trees.lock().put(*id, t.clone(), t.mem_bytes());
        Ok(t)
    }

    /// Every readable snapshot, oldest first; damaged ones are skipped, not
    /// fatal, and kept for [`Repo::damaged_snapshots`].
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let mut damaged = Vec::new();
        let out = self.read_snapshots(&mut damaged)?;
        *self.damaged.lock() = damaged;
        Ok(out)
    }

    /// The snapshot objects the last [`Repo::snapshots`] could not read, with
    /// why: a damaged newest snapshot means `latest` is an older one.
    pub fn damaged_snapshots(&self) -> Vec<(SnapshotId, String)> {
        self.damaged.lock().clone()
    }

    fn read_snapshots(
        &self,
        damaged: &mut Vec<(SnapshotId, String)>,
    ) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let bad = Mutex::new(Vec::new());
        let names = self.list_snapshot_names()?;
        let remote = self.storage.keeps_meta();
        let mut out: Vec<(SnapshotId, Snapshot)> = crate::util::on_io_pool(remote, || {
            names
                .par_iter()
                .filter_map(|n| SnapshotId::from_hex(n).ok())
                .filter_map(|id| match self.load_snapshot(&id) {
                    Ok(s) => Some((id, s)),
                    Err(e) => {
                        if !e.is_not_found() {
                            tracing::debug!("skipping snapshot {}: {e}", id.short());
                            bad.lock().push((id, e.to_string()));
                        }
                        None
                    }
                })
                .collect()
        });
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        *damaged = bad.into_inner();
        Ok(out)
    }

    fn list_snapshot_names(&self) -> Result<Vec<String>> {
        let names: Vec<String> = self
            .storage
            .list(Kind::Snapshot)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        *self.snapshot_names.lock() = Some((std::time::Instant::now(), names.clone()));
        Ok(names)
    }

    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let b = self.storage.get(Kind::Snapshot, &id.to_hex())?;
        Snapshot::decode(&self.keys, id, &b)
    }

    /// `latest`, a full id, or a unique prefix of one.
    pub fn resolve_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        if spec == "latest" {
            return self
                .snapshots()?
                .pop()
                .ok_or_else(|| Error::InvalidInput("the store has no snapshots yet".into()));
        }
        let lower = spec.to_ascii_lowercase();
        if lower.is_empty() || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!(
                "{spec:?} is not a snapshot id, id prefix or `latest`"
            )));
        }
        let recent = match &*self.snapshot_names.lock() {
            Some((at, names)) if at.elapsed() < NAMES_FRESH => Some(names.clone()),
            _ => None,
        };
        let names = match recent {
            Some(n) => n,
            None => self.list_snapshot_names()?,
        };
        let matches: Vec<String> = names
            .into_iter()
            .filter(|n| n.starts_with(&lower))
            .collect();
        match matches.len() {
            0 => Err(Error::InvalidInput(format!("no snapshot matches {spec:?}"))),
            1 => {
                let id = SnapshotId::from_hex(&matches[0])?;
                Ok((id, self.load_snapshot(&id)?))
            }
            n => Err(Error::InvalidInput(format!(
                "{spec:?} is ambiguous: it matches {n} snapshots ({}); give more digits",
                matches
                    .iter()
                    .map(|m| &m[..m.len().min(12)])
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    pub fn save_snapshot(&self, s: &Snapshot) -> Result<SnapshotId> {
        let (id, bytes) = s.encode(&self.keys)?;
        *self.snapshot_names.lock() = None;
        self.storage.put(Kind::Snapshot, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// Walks `path` (components as bytes) from a snapshot's root. An empty
    /// path is the root itself ([`Snapshot::root_node`]).
    pub fn find_node(&self, snapshot: &Snapshot, path: &[u8]) -> Result<Node> {
        let mut node = snapshot.root_node();
        for comp in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
            let Some(sub) = node.subtree.filter(|_| node.is_dir()) else {
                return Err(Error::InvalidInput(format!(
                    "{} is not a directory",
                    String::from_utf8_lossy(&node.name)
                )));
            };
            let tree = self.load_tree(&sub)?;
            node = tree.find(comp).cloned().ok_or_else(|| {
                Error::InvalidInput(format!(
                    "no such file or directory: {}",
                    String::from_utf8_lossy(path)
                ))
            })?;
        }
        Ok(node)
    }

    /// Seals `w`'s header and stores the pack (an identical pack already
    /// stored is fine: names are content hashes), telling the storage where its
    /// tree blobs are. Returns its index entry and size.
    pub fn store_pack(&self, w: PackWriter) -> Result<(IndexPack, u64)> {
        let p = w.finish(&self.keys)?;
        let name = p.id.to_hex();
        ignore_exists(self.storage.put(Kind::Pack, &name, &p.bytes))?;
        let trees: Vec<(u64, u64)> = p
            .entries
            .iter()
            .filter(|e| e.blob_type == BlobType::Tree)
            .map(|e| (e.offset as u64, e.length as u64))
            .collect();
        if !trees.is_empty() {
            self.storage
                .hint_meta_ranges(Kind::Pack, &name, &trees, &p.bytes);
        }
        Ok((
            IndexPack {
                id: p.id,
                entries: p.entries,
            },
            p.bytes.len() as u64,
        ))
    }

    /// Writes `packs` as index objects that together replace `supersedes`. Only
    /// the last object names `supersedes`, so a crash part-way leaves the old
    /// indexes in force; the caller deletes them once this returns.
    pub fn write_full_index(&self, packs: Vec<IndexPack>, supersedes: Vec<IndexId>) -> Result<()> {
        let mut batches: Vec<Vec<IndexPack>> = packs.chunks(256).map(|c| c.to_vec()).collect();
        if batches.is_empty() {
            batches.push(Vec::new());
        }
        let last = batches.len() - 1;
        for (i, b) in batches.into_iter().enumerate() {
            let f = IndexFile {
                version: 1,
                supersedes: if i == last {
                    supersedes.clone()
                } else {
                    Vec::new()
                },
                packs: b,
            };
            let (id, bytes) = f.encode(&self.keys)?;
            ignore_exists(self.storage.put(Kind::Index, &id.to_hex(), &bytes))?;
        }
        Ok(())
    }

    pub fn pack_ids(&self) -> Vec<PackId> {
        self.index.read().packs().copied().collect()
    }
}

/// The cheapest key derivation there is, for unit tests.
#[cfg(test)]
pub(crate) const TEST_KDF: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// A new encrypted store (passphrase `pw`) on `storage`, for unit tests.
#[cfg(test)]
pub(crate) fn test_repo(storage: Arc<dyn Storage>) -> Arc<Repo> {
    Arc::new(Repo::create(storage, Some(b"pw"), TEST_KDF).expect("a store in memory"))
}

/// `put` of a content-named object that is already there succeeded before.
pub(crate) fn ignore_exists(r: std::result::Result<(), StorageError>) -> Result<()> {
    match r {
        Ok(()) | Err(StorageError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn plaintext_keys(config: &StoreConfig) -> Result<Keys> {
    let hexkey = config
        .plaintext_id_key
        .as_deref()
        .ok_or_else(|| Error::corrupt("config", "plaintext store without id key"))?;
    let mut k = [0u8; 32];
    hex::decode_to_slice(hexkey, &mut k).map_err(|e| Error::corrupt("config", e))?;
    Ok(Keys::plaintext(k))
}

pub use crate::unlock::{list_keys, read_config, unlock};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    /// Every byte of a key file, flipped, reads as damage and never as a wrong
    /// passphrase; the intact file still opens and a wrong passphrase says so.
    #[test]
    fn every_flipped_key_byte_is_damage_not_a_wrong_passphrase() {
        let s = Arc::new(MemoryStorage::new());
        test_repo(s.clone());
        let mut names: Vec<String> = s
            .list(Kind::Key)
            .unwrap()
            .into_iter()
            .map(|x| x.0)
            .collect();
        names.sort();
        let (name, twin) = (names[0].clone(), names[1].clone());
        assert_eq!(twin, format!("{name}-copy"));
        let good = s.get(Kind::Key, &name).unwrap();
        let (config, _) = read_config(&*s).unwrap();
        assert!(matches!(
            unlock(&*s, &config, b"nope"),
            Err(Error::WrongPassphrase)
        ));
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            for n in [name.clone(), twin.clone()] {
                s.delete(Kind::Key, &n).unwrap();
                s.put(Kind::Key, &n, &bad).unwrap();
            }
            for pw in [&b"pw"[..], b"nope"] {
                let e = unlock(&*s, &config, pw).unwrap_err();
                assert!(e.to_string().contains("damaged"), "byte {i} flipped: {e}");
            }
            // One intact copy is enough.
            s.delete(Kind::Key, &twin).unwrap();
            s.put(Kind::Key, &twin, &good).unwrap();
            assert!(unlock(&*s, &config, b"pw").is_ok(), "byte {i}");
        }
        s.delete(Kind::Key, &name).unwrap();
        s.put(Kind::Key, &name, &good).unwrap();
        assert!(unlock(&*s, &config, b"pw").is_ok());
        let listed = list_keys(&*s).unwrap();
        assert!(listed[0].1.is_ok());
    }
}
