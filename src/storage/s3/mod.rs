//! A store in an S3-compatible bucket (AWS, SeaweedFS, MinIO, Ceph RGW, Garage…).
//!
//! The AWS SDK is async; this backend owns one small tokio runtime and blocks on
//! it, so the rest of the crate stays synchronous. It only moves bytes and maps
//! the SDK's errors onto the storage contract: retries, concurrency limits and
//! caching are the shared wrappers' job (see `retry`, `limit`, `cache`). The SDK's
//! own retries are off so there is exactly one retry policy, ours.
//!
//! Layout under `s3://bucket/prefix/`: the same as a local store (`config`,
//! `keys/<id>`, `packs/<xx>/<id>`, `index/<id>`, `snapshots/<id>`, `locks/<id>`),
//! so a store copied between a directory and a bucket with any sync tool works.

mod bucket;

pub use bucket::{ObjectInfo, S3Bucket, S3Options, PART_SIZE};

use super::{check_name, object_path, Kind, Storage, StorageError, StorageResult};

/// S3 backend. See the module documentation.
pub struct S3Storage {
    b: S3Bucket,
    /// `prefix/` or empty.
    prefix: String,
}

impl S3Storage {
    /// Connects to an existing bucket (nothing is sent until the first request).
    pub fn open(opts: S3Options) -> StorageResult<Self> {
        let prefix = if opts.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", opts.prefix)
        };
        Ok(Self {
            b: S3Bucket::connect(&opts)?,
            prefix,
        })
    }

    /// Opens, creating the bucket when it does not exist yet.
    pub fn create(opts: S3Options) -> StorageResult<Self> {
        let s = Self::open(opts)?;
        s.b.ensure_exists()?;
        Ok(s)
    }

    fn key(&self, kind: Kind, name: &str) -> StorageResult<String> {
        Ok(format!("{}{}", self.prefix, object_path(kind, name)?))
    }

    /// Turns the generic NotFound/AlreadyExists of `map_err` into ones naming the object.
    fn named(kind: Kind, name: &str, e: StorageError) -> StorageError {
        match e {
            StorageError::NotFound { .. } => StorageError::NotFound {
                kind,
                name: name.to_string(),
            },
            StorageError::AlreadyExists { .. } => StorageError::AlreadyExists {
                kind,
                name: name.to_string(),
            },
            e => e,
        }
    }

    fn head(&self, kind: Kind, name: &str) -> StorageResult<u64> {
        let key = self.key(kind, name)?;
        self.b
            .head(&key, &format!("reading {kind} {name}"))
            .map_err(|e| Self::named(kind, name, e))
    }
}

impl Storage for S3Storage {
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> StorageResult<()> {
        let key = self.key(kind, name)?;
        self.b
            .put(&key, data, true, None, &format!("writing {kind} {name}"))
            .map_err(|e| Self::named(kind, name, e))
    }

    fn get(&self, kind: Kind, name: &str) -> StorageResult<Vec<u8>> {
        let key = self.key(kind, name)?;
        self.b
            .get(&key, None, &format!("reading {kind} {name}"))
            .map(|r| r.0)
            .map_err(|e| Self::named(kind, name, e))
    }

    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> StorageResult<Vec<u8>> {
        if len == 0 {
            let size = self.head(kind, name)?;
            return if offset <= size {
                Ok(Vec::new())
            } else {
                Err(StorageError::Backend(format!(
                    "{kind} {name} is {size} bytes, shorter than offset {offset}"
                )))
            };
        }
        let key = self.key(kind, name)?;
        let out = self
            .b
            .get(&key, Some((offset, len)), &format!("reading {kind} {name}"))
            .map_err(|e| match Self::named(kind, name, e) {
                StorageError::Backend(m) if m.contains("InvalidRange") => StorageError::Backend(
                    format!("{kind} {name} is shorter than {} bytes", offset + len),
                ),
                e => e,
            })?
            .0;
        if out.len() as u64 != len {
            return Err(StorageError::Backend(format!(
                "{kind} {name}: wanted {len} bytes at {offset}, got {} (object too short)",
                out.len()
            )));
        }
        Ok(out)
    }

    fn list(&self, kind: Kind) -> StorageResult<Vec<(String, u64)>> {
        if kind == Kind::Config {
            return match self.head(kind, "config") {
                Ok(size) => Ok(vec![("config".into(), size)]),
                Err(StorageError::NotFound { .. }) => Ok(vec![]),
                Err(e) => Err(e),
            };
        }
        let prefix = format!("{}{}/", self.prefix, kind.dir());
        let all = self.b.list(&prefix, &format!("listing {kind} objects"))?;
        Ok(all
            .into_iter()
            .filter_map(|o| {
                let name = o.key.rsplit('/').next().unwrap_or(&o.key).to_string();
                // Stray objects (a sync tool's temp files…) are not ours.
                check_name(&name).is_ok().then_some((name, o.size))
            })
            .collect())
    }

    fn delete(&self, kind: Kind, name: &str) -> StorageResult<()> {
        // S3 deletes of missing keys succeed; the contract wants NotFound.
        self.head(kind, name)?;
        let key = self.key(kind, name)?;
        self.b
            .delete(&key, &format!("deleting {kind} {name}"))
            .map_err(|e| Self::named(kind, name, e))
    }

    fn location(&self) -> String {
        format!(
            "s3://{}/{}",
            self.b.name(),
            self.prefix.trim_end_matches('/')
        )
    }
}
