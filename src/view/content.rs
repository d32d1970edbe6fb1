//! One file's content as a stream, in order: the reader `cat`, `archive`
//! and the S3 destination share. Chunks are fetched and decrypted a window
//! ahead in parallel (two per core), so a pipe or an upload never waits on
//! one chunk's round trip and decrypt; the window bounds memory.

use std::collections::VecDeque;
use std::io::{Read, Write};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::tree::ChunkRef;
use crate::repo::Repo;

/// A part of a file's bytes.
#[derive(Clone, Copy, Debug)]
pub enum Piece {
    Chunk(ChunkRef),
    /// A run of zeros (a hole an archive format cannot mark as one).
    Zeros(u64),
}

/// A file's pieces as a byte stream. See the module documentation.
pub struct ContentReader<'a> {
    repo: &'a Repo,
    pieces: Vec<Piece>,
    next: usize,
    ready: VecDeque<Vec<u8>>,
    /// Bytes of the front buffer already handed out.
    pos: usize,
}

impl<'a> ContentReader<'a> {
    pub fn new(repo: &'a Repo, pieces: Vec<Piece>) -> Self {
        Self {
            repo,
            pieces,
            next: 0,
            ready: VecDeque::new(),
            pos: 0,
        }
    }

    /// The content of a file node: its chunks.
    pub fn of_chunks(repo: &'a Repo, chunks: &[ChunkRef]) -> Self {
        Self::new(repo, chunks.iter().map(|c| Piece::Chunk(*c)).collect())
    }

    /// Fetches the next window of pieces; false at the end.
    fn fill(&mut self) -> Result<bool> {
        if self.next >= self.pieces.len() {
            return Ok(false);
        }
        let window = (rayon::current_num_threads() * 2).max(2);
        let end = (self.next + window).min(self.pieces.len());
        let repo = self.repo;
        let blobs: Vec<Vec<u8>> = self.pieces[self.next..end]
            .par_iter()
            .map(|p| match p {
                Piece::Chunk(c) => repo.read_blob(BlobType::Data, &c.id),
                Piece::Zeros(n) => Ok(vec![0; *n as usize]),
            })
            .collect::<Result<_>>()?;
        self.next = end;
        self.ready.extend(blobs);
        Ok(true)
    }

    /// Writes the rest of the content to `out`, whole chunks at a time (no
    /// copy through a small buffer). A failed write is returned as it came,
    /// so a caller can tell a closed pipe from a failed read.
    pub fn write_to(mut self, out: &mut dyn Write) -> std::result::Result<(), WriteError> {
        loop {
            while let Some(b) = self.ready.pop_front() {
                out.write_all(&b[self.pos..]).map_err(WriteError::Write)?;
                self.pos = 0;
            }
            if !self.fill().map_err(WriteError::Read)? {
                return Ok(());
            }
        }
    }
}

/// Why [`ContentReader::write_to`] stopped.
#[derive(Debug)]
pub enum WriteError {
    /// A chunk could not be read from the store.
    Read(Error),
    /// The output refused bytes.
    Write(std::io::Error),
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.ready.front().is_some_and(|b| self.pos >= b.len()) {
            self.ready.pop_front();
            self.pos = 0;
        }
        if self.ready.is_empty() {
            if !self.fill().map_err(std::io::Error::other)? {
                return Ok(0);
            }
            return self.read(buf);
        }
        let b = self.ready.front().expect("checked");
        let n = buf.len().min(b.len() - self.pos);
        buf[..n].copy_from_slice(&b[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
