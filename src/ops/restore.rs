//! `restore`: recreates a snapshot subtree in a local directory — content (in
//! parallel, sparse where chunks are zero) and metadata (owners, modes, times,
//! xattrs, symlinks, hard links, devices). Names come from trees that
//! [`Tree::decode`](crate::format::tree::Tree::decode) already vetted, files are opened
//! with `O_NOFOLLOW`, and symlinks are made last, so nothing is written outside
//! the target.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use filetime::FileTime;
use parking_lot::Mutex;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::tree::{Node, NodeKind};
use crate::repo::Repo;

#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Set owners from the snapshot (default: only when running as root).
    pub owners: bool,
    /// Leave files whose size and mtime already match alone.
    pub skip_existing: bool,
    /// Files written at once; 0 means one per core. Remote stores want more,
    /// to keep several range reads in flight.
    pub threads: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            owners: nix::unistd::geteuid().is_root(),
            skip_existing: false,
            threads: 0,
        }
    }
}

#[derive(Default, Debug)]
pub struct RestoreProgress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
}

#[derive(Debug, Default)]
pub struct RestoreReport {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub bytes: u64,
    /// Files restored with holes because a chunk was missing or damaged.
    pub damaged: Vec<(String, String)>,
    /// Entries that could not be created or given their metadata.
    pub errors: Vec<(String, String)>,
}

struct Item {
    path: PathBuf,
    node: Node,
}

/// Lists `node`'s subtree depth-first (parents before children). Sibling
/// folders load in parallel: on a remote store each tree is a round trip.
fn flatten(
    repo: &Repo,
    dir: &Node,
    at: &Path,
    out: &mut Vec<Item>,
    errors: &mut Vec<(String, String)>,
) {
    let Some(sub) = dir.subtree else { return };
    let tree = match repo.load_tree(&sub) {
        Ok(t) => t,
        Err(e) => {
            errors.push((at.display().to_string(), e.to_string()));
            return;
        }
    };
    type Part = (Vec<Item>, Vec<(String, String)>);
    let subs: Vec<Part> = tree
        .nodes
        .par_iter()
        .map(|n| {
            let path = at.join(OsStr::from_bytes(&n.name));
            let mut items = vec![Item {
                path: path.clone(),
                node: n.clone(),
            }];
            let mut errs = Vec::new();
            if n.is_dir() {
                flatten(repo, n, &path, &mut items, &mut errs);
            }
            (items, errs)
        })
        .collect();
    for (items, errs) in subs {
        out.extend(items);
        errors.extend(errs);
    }
}

/// Makes sure `path` is a real directory (replacing a file or symlink there).
fn ensure_dir(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => fs::remove_file(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir(path)
}

/// Removes whatever non-directory is at `path`, so it can be created afresh.
fn clear(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn restore(
    repo: &Repo,
    start: &Node,
    target: &Path,
    opts: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreReport> {
    let mut report = RestoreReport::default();
    fs::create_dir_all(target)
        .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
    if !fs::symlink_metadata(target)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        return Err(Error::InvalidInput(format!(
            "{} is not a directory",
            target.display()
        )));
    }
    let pool = (opts.threads > 0)
        .then(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(opts.threads)
                .build()
                .ok()
        })
        .flatten();
    let in_pool = |f: &mut (dyn FnMut() + Send)| match &pool {
        Some(p) => p.install(f),
        None => f(),
    };
    let mut items = Vec::new();
    let root_meta = if start.is_dir() {
        in_pool(&mut || flatten(repo, start, target, &mut items, &mut report.errors));
        // The target takes the restored directory's own metadata (not a
        // synthetic snapshot root's: that one has no inode number).
        (start.name != b"/" || start.ino != 0).then(|| Item {
            path: target.to_path_buf(),
            node: start.clone(),
        })
    } else {
        items.push(Item {
            path: target.join(OsStr::from_bytes(&start.name)),
            node: start.clone(),
        });
        None
    };

    let errors = Mutex::new(std::mem::take(&mut report.errors));
    let fail = |p: &Path, e: &dyn std::fmt::Display| {
        errors.lock().push((p.display().to_string(), e.to_string()));
    };

    // 1. Directories, parents first.
    for it in items.iter().filter(|i| i.node.is_dir()) {
        if let Err(e) = ensure_dir(&it.path) {
            fail(&it.path, &e);
        }
        report.dirs += 1;
    }

    // 2. Hard-link groups: the first member is written, the others linked to it.
    let mut primary: HashMap<(u64, u64), usize> = HashMap::new();
    let mut secondaries = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if it.node.is_hardlinked() {
            match primary.get(&(it.node.dev, it.node.ino)) {
                Some(&p) => secondaries.push((i, p)),
                None => {
                    primary.insert((it.node.dev, it.node.ino), i);
                }
            }
        }
    }
    let is_secondary: std::collections::HashSet<usize> = secondaries.iter().map(|s| s.0).collect();

    // 3. File contents, in parallel, in batches of files whose chunks lie
    // side by side in the store (see `batches`), each batch read with few requests.
    let damaged = Mutex::new(Vec::new());
    let files: Vec<&Item> = items
        .iter()
        .enumerate()
        .filter(|(i, it)| it.node.kind == NodeKind::File && !is_secondary.contains(i))
        .map(|(_, it)| it)
        .collect();
    let batches = batches(repo, files);
    let work = || {
        batches.par_iter().for_each(|batch| {
            let ids: Vec<_> = batch
                .iter()
                .flat_map(|it| it.node.content.iter().map(|c| c.id))
                .collect();
            // A file too large for a batch streams chunk by chunk instead:
            // its chunks are never all in memory at once.
            let small = batch.iter().map(|it| it.node.size).sum::<u64>() <= BATCH_BYTES;
            let fetched = if small && ids.len() > 1 {
                crate::view::coalesce::data_blobs(repo, &ids)
            } else {
                HashMap::new()
            };
            batch.par_iter().for_each(
                |it| match restore_file(repo, it, &fetched, opts, progress) {
                    Ok(bad) => {
                        if let Some(reason) = bad {
                            damaged.lock().push((it.path.display().to_string(), reason));
                        }
                        if let Err(e) = apply_meta(&it.path, &it.node, opts) {
                            fail(&it.path, &e);
                        }
                    }
                    Err(e) => fail(&it.path, &e),
                },
            )
        })
    };
    in_pool(&mut || work());

    // 4. Hard links, specials and symlinks (last, so nothing is written through them).
    for (i, p) in &secondaries {
        let (it, first) = (&items[*i], &items[*p]);
        let r = clear(&it.path).and_then(|_| fs::hard_link(&first.path, &it.path));
        if let Err(e) = r {
            fail(&it.path, &e);
        }
        progress.files.fetch_add(1, Ordering::Relaxed);
    }
    for it in items
        .iter()
        .filter(|i| !matches!(i.node.kind, NodeKind::File | NodeKind::Dir))
    {
        match make_special(&it.path, &it.node).and_then(|_| apply_meta(&it.path, &it.node, opts)) {
            Ok(()) => report.others += 1,
            Err(e) => fail(&it.path, &e),
        }
    }

    // 5. Directory metadata, deepest first, so setting times sticks.
    for it in items
        .iter()
        .rev()
        .filter(|i| i.node.is_dir())
        .chain(root_meta.iter())
    {
        if let Err(e) = apply_meta(&it.path, &it.node, opts) {
            fail(&it.path, &e);
        }
    }

    report.files = progress.files.load(Ordering::Relaxed);
    report.bytes = progress.bytes.load(Ordering::Relaxed);
    report.errors = errors.into_inner();
    report.damaged = damaged.into_inner();
    Ok(report)
}

/// Bytes of file content per batch: enough for one large range read, small
/// enough that a batch per thread stays cheap in memory.
const BATCH_BYTES: u64 = 8 << 20;

/// Groups files into batches in the order their first chunks sit in the store
/// (a backup packs neighbouring files together), so a batch's chunks come from
/// a few neighbouring ranges. Files larger than a batch go alone and stream.
fn batches<'a>(repo: &Repo, mut files: Vec<&'a Item>) -> Vec<Vec<&'a Item>> {
    let key = |it: &Item| {
        it.node
            .content
            .first()
            .and_then(|c| repo.locate(&c.id))
            .map(|l| (l.pack, l.offset))
    };
    let mut keyed: Vec<_> = files.drain(..).map(|it| (key(it), it)).collect();
    keyed.sort_by_key(|(k, _)| *k);
    let mut out: Vec<Vec<&Item>> = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for (_, it) in keyed {
        let s = it.node.size;
        if s > BATCH_BYTES / 2 {
            out.push(vec![it]);
            continue;
        }
        if size + s > BATCH_BYTES && !current.is_empty() {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        current.push(it);
        size += s;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Writes one file; returns `Some(reason)` when some chunk could not be read.
/// Chunks found in `fetched` are not read again.
fn restore_file(
    repo: &Repo,
    it: &Item,
    fetched: &HashMap<crate::format::id::BlobId, Vec<u8>>,
    opts: &RestoreOptions,
    progress: &RestoreProgress,
) -> std::io::Result<Option<String>> {
    if opts.skip_existing {
        if let Ok(m) = fs::symlink_metadata(&it.path) {
            use std::os::unix::fs::MetadataExt;
            let mtime = m.mtime() * 1_000_000_000 + m.mtime_nsec();
            if m.is_file() && m.len() == it.node.size && mtime == it.node.mtime {
                progress.files.fetch_add(1, Ordering::Relaxed);
                return Ok(None);
            }
        }
    }
    // A new file is created exclusively (the common case: one call, as
    // before). Something in the way that is not a regular file — a device,
    // a fifo, a symlink, a folder — is replaced, never opened: opening a
    // device node would write the file into the device, a fifo would block.
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&it.path)
    };
    let f = match create() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            match fs::symlink_metadata(&it.path) {
                Ok(m) if m.is_file() => {
                    let f = OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                        .open(&it.path)?;
                    // Swapped for something else since the look: refused.
                    if !f.metadata()?.is_file() {
                        return Err(std::io::Error::other(format!(
                            "{} is not a regular file",
                            it.path.display()
                        )));
                    }
                    f
                }
                _ => {
                    clear(&it.path)?;
                    create()?
                }
            }
        }
        Err(_) => {
            clear(&it.path)?;
            create()?
        }
    };
    let mut offset = 0u64;
    let mut damage = None;
    for c in &it.node.content {
        let read = match fetched.get(&c.id) {
            Some(d) => Ok(std::borrow::Cow::Borrowed(d)),
            None => repo
                .read_blob(BlobType::Data, &c.id)
                .map(std::borrow::Cow::Owned),
        };
        match read {
            Ok(data) => {
                // All-zero chunks stay holes: sparse files restore sparse.
                if data.iter().any(|b| *b != 0) {
                    f.write_all_at(&data, offset)?;
                }
            }
            Err(e) => {
                tracing::error!(
                    "{}: chunk {} at {offset}: {e}",
                    it.path.display(),
                    c.id.short()
                );
                damage.get_or_insert_with(|| format!("chunk at offset {offset}: {e}"));
            }
        }
        offset += c.size as u64;
        progress.bytes.fetch_add(c.size as u64, Ordering::Relaxed);
    }
    f.set_len(offset)?;
    progress.files.fetch_add(1, Ordering::Relaxed);
    Ok(damage)
}

fn make_special(path: &Path, n: &Node) -> std::io::Result<()> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    clear(path)?;
    let mode = Mode::from_bits_truncate((n.mode & 0o7777) as libc::mode_t);
    let r = match n.kind {
        NodeKind::Symlink => return std::os::unix::fs::symlink(OsStr::from_bytes(&n.target), path),
        NodeKind::Fifo => nix::unistd::mkfifo(path, mode),
        NodeKind::CharDevice => mknod(path, SFlag::S_IFCHR, mode, n.rdev as libc::dev_t),
        NodeKind::BlockDevice => mknod(path, SFlag::S_IFBLK, mode, n.rdev as libc::dev_t),
        NodeKind::Socket => mknod(path, SFlag::S_IFSOCK, mode, 0),
        NodeKind::File | NodeKind::Dir => Ok(()),
    };
    r.map_err(std::io::Error::from)
}

fn file_time(ns: i64) -> FileTime {
    FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// Owner, mode, xattrs, then times (in that order: chown clears setuid bits,
/// and every other change bumps times).
pub fn apply_meta(path: &Path, n: &Node, opts: &RestoreOptions) -> std::io::Result<()> {
    let link = n.kind == NodeKind::Symlink;
    if opts.owners {
        std::os::unix::fs::lchown(path, Some(n.uid), Some(n.gid))?;
    }
    if !link {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(n.mode & 0o7777))?;
    }
    for x in &n.xattrs {
        if let Err(e) = xattr::set(path, OsStr::from_bytes(&x.name), &x.value) {
            // Symlinks cannot carry user.* xattrs on Linux; elsewhere it is an error.
            if !link {
                return Err(e);
            }
        }
    }
    filetime::set_symlink_file_times(path, file_time(n.atime), file_time(n.mtime))
}
