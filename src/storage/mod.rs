//! The storage trait every resource implements, and the wrappers around it.
//!
//! # Contract
//! A store is a flat set of objects addressed by `(Kind, name)`.
//! - `put` is atomic and never overwrites: it either stores the whole object or
//!   nothing, and fails with [`StorageError::AlreadyExists`] when the name is
//!   taken. Once `put` returns `Ok`, the object is durable and readable.
//! - `get`/`get_range` of a name that does not exist fail with
//!   [`StorageError::NotFound`], never with another error.
//! - `list` returns every complete object of a kind with its size, in no order.
//! - `delete` removes one object; deleting a missing object is `NotFound`.
//!
//! Encryption and compression live above this layer; a backend only moves bytes.

use std::fmt;
use std::sync::Arc;

mod ahead;
pub mod cache;
pub mod fault;
pub mod limit;
pub mod local;
pub mod memory;
pub mod retry;
#[cfg(feature = "s3")]
pub mod s3;

pub use cache::CacheStorage;
pub use fault::{FaultPlan, FaultStorage};
pub use limit::LimitStorage;
pub use local::LocalStorage;
pub use memory::MemoryStorage;
pub use retry::{RetryPolicy, RetryStorage};
#[cfg(feature = "s3")]
pub use s3::{ObjectInfo, S3Bucket, S3Options, S3Storage, PART_SIZE};

/// The kinds of object a store holds; each has its own namespace (folder).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Config,
        Kind::Key,
        Kind::Pack,
        Kind::Index,
        Kind::Snapshot,
        Kind::Lock,
    ];

    /// The folder (or key prefix) of this kind on every resource.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Config => "",
            Kind::Key => "keys",
            Kind::Pack => "packs",
            Kind::Index => "index",
            Kind::Snapshot => "snapshots",
            Kind::Lock => "locks",
        }
    }
}

/// Where an object lives relative to the store's root, the same on every
/// resource (`config`, `keys/<id>`, `packs/<xx>/<id>`, `index/<id>`, …): a
/// store copied between a directory and a bucket by any sync tool still opens.
/// Packs are sharded by their first two characters so no folder grows huge.
pub fn object_path(kind: Kind, name: &str) -> StorageResult<String> {
    check_name(name)?;
    Ok(match kind {
        Kind::Config if name == "config" || name == "config-copy" => name.to_string(),
        Kind::Config => return Err(StorageError::InvalidName(name.to_string())),
        Kind::Pack => {
            let shard = if name.len() >= 2 { &name[..2] } else { "00" };
            format!("packs/{shard}/{name}")
        }
        k => format!("{}/{name}", k.dir()),
    })
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Config => "config",
            Kind::Key => "key",
            Kind::Pack => "pack",
            Kind::Index => "index",
            Kind::Snapshot => "snapshot",
            Kind::Lock => "lock",
        })
    }
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{kind} {name} not found")]
    NotFound { kind: Kind, name: String },
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: Kind, name: String },
    #[error("invalid object name {0:?}")]
    InvalidName(String),
    /// The source is part of the message (not a `source()`), so chains print it once.
    #[error("{context}: {err}")]
    Io {
        context: String,
        err: std::io::Error,
    },
    /// A failure that may pass: timeouts, throttling, 5xx, a refused
    /// connection. The retry wrapper retries these and nothing else.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Backend(String),
}

impl StorageError {
    /// The same failure again, for another caller.
    pub fn duplicate(&self) -> StorageError {
        match self {
            StorageError::NotFound { kind, name } => StorageError::NotFound {
                kind: *kind,
                name: name.clone(),
            },
            StorageError::AlreadyExists { kind, name } => StorageError::AlreadyExists {
                kind: *kind,
                name: name.clone(),
            },
            StorageError::InvalidName(n) => StorageError::InvalidName(n.clone()),
            StorageError::Io { context, err } => StorageError::Io {
                context: context.clone(),
                err: duplicate_io(err),
            },
            StorageError::Unavailable(m) => StorageError::Unavailable(m.clone()),
            StorageError::Backend(m) => StorageError::Backend(m.clone()),
        }
    }
}

pub type StorageResult<T> = std::result::Result<T, StorageError>;

/// A delete whose object is already gone succeeded (another process or an
/// earlier run got there first).
pub fn ignore_missing(r: StorageResult<()>) -> StorageResult<()> {
    match r {
        Ok(()) | Err(StorageError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A resource that holds a store. See the module documentation for the contract.
pub trait Storage: Send + Sync {
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> StorageResult<()>;
    fn get(&self, kind: Kind, name: &str) -> StorageResult<Vec<u8>>;
    /// Reads `len` bytes at `offset`; fails if the object is shorter.
    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> StorageResult<Vec<u8>>;
    fn list(&self, kind: Kind) -> StorageResult<Vec<(String, u64)>>;
    fn delete(&self, kind: Kind, name: &str) -> StorageResult<()>;
    /// Like `get_range`, for ranges that hold metadata (tree blobs): a cache
    /// keeps these always, not within its data cap.
    fn get_meta_range(
        &self,
        kind: Kind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> StorageResult<Vec<u8>> {
        self.get_range(kind, name, offset, len)
    }
    /// A hint after a successful `put`: these `(offset, len)` ranges of the
    /// object hold metadata (tree blobs) that will be read soon. A cache keeps
    /// them, so a restore or mount after a backup needs no round trip per tree.
    fn hint_meta_ranges(&self, _kind: Kind, _name: &str, _ranges: &[(u64, u64)], _data: &[u8]) {}
    /// Whether this storage keeps metadata ranges locally (a disk cache in
    /// front of a remote store), so that [`Storage::warm_meta`] pays off.
    fn keeps_meta(&self) -> bool {
        false
    }
    /// Brings the metadata ranges `ranges` of one object into the local
    /// cache in as few requests as it can (neighbouring ranges in one ranged
    /// read); those already there are not fetched. Returns the requests and
    /// bytes it took. Without a cache: nothing to do.
    fn warm_meta(
        &self,
        _kind: Kind,
        _name: &str,
        _ranges: &[(u64, u64)],
    ) -> StorageResult<(u64, u64)> {
        Ok((0, 0))
    }
    /// Partial objects a writer left behind when it died mid-`put` (a local
    /// store's `tmp/` files) last changed before `older_than`, with their
    /// sizes; removed as well with `remove`. They are never read as objects.
    fn temporaries(
        &self,
        _older_than: std::time::SystemTime,
        _remove: bool,
    ) -> StorageResult<Vec<(String, u64)>> {
        Ok(Vec::new())
    }
    /// A store is being opened: a storage that pays a round trip per
    /// request may start listing and fetching what opening needs next
    /// (keys, index and snapshot objects) in the background. Without a
    /// cache: nothing to do.
    fn look_ahead(self: Arc<Self>) {}
    /// A human-readable location, for messages.
    fn location(&self) -> String;
}

/// Names are produced by the library (hex ids, `config`), but a backend still
/// refuses anything that could escape its namespace.
pub fn check_name(name: &str) -> StorageResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidName(name.to_string()))
    }
}

#[doc(hidden)]
pub mod suite {
    //! One behaviour suite, run against every backend.
    use super::*;
    use std::sync::Arc;

    pub fn run_all(s: Arc<dyn Storage>) {
        put_get(&*s);
        never_overwrite(&*s);
        not_found(&*s);
        range_get(&*s);
        list_and_delete(&*s);
        concurrent_puts(s.clone());
        rejects_bad_names(&*s);
    }

    fn put_get(s: &dyn Storage) {
        s.put(Kind::Index, "aa01", b"hello").unwrap();
        assert_eq!(s.get(Kind::Index, "aa01").unwrap(), b"hello");
        s.put(Kind::Config, "config", b"cfg").unwrap();
        assert_eq!(s.get(Kind::Config, "config").unwrap(), b"cfg");
        s.put(Kind::Pack, "bb02", b"").unwrap();
        assert_eq!(s.get(Kind::Pack, "bb02").unwrap(), b"");
    }

    fn never_overwrite(s: &dyn Storage) {
        s.put(Kind::Snapshot, "cc03", b"first").unwrap();
        let err = s.put(Kind::Snapshot, "cc03", b"second").unwrap_err();
        assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
        assert_eq!(s.get(Kind::Snapshot, "cc03").unwrap(), b"first");
    }

    fn not_found(s: &dyn Storage) {
        for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Config) {
            let e = s.get(kind, "ffff").unwrap_err();
            assert!(matches!(e, StorageError::NotFound { .. }), "{e}");
            let e = s.get_range(kind, "ffff", 0, 1).unwrap_err();
            assert!(matches!(e, StorageError::NotFound { .. }), "{e}");
            let e = s.delete(kind, "ffff").unwrap_err();
            assert!(matches!(e, StorageError::NotFound { .. }), "{e}");
        }
    }

    fn range_get(s: &dyn Storage) {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        s.put(Kind::Pack, "dd04", &data).unwrap();
        assert_eq!(s.get_range(Kind::Pack, "dd04", 0, 10).unwrap(), &data[..10]);
        assert_eq!(
            s.get_range(Kind::Pack, "dd04", 9_990, 10).unwrap(),
            &data[9_990..]
        );
        assert_eq!(
            s.get_range(Kind::Pack, "dd04", 1234, 4000).unwrap(),
            &data[1234..5234]
        );
        assert!(s.get_range(Kind::Pack, "dd04", 9_995, 10).is_err());
    }

    fn list_and_delete(s: &dyn Storage) {
        s.put(Kind::Lock, "ee05", b"l1").unwrap();
        s.put(Kind::Lock, "ee06", b"l22").unwrap();
        let mut l = s.list(Kind::Lock).unwrap();
        l.sort();
        assert_eq!(l, vec![("ee05".into(), 2), ("ee06".into(), 3)]);
        s.delete(Kind::Lock, "ee05").unwrap();
        assert_eq!(s.list(Kind::Lock).unwrap(), vec![("ee06".into(), 3)]);
        let packs: Vec<String> = s
            .list(Kind::Pack)
            .unwrap()
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert!(packs.contains(&"dd04".to_string()) && packs.contains(&"bb02".to_string()));
    }

    fn concurrent_puts(s: Arc<dyn Storage>) {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut won = 0;
                    for i in 0..20 {
                        let name = format!("ab{i:02}");
                        let body = vec![t as u8; 1000 + i];
                        match s.put(Kind::Index, &name, &body) {
                            Ok(()) => won += 1,
                            Err(StorageError::AlreadyExists { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    won
                })
            })
            .collect();
        let won: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(won, 20, "each name is written exactly once");
        for i in 0..20 {
            let body = s.get(Kind::Index, &format!("ab{i:02}")).unwrap();
            assert_eq!(body.len(), 1000 + i);
            assert!(body.iter().all(|b| *b == body[0]), "no torn object");
        }
    }

    fn rejects_bad_names(s: &dyn Storage) {
        for bad in ["", "../x", "a/b", ".."] {
            assert!(s.put(Kind::Pack, bad, b"x").is_err());
        }
    }
}

/// An `io::Error` again: the OS error code if it has one, else its kind
/// and text.
pub fn duplicate_io(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}
