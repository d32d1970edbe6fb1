//! Content-defined chunking with FastCDC (2020), seeded per store so chunk
//! boundaries reveal nothing about content to someone without the key.
//!
//! Files up to [`IN_MEMORY_LIMIT`] are read whole and cut in place (a file
//! smaller than the minimum chunk is moved out as its only chunk, no copy);
//! larger ones stream through FastCDC's buffered reader.

use std::io::Read;

use fastcdc::v2020::{FastCDC, Normalization, StreamCDC};

use crate::format::config::ChunkerParams;

/// Files this small are chunked from one buffer.
pub const IN_MEMORY_LIMIT: u64 = 8 * 1024 * 1024;

/// Splits a reader into chunks; yields `Vec<u8>` chunks in order.
pub struct Chunker<R: Read> {
    inner: Inner<R>,
}

enum Inner<R: Read> {
    Stream(Box<StreamCDC<R>>),
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
            inner: Inner::Stream(Box::new(StreamCDC::with_level_and_seed(
                reader,
                p.min_size,
                p.avg_size,
                p.max_size,
                Normalization::Level1,
                seed,
            ))),
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
        reader.read_to_end(&mut data)?;
        if data.len() as u64 > IN_MEMORY_LIMIT {
            // The file grew while we read it: still correct, just more memory.
            tracing::debug!("file grew past its size while chunking");
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
            Inner::Stream(s) => s.next().map(|r| {
                r.map(|c| c.data).map_err(|e| match e {
                    fastcdc::v2020::Error::IoError(e) => e,
                    other => std::io::Error::other(other.to_string()),
                })
            }),
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
}
