//! The data path of the writable mount: opens, reads of uncommitted files,
//! writes into the spool (`spool.rs`), and storing a file's bytes through
//! the packer when it is closed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::fs_error::{FsError, FsResult};
use crate::view::chunk_cache::{chunk_offsets, read_chunks};

use super::journal::Record;
use super::spool::{io_err, INLINE_LIMIT};
use super::{now, ClosesHeld, SyncMode, WritableFs};

/// Spool bytes of closed files that trigger writing their packs out.
const DRAIN_AT: u64 = 128 * 1024 * 1024;

impl WritableFs {
    /// A read of the commit control file: the first read of each of its
    /// inodes commits, later ones serve that commit's id. Every lookup of the
    /// name makes a new inode, so each `cat` commits once and the kernel's
    /// page cache never serves an older id.
    pub fn commit_read(&self, ino: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        // Held across the commit: a second read of the same inode (the
        // kernel's read-ahead) waits for the first one's id.
        let mut texts = self.commits.texts.lock();
        let text = match texts.get(&ino) {
            Some(t) => t.clone(),
            None => {
                let t = format!("{}\n", self.commit()?.to_hex()).into_bytes();
                texts.insert(ino, t.clone());
                t
            }
        };
        let from = (offset as usize).min(text.len());
        let to = (from + size as usize).min(text.len());
        Ok(text[from..to].to_vec())
    }

    /// Gives `ino` a spool the next bytes can go to, and marks the file dirty
    /// so no drain takes that spool meanwhile. The first change after a close
    /// first lets that close's store finish with the spool, and makes the
    /// chunks it stored durable, so the journal never needs the old bytes.
    fn spool_for_change(&self, ino: u64, truncate: bool) -> FsResult<String> {
        // Only a spool file is read by a store job or named by the journal;
        // a spool in memory travels as shared bytes, copied on write.
        let queued_spool = {
            let ns = self.ns.lock();
            let i = ns.get(ino)?;
            i.spool.clone().filter(|_| i.queued_gen == i.generation)
        };
        let handed_over = queued_spool.is_some_and(|s| !self.spools.mem.lock().contains_key(&s));
        if handed_over {
            self.storer.wait_idle();
            self.check_store_error()?;
            // (Read after the wait: a finished store marks the file clean.)
            let clean = self.ns.lock().get(ino).map(|i| !i.dirty)?;
            if clean {
                self.packer.flush()?;
            }
        }
        loop {
            let spool = self.ensure_spool(ino, truncate)?;
            let mut ns = self.ns.lock();
            let i = ns.get_mut(ino)?;
            // A drain may have taken a clean file's spool since: make another.
            if i.spool.as_deref() == Some(spool.as_str()) {
                i.dirty = true;
                i.generation += 1;
                return Ok(spool);
            }
        }
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
            None if was_mem && offset == old && !self.spools.mem.lock().contains_key(spool) => {
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

    pub(super) fn truncate_spool(&self, ino: u64, spool: &str, size: u64) -> FsResult<()> {
        let gone = self.streams.lock().remove(&ino);
        drop(gone);
        let old = self.spool_set_len(spool, size)?;
        if size > old {
            self.spools.bytes.fetch_add(size - old, Ordering::Relaxed);
        } else {
            self.spools.bytes.fetch_sub(
                (old - size).min(self.spools.bytes.load(Ordering::Relaxed)),
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

    /// `open`: the truncation comes through a file descriptor (`ftruncate`),
    /// whose close stores it; otherwise (`truncate`, `open(O_TRUNC)`) it is
    /// journaled and queued now, as a close would (and, like a close's, a
    /// failure to store it reaches the next write, close and commit).
    pub(super) fn truncate(&self, ino: u64, size: u64, open: bool) -> FsResult<()> {
        self.check_store_error()?;
        let spool = self.spool_for_change(ino, size == 0)?;
        self.truncate_spool(ino, &spool, size)?;
        if !open {
            self.store_content(ino)?;
            self.spools.files.lock().remove(&spool);
        }
        Ok(())
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let mut gone: Option<String> = None;
        loop {
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
                // A drain may take a clean file's spool meanwhile: its bytes
                // are stored by then, so read them from the store.
                if let Some(n) = self.spool_read_at(&s, &mut out, offset)? {
                    out.truncate(n);
                    return Ok(out);
                }
                if gone.as_ref() == Some(&s) {
                    return Err(FsError::Io(format!("spool {s} is missing")));
                }
                gone = Some(s);
                continue;
            }
            let offsets = chunk_offsets(&content);
            return Ok(read_chunks(
                &self.cache,
                &content,
                &offsets,
                offset,
                offset + len as u64,
            )?);
        }
    }

    /// Writes at `offset`; `kill_suid` (a write the kernel says must drop
    /// them) clears the setuid and setgid bits, as a local filesystem does.
    pub fn write(&self, ino: u64, offset: u64, data: &[u8], kill_suid: bool) -> FsResult<u32> {
        self.check_store_error()?;
        if self.spools.bytes.load(Ordering::Relaxed) > self.opts.spool_cap {
            self.drain_spool()?;
            if self.spools.bytes.load(Ordering::Relaxed) > self.opts.spool_cap {
                // Closed files still being stored hold spool: wait for them.
                self.storer.wait_idle();
                self.check_store_error()?;
                self.drain_spool()?;
            }
            if self.spools.bytes.load(Ordering::Relaxed) > self.opts.spool_cap {
                return Err(FsError::NoSpace);
            }
        }
        let spool = self.spool_for_change(ino, false)?;
        let old_size = self.ns.lock().get(ino)?.size;
        let was_in_memory = self.spools.mem.lock().contains_key(&spool);
        self.spool_write_at(&spool, data, offset)?;
        let end = offset + data.len() as u64;
        self.follow_write(ino, &spool, offset, end, old_size, was_in_memory);
        let mut ns = self.ns.lock();
        let i = ns.get_mut(ino)?;
        if end > i.size {
            self.spools.bytes.fetch_add(end - i.size, Ordering::Relaxed);
            i.size = end;
        }
        i.dirty = true;
        i.generation += 1;
        i.mtime = now();
        i.ctime = i.mtime;
        let killed = (kill_suid && i.mode & 0o6000 != 0).then_some(i.mode & !0o6000);
        drop(ns);
        if let Some(mode) = killed {
            self.setattr(ino, super::AttrChange::mode(mode), None)?;
        }
        Ok(data.len() as u32)
    }

    /// On close (flush) and fsync: journal the file's bytes (durably with
    /// `--sync close`; `fsync` syncs the whole journal) and queue them for the
    /// pipeline. An error here, or from an earlier file's storing, reaches the
    /// writer's `close()`.
    ///
    /// Every close sends one, a reader's too (the mount declines OPEN, so the
    /// kernel cannot tell them apart for it): for a clean file it costs a look
    /// at the inode. The spool's descriptor is closed here, not kept for a
    /// next open: a copy of 80k files must not hold 80k descriptors.
    pub fn flush(&self, ino: u64, fsync: bool) -> FsResult<()> {
        let (spool, written) = {
            let ns = self.ns.lock();
            let i = ns.get(ino)?;
            (i.spool.clone(), i.unqueued_writes())
        };
        if written {
            // A reader's close is not failed by an earlier file's store.
            self.check_store_error()?;
            self.store_content(ino)?;
        }
        if let Some(spool) = spool {
            self.spools.files.lock().remove(&spool);
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
    pub(super) fn store_content(&self, ino: u64) -> FsResult<()> {
        let gate = self.commits.gate.read();
        self.store_content_gated(&gate, ino)
    }

    /// [`WritableFs::store_content`] for a caller already holding the close
    /// gate (shared; taken twice, it could wait behind a commit's turn).
    pub(super) fn store_content_gated(&self, _gate: &ClosesHeld, ino: u64) -> FsResult<()> {
        let (spool, generation, mtime) = {
            let mut ns = self.ns.lock();
            let i = ns.get_mut(ino)?;
            // Clean, or these very bytes are already journaled and queued (a
            // second close of them: a dup'd descriptor, a reader, unmount).
            // (A failed store is reported by `check_store_error`, not retried.)
            if !i.unqueued_writes() {
                return Ok(());
            }
            let spool = i
                .spool
                .clone()
                .ok_or(FsError::Io("dirty file without spool".into()))?;
            i.queued_gen = i.generation;
            (spool, i.generation, i.mtime)
        };
        let r = self.journal_and_queue(ino, spool, generation, mtime);
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
        mtime: i64,
    ) -> FsResult<()> {
        // Small files travel inside the journal record: one fsync per close
        // (the journal's) instead of two, and the spool is not needed again.
        let mut bytes = self.spools.mem.lock().get(&spool).cloned(); // shared, not copied
        let mut file = None;
        if bytes.is_none() {
            let f = self.spool_file(&spool)?;
            let len = f.metadata().map(|m| m.len()).map_err(io_err)?;
            if len <= INLINE_LIMIT {
                let mut buf = vec![0u8; len as usize];
                f.read_exact_at(&mut buf, 0)
                    .map_err(|e| FsError::Io(format!("spool: {e}")))?;
                bytes = Some(Arc::new(buf));
            } else {
                match self.opts.sync {
                    SyncMode::Close => f
                        .sync_data()
                        .map_err(|e| FsError::Io(format!("spool: {e}")))?,
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
        // Named as it is now (a rename may have come since the close).
        let appended = {
            let ns = self.ns.lock();
            match ns.path(ino) {
                Some(path) => {
                    let r = Record::Content {
                        path,
                        size,
                        mtime,
                        chunks: Vec::new(),
                        spool: Some(spool.clone()),
                        inline: bytes.take(),
                    };
                    let a = self.append(&ns, &r);
                    if let Record::Content { inline, .. } = r {
                        bytes = inline;
                    }
                    Some(a?)
                }
                None => None,
            }
        };
        if let Some(a) = appended {
            self.settle(a, true)?;
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
                    store()?;
                } else {
                    self.storer.submit(0, store);
                }
            }
            (None, None) => unreachable!("bytes or a spool file"),
        }
        // Closed files wait in the spool until their packs are durable; keep
        // that backlog (memory for small files) modest.
        if self.spools.bytes.load(Ordering::Relaxed) > DRAIN_AT.min(self.opts.spool_cap) {
            self.drain_spool()?;
        }
        Ok(())
    }

    /// The kernel has been given an entry for `ino` once more.
    pub fn looked_up<T>(&self, ino: u64, f: impl FnOnce(&super::WInode) -> T) -> FsResult<T> {
        let mut ns = self.ns.lock();
        let i = ns.get_mut(ino)?;
        i.lookups += 1;
        Ok(f(i))
    }

    /// The kernel dropped `n` of its references to `ino`: a file without a
    /// name that no process can reach any more goes, with its spool.
    pub fn forget(&self, ino: u64, n: u64) {
        if super::is_commit_ino(ino) {
            self.commits.texts.lock().remove(&ino);
            return;
        }
        let mut ns = self.ns.lock();
        let Ok(i) = ns.get_mut(ino) else {
            return;
        };
        i.lookups = i.lookups.saturating_sub(n);
        if i.lookups > 0 || !i.links.is_empty() || ino == super::namespace::ROOT {
            return;
        }
        let spool = i.spool.clone();
        ns.inodes.remove(&ino);
        drop(ns);
        // Ending a stream joins its thread: not under the namespace lock.
        let stream = self.streams.lock().remove(&ino);
        drop(stream);
        if let Some(s) = spool {
            self.drop_spool(&s);
        }
    }

    /// Stores every file changed since its last close (writes through an
    /// `mmap` after the close): at unmount, when no file is open any more.
    pub fn store_unclosed(&self) -> FsResult<()> {
        let dirty: Vec<u64> = {
            let ns = self.ns.lock();
            ns.inodes
                .iter()
                .filter(|(_, i)| i.unqueued_writes() && !i.links.is_empty())
                .map(|(ino, _)| *ino)
                .collect()
        };
        for ino in dirty {
            self.store_content(ino)?;
        }
        Ok(())
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
    fn run(self, r: impl std::io::Read) -> FsResult<()> {
        let chunks = self.packer.save_stream(r, self.size)?;
        self.stored(chunks)
    }

    /// Records the chunks the file's bytes were stored as.
    fn stored(self, chunks: Vec<crate::format::tree::ChunkRef>) -> FsResult<()> {
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
        // Spooled files: the spool goes once the chunks are durable, so the
        // journal must name them (in-memory files have their bytes there);
        // appended under the namespace's lock, as every change is.
        if self.size > INLINE_LIMIT {
            if let Some(path) = ns.path(self.ino) {
                let r = Record::Content {
                    path,
                    size: self.size,
                    mtime: self.mtime,
                    chunks,
                    spool: Some(self.spool),
                    inline: None,
                };
                self.journal.lock().append(&r)?;
            }
        }
        Ok(())
    }
}
