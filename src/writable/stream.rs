//! Sequential writes of a large file stream into the chunker while they are
//! written: a thread follows the file's spool as it grows and stores chunks
//! through the packer, so its `close()` has only the tail left to do instead
//! of the whole file. Any other pattern (a write that is not an append, a
//! truncate, a second writer) abandons the stream; the file is then stored
//! from its spool at close, as it would be without one.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::error::Result;
use crate::format::tree::ChunkRef;
use crate::pipeline::packer::Packer;

#[derive(Default)]
struct State {
    /// Bytes of the spool the thread may read: `[0, written)`.
    written: u64,
    closed: bool,
    abandoned: bool,
}

pub struct Stream {
    state: Arc<(Mutex<State>, Condvar)>,
    thread: Mutex<Option<JoinHandle<Result<Vec<ChunkRef>>>>>,
}

impl Stream {
    /// Starts following `spool`, whose first `written` bytes are in place.
    pub fn start(packer: Arc<Packer>, spool: Arc<File>, written: u64) -> std::io::Result<Self> {
        let state = Arc::new((
            Mutex::new(State {
                written,
                ..State::default()
            }),
            Condvar::new(),
        ));
        let reader = Follow {
            state: state.clone(),
            file: spool,
            pos: 0,
        };
        let thread = std::thread::Builder::new()
            .name("store-stream".into())
            .spawn(move || packer.save_stream(reader, u64::MAX))?;
        Ok(Self {
            state,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Records a write of `[offset, end)` (already in the spool). Only an
    /// append keeps the stream; anything else abandons it. Returns whether
    /// the stream goes on.
    pub fn wrote(&self, offset: u64, end: u64) -> bool {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock();
        if s.abandoned || s.closed {
            return false;
        }
        if offset != s.written {
            s.abandoned = true;
        } else {
            s.written = end;
        }
        cv.notify_all();
        !s.abandoned
    }

    pub fn abandon(&self) {
        let (lock, cv) = &*self.state;
        lock.lock().abandoned = true;
        cv.notify_all();
        self.join();
    }

    /// Ends the stream at `len` bytes and returns the file's chunks, or
    /// `None` when the stream was abandoned, its length differs, or storing
    /// failed (the caller then stores the file from its spool).
    pub fn finish(&self, len: u64) -> Option<Vec<ChunkRef>> {
        {
            let (lock, cv) = &*self.state;
            let mut s = lock.lock();
            if s.written != len {
                s.abandoned = true;
            }
            s.closed = true;
            cv.notify_all();
        }
        match self.join()? {
            Ok(chunks) if chunks.iter().map(|c| c.size as u64).sum::<u64>() == len => Some(chunks),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!("streamed store given up: {e}");
                None
            }
        }
    }

    fn join(&self) -> Option<Result<Vec<ChunkRef>>> {
        let h = self.thread.lock().take()?;
        match h.join() {
            Ok(r) => Some(r),
            Err(_) => {
                tracing::error!("the streaming store thread panicked");
                None
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// Reads the spool up to what has been written, waiting for more until the
/// stream is closed; fails once it is abandoned.
struct Follow {
    state: Arc<(Mutex<State>, Condvar)>,
    file: Arc<File>,
    pos: u64,
}

impl std::io::Read for Follow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (lock, cv) = &*self.state;
        let avail = {
            let mut s = lock.lock();
            loop {
                if s.abandoned {
                    return Err(std::io::Error::other("stream abandoned"));
                }
                if self.pos < s.written {
                    break s.written - self.pos;
                }
                if s.closed {
                    return Ok(0);
                }
                cv.wait(&mut s);
            }
        };
        let n = (buf.len() as u64).min(avail) as usize;
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use std::io::Write;

    fn packer() -> Arc<Packer> {
        Arc::new(Packer::new(crate::repo::test_repo(Arc::new(
            MemoryStorage::new(),
        ))))
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        crate::format::crypto::fill_random(&mut v).unwrap();
        v
    }

    #[test]
    fn appends_stream_and_give_the_same_chunks_as_storing_at_close() {
        let p = packer();
        let data = noise(5 << 20);
        let mut f = tempfile::tempfile().unwrap();
        let spool = Arc::new(f.try_clone().unwrap());
        let s = Stream::start(p.clone(), spool, 0).unwrap();
        let mut off = 0;
        for piece in data.chunks(128 * 1024 + 7) {
            f.write_all(piece).unwrap();
            assert!(s.wrote(off, off + piece.len() as u64));
            off += piece.len() as u64;
        }
        let streamed = s.finish(off).expect("stream kept");
        let whole = p.save_stream(&data[..], data.len() as u64).unwrap();
        assert_eq!(streamed, whole);
    }

    #[test]
    fn a_write_that_is_not_an_append_or_a_short_close_gives_up() {
        let p = packer();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&noise(1 << 20)).unwrap();
        let s = Stream::start(p.clone(), Arc::new(f.try_clone().unwrap()), 1 << 20).unwrap();
        assert!(!s.wrote(10, 20));
        assert!(s.finish(1 << 20).is_none());

        let s = Stream::start(p, Arc::new(f), 1 << 20).unwrap();
        assert!(s.finish(2 << 20).is_none(), "length differs");
    }
}
