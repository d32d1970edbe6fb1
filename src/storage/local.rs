//! A store in a local directory: one file per object, written to a temp file,
//! fsynced, then hard-linked into place so a name is never overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{object_path, Kind, Storage, StorageError, StorageResult};

/// Local-directory backend. Layout: `config`, `keys/<id>`, `packs/<xx>/<id>`,
/// `index/<id>`, `snapshots/<id>`, `locks/<id>`, and `tmp/` for writes in flight.
pub struct LocalStorage {
    root: PathBuf,
    seq: AtomicU64,
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> StorageError {
    move |err| StorageError::Io { context, err }
}

impl LocalStorage {
    /// Opens an existing directory; the directory itself must exist.
    pub fn open(root: impl Into<PathBuf>) -> StorageResult<Self> {
        let root = root.into();
        if !root.is_dir() {
            return Err(StorageError::NotFound {
                kind: Kind::Config,
                name: root.display().to_string(),
            });
        }
        Ok(Self {
            root,
            seq: AtomicU64::new(0),
        })
    }

    /// Creates the directory layout (private permissions) and opens it.
    pub fn create(root: impl Into<PathBuf>) -> StorageResult<Self> {
        let root = root.into();
        let mut b = fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        for d in ["", "keys", "packs", "index", "snapshots", "locks", "tmp"] {
            let p = root.join(d);
            b.create(&p)
                .map_err(io_err(format!("creating {}", p.display())))?;
        }
        Self::open(root)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, kind: Kind, name: &str) -> StorageResult<PathBuf> {
        Ok(self.root.join(object_path(kind, name)?))
    }

    fn not_found(kind: Kind, name: &str) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
        move |e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StorageError::NotFound {
                    kind,
                    name: name.to_string(),
                }
            } else {
                StorageError::Io {
                    context: format!("reading {kind} {name}"),
                    err: e,
                }
            }
        }
    }
}

fn fsync_dir(dir: &Path) -> StorageResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing {}", dir.display())))
}

impl Storage for LocalStorage {
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> StorageResult<()> {
        let dest = self.path(kind, name)?;
        if dest.exists() {
            return Err(StorageError::AlreadyExists {
                kind,
                name: name.to_string(),
            });
        }
        let dir = dest.parent().expect("object paths have a parent");
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let tmpdir = self.root.join("tmp");
        if !tmpdir.is_dir() {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&tmpdir)
                .or_else(|e| if tmpdir.is_dir() { Ok(()) } else { Err(e) })
                .map_err(io_err(format!("creating {}", tmpdir.display())))?;
        }
        let tmp = tmpdir.join(format!(
            "{}-{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed),
            name
        ));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(format!("writing {kind} {name}"))(e));
        }
        // link(2) fails if `dest` exists: an atomic create-if-absent.
        let linked = fs::hard_link(&tmp, &dest);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => fsync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StorageError::AlreadyExists {
                    kind,
                    name: name.to_string(),
                })
            }
            Err(e) => Err(io_err(format!("storing {kind} {name}"))(e)),
        }
    }

    fn get(&self, kind: Kind, name: &str) -> StorageResult<Vec<u8>> {
        let p = self.path(kind, name)?;
        let mut f = File::open(&p).map_err(Self::not_found(kind, name))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)
            .map_err(io_err(format!("reading {kind} {name}")))?;
        Ok(out)
    }

    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> StorageResult<Vec<u8>> {
        let p = self.path(kind, name)?;
        let f = File::open(&p).map_err(Self::not_found(kind, name))?;
        let mut out = vec![0u8; len as usize];
        f.read_exact_at(&mut out, offset)
            .map_err(io_err(format!("reading {kind} {name} at {offset}+{len}")))?;
        Ok(out)
    }

    fn list(&self, kind: Kind) -> StorageResult<Vec<(String, u64)>> {
        let mut out = Vec::new();
        if kind == Kind::Config {
            if let Ok(m) = fs::metadata(self.root.join("config")) {
                out.push(("config".to_string(), m.len()));
            }
            return Ok(out);
        }
        let base = self.root.join(kind.dir());
        let mut dirs = vec![base.clone()];
        if kind == Kind::Pack {
            dirs.clear();
            for e in read_dir_or_empty(&base)? {
                if e.1.is_dir() {
                    dirs.push(e.0);
                }
            }
        }
        for d in dirs {
            for (path, meta) in read_dir_or_empty(&d)? {
                if meta.is_file() {
                    if let Some(n) = path.file_name().and_then(|n| n.to_str()) {
                        out.push((n.to_string(), meta.len()));
                    }
                }
            }
        }
        Ok(out)
    }

    fn delete(&self, kind: Kind, name: &str) -> StorageResult<()> {
        let p = self.path(kind, name)?;
        fs::remove_file(&p).map_err(Self::not_found(kind, name))
    }

    fn temporaries(
        &self,
        older_than: std::time::SystemTime,
        remove: bool,
    ) -> StorageResult<Vec<(String, u64)>> {
        let dir = self.root.join("tmp");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if !md.is_file() || md.modified().map_or(true, |m| m >= older_than) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if remove {
                match fs::remove_file(e.path()) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(io_err(format!("removing tmp/{name}"))(err)),
                }
            }
            out.push((format!("tmp/{name}"), md.len()));
        }
        Ok(out)
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }
}

fn read_dir_or_empty(d: &Path) -> StorageResult<Vec<(PathBuf, fs::Metadata)>> {
    let rd = match fs::read_dir(d) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("listing {}", d.display()))(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(io_err(format!("listing {}", d.display())))?;
        let m = e
            .metadata()
            .map_err(io_err(format!("stat {}", e.path().display())))?;
        out.push((e.path(), m));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn local_backend_passes_the_suite() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::create(dir.path().join("store")).unwrap();
        super::super::suite::run_all(Arc::new(s));
    }

    #[test]
    fn objects_are_private_and_no_temp_files_remain() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::create(dir.path().join("s")).unwrap();
        s.put(Kind::Pack, "abcd", b"x").unwrap();
        let m = fs::metadata(dir.path().join("s/packs/ab/abcd")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path().join("s/tmp")).unwrap().count(), 0);
    }
}
