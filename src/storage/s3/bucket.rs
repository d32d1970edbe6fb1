//! The S3 client under the S3 store: one bucket, its connection settings
//! (`S3Options`: endpoint, region, keys, path style) and the few calls a store
//! needs (get, ranged get, conditional put, multipart upload, list, delete),
//! run on a small tokio runtime of its own so callers stay synchronous, with
//! the SDK's errors mapped onto the storage contract.

use std::future::Future;
use std::time::Duration;

use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::storage::{Kind, StorageError, StorageResult};

/// Where a store lives in S3 and how to reach it. Unset fields fall back to the
/// usual `AWS_*` environment variables and `~/.aws` profiles.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_access_key: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`); the default when an
    /// endpoint is given, since self-hosted servers rarely do virtual hosts.
    pub path_style: Option<bool>,
    /// Time allowed for a request before it counts as failed (and is retried
    /// by the retry wrapper); large transfers get more, see `deadline`.
    pub timeout: Duration,
}

impl S3Options {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(location: &str) -> StorageResult<Self> {
        let rest = location
            .strip_prefix("s3://")
            .ok_or_else(|| StorageError::Backend(format!("not an s3:// location: {location}")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            return Err(StorageError::Backend(format!(
                "invalid bucket name {bucket:?} in {location} (3-63 lowercase letters, digits, '-' or '.')"
            )));
        }
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            timeout: Duration::from_secs(60),
            ..Default::default()
        })
    }

    /// Applies `endpoint`, `region`, `access_key`, `secret_access_key` and
    /// `path_style` from a named store's settings.
    pub fn apply_settings(&mut self, s: &std::collections::BTreeMap<String, String>) {
        let get = |k: &str| s.get(k).filter(|v| !v.is_empty()).cloned();
        self.endpoint = get("endpoint").or(self.endpoint.take());
        self.region = get("region").or(self.region.take());
        self.access_key = get("access_key").or(self.access_key.take());
        self.secret_access_key = get("secret_access_key").or(self.secret_access_key.take());
        if let Some(v) = get("path_style") {
            self.path_style = Some(matches!(v.as_str(), "true" | "1" | "yes"));
        }
    }
}

/// One bucket on one endpoint: the client, its runtime, and error mapping.
/// The store backend and the source/destination connectors all use this.
pub struct S3Bucket {
    rt: tokio::runtime::Runtime,
    client: Client,
    bucket: String,
    endpoint: String,
    timeout: Duration,
}

/// An object as listed: key, size, last modification and ETag.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub etag: String,
}

/// Two runtime threads are enough: the work is I/O, and every caller blocks on
/// its own request, so callers' threads drive the futures.
fn runtime() -> StorageResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("klosetfs-s3")
        .enable_all()
        .build()
        .map_err(|e| StorageError::Backend(format!("starting the S3 runtime: {e}")))
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

/// Multipart parts for large objects (S3 wants 5 MiB at least, 10,000 at most).
pub const PART_SIZE: usize = 16 << 20;

impl S3Bucket {
    /// Builds the client (nothing is sent until the first request).
    pub fn connect(opts: &S3Options) -> StorageResult<Self> {
        let rt = runtime()?;
        let endpoint = opts
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        // Region: the setting, else AWS_REGION / the profile, else (on AWS
        // only) the instance metadata, else us-east-1, which every
        // self-hosted server accepts.
        let chain = RegionProviderChain::first_try(opts.region.clone().map(Region::new))
            .or_else(EnvironmentVariableRegionProvider::new())
            .or_else(ProfileFileRegionProvider::new());
        let chain = if endpoint.is_none() {
            chain.or_default_provider()
        } else {
            chain
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(chain.or_else(Region::from_static("us-east-1")));
        if let Some(ep) = &endpoint {
            loader = loader.endpoint_url(ep);
        }
        if let (Some(a), Some(s)) = (&opts.access_key, &opts.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                a.clone(),
                s.clone(),
                None,
                None,
                "klosetfs-store-config",
            ));
        }
        let shared = rt.block_on(loader.load());
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(opts.path_style.unwrap_or(endpoint.is_some()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .build(),
            )
            .build();
        Ok(Self {
            rt,
            client: Client::from_conf(conf),
            bucket: opts.bucket.clone(),
            endpoint: endpoint.unwrap_or_else(|| "AWS".into()),
            timeout: opts.timeout,
        })
    }

    pub fn name(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket when it does not exist yet.
    pub fn ensure_exists(&self) -> StorageResult<()> {
        let head = self.run("checking the bucket", Duration::ZERO, async {
            self.client.head_bucket().bucket(&self.bucket).send().await
        });
        match head {
            Ok(_) => Ok(()),
            Err(StorageError::NotFound { .. }) => self
                .run("creating the bucket", Duration::ZERO, async {
                    self.client
                        .create_bucket()
                        .bucket(&self.bucket)
                        .send()
                        .await
                })
                .map(|_| ())
                .or_else(|e| match e {
                    // Another host created it meanwhile.
                    StorageError::AlreadyExists { .. } => Ok(()),
                    e => Err(e),
                }),
            Err(e) => Err(e),
        }
    }

    /// Blocks on `fut` with a deadline of the base timeout plus `extra`.
    fn block<T>(
        &self,
        what: &str,
        extra: Duration,
        fut: impl Future<Output = StorageResult<T>>,
    ) -> StorageResult<T> {
        let deadline = self.timeout + extra;
        let started = std::time::Instant::now();
        let r = self
            .rt
            .block_on(async { tokio::time::timeout(deadline, fut).await });
        // -vv shows every request and its time: what a slow remote command waits on.
        tracing::debug!(target: "klosetfs::s3", "{what}: {:.1?}", started.elapsed());
        r.map_err(|_| {
            StorageError::Unavailable(format!(
                "{what}: no answer from {} within {deadline:?}",
                self.endpoint
            ))
        })?
    }

    /// Runs one request (see `block`), mapping the SDK's errors.
    fn run<T, E>(
        &self,
        what: &str,
        extra: Duration,
        fut: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> StorageResult<T>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.block(what, extra, async {
            fut.await.map_err(|e| self.map_err(what, e))
        })
    }

    fn map_err<E>(&self, what: &str, e: SdkError<E, HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let detail = |code: &str, msg: &str| format!("{what}: {code}: {msg}");
        match &e {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code().unwrap_or("");
                let msg = se.err().message().unwrap_or("");
                match (status, code) {
                    (_, "NoSuchBucket") => StorageError::Backend(format!(
                        "{what}: bucket {} does not exist at {} (`create` makes it)",
                        self.bucket, self.endpoint
                    )),
                    (_, "BucketAlreadyOwnedByYou" | "BucketAlreadyExists") => {
                        StorageError::AlreadyExists {
                            kind: Kind::Config,
                            name: self.bucket.clone(),
                        }
                    }
                    (404, _) | (_, "NoSuchKey" | "NotFound") => StorageError::NotFound {
                        kind: Kind::Config,
                        name: what.to_string(),
                    },
                    (412, _) | (_, "PreconditionFailed") => StorageError::AlreadyExists {
                        kind: Kind::Config,
                        name: what.to_string(),
                    },
                    (_, "InvalidAccessKeyId" | "SignatureDoesNotMatch") => {
                        StorageError::Backend(format!(
                            "{what}: the S3 credentials were refused by {} ({code}); check access_key/secret_access_key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                            self.endpoint
                        ))
                    }
                    (429 | 500..=599, _)
                    | (
                        _,
                        "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable",
                    ) => StorageError::Unavailable(detail(code, msg)),
                    _ => StorageError::Backend(format!("{} (HTTP {status})", detail(code, msg))),
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => StorageError::Unavailable(format!(
                "{what}: {} unreachable: {}",
                self.endpoint,
                DisplayErrorContext(&e)
            )),
            _ => StorageError::Backend(format!("{what}: {}", DisplayErrorContext(&e))),
        }
    }

    /// Time for a body of `len` bytes at a slow-but-alive 1 MiB/s.
    fn body_time(len: u64) -> Duration {
        Duration::from_secs(len / (1024 * 1024))
    }

    /// The size of an object.
    pub fn head(&self, key: &str, what: &str) -> StorageResult<u64> {
        let r = self.run(what, Duration::ZERO, async {
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
        })?;
        Ok(r.content_length().unwrap_or(0).max(0) as u64)
    }

    /// An object, or `len` bytes of it at `off`; with its content type.
    pub fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        what: &str,
    ) -> StorageResult<(Vec<u8>, Option<String>)> {
        let extra = Self::body_time(range.map_or(16 << 20, |r| r.1));
        self.block(what, extra, async {
            let mut req = self.client.get_object().bucket(&self.bucket).key(key);
            if let Some((off, len)) = range {
                req = req.range(format!("bytes={off}-{}", off + len - 1));
            }
            let resp = req.send().await.map_err(|e| self.map_err(what, e))?;
            let ctype = resp.content_type().map(String::from);
            let body =
                resp.body.collect().await.map_err(|e| {
                    StorageError::Unavailable(format!("{what}: body cut short: {e}"))
                })?;
            Ok((body.into_bytes().to_vec(), ctype))
        })
    }

    /// Stores an object; with `exclusive`, only if the key is free.
    pub fn put(
        &self,
        key: &str,
        data: &[u8],
        exclusive: bool,
        content_type: Option<&str>,
        what: &str,
    ) -> StorageResult<()> {
        let body = ByteStream::from(data.to_vec());
        self.run(what, Self::body_time(data.len() as u64), async {
            let mut req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(body);
            if exclusive {
                // Conditional on the server: racing hosts cannot overwrite each other.
                req = req.if_none_match("*");
            }
            if let Some(t) = content_type {
                req = req.content_type(t);
            }
            req.send().await
        })
        .map(|_| ())
    }

    /// Stores a large object in parts of [`PART_SIZE`] bytes from `next_part`
    /// (which returns an empty part at the end); aborts the upload on failure.
    pub fn put_multipart(
        &self,
        key: &str,
        content_type: Option<&str>,
        mut next_part: impl FnMut() -> std::io::Result<Vec<u8>>,
    ) -> StorageResult<()> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let what = format!("uploading {key}");
        let up = self.run(&what, Duration::ZERO, async {
            let mut req = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(key);
            if let Some(t) = content_type {
                req = req.content_type(t);
            }
            req.send().await
        })?;
        let id = up
            .upload_id()
            .ok_or_else(|| StorageError::Backend(format!("{what}: no upload id")))?
            .to_string();
        let result = (|| {
            let mut parts = Vec::new();
            loop {
                let data = next_part().map_err(|err| StorageError::Io {
                    context: format!("reading data for {key}"),
                    err,
                })?;
                if data.is_empty() && !parts.is_empty() {
                    break;
                }
                let n = parts.len() as i32 + 1;
                let len = data.len() as u64;
                let r = self.run(&what, Self::body_time(len), async {
                    self.client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(&id)
                        .part_number(n)
                        .body(ByteStream::from(data))
                        .send()
                        .await
                })?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(r.e_tag().map(String::from))
                        .build(),
                );
                if (len as usize) < PART_SIZE {
                    break;
                }
            }
            self.run(&what, Duration::ZERO, async {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
            })
            .map(|_| ())
        })();
        if result.is_err() {
            let _ = self.run(&what, Duration::ZERO, async {
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&id)
                    .send()
                    .await
            });
        }
        result
    }

    pub fn delete(&self, key: &str, what: &str) -> StorageResult<()> {
        self.run(what, Duration::ZERO, async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
        })
        .map(|_| ())
    }

    /// Every object under `prefix`, following pagination.
    pub fn list(&self, prefix: &str, what: &str) -> StorageResult<Vec<ObjectInfo>> {
        self.block(what, self.timeout * 10, async {
            let mut out = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.map_err(what, e))?;
                for o in page.contents() {
                    let Some(key) = o.key() else { continue };
                    let mtime_ns = o
                        .last_modified()
                        .map_or(0, |t| t.secs() * 1_000_000_000 + t.subsec_nanos() as i64);
                    out.push(ObjectInfo {
                        key: key.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        mtime_ns,
                        etag: o.e_tag().unwrap_or("").trim_matches('"').to_string(),
                    });
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        let o = S3Options::parse("s3://my-bucket/some/prefix/").unwrap();
        assert_eq!(
            (o.bucket.as_str(), o.prefix.as_str()),
            ("my-bucket", "some/prefix")
        );
        let o = S3Options::parse("s3://bkt").unwrap();
        assert_eq!((o.bucket.as_str(), o.prefix.as_str()), ("bkt", ""));
        for bad in ["s3://", "s3://A_B/x", "s3://ab", "/local/path"] {
            assert!(S3Options::parse(bad).is_err(), "{bad}");
        }
    }
}
