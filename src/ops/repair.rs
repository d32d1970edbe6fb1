//! `check --repair`: rebuilds the index from the packs without ever dropping a
//! blob that can still be read. Pack headers are the first source; where a
//! header is damaged, the old index's entries for that pack are the second, and
//! the pack is rewritten with a fresh header around the very same sealed blobs.
//! Each blob is sealed under its own id, so it is verified without the header.
//!
//! Order, as for every writer: new packs → new index (superseding the old) →
//! delete the old index objects → delete the packs the new ones replace. A crash
//! at any point leaves either the old index or the new one in force.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::error::Result;
use crate::format::id::{BlobId, PackId};
use crate::format::index::IndexPack;
use crate::format::pack::{self, PackEntry, PackWriter};
use crate::repo::Repo;
use crate::storage::ignore_missing;
use crate::storage::Kind;

/// What a repair did, and the damage it could not undo.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// Packs indexed from their own headers.
    pub packs_indexed: usize,
    /// Packs whose header was unreadable, rewritten from the old index.
    pub packs_rewritten: usize,
    /// Blobs that failed verification while a pack was rewritten; kept as
    /// they were (their bytes moved unchanged) so nothing is dropped.
    pub damaged_blobs: Vec<String>,
    /// Packs left alone, unindexed: header unreadable and no index lists them.
    pub packs_left: Vec<String>,
    /// Blobs the old index placed in a pack that no longer exists.
    pub missing: Vec<String>,
    /// Index entries kept although the pack's header does not list them
    /// (verified by reading the blob).
    pub kept_entries: usize,
}

impl RepairReport {
    /// True when the store is whole again as far as the index goes.
    pub fn is_clean(&self) -> bool {
        self.damaged_blobs.is_empty() && self.packs_left.is_empty() && self.missing.is_empty()
    }
}

/// The old index's entries per pack (every readable index object in force).
fn old_entries(repo: &Repo) -> Result<HashMap<PackId, Vec<PackEntry>>> {
    let (live, _damaged) = repo.read_index_files()?;
    let mut by_pack: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for f in live {
        for p in f.packs {
            let v = by_pack.entry(p.id).or_default();
            for e in p.entries {
                if !v.iter().any(|x| x.id == e.id && x.offset == e.offset) {
                    v.push(e);
                }
            }
        }
    }
    Ok(by_pack)
}

/// One stored pack after repair: the index entries it gets, and whether the
/// old pack may be deleted (everything it held is in a new pack).
struct Outcome {
    index: Vec<IndexPack>,
    delete_old: bool,
}

/// Rebuilds the index. Never drops an entry that still locates a readable blob.
/// Takes the store's exclusive lock for the whole repair.
pub fn repair_index(repo: &Repo) -> Result<RepairReport> {
    let _lock = crate::format::lock::acquire(repo.storage(), repo.keys(), true)?;
    let old_ids = repo.index_ids()?;
    let old = old_entries(repo)?;
    let stored = repo.storage().list(Kind::Pack)?;
    let stored_ids: HashSet<PackId> = stored
        .iter()
        .filter_map(|(n, _)| PackId::from_hex(n).ok())
        .collect();
    let report = parking_lot::Mutex::new(RepairReport::default());

    let outcomes: Vec<Outcome> = stored
        .par_iter()
        .map(|(name, size)| -> Result<Outcome> {
            let Ok(id) = PackId::from_hex(name) else {
                tracing::warn!("packs/{name}: not a pack name; left alone");
                return Ok(Outcome {
                    index: vec![],
                    delete_old: false,
                });
            };
            let listed = old.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            match repo.read_pack_header(&id, *size) {
                Ok(entries) => {
                    let kept = verified_extras(repo, &id, &entries, listed);
                    let mut r = report.lock();
                    r.packs_indexed += 1;
                    r.kept_entries += kept.len();
                    drop(r);
                    let mut entries = entries;
                    entries.extend(kept);
                    Ok(Outcome {
                        index: vec![IndexPack { id, entries }],
                        delete_old: false,
                    })
                }
                Err(e) if listed.is_empty() => {
                    tracing::warn!("pack {name}: {e}; no index lists it, so it is left as it is");
                    report.lock().packs_left.push(format!(
                        "pack {name}: {e}, and no index lists what it holds: left in place, unindexed"
                    ));
                    Ok(Outcome {
                        index: vec![],
                        delete_old: false,
                    })
                }
                Err(e) => {
                    tracing::warn!("pack {name}: {e}; rewriting it from the index's entries");
                    rewrite(repo, &id, *size, listed, &report)
                }
            }
        })
        .collect::<Result<_>>()?;

    let mut report = report.into_inner();
    for (id, entries) in &old {
        if !stored_ids.contains(id) {
            report.missing.push(format!(
                "pack {}: missing, and with it {} blob(s) the index listed",
                id.to_hex(),
                entries.len()
            ));
        }
    }
    let mut index = Vec::new();
    let mut delete = Vec::new();
    for (o, (name, _)) in outcomes.into_iter().zip(&stored) {
        index.extend(o.index);
        if o.delete_old {
            delete.push(name.clone());
        }
    }
    repo.write_full_index(index, old_ids.clone())?;
    for id in old_ids {
        ignore_missing(repo.storage().delete(Kind::Index, &id.to_hex()))?;
    }
    for name in delete {
        ignore_missing(repo.storage().delete(Kind::Pack, &name))?;
    }
    repo.load_index()?;
    Ok(report)
}

/// Old index entries for a pack with a readable header that the header does
/// not list: kept when the blob at that place reads back whole.
fn verified_extras(
    repo: &Repo,
    id: &PackId,
    header: &[PackEntry],
    listed: &[PackEntry],
) -> Vec<PackEntry> {
    let have: HashSet<(BlobId, u32)> = header.iter().map(|e| (e.id, e.offset)).collect();
    listed
        .iter()
        .filter(|e| !have.contains(&(e.id, e.offset)))
        .filter(|e| {
            let ok = repo
                .storage()
                .get_range(Kind::Pack, &id.to_hex(), e.offset as u64, e.length as u64)
                .map_err(Into::into)
                .and_then(|b| repo.decode_blob(e.blob_type, &e.id, &b, e.raw_length))
                .is_ok();
            if !ok {
                tracing::warn!(
                    "pack {}: the index's entry for blob {} is neither in the header nor readable; dropped",
                    id.short(),
                    e.id.short()
                );
            }
            ok
        })
        .copied()
        .collect()
}

/// Rewrites a pack whose header is unreadable: the blobs the old index lists
/// are copied byte for byte behind a fresh header. The old pack is deleted only
/// when those blobs account for every byte before its header, so nothing the
/// index did not know of can go with it.
fn rewrite(
    repo: &Repo,
    id: &PackId,
    size: u64,
    listed: &[PackEntry],
    report: &parking_lot::Mutex<RepairReport>,
) -> Result<Outcome> {
    let bytes = match repo.storage().get(Kind::Pack, &id.to_hex()) {
        Ok(b) => b,
        Err(e) => {
            // Unreadable now: keep the old entries as they are.
            tracing::warn!("pack {}: {e}; its index entries are kept", id.short());
            return Ok(Outcome {
                index: vec![IndexPack {
                    id: *id,
                    entries: listed.to_vec(),
                }],
                delete_old: false,
            });
        }
    };
    let mut entries = listed.to_vec();
    entries.sort_by_key(|e| e.offset);
    let mut writer = PackWriter::new();
    let mut left = Vec::new();
    let mut covered = 0u64;
    for e in &entries {
        let end = e.offset as u64 + e.length as u64;
        let Some(sealed) = bytes.get(e.offset as usize..end as usize) else {
            left.push(*e);
            continue;
        };
        if e.offset as u64 == covered {
            covered = end;
        }
        if let Err(err) = repo.decode_blob(e.blob_type, &e.id, sealed, e.raw_length) {
            report.lock().damaged_blobs.push(format!(
                "pack {}: {:?} blob {}: {err} (kept as it was)",
                id.to_hex(),
                e.blob_type,
                e.id.to_hex()
            ));
        }
        writer.add(e.blob_type, e.id, sealed, e.raw_length);
    }
    let body = pack::header_len(&bytes, size)
        .ok()
        .map(|h| size - 4 - h as u64);
    let whole = left.is_empty() && body == Some(covered);
    let mut index = Vec::new();
    if !writer.is_empty() {
        index.push(repo.store_pack(writer)?.0);
    }
    if !left.is_empty() {
        index.push(IndexPack {
            id: *id,
            entries: left,
        });
    }
    let mut r = report.lock();
    r.packs_rewritten += 1;
    if !whole {
        r.packs_left.push(format!(
            "pack {}: header unreadable; the blobs the index lists were rewritten into a new pack, \
             but they do not account for all of its bytes, so it is left in place",
            id.to_hex()
        ));
    }
    Ok(Outcome {
        index,
        delete_old: whole,
    })
}
