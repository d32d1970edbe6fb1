//! `SNAP[:PATH]` arguments: a snapshot (`latest`, id or unique prefix) and an
//! optional path inside it, resolved to a tree node.

use std::os::unix::ffi::OsStrExt;

use klosetfs::format::snapshot::Snapshot;
use klosetfs::format::tree::Node;
use klosetfs::repo::Repo;
pub use klosetfs::util::join_path as join;

pub struct Target {
    pub snapshot: Snapshot,
    /// The path inside the snapshot, as given (bytes), `/` when absent.
    pub path: Vec<u8>,
    pub node: Node,
}

/// Splits `SNAP:PATH` at the first colon.
pub fn split(arg: &std::ffi::OsStr) -> (String, Vec<u8>) {
    let b = arg.as_bytes();
    match b.iter().position(|c| *c == b':') {
        Some(i) => (
            String::from_utf8_lossy(&b[..i]).into_owned(),
            b[i + 1..].to_vec(),
        ),
        None => (String::from_utf8_lossy(b).into_owned(), b"/".to_vec()),
    }
}

pub fn resolve(repo: &Repo, arg: &std::ffi::OsStr) -> anyhow::Result<Target> {
    let (snap, path) = split(arg);
    let (id, snapshot) = repo.resolve_snapshot(&snap)?;
    if snap == "latest" {
        super::warn_damaged_snapshots(repo);
    }
    let path = if path.is_empty() { b"/".to_vec() } else { path };
    let node = repo.find_node(&snapshot, &path).map_err(|e| {
        anyhow::anyhow!(
            "{e} in snapshot {} ({}, {} of {})",
            id.short(),
            klosetfs::util::format_time(snapshot.time),
            snapshot.host,
            snapshot.paths_display()
        )
    })?;
    Ok(Target {
        snapshot,
        path,
        node,
    })
}
