//! From a store location (a path or `s3://bucket/prefix`) and its settings to
//! the storage stack that serves it: the backend, then for remote stores the
//! shared wrappers (concurrency limit, retries, on-disk cache). Beside
//! `storage/`, not in it: it speaks the library's errors, which wrap the
//! storage layer's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
#[cfg(feature = "s3")]
use crate::storage::{CacheStorage, LimitStorage, RetryStorage, S3Options, S3Storage};
use crate::storage::{LocalStorage, RetryPolicy, Storage};

/// Requests in flight to a remote store at once.
pub const REMOTE_CONNECTIONS: usize = 16;
/// Data ranges kept in a remote store's on-disk cache by default.
pub const DEFAULT_CACHE_SIZE: u64 = 2 << 30;

/// How to open a location.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Create the store's folder or bucket when missing.
    pub create: bool,
    /// Named-store settings (endpoint, credentials, cache_dir, …).
    pub settings: BTreeMap<String, String>,
    /// Overrides the cache folder (`--cache-dir`, `KLOSETFS_CACHE_DIR`).
    pub cache_dir: Option<PathBuf>,
    /// No on-disk cache at all.
    pub no_cache: bool,
    /// Keep file data (not only metadata) in the disk cache.
    pub data_cache: bool,
    /// Retries for remote stores; `None` is [`RetryPolicy::default`].
    pub retry: Option<RetryPolicy>,
}

pub fn is_remote(location: &str) -> bool {
    location.contains("://")
}

/// Opens the storage stack for `location`.
pub fn open(location: &str, opts: &OpenOptions) -> Result<Arc<dyn Storage>> {
    if !is_remote(location) {
        let path = crate::util::expand_tilde(location);
        if path.exists() && !path.is_dir() {
            return Err(Error::InvalidInput(format!(
                "{} is not a directory, so it cannot hold a store (give the folder the store is, or is to be, in)",
                path.display()
            )));
        }
        if opts.create {
            return Ok(Arc::new(LocalStorage::create(&path)?));
        }
        if !path.is_dir() {
            return Err(Error::InvalidInput(format!(
                "no store at {}: the directory does not exist (create one with `klosetfs at {location} create`)",
                path.display()
            )));
        }
        return Ok(Arc::new(LocalStorage::open(&path)?));
    }
    if !location.starts_with("s3://") {
        return Err(Error::InvalidInput(format!(
            "unsupported location {location}: use a path or s3://bucket/prefix"
        )));
    }
    remote(location, opts)
}

#[cfg(not(feature = "s3"))]
fn remote(location: &str, _opts: &OpenOptions) -> Result<Arc<dyn Storage>> {
    Err(Error::InvalidInput(format!(
        "{location}: this klosetfs was built without S3 support (feature `s3`)"
    )))
}

#[cfg(feature = "s3")]
fn remote(location: &str, opts: &OpenOptions) -> Result<Arc<dyn Storage>> {
    let mut s3 = S3Options::parse(location)?;
    s3.apply_settings(&opts.settings);
    let backend = if opts.create {
        S3Storage::create(s3)?
    } else {
        S3Storage::open(s3)?
    };
    let limited: Arc<dyn Storage> =
        Arc::new(LimitStorage::new(Arc::new(backend), REMOTE_CONNECTIONS));
    let policy = opts.retry.unwrap_or_else(RetryPolicy::from_env);
    let retried: Arc<dyn Storage> = Arc::new(RetryStorage::new(limited, policy));
    match cache_dir(location, opts) {
        Some(dir) => {
            let cap = opts
                .settings
                .get("cache_size")
                .map(|s| crate::util::parse_size(s))
                .transpose()?
                .unwrap_or(DEFAULT_CACHE_SIZE);
            let cap = if opts.data_cache { cap } else { 0 };
            Ok(Arc::new(CacheStorage::new(retried, dir, cap)))
        }
        None => Ok(retried),
    }
}

/// `--cache-dir`/`KLOSETFS_CACHE_DIR`, else the store's `cache_dir` setting,
/// else `~/.cache/klosetfs/`; one sub-folder per location.
#[cfg(feature = "s3")]
fn cache_dir(location: &str, opts: &OpenOptions) -> Option<PathBuf> {
    if opts.no_cache {
        return None;
    }
    let base = opts
        .cache_dir
        .clone()
        .or_else(|| std::env::var_os("KLOSETFS_CACHE_DIR").map(PathBuf::from))
        .or_else(|| {
            opts.settings
                .get("cache_dir")
                .map(|d| crate::util::expand_tilde(d))
        })
        .or_else(|| dirs::cache_dir().map(|d| d.join("klosetfs")))?;
    let tag = blake3::hash(location.trim_end_matches('/').as_bytes()).to_hex();
    Some(base.join(&tag.as_str()[..16]))
}
