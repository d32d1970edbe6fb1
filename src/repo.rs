//! An open store: config, keys, the master index, and typed access to blobs,
//! trees and snapshots. Everything above (backup, restore, the Vfs) goes through it.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;

use crate::blob::{self, BlobType};
use crate::config::StoreConfig;
use crate::crypto::{Keys, MasterKey};
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, KeyId, PackId, SnapshotId};
use crate::index::{BlobLocation, IndexFile, MasterIndex};
use crate::keyfile::{KdfParams, KeyFile};
use crate::snapshot::Snapshot;
use crate::storage::{Kind, Storage, StorageError};
use crate::tree::{Node, NodeKind, Tree};

/// Supplies a passphrase when (and only when) the store needs one.
pub type PassphraseFn<'a> = &'a dyn Fn() -> Result<Vec<u8>>;

pub struct Repo {
    storage: Arc<dyn Storage>,
    config: StoreConfig,
    keys: Keys,
    master: Option<MasterKey>,
    index: RwLock<MasterIndex>,
    trees: Mutex<LruCache<BlobId, Arc<Tree>>>,
}

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
        match storage.get(Kind::Config, "config") {
            Ok(_) => {
                return Err(Error::InvalidInput(format!(
                    "{} already holds a store; refusing to overwrite it",
                    storage.location()
                )))
            }
            Err(StorageError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if config.encrypted() != passphrase.is_some() {
            return Err(Error::InvalidInput(
                "an encrypted store needs a passphrase, a plaintext one none".into(),
            ));
        }
        let (keys, master) = match passphrase {
            Some(pw) => {
                let master = MasterKey::random()?;
                let (id, body) = KeyFile::new(&master, pw, kdf)?.encode();
                storage.put(Kind::Key, &id.to_hex(), &body)?;
                (Keys::encrypted(&master), Some(master))
            }
            None => (plaintext_keys(&config)?, None),
        };
        // The config goes last: a resource without it is not (yet) a store.
        storage.put(Kind::Config, "config", &config.encode())?;
        Ok(Self::assemble(storage, config, keys, master))
    }

    /// Opens a store; asks for the passphrase only if the store is encrypted.
    pub fn open(storage: Arc<dyn Storage>, passphrase: PassphraseFn<'_>) -> Result<Repo> {
        let config = match storage.get(Kind::Config, "config") {
            Ok(b) => StoreConfig::decode(&b)?,
            Err(StorageError::NotFound { .. }) => return Err(Error::NotAStore(storage.location())),
            Err(e) => return Err(e.into()),
        };
        if !config.encrypted() {
            let keys = plaintext_keys(&config)?;
            return Ok(Self::assemble(storage, config, keys, None));
        }
        let pw = zeroize::Zeroizing::new(passphrase()?);
        let master = unlock(&*storage, &pw)?.1;
        let keys = Keys::encrypted(&master);
        Ok(Self::assemble(storage, config, keys, Some(master)))
    }

    fn assemble(
        storage: Arc<dyn Storage>,
        config: StoreConfig,
        keys: Keys,
        master: Option<MasterKey>,
    ) -> Repo {
        Repo {
            storage,
            config,
            keys,
            master,
            index: RwLock::new(MasterIndex::default()),
            trees: Mutex::new(LruCache::new(NonZeroUsize::new(8192).expect("non-zero"))),
        }
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
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
        let (id, body) = KeyFile::new(master, passphrase, kdf)?.encode();
        self.storage.put(Kind::Key, &id.to_hex(), &body)?;
        Ok(id)
    }

    /// Reads the index objects (in parallel) into the master index.
    /// Damaged index objects are skipped and returned, so readers keep working.
    pub fn load_index(&self) -> Result<Vec<(IndexId, Error)>> {
        let loaded: Vec<(IndexId, Result<IndexFile>)> = self
            .index_ids()?
            .into_par_iter()
            .map(|id| {
                let r = self
                    .storage
                    .get(Kind::Index, &id.to_hex())
                    .map_err(Error::from)
                    .and_then(|b| IndexFile::decode(&self.keys, &id, &b));
                (id, r)
            })
            .collect();
        let mut superseded = std::collections::HashSet::new();
        for (_, f) in &loaded {
            if let Ok(f) = f {
                superseded.extend(f.supersedes.iter().copied());
            }
        }
        let mut idx = MasterIndex::default();
        let mut bad = Vec::new();
        for (id, f) in loaded {
            match f {
                Ok(f) if !superseded.contains(&id) => {
                    for p in &f.packs {
                        idx.add_pack(p.id, &p.entries);
                    }
                }
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!("skipping damaged index {}: {e}", id.short());
                    bad.push((id, e));
                }
            }
        }
        *self.index.write() = idx;
        Ok(bad)
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
        self.index.read().get(id).copied()
    }

    /// Reads, decrypts, decompresses and verifies one blob.
    pub fn read_blob(&self, t: BlobType, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self.locate(id).ok_or_else(|| {
            Error::corrupt(format!("{t:?} blob {}", id.short()), "not in any index")
        })?;
        let (pack, off, len) = (loc.pack.to_hex(), loc.offset as u64, loc.length as u64);
        let sealed = match t {
            BlobType::Tree => self.storage.get_meta_range(Kind::Pack, &pack, off, len)?,
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

    pub fn load_tree(&self, id: &BlobId) -> Result<Arc<Tree>> {
        if let Some(t) = self.trees.lock().get(id) {
            return Ok(t.clone());
        }
        let bytes = self.read_blob(BlobType::Tree, id)?;
        let t = Arc::new(Tree::decode(id, &bytes)?);
        self.trees.lock().put(*id, t.clone());
        Ok(t)
    }

    /// Every readable snapshot, oldest first; damaged ones are reported, not fatal.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let names = self.storage.list(Kind::Snapshot)?;
        let mut out: Vec<(SnapshotId, Snapshot)> = names
            .par_iter()
            .filter_map(|(n, _)| SnapshotId::from_hex(n).ok())
            .filter_map(|id| match self.load_snapshot(&id) {
                Ok(s) => Some((id, s)),
                Err(e) => {
                    if !e.is_not_found() {
                        tracing::warn!("skipping snapshot {}: {e}", id.short());
                    }
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
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
        let matches: Vec<String> = self
            .storage
            .list(Kind::Snapshot)?
            .into_iter()
            .map(|(n, _)| n)
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
        self.storage.put(Kind::Snapshot, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// Walks `path` (components as bytes) from a root tree. An empty path is the
    /// root itself, returned as a synthetic directory node.
    pub fn find_node(&self, root: &BlobId, path: &[u8]) -> Result<Node> {
        let mut node = synthetic_dir(*root);
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

    pub fn pack_ids(&self) -> Vec<PackId> {
        self.index.read().packs().copied().collect()
    }
}

/// The root directory of a snapshot, as a node (it has no stored metadata of its own).
pub fn synthetic_dir(tree: BlobId) -> Node {
    Node {
        name: b"/".to_vec(),
        kind: NodeKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        user: String::new(),
        group: String::new(),
        size: 0,
        atime: 0,
        mtime: 0,
        ctime: 0,
        dev: 0,
        ino: 0,
        nlink: 1,
        rdev: 0,
        xattrs: vec![],
        target: vec![],
        content: vec![],
        subtree: Some(tree),
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

/// Finds the key file that `passphrase` opens.
pub fn unlock(storage: &dyn Storage, passphrase: &[u8]) -> Result<(KeyId, MasterKey)> {
    let keys = storage.list(Kind::Key)?;
    if keys.is_empty() {
        return Err(Error::corrupt("store", "encrypted store without key files"));
    }
    let mut damaged = 0;
    for (name, _) in keys {
        let Ok(id) = KeyId::from_hex(&name) else {
            continue;
        };
        let kf = match storage
            .get(Kind::Key, &name)
            .map_err(Error::from)
            .and_then(|b| KeyFile::decode(&b))
        {
            Ok(kf) => kf,
            Err(e) => {
                tracing::warn!("skipping key {}: {e}", id.short());
                damaged += 1;
                continue;
            }
        };
        match kf.unwrap_master(passphrase) {
            Ok(Some(m)) => return Ok((id, m)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("skipping key {}: {e}", id.short());
                damaged += 1;
            }
        }
    }
    if damaged > 0 {
        return Err(Error::corrupt(
            "keys",
            format!("no readable key opens the store with this passphrase, and {damaged} key file(s) are damaged (run `key list`)"),
        ));
    }
    Err(Error::WrongPassphrase)
}

/// Lists key files: id, host, user, creation time.
pub fn list_keys(storage: &dyn Storage) -> Result<Vec<(KeyId, Option<KeyFile>)>> {
    let mut out = Vec::new();
    for (name, _) in storage.list(Kind::Key)? {
        let Ok(id) = KeyId::from_hex(&name) else {
            continue;
        };
        let kf = storage
            .get(Kind::Key, &name)
            .ok()
            .and_then(|b| KeyFile::decode(&b).ok());
        out.push((id, kf));
    }
    out.sort_by_key(|(_, k)| k.as_ref().map(|k| k.created).unwrap_or(0));
    Ok(out)
}
