//! The whole-store layout: `snapshots/<time>`, `ids/<short id>`,
//! `hosts/<host>/<time>`, `tags/<tag>/<time>` and the `latest` link, rebuilt
//! from the store's snapshot list (at mount and every `--refresh`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{hash_ino, Entry, Vfs, What, ROOT_INO};
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;

pub(super) fn layout_ino(path: &str) -> u64 {
    hash_ino(&[b"layout", path.as_bytes()])
}

impl Vfs {
    /// Rebuilds `snapshots/`, `ids/`, `hosts/`, `tags/` and `latest` from the
    /// store's current snapshots (and reloads the index for their blobs).
    pub fn rebuild_layout(&self) -> crate::Result<()> {
        self.repo.load_index()?;
        let snaps = self.repo.snapshots()?;
        for (id, e) in self.repo.damaged_snapshots() {
            tracing::warn!(
                "snapshot {} is damaged and not shown ({e}); `latest` is the newest readable one (run `check`)",
                id.short()
            );
        }
        let mut dirs: BTreeMap<String, BTreeMap<Vec<u8>, u64>> = BTreeMap::new();
        let mut new_entries: Vec<(u64, Entry)> = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let dir = |dirs: &mut BTreeMap<String, BTreeMap<Vec<u8>, u64>>, path: &str| {
            dirs.entry(path.to_string()).or_default();
        };
        for top in ["", "/snapshots", "/ids", "/hosts", "/tags"] {
            dir(&mut dirs, top);
        }
        let mut latest = None;
        for (id, s) in &snaps {
            let mut time = crate::util::format_time(s.time);
            let n = names.entry(time.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                time = format!("{time}-{}", id.short());
            }
            let mut places = vec![
                ("/snapshots".to_string(), time.clone()),
                ("/ids".to_string(), id.short()),
                (format!("/hosts/{}", safe_component(&s.host)), time.clone()),
            ];
            for t in &s.tags {
                places.push((format!("/tags/{}", safe_component(t)), time.clone()));
            }
            for (parent, name) in places {
                if parent.matches('/').count() == 2 {
                    let (up, leaf) = parent.rsplit_once('/').expect("has a slash");
                    dir(&mut dirs, &parent);
                    dirs.get_mut(up)
                        .expect("top-level dirs exist")
                        .insert(leaf.as_bytes().to_vec(), layout_ino(&parent));
                }
                let path = format!("{parent}/{name}");
                let ino = layout_ino(&path);
                dirs.get_mut(&parent)
                    .expect("created above")
                    .insert(name.into_bytes(), ino);
                new_entries.push((ino, self.snapshot_root(layout_ino(&parent), id, s)));
            }
            latest = Some(format!("snapshots/{time}"));
        }
        for top in ["snapshots", "ids", "hosts", "tags"] {
            let ino = layout_ino(&format!("/{top}"));
            dirs.get_mut("")
                .expect("root")
                .insert(top.as_bytes().to_vec(), ino);
        }
        if let Some(target) = latest {
            // The inode follows the target, so a kernel that cached the old
            // link sees a new entry once `latest` moves.
            let ino = layout_ino(&format!("/latest -> {target}"));
            dirs.get_mut("")
                .expect("root")
                .insert(b"latest".to_vec(), ino);
            new_entries.push((
                ino,
                Entry::fixed(
                    ROOT_INO,
                    What::Link(target.into_bytes()),
                    snaps.last().map(|s| s.1.time).unwrap_or(self.mounted_at),
                ),
            ));
        }
        let newest = snaps.last().map(|s| s.1.time).unwrap_or(self.mounted_at);
        let mut entries = self.entries.write();
        for (path, children) in dirs {
            let (ino, parent) = if path.is_empty() {
                (ROOT_INO, ROOT_INO)
            } else {
                let up = path.rsplit_once('/').map(|x| x.0).unwrap_or("");
                (
                    layout_ino(&path),
                    if up.is_empty() {
                        ROOT_INO
                    } else {
                        layout_ino(up)
                    },
                )
            };
            // The kernel caches listings and re-reads one only when the
            // directory's mtime moved, so it moves whenever the entries do
            // (also when an older snapshot goes and the newest stays).
            let time = match entries.get(&ino).map(|e| (&e.what, e.time)) {
                Some((What::Layout(old), t)) if *old == children => t,
                Some((_, t)) => newest.max(t + 1),
                None => newest,
            };
            entries.insert(
                ino,
                Arc::new(Entry::fixed(parent, What::Layout(children), time)),
            );
        }
        for (ino, e) in new_entries {
            entries.entry(ino).or_insert_with(|| Arc::new(e));
        }
        Ok(())
    }

    fn snapshot_root(&self, parent: u64, _id: &SnapshotId, s: &Snapshot) -> Entry {
        let root = s.root_node();
        Entry::fixed(
            parent,
            What::Node {
                node: Arc::new(root),
                scope: 0,
            },
            s.time,
        )
    }
}

/// A layout directory name from free text: no `/`, never empty or dot-only.
fn safe_component(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    if c.is_empty() || c == "." || c == ".." {
        "_".into()
    } else {
        c
    }
}
