//! Typed 32-byte identifiers: one newtype per kind of id, so a pack id can never
//! be passed where a blob id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::{Error, Result};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Lower-case hex, the form used in object names and on the CLI.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 8 hex digits, enough to name a snapshot to a human.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            pub fn from_hex(s: &str) -> Result<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|_| {
                    Error::InvalidInput(format!("not a 64-digit hex id: {s:?}"))
                })?;
                Ok(Self(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

id_type!(
    /// A chunk or tree blob: keyed BLAKE3 of its plaintext.
    BlobId
);
id_type!(
    /// A pack file: BLAKE3 of its stored bytes.
    PackId
);
id_type!(
    /// An index object: BLAKE3 of its stored bytes.
    IndexId
);
id_type!(
    /// A snapshot object: BLAKE3 of its stored bytes.
    SnapshotId
);
id_type!(
    /// A key file: BLAKE3 of its stored bytes.
    KeyId
);

/// Unkeyed BLAKE3 of stored bytes: names of packs, indexes, snapshots, keys.
pub fn content_hash(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}
