//! `backup` of local paths: the local file system as a [`Source`]. Lists
//! directories (leaving out excluded paths and, with `-x`, what is behind
//! mount points), reads files without touching their atime, and calls a file
//! unchanged when its size, mtime and inode match the parent snapshot's.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::tree::Node;
use crate::ops::exclude::Excludes;
use crate::ops::local_node::{node_from_meta, NameCache};
pub use crate::ops::source::{BackupResult, Progress};
use crate::ops::source::{Content, Entry, Problems, Source, Threads};
use crate::ops::writer::{ParentChoice, SnapshotPlan, SnapshotWriter};
use crate::repo::Repo;

#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub tags: Vec<String>,
    /// Glob patterns matched against the full path and the file name.
    pub excludes: Vec<String>,
    /// Absolute paths never backed up (the store itself, when it is local).
    pub exclude_paths: Vec<PathBuf>,
    pub host: Option<String>,
    /// Compare against this snapshot; `None` picks the newest one with the same
    /// host and paths, unless `no_parent`.
    pub parent: Option<SnapshotId>,
    pub no_parent: bool,
    /// Worker threads per stage; 0 means one per core.
    pub threads: usize,
    /// The snapshot's time (ns since the epoch) instead of now.
    pub time: Option<i64>,
    /// Stay on the file systems of `paths`: a directory on another one (a
    /// mount point) is kept, empty.
    pub one_file_system: bool,
}

/// Lexically absolute path without `.`/`..` components.
pub fn normalize(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(format!("{}", p.display()), e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The local file system from `/`, seen through the backup's options.
struct LocalSource<'a> {
    /// Directories above the source paths, with the one entry (or few) of
    /// each that is backed up; every other directory is listed whole.
    partial: HashMap<PathBuf, Vec<Vec<u8>>>,
    excludes: Excludes,
    exclude_paths: &'a [PathBuf],
    /// With `one_file_system`, the devices of the source paths.
    devices: Option<Vec<u64>>,
    names: NameCache,
}

impl LocalSource<'_> {
    fn excluded(&self, path: &Path) -> bool {
        if self.exclude_paths.iter().any(|p| p == path) {
            return true;
        }
        self.excludes.matches(path.as_os_str().as_bytes())
    }

    fn entry(&self, dir: &Path, name: Vec<u8>) -> std::io::Result<Entry<PathBuf>> {
        let path = dir.join(OsStr::from_bytes(&name));
        let meta = fs::symlink_metadata(&path)?;
        let node = node_from_meta(&name, &path, &meta, &self.names)?;
        Ok(Entry { node, handle: path })
    }
}

impl Source for LocalSource<'_> {
    type Handle = PathBuf;

    fn list(&self, dir: &PathBuf, problems: &Problems) -> Result<Vec<Entry<PathBuf>>> {
        if let Some(names) = self.partial.get(dir) {
            // Above the source paths: a source that is not there stops the backup.
            return names
                .iter()
                .map(|n| {
                    self.entry(dir, n.clone()).map_err(|e| {
                        Error::io(
                            format!(
                                "cannot back up {}",
                                dir.join(OsStr::from_bytes(n)).display()
                            ),
                            e,
                        )
                    })
                })
                .collect();
        }
        let names: Vec<Vec<u8>> = match fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| match e {
                    Ok(e) => Some(e.file_name().as_bytes().to_vec()),
                    Err(err) => {
                        problems.report(dir.display().to_string(), err);
                        None
                    }
                })
                .collect(),
            Err(e) => {
                problems.report(dir.display().to_string(), e);
                Vec::new()
            }
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(OsStr::from_bytes(&name));
            if self.excluded(&path) {
                continue;
            }
            match self.entry(dir, name) {
                Ok(e) => out.push(e),
                Err(e) => problems.report(path.display().to_string(), e),
            }
        }
        Ok(out)
    }

    fn open(&self, file: &PathBuf) -> std::io::Result<Box<dyn Content + '_>> {
        Ok(Box::new(open_noatime(file)?))
    }

    fn unchanged(&self, node: &Node, parent: &Node) -> bool {
        parent.mtime == node.mtime && parent.ino == node.ino
    }

    fn enter(&self, dir: &PathBuf, node: &Node) -> bool {
        self.partial.contains_key(dir)
            || self.devices.as_ref().is_none_or(|d| d.contains(&node.dev))
    }

    fn describe(&self, h: &PathBuf) -> String {
        h.display().to_string()
    }
}

pub fn backup(repo: &Arc<Repo>, opts: &BackupOptions, progress: &Progress) -> Result<BackupResult> {
    if opts.paths.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let mut paths = Vec::new();
    for p in &opts.paths {
        let n = normalize(p)?;
        fs::symlink_metadata(&n)
            .map_err(|e| Error::io(format!("cannot back up {}", p.display()), e))?;
        paths.push(n);
    }
    paths.sort();
    paths.dedup();
    let mut devices: Vec<u64> = paths
        .iter()
        .filter_map(|p| fs::metadata(p).ok().map(|m| m.dev()))
        .collect();
    devices.sort_unstable();
    devices.dedup();

    // The directories above the sources: with `/a/b` and `/a/c/d`, `/` holds
    // only `a`, `/a` only `b` and `c`, `/a/c` only `d`. A source inside
    // another source is part of it.
    let mut partial: HashMap<PathBuf, Vec<Vec<u8>>> = HashMap::new();
    let mut sources: Vec<&Path> = Vec::new();
    for p in &paths {
        if p.parent().is_none() {
            return Err(Error::InvalidInput(
                "backing up `/` itself: name directories below it".into(),
            ));
        }
        if sources.iter().any(|s| p.starts_with(s)) {
            continue;
        }
        sources.push(p);
        let mut child = p.as_path();
        while let Some(dir) = child.parent() {
            let name = child.file_name().map(|n| n.as_bytes().to_vec());
            let names = partial.entry(dir.to_path_buf()).or_default();
            let fresh = names.is_empty();
            if let Some(n) = name.filter(|n| !names.contains(n)) {
                names.push(n);
            }
            if !fresh {
                break;
            }
            child = dir;
        }
    }

    let writer = SnapshotWriter::start(
        repo,
        SnapshotPlan {
            host: opts.host.clone().unwrap_or_else(crate::util::hostname),
            paths: paths
                .iter()
                .map(|p| p.as_os_str().as_bytes().to_vec())
                .collect(),
            tags: opts.tags.clone(),
            time: opts.time,
            root: None,
        },
        ParentChoice::from_options(opts.parent, opts.no_parent),
    )?;
    let source = LocalSource {
        partial,
        excludes: Excludes::new(opts.excludes.clone())?,
        exclude_paths: &opts.exclude_paths,
        devices: opts.one_file_system.then_some(devices),
        names: NameCache::default(),
    };
    crate::ops::source::write(
        writer,
        &source,
        PathBuf::from("/"),
        Threads::per_core(opts.threads),
        progress,
    )
}

/// Opens for reading without touching atime where allowed (owner or root).
fn open_noatime(path: &Path) -> std::io::Result<fs::File> {
    match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME | libc::O_NOFOLLOW)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path),
        r => r,
    }
}
