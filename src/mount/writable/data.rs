//! The data path of the writable mount: opens, reads of uncommitted files,
//! writes into the spool (`spool.rs`), and storing a file's bytes through
//! the packer when it is closed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::pipeline::chunk_cache::{chunk_offsets, read_chunks};

use super::journal::Record;
use super::spool::{io_err, INLINE_LIMIT};
use super::{now, OpenFile, SyncMode, WError, WResult, WritableFs, COMMIT_INO};

/// Spool bytes of closed files that trigger writing their packs out.
const DRAIN_AT: u64 = 128 * 1024 * 1024;

impl WritableFs {
    pub fn open(&self, ino: u64, write: bool, truncate: bool) -> WResult<u64> {
        if ino == COMMIT_INO {
            // Opening the control file commits; reads then serve the id.
            let id = self.commit()?;
            let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
            let text = Some(format!("{}\n", id.to_hex()).into_bytes());
            self.handles.lock().insert(
                fh,
                OpenFile {
                    ino,
                    write: false,
                    text,
                },
            );
            return Ok(fh);
        }
        if write {
            if self.ns.lock().get(ino)?.spool.is_some() {
                // A background store may still be reading this spool.
                self.storer.wait_idle();
                self.check_store_error()?;
            }
            // (Read after the wait: a finished store marks the file clean.)
            let reopened_clean = self
                .ns
                .lock()
                .get(ino)
                .map(|i| i.spool.is_some() && !i.dirty)?;
            if reopened_clean {
                // The spool is about to change: make the chunks its last close
                // stored durable first, so the journal never needs the old bytes.
                self.packer.flush()?;
            }
            let spool = self.ensure_spool(ino, truncate)?;
            if truncate {
                self.truncate_spool(ino, &spool, 0)?;
            }
        }
        self.ns.lock().get_mut(ino)?.open_handles += 1;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(
            fh,
            OpenFile {
                ino,
                write,
                text: None,
            },
        );
        Ok(fh)
    }

    /// Keeps a file's stream going on an append, drops it on any other write,
    /// and starts one when an appended file outgrows memory.
    fn follow_write(&self, ino: u64, spool: &str, offset: u64, end: u64, old: u64, was_mem: bool) {
        let stream = self.streams.lock().get(&ino).cloned();
        match stream {
            Some(s) if !s.wrote(offset, end) => {
                // Dropped after the map's lock: ending a stream joins its thread.
                let gone = self.streams.lock().remove(&ino);
                drop((s, gone));
            }
            Some(_) => {}
            None if was_mem && offset == old && !self.mem_spools.lock().contains_key(spool) => {
                let Ok(f) = self.spool_file(spool) else {
                    return;
                };
                match super::stream::Stream::start(self.packer.clone(), f, end) {
                    Ok(s) => {
                        self.streams.lock().insert(ino, Arc::new(s));
                    }
                    Err(e) => tracing::warn!("could not start a streaming store: {e}"),
                }
            }
            None => {}
        }
    }

    pub(super) fn truncate_spool(&self, ino: u64, spool: &str, size: u64) -> WResult<()> {
        let gone = self.streams.lock().remove(&ino);
        drop(gone);
        let old = self.spool_set_len(spool, size)?;
        if size > old {
            self.spool_bytes.fetch_add(size - old, Ordering::Relaxed);
        } else {
            self.spool_bytes.fetch_sub(
                (old - size).min(self.spool_bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
        let mut ns = self.ns.lock();
        let i = ns.get_mut(ino)?;
        i.size = size;
        i.dirty = true;
        i.generation += 1;
        i.mtime = now();
        i.ctime = i.mtime;
        Ok(())
    }

    pub(super) fn truncate(&self, ino: u64, size: u64) -> WResult<()> {
        if self.ns.lock().get(ino)?.spool.is_some() {
            self.storer.wait_idle();
        }
        let spool = self.ensure_spool(ino, size == 0)?;
        self.truncate_spool(ino, &spool, size)?;
        if self.ns.lock().get(ino)?.open_handles == 0 {
            self.store_content(ino)?;
            self.storer.wait_idle();
            self.check_store_error()?;
            self.spool_files.lock().remove(&spool);
        }
        Ok(())
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> WResult<Vec<u8>> {
        let ino = {
            let handles = self.handles.lock();
            let h = handles.get(&fh).ok_or(WError::BadHandle)?;
            if let Some(t) = &h.text {
                let from = (offset as usize).min(t.len());
                let to = (from + size as usize).min(t.len());
                return Ok(t[from..to].to_vec());
            }
            h.ino
        };
        let (spool, content, file_size) = {
            let ns = self.ns.lock();
            let i = ns.get(ino)?;
            (i.spool.clone(), i.content.clone(), i.size)
        };
        if offset >= file_size {
            return Ok(Vec::new());
        }
        let len = (size as u64).min(file_size - offset) as usize;
        if let Some(s) = spool {
            let mut out = vec![0u8; len];
            let n = self.spool_read_at(&s, &mut out, offset)?;
            out.truncate(n);
            return Ok(out);
        }
        let offsets = chunk_offsets(&content);
        Ok(read_chunks(
            &self.cache,
            &content,
            &offsets,
            offset,
            offset + len as u64,
        )?)
    }

    /// Writes at `offset`; `kill_suid` (a write the kernel says must drop
    /// them) clears the setuid and setgid bits, as a local filesystem does.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8], kill_suid: bool) -> WResult<u32> {
        let ino = match self.handles.lock().get(&fh) {
            Some(h) if h.write => h.ino,
            _ => return Err(WError::BadHandle),
        };
        self.check_store_error()?;
        if self.spool_bytes.load(Ordering::Relaxed) > self.opts.spool_cap {
            self.drain_spool()?;
            if self.spool_bytes.load(Ordering::Relaxed) > self.opts.spool_cap {
                // Closed files still being stored hold spool: wait for them.
                self.storer.wait_idle();
                self.check_store_error()?;
                self.drain_spool()?;
            }
            if self.spool_bytes.load(Ordering::Relaxed) > self.opts.spool_cap {
                return Err(WError::NoSpace);
            }
        }
        let spool = self.ensure_spool(ino, false)?;
        let old_size = self.ns.lock().get(ino)?.size;
        let was_in_memory = self.mem_spools.lock().contains_key(&spool);
        self.spool_write_at(&spool, data, offset)?;
        let end = offset + data.len() as u64;
        self.follow_write(ino, &spool, offset, end, old_size, was_in_memory);
        let mut ns = self.ns.lock();
        let i = ns.get_mut(ino)?;
        if end > i.size {
            self.spool_bytes.fetch_add(end - i.size, Ordering::Relaxed);
            i.size = end;
        }
        i.dirty = true;
        i.generation += 1;
        i.mtime = now();
        i.ctime = i.mtime;
        let killed = (kill_suid && i.mode & 0o6000 != 0).then_some(i.mode & !0o6000);
        drop(ns);
        if let Some(mode) = killed {
            self.setattr(ino, Some(mode), None, None, None, None, None)?;
        }
        Ok(data.len() as u32)
    }

    /// On close (flush) and fsync: journal the file's bytes (durably with
    /// `--sync close`; `fsync` syncs the whole journal) and queue them for the
    /// pipeline. An error here, or from an earlier file's storing, reaches the
    /// writer's `close()`.
    pub fn flush(&self, fh: u64, fsync: bool) -> WResult<()> {
        let ino = self
            .handles
            .lock()
            .get(&fh)
            .filter(|h| h.write)
            .map(|h| h.ino);
        if let Some(ino) = ino {
            self.check_store_error()?;
            self.store_content(ino)?;
        }
        if fsync {
            // fsync reports this file's own storing, as a disk filesystem
            // reports its writeback errors there.
            self.storer.wait_idle();
            self.check_store_error()?;
            // Also what was journaled before: a rename, a chmod.
            self.sync_journal()?;
        }
        Ok(())
    }

    /// Journals a dirty file's current bytes and queues them for storing;
    /// the background job records the chunks when they are stored.
    pub(super) fn store_content(&self, ino: u64) -> WResult<()> {
        let _gate = self.close_gate.read();
        let (spool, generation, path, mtime) = {
            let mut ns = self.ns.lock();
            let i = ns.get_mut(ino)?;
            // Clean, or these very bytes are already journaled and queued: the
            // RELEASE after a close's FLUSH comes before the store is done. (A
            // failed store is reported by `check_store_error`, not retried.)
            if !i.dirty || i.queued_gen == i.generation {
                return Ok(());
            }
            let spool = i
                .spool
                .clone()
                .ok_or(WError::Io("dirty file without spool".into()))?;
            i.queued_gen = i.generation;
            let (generation, mtime) = (i.generation, i.mtime);
            (spool, generation, ns.path(ino), mtime)
        };
        let r = self.journal_and_queue(ino, spool, generation, path, mtime);
        if r.is_err() {
            // Not journaled: the next close or fsync tries again.
            if let Ok(i) = self.ns.lock().get_mut(ino) {
                if i.queued_gen == generation {
                    i.queued_gen = 0;
                }
            }
        }
        r
    }

    fn journal_and_queue(
        &self,
        ino: u64,
        spool: String,
        generation: u64,
        path: Option<Vec<u8>>,
        mtime: i64,
    ) -> WResult<()> {
        // Small files travel inside the journal record: one fsync per close
        // (the journal's) instead of two, and the spool is not needed again.
        let mut bytes = self.mem_spools.lock().get(&spool).cloned(); // shared, not copied
        let mut file = None;
        if bytes.is_none() {
            let f = self.spool_file(&spool)?;
            let len = f.metadata().map(|m| m.len()).map_err(io_err)?;
            if len <= INLINE_LIMIT {
                let mut buf = vec![0u8; len as usize];
                f.read_exact_at(&mut buf, 0)
                    .map_err(|e| WError::Io(format!("spool: {e}")))?;
                bytes = Some(Arc::new(buf));
            } else {
                match self.opts.sync {
                    SyncMode::Close => f
                        .sync_data()
                        .map_err(|e| WError::Io(format!("spool: {e}")))?,
                    // Synced with the journal by its background syncer.
                    SyncMode::Lazy => self.journal.lock().syncer().also_sync(f.clone()),
                    SyncMode::Commit => {}
                }
                file = Some((f, len));
            }
        }
        let size = bytes
            .as_ref()
            .map_or_else(|| file.as_ref().map_or(0, |f| f.1), |b| b.len() as u64);
        if let Some(path) = path {
            let r = Record::Content {
                path,
                size,
                mtime,
                chunks: Vec::new(),
                spool: Some(spool.clone()),
                inline: bytes.take(),
            };
            self.log_ref(&r, true)?;
            if let Record::Content { inline, .. } = r {
                bytes = inline;
            }
        }
        let job = StoreJob {
            packer: self.packer.clone(),
            ns: self.ns.clone(),
            journal: self.journal.clone(),
            ino,
            generation,
            mtime,
            size,
            spool,
        };
        match (bytes, file) {
            // Small files: their bytes travel in the job.
            (Some(b), _) => self.storer.submit(size, move || job.run(&b[..])),
            // Spooled files: most of a file written in order is stored by its
            // stream already; the rest (or the whole file, read back from the
            // spool) is stored in the background too, so `cp` goes on to its
            // next file meanwhile. Like a small file's, a failure reaches the
            // next write, close and fsync, and the file stays in the journal
            // and spool for the next commit or `recover`. Under `--sync close`
            // the file is stored before its close returns, so a failing store
            // reaches this very close (`cp big /mnt` sees it).
            (None, Some((f, len))) => {
                let streamed = self.streams.lock().remove(&ino);
                let store = move || match streamed.and_then(|s| s.finish(len)) {
                    Some(chunks) => {
                        tracing::debug!("{len} bytes stored while being written");
                        job.stored(chunks)
                    }
                    None => job.run(std::io::BufReader::with_capacity(
                        1 << 20,
                        SpoolReader { f: &f, pos: 0 },
                    )),
                };
                if self.opts.sync == SyncMode::Close {
                    store().map_err(WError::Io)?;
                } else {
                    self.storer.submit(0, store);
                }
            }
            (None, None) => unreachable!("bytes or a spool file"),
        }
        // Closed files wait in the spool until their packs are durable; keep
        // that backlog (memory for small files) modest.
        if self.spool_bytes.load(Ordering::Relaxed) > DRAIN_AT.min(self.opts.spool_cap) {
            self.drain_spool()?;
        }
        Ok(())
    }

    pub fn release(&self, fh: u64) {
        let Some(h) = self.handles.lock().remove(&fh) else {
            return;
        };
        if h.text.is_some() {
            return;
        }
        // A stream its writer never closed is given up (after the namespace
        // lock is released: ending it waits for its thread).
        let mut abandoned = None;
        let mut ns = self.ns.lock();
        if let Ok(i) = ns.get_mut(h.ino) {
            i.open_handles = i.open_handles.saturating_sub(1);
            if i.open_handles == 0 {
                abandoned = self.streams.lock().remove(&h.ino);
                // Close the spool's descriptor with the last handle: a copy of
                // 80k files must not hold 80k descriptors.
                if let Some(s) = &i.spool {
                    self.spool_files.lock().remove(s);
                }
            }
            if i.open_handles == 0 && i.links.is_empty() {
                let spool = i.spool.clone();
                ns.inodes.remove(&h.ino);
                drop(ns);
                if let Some(s) = spool {
                    self.drop_spool(&s);
                }
                drop(abandoned);
                return;
            }
        }
        drop(ns);
        drop(abandoned);
    }
}

/// `Read` over a spool file by position, without a shared cursor.
struct SpoolReader<'a> {
    f: &'a File,
    pos: u64,
}

impl std::io::Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.f.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// One closed file's bytes on their way through the pipeline.
struct StoreJob {
    packer: Arc<crate::pipeline::packer::Packer>,
    ns: Arc<parking_lot::Mutex<super::namespace::Namespace>>,
    journal: Arc<parking_lot::Mutex<super::journal::Journal>>,
    ino: u64,
    generation: u64,
    mtime: i64,
    size: u64,
    spool: String,
}

impl StoreJob {
    fn run(self, r: impl std::io::Read) -> Result<(), String> {
        let chunks = self
            .packer
            .save_stream(r, self.size)
            .map_err(|e| e.to_string())?;
        self.stored(chunks)
    }

    /// Records the chunks the file's bytes were stored as.
    fn stored(self, chunks: Vec<crate::format::tree::ChunkRef>) -> Result<(), String> {
        let path = {
            let mut ns = self.ns.lock();
            let Ok(i) = ns.get_mut(self.ino) else {
                return Ok(()); // removed since
            };
            if i.content_gen > self.generation {
                return Ok(()); // a later close was stored first
            }
            i.content = chunks.clone();
            i.content_gen = self.generation;
            if i.generation == self.generation {
                i.dirty = false;
            }
            ns.path(self.ino)
        };
        // Spooled files: the spool goes once the chunks are durable, so the
        // journal must name them. (In-memory files have their bytes there.)
        if self.size > INLINE_LIMIT {
            if let Some(path) = path {
                let r = Record::Content {
                    path,
                    size: self.size,
                    mtime: self.mtime,
                    chunks,
                    spool: Some(self.spool),
                    inline: None,
                };
                self.journal.lock().append(&r).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}
