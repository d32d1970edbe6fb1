//! Content-defined chunking with FastCDC (2020), seeded per store so chunk
//! boundaries reveal nothing about content to someone without the key.

use std::io::Read;

use fastcdc::v2020::{Normalization, StreamCDC};

use crate::config::ChunkerParams;

/// Splits a reader into chunks; yields `Vec<u8>` chunks in order.
pub struct Chunker<R: Read> {
    inner: StreamCDC<R>,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R, p: &ChunkerParams, seed: u64) -> Self {
        Self {
            inner: StreamCDC::with_level_and_seed(
                reader,
                p.min_size,
                p.avg_size,
                p.max_size,
                Normalization::Level1,
                seed,
            ),
        }
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|r| {
            r.map(|c| c.data).map_err(|e| match e {
                fastcdc::v2020::Error::IoError(e) => e,
                other => std::io::Error::other(other.to_string()),
            })
        })
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
