//! `rm`: forgets snapshots. Only the snapshot objects go; the data they alone
//! used stays until `prune`. Every spec is resolved before anything is
//! deleted, so one bad prefix removes nothing.

use crate::error::Result;
use crate::format::id::SnapshotId;
use crate::repo::Repo;
use crate::storage::ignore_missing;
use crate::storage::Kind;

/// Removes the snapshots named by `specs` (ids, prefixes or `latest`);
/// returns their ids, in the order given.
pub fn remove_snapshots(repo: &Repo, specs: &[String]) -> Result<Vec<SnapshotId>> {
    let ids = specs
        .iter()
        .map(|s| repo.resolve_snapshot(s).map(|r| r.0))
        .collect::<Result<Vec<_>>>()?;
    remove_ids(repo, &ids)?;
    Ok(ids)
}

/// Removes the snapshots `ids` (already resolved, e.g. by a retention
/// policy) under the store's shared lock.
pub fn remove_ids(repo: &Repo, ids: &[SnapshotId]) -> Result<()> {
    let _lock = crate::format::lock::acquire(repo.storage(), repo.keys(), false)?;
    for id in ids {
        ignore_missing(repo.storage().delete(Kind::Snapshot, &id.to_hex()))?;
    }
    Ok(())
}
