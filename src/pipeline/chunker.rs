//! Content-defined chunking with FastCDC (2020), seeded per store so chunk
//! boundaries reveal nothing about content to someone without the key.
//!
//! Files up to [`IN_MEMORY_LIMIT`] are read whole and cut in place (a file
//! smaller than the minimum chunk is moved out as its only chunk, no copy);
//! larger ones and streams of unknown length go through a window that holds
//! at least one maximum-size chunk ahead, so both cut exactly where FastCDC
//! cuts the whole input.

use std::io::Read;

use fastcdc::v2020::{FastCDC, Normalization};

use crate::format::config::ChunkerParams;

/// Files this small are chunked from one buffer.
pub const IN_MEMORY_LIMIT: u64 = 8 * 1024 * 1024;

/// Splits a reader into chunks; yields `Vec<u8>` chunks in order.
pub struct Chunker<R: Read> {
    inner: Inner<R>,
}

enum Inner<R: Read> {
    Stream(Box<Window<R>>),
    /// Remaining cut points of an in-memory buffer; the buffer itself moves
    /// out when it is one chunk.
    Memory {
        data: Vec<u8>,
        cuts: std::vec::IntoIter<(usize, usize)>,
    },
    Done,
}

impl<R: Read> Chunker<R> {
    /// A chunker for a stream of unknown length.
    pub fn new(reader: R, p: &ChunkerParams, seed: u64) -> Self {
        Self {
            inner: Inner::Stream(Box::new(Window {
                reader,
                params: *p,
                seed,
                buf: Vec::new(),
                start: 0,
                end: 0,
                eof: false,
            })),
        }
    }

    /// A chunker for a file whose size is known: small files are read whole.
    pub fn with_size_hint(
        mut reader: R,
        size: u64,
        p: &ChunkerParams,
        seed: u64,
    ) -> std::io::Result<Self> {
        if size > IN_MEMORY_LIMIT {
            return Ok(Self::new(reader, p, seed));
        }
        let mut data = Vec::with_capacity(size as usize + 1);
        (&mut reader)
            .take(IN_MEMORY_LIMIT + 1)
            .read_to_end(&mut data)?;
        if data.len() as u64 > IN_MEMORY_LIMIT {
            // Longer than it said (a file that grew, a stream of unknown
            // length): the rest streams through a window that starts with
            // what was read, so memory stays bounded and cuts are the same.
            let end = data.len();
            return Ok(Self {
                inner: Inner::Stream(Box::new(Window {
                    reader,
                    params: *p,
                    seed,
                    buf: data,
                    start: 0,
                    end,
                    eof: false,
                })),
            });
        }
        let cuts: Vec<(usize, usize)> = if data.is_empty() {
            Vec::new()
        } else if data.len() <= p.min_size as usize {
            vec![(0, data.len())]
        } else {
            FastCDC::with_level_and_seed(
                &data,
                p.min_size,
                p.avg_size,
                p.max_size,
                Normalization::Level1,
                seed,
            )
            .map(|c| (c.offset, c.offset + c.length))
            .collect()
        };
        Ok(Self {
            inner: Inner::Memory {
                data,
                cuts: cuts.into_iter(),
            },
        })
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Stream(w) => w.next_chunk().transpose(),
            Inner::Memory { data, cuts } => {
                let (a, b) = cuts.next()?;
                if a == 0 && b == data.len() {
                    let whole = std::mem::take(data);
                    self.inner = Inner::Done;
                    return Some(Ok(whole));
                }
                Some(Ok(data[a..b].to_vec()))
            }
            Inner::Done => None,
        }
    }
}

/// How much a window reads at a time (and grows its buffer by).
const READ_STEP: usize = 1 << 20;

/// The streaming side: `buf[start..end]` is read and not yet cut. FastCDC
/// never looks further than `max_size` from a chunk's start, so cutting the
/// window once it holds `max_size` bytes (or the rest of the input) finds the
/// cut the whole input would give. The buffer grows only as far as needed
/// (under twice `max_size`) and the unread tail moves to the
/// front at most once per `max_size` bytes: unlike FastCDC's `StreamCDC`,
/// which zeroes a `max_size` buffer per stream and shifts it after every chunk.
struct Window<R: Read> {
    reader: R,
    params: ChunkerParams,
    seed: u64,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> Window<R> {
    /// Reads until the window holds `want` bytes or the input ends.
    fn fill(&mut self, want: usize) -> std::io::Result<()> {
        let step = READ_STEP.min(want);
        while !self.eof && self.end - self.start < want {
            if self.buf.len() - self.end < step {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                }
                let need = self.end + step;
                if self.buf.len() < need {
                    self.buf.resize(need, 0);
                }
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let p = self.params;
        self.fill(p.max_size as usize)?;
        let window = &self.buf[self.start..self.end];
        if window.is_empty() {
            return Ok(None);
        }
        let len = if window.len() <= p.min_size as usize {
            window.len()
        } else {
            FastCDC::with_level_and_seed(
                window,
                p.min_size,
                p.avg_size,
                p.max_size,
                Normalization::Level1,
                self.seed,
            )
            .next()
            .map_or(window.len(), |c| c.length)
        };
        let chunk = window[..len].to_vec();
        self.start += len;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min_size: 256,
            avg_size: 1024,
            max_size: 4096,
        }
    }

    proptest! {
        #[test]
        fn chunks_concatenate_to_input_within_bounds(data in proptest::collection::vec(any::<u8>(), 0..50_000), seed in any::<u64>()) {
            let p = small();
            let chunks: Vec<Vec<u8>> = Chunker::new(&data[..], &p, seed).map(|c| c.unwrap()).collect();
            prop_assert_eq!(chunks.concat(), data.clone());
            for (i, c) in chunks.iter().enumerate() {
                prop_assert!(c.len() <= p.max_size as usize);
                if i + 1 < chunks.len() {
                    prop_assert!(c.len() >= p.min_size as usize);
                }
            }
            // The in-memory path cuts exactly where the streaming one does.
            let mem: Vec<Vec<u8>> = Chunker::with_size_hint(&data[..], data.len() as u64, &p, seed)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            prop_assert_eq!(mem, chunks);
        }
    }

    /// A reader that hands out at most `step` bytes per call, as a pipe or
    /// a file still being written does.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The window cuts where FastCDC's own stream reader cuts (what
        /// earlier versions stored), however the input arrives.
        #[test]
        fn window_cuts_like_fastcdc_streamcdc(len in 0usize..120_000, step in 1usize..20_000, seed in any::<u64>()) {
            let mut x = seed | 1;
            let data: Vec<u8> = (0..len).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x >> 24) as u8 }).collect();
            let p = small();
            let ours: Vec<Vec<u8>> = Chunker::new(Trickle { data: &data, step }, &p, seed).map(|c| c.unwrap()).collect();
            let theirs: Vec<Vec<u8>> = fastcdc::v2020::StreamCDC::with_level_and_seed(&data[..], p.min_size, p.avg_size, p.max_size, Normalization::Level1, seed)
                .map(|c| c.unwrap().data)
                .collect();
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn an_insertion_only_disturbs_nearby_chunks() {
        let mut data = vec![0u8; 200_000];
        let mut x: u32 = 1;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let before: Vec<_> = Chunker::new(&data[..], &small(), 7)
            .map(|c| c.unwrap())
            .collect();
        data.insert(100_000, 42);
        let after: Vec<_> = Chunker::new(&data[..], &small(), 7)
            .map(|c| c.unwrap())
            .collect();
        let shared = before.iter().filter(|c| after.contains(c)).count();
        assert!(
            shared * 10 >= before.len() * 8,
            "{shared} of {} kept",
            before.len()
        );
    }

    /// A stream longer than its size hint (standard input has none; a file
    /// may grow) is not read whole into memory: past the in-memory limit it
    /// streams, cutting where the streaming chunker cuts.
    #[test]
    fn a_short_size_hint_streams_past_the_limit() {
        let len = IN_MEMORY_LIMIT as usize + 3 * 4096 + 17;
        let mut x: u64 = 99;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let p = small();
        let hinted = Chunker::with_size_hint(&data[..], 0, &p, 5).unwrap();
        assert!(matches!(hinted.inner, Inner::Stream(_)));
        let hinted: Vec<Vec<u8>> = hinted.map(|c| c.unwrap()).collect();
        let streamed: Vec<Vec<u8>> = Chunker::new(&data[..], &p, 5).map(|c| c.unwrap()).collect();
        assert_eq!(hinted, streamed);
    }
}
