//! Reading a local file's metadata into a [`Node`]: lstat, xattrs, symlink
//! target, owner names (cached, since NSS look-ups are slow).

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use parking_lot::Mutex;

use crate::format::tree::{Node, NodeKind, Xattr};

#[derive(Default)]
pub struct NameCache {
    users: Mutex<HashMap<u32, String>>,
    groups: Mutex<HashMap<u32, String>>,
}

impl NameCache {
    pub fn user(&self, uid: u32) -> String {
        self.users
            .lock()
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_default()
            })
            .clone()
    }

    pub fn group(&self, gid: u32) -> String {
        self.groups
            .lock()
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
                    .unwrap_or_default()
            })
            .clone()
    }
}

pub fn kind_of(m: &Metadata) -> NodeKind {
    let t = m.file_type();
    if t.is_dir() {
        NodeKind::Dir
    } else if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_fifo() {
        NodeKind::Fifo
    } else if t.is_char_device() {
        NodeKind::CharDevice
    } else if t.is_block_device() {
        NodeKind::BlockDevice
    } else if t.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Builds a node from `lstat` data; content and subtree are filled in later.
pub fn node_from_meta(
    name: &[u8],
    path: &Path,
    m: &Metadata,
    names: &NameCache,
) -> std::io::Result<Node> {
    let kind = kind_of(m);
    let target = if kind == NodeKind::Symlink {
        std::fs::read_link(path)?.as_os_str().as_bytes().to_vec()
    } else {
        Vec::new()
    };
    Ok(Node {
        name: name.to_vec(),
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        user: names.user(m.uid()),
        group: names.group(m.gid()),
        size: if kind == NodeKind::File { m.size() } else { 0 },
        atime: ns(m.atime(), m.atime_nsec()),
        mtime: ns(m.mtime(), m.mtime_nsec()),
        ctime: ns(m.ctime(), m.ctime_nsec()),
        dev: m.dev(),
        ino: m.ino(),
        nlink: m.nlink(),
        rdev: m.rdev(),
        xattrs: read_xattrs(path),
        target,
        content: Vec::new(),
        subtree: None,
    })
}

/// Extended attributes of `path` (not following symlinks). Filesystems without
/// xattr support simply have none.
pub fn read_xattrs(path: &Path) -> Vec<Xattr> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<Xattr> = names
        .filter_map(|n| {
            let v = xattr::get(path, &n).ok().flatten()?;
            Some(Xattr {
                name: n.as_bytes().to_vec(),
                value: v,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
