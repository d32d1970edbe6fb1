//! The writable mount's spools: where the bytes of files written since the
//! last commit wait (in memory up to [`INLINE_LIMIT`], else in a private
//! file), copy-on-first-write from stored content, and how closed files'
//! spools are dropped once their packs are durable.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::format::tree::NodeKind;
use crate::fs_error::{FsError, FsResult};

use super::{SyncMode, WritableFs};

pub(super) fn io_err(e: std::io::Error) -> FsError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        FsError::NoSpace
    } else {
        FsError::Io(format!("spool: {e}"))
    }
}

/// Files up to this size are staged in memory and journaled with their bytes.
pub(super) const INLINE_LIMIT: u64 = 256 * 1024;

impl WritableFs {
    pub(super) fn spool_path(&self, name: &str) -> PathBuf {
        self.opts.spool_dir.join(name)
    }

    pub(super) fn spool_file(&self, name: &str) -> FsResult<Arc<File>> {
        if let Some(f) = self.spools.files.lock().get(name) {
            return Ok(f.clone());
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.spool_path(name))
            .map_err(|e| FsError::Io(format!("spool: {e}")))?;
        let f = Arc::new(f);
        self.spools.files.lock().insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// Writes into a spool, spilling a memory spool to a file when it outgrows
    /// [`INLINE_LIMIT`].
    pub(super) fn spool_write_at(&self, name: &str, data: &[u8], off: u64) -> FsResult<()> {
        {
            let mut mem = self.spools.mem.lock();
            if let Some(v) = mem.get_mut(name) {
                let end = off as usize + data.len();
                if end as u64 <= INLINE_LIMIT {
                    // Copied only if a close's store job still holds the bytes.
                    let v = Arc::make_mut(v);
                    if v.len() < end {
                        v.resize(end, 0);
                    }
                    v[off as usize..end].copy_from_slice(data);
                    return Ok(());
                }
                let v = mem.remove(name).expect("present");
                self.spool_file(name)?.write_all_at(&v, 0).map_err(io_err)?;
            }
        }
        self.spool_file(name)?
            .write_all_at(data, off)
            .map_err(io_err)
    }

    /// Reads from a spool; `None` if it is gone (a drain dropped it). A
    /// file spool is not opened anew for the map: a reader's descriptor must
    /// not outlive a drain that drops its spool.
    pub(super) fn spool_read_at(
        &self,
        name: &str,
        out: &mut [u8],
        off: u64,
    ) -> FsResult<Option<usize>> {
        if let Some(v) = self.spools.mem.lock().get(name) {
            let from = (off as usize).min(v.len());
            let n = out.len().min(v.len() - from);
            out[..n].copy_from_slice(&v[from..from + n]);
            return Ok(Some(n));
        }
        let known = self.spools.files.lock().get(name).cloned();
        let f = match known {
            Some(f) => f,
            None => match File::open(self.spool_path(name)) {
                Ok(f) => Arc::new(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err(e)),
            },
        };
        let mut done = 0;
        while done < out.len() {
            match f.read_at(&mut out[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(Some(done))
    }

    /// Sets a spool's length; returns the old one.
    pub(super) fn spool_set_len(&self, name: &str, size: u64) -> FsResult<u64> {
        {
            let mut mem = self.spools.mem.lock();
            if let Some(v) = mem.get_mut(name) {
                let old = v.len() as u64;
                if size <= INLINE_LIMIT {
                    Arc::make_mut(v).resize(size as usize, 0);
                    return Ok(old);
                }
                let v = mem.remove(name).expect("present");
                self.spool_file(name)?.write_all_at(&v, 0).map_err(io_err)?;
            }
        }
        let f = self.spool_file(name)?;
        let old = f.metadata().map(|m| m.len()).unwrap_or(0);
        f.set_len(size).map_err(io_err)?;
        Ok(old)
    }

    pub(super) fn drop_spool(&self, name: &str) {
        if let Some(v) = self.spools.mem.lock().remove(name) {
            self.spools.bytes.fetch_sub(
                (v.len() as u64).min(self.spools.bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            return;
        }
        self.spools.files.lock().remove(name);
        let p = self.spool_path(name);
        if let Ok(m) = std::fs::metadata(&p) {
            self.spools.bytes.fetch_sub(
                m.len().min(self.spools.bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
        let _ = std::fs::remove_file(p);
    }

    /// Gives `ino` a spool file holding its current bytes (copy on first write).
    pub(super) fn ensure_spool(&self, ino: u64, truncate: bool) -> FsResult<String> {
        let (existing, content) = {
            let ns = self.ns.lock();
            let i = ns.get(ino)?;
            if i.kind != NodeKind::File {
                return Err(FsError::IsDir);
            }
            (i.spool.clone(), i.content.clone())
        };
        if let Some(s) = existing {
            return Ok(s);
        }
        let name = format!("{ino}-{}", self.spools.seq.fetch_add(1, Ordering::Relaxed));
        let size: u64 = if truncate {
            0
        } else {
            content.iter().map(|c| c.size as u64).sum()
        };
        if size <= INLINE_LIMIT {
            self.spools.mem.lock().insert(name.clone(), Arc::default());
        }
        if !truncate {
            let mut off = 0u64;
            for c in &content {
                let d = self.cache.get(&c.id)?;
                self.spool_write_at(&name, &d, off)?;
                off += d.len() as u64;
            }
            self.spools.bytes.fetch_add(off, Ordering::Relaxed);
        }
        let mut ns = self.ns.lock();
        let i = ns.get_mut(ino)?;
        if let Some(s) = &i.spool {
            // Another thread won the race.
            let s = s.clone();
            drop(ns);
            self.drop_spool(&name);
            return Ok(s);
        }
        i.spool = Some(name.clone());
        Ok(name)
    }

    /// Makes every stored chunk durable, then frees the spool of the closed
    /// files whose chunks were stored before that barrier.
    pub(super) fn drain_spool(&self) -> FsResult<()> {
        let stored: Vec<(u64, String)> = self
            .ns
            .lock()
            .inodes
            .iter()
            .filter(|(_, i)| !i.dirty)
            .filter_map(|(ino, i)| i.spool.clone().map(|s| (*ino, s)))
            .collect();
        self.packer.flush()?;
        if self.opts.sync != SyncMode::Commit {
            // The records naming those chunks must outlive the spools.
            self.sync_journal()?;
        }
        let freed: Vec<String> = {
            let mut ns = self.ns.lock();
            stored
                .into_iter()
                .filter_map(|(ino, s)| {
                    let i = ns.get_mut(ino).ok()?;
                    if i.dirty || i.spool.as_deref() != Some(&s) {
                        return None;
                    }
                    i.spool.take()
                })
                .collect()
        };
        self.drop_spools(freed);
        Ok(())
    }

    /// Detaches the spools of closed files whose content is stored; the
    /// caller drops them once what makes them redundant is durable.
    pub(super) fn take_clean_spools(ns: &mut super::namespace::Namespace) -> Vec<String> {
        ns.inodes
            .values_mut()
            .filter(|i| !i.dirty)
            .filter_map(|i| i.spool.take())
            .collect()
    }

    pub(super) fn drop_spools(&self, names: Vec<String>) {
        for s in names {
            self.drop_spool(&s);
        }
    }
}
